//! What the relay's tasks share: a handle to each part of the relay's state.
//! Each part has one writer (named below) and readers that never take a lock on
//! the per-packet path; this struct only bundles the handles so a task can be
//! given them in one argument.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use daemon::tls::PeerPolicy;
use daemon::Spawner;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use topology::NodeIdx;

use crate::admission::Admission;
use crate::datapath::forwarder::Forwarder;
use crate::datapath::link_registry::LinkRegistry;
use crate::datapath::udp_egress::EgressTable;
use crate::live::{Live, LiveConfig};
use crate::metrics::{LinkTotals, Metrics, QualityTotals};
use crate::tcp::egress::EgressSessions;
use crate::tcp::link_watch::LinkDowns;

#[derive(Debug)]
pub struct Context {
    /// This node's wire key and id (a reload cannot change them).
    pub me: u32,
    pub me_id: String,
    /// The config in force. Writer: reload.
    pub live: Arc<Live>,
    /// Routes in force, links, counters: the forwarding path. Writers: the
    /// controller session and reload (routes), link actors (links).
    pub forwarder: Arc<Forwarder>,
    pub links: Arc<LinkRegistry>,
    pub metrics: Arc<Metrics>,
    /// UDP flows whose egress is here. Writers: link actors (new flows), the
    /// expiry loop, reload.
    pub egress: Arc<EgressTable>,
    /// Draining and flow limits. Writers: drain, reload.
    pub admission: Arc<Admission>,
    /// Incoming handshakes taken on, retried, dropped, failed.
    pub handshakes: Arc<daemon::quic::HandshakeCounters>,
    /// Per-link traffic totals across reconnects, read at scrape time.
    pub link_totals: LinkTotals,
    /// Woken when a link's state changes, so the controller hears at once.
    pub links_changed: Notify,
    /// Each link's down edges, for the tasks carrying TCP streams over it.
    /// Writers: link actors.
    pub link_downs: LinkDowns,
    /// TCP sessions whose egress is here. Writers: their tasks.
    pub sessions: EgressSessions,
    /// The neighbours whose certificates the TLS server accepts. Writer: reload.
    pub policy: PeerPolicy,
    /// What stops each dial loop and each service's ingress on its own.
    /// Writers: start, reload, drain.
    pub stops: Mutex<Stops>,
    /// Where tasks start tasks of their own; the relay's shutdown token.
    pub tasks: Spawner,
    pub cancel: CancellationToken,
    pub started: Instant,
    /// The QUIC socket's inode, for the kernel's drops on it.
    pub quic_inode: Option<u64>,
    /// Closed egress flow sockets' kernel drops (written at each scrape).
    pub egress_drops: Mutex<crate::socket_drops::EgressDrops>,
}

/// Stop tokens of the tasks a reload can end one by one.
#[derive(Debug, Default)]
pub struct Stops {
    /// Dial loops, by peer node key.
    pub links: HashMap<u32, CancellationToken>,
    /// Ingress tasks (UDP reader or TCP listener), by service key.
    pub services: HashMap<u32, CancellationToken>,
}

impl Context {
    /// The config in force (a cheap clone of an `Arc`).
    pub fn live(&self) -> Arc<LiveConfig> {
        self.live.load_full()
    }

    pub fn stops(&self) -> std::sync::MutexGuard<'_, Stops> {
        // Each update is one insert or remove; a poisoned lock is consistent.
        self.stops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What this relay tells the controller about each of its links.
    pub fn link_reports(&self) -> Vec<control_protocol::LinkReport> {
        let now = std::time::Instant::now();
        self.live
            .load()
            .neighbors
            .iter()
            .map(|(key, id)| {
                let health = self.links.health(*key);
                let measured = health.as_ref().map(|h| h.measured()).unwrap_or_default();
                let up = self.links.is_up(*key);
                let conn = self.links.connected(*key);
                let sent = self.link_totals.read(*key, conn.as_ref()).tx_bytes;
                let tx_mbps = self.metrics.link_rates.update(*key, sent, now);
                control_protocol::LinkReport {
                    peer: id.clone(),
                    up,
                    rtt_ms: measured.rtt_ms,
                    min_rtt_ms: measured.min_rtt_ms,
                    jitter_ms: measured.jitter_ms,
                    loss: measured.loss,
                    tx_mbps,
                    up_for_s: health
                        .and_then(|h| h.up_for())
                        .filter(|_| up)
                        .map(|d| d.as_secs_f64()),
                }
            })
            .collect()
    }

    /// What the services' arrivals here measured since `last` (updated to
    /// now), for the controller.
    pub fn service_reports(
        &self,
        last: &mut HashMap<u32, QualityTotals>,
    ) -> Vec<control_protocol::ServiceReport> {
        let live = self.live.load();
        live.services
            .iter()
            .filter_map(|(key, name, c)| {
                let now = c.quality_totals();
                let report =
                    now.report_since(last.get(&key).unwrap_or(&QualityTotals::default()), name);
                last.insert(key, now);
                report
            })
            .collect()
    }

    /// What this relay sends into the overlay per destination relay, for the
    /// controller's placement: the unprotected UDP services' datagrams that
    /// enter here (clients' at an ingress, targets' replies at an egress), as
    /// they cost on a link (payload plus the overlay's per-packet overhead),
    /// smoothed like the link rates. Protected services keep to the table's
    /// paths, so they are not placed.
    pub fn demand_reports(&self) -> Vec<control_protocol::DemandReport> {
        let now = std::time::Instant::now();
        let live = self.live.load();
        let t = &live.cfg.topology;
        let me = live.cfg.node;
        let mut per_dst: BTreeMap<NodeIdx, u64> = BTreeMap::new();
        for s in &t.services {
            if s.protocol != topology::Protocol::Udp || s.protect {
                continue;
            }
            let dst = if s.ingress_node == me {
                s.egress_node
            } else if s.egress_node == me {
                s.ingress_node
            } else {
                continue;
            };
            if let Some(c) = live.services.get(s.key) {
                let bytes = c.received_bytes.load(Ordering::Relaxed);
                let packets = c.received_packets.load(Ordering::Relaxed);
                let on_link = bytes + packets * u64::from(topology::demand::OVERLAY_OVERHEAD_BYTES);
                *per_dst.entry(dst).or_default() += on_link;
            }
        }
        per_dst
            .into_iter()
            .filter(|(dst, _)| *dst != me)
            .filter_map(|(dst, bytes)| {
                let mbps = self
                    .metrics
                    .demand_rates
                    .update(t.node_key(dst), bytes, now)?;
                Some(control_protocol::DemandReport {
                    dst: t.node(dst).id.clone(),
                    mbps,
                })
            })
            .collect()
    }

    /// Whether `addr` is where a neighbour's QUIC socket is (its topology
    /// address or its dial override): the address it dials from.
    pub fn is_neighbour_addr(&self, addr: std::net::SocketAddr) -> bool {
        let live = self.live.load();
        live.neighbors.iter().any(|(key, _)| {
            self.dial_addr(*key) == Some(addr) || {
                let t = &live.cfg.topology;
                t.node_by_key(*key).is_some_and(|i| t.node(i).addr == addr)
            }
        })
    }

    /// The address to dial for a peer, from the config in force.
    pub fn dial_addr(&self, peer: u32) -> Option<std::net::SocketAddr> {
        let live = self.live.load();
        let cfg = &live.cfg;
        cfg.topology.node_by_key(peer).map(|idx| cfg.dial_addr(idx))
    }
}
