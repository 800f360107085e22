//! A UDP service's ingress: its listening socket, where each source address is
//! a flow, and the path back to the flow's client for the target's replies.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use relay_core::flows::IngressFlows;
use relay_core::wire::{Kind, FLAG_PROTECTED, INITIAL_TTL};
use relay_core::{DropReason, Header};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::admission::Admission;
use crate::datapath::forwarder::Forwarder;
use crate::datapath::socket::{core_now, now_us, SplitSocket};
use crate::metrics::{Metrics, ServiceCounters};

/// A UDP service whose ingress is this node.
#[derive(Debug)]
pub struct UdpIngress {
    name: String,
    key: u32,
    allow: Vec<ipnet::IpNet>,
    /// The egress node's wire key, fixed when the socket was bound: node
    /// indexes shift when a reload reorders the topology, keys do not.
    dst: u32,
    socket: SplitSocket,
    flows: Mutex<IngressFlows>,
    /// The service's counters, looked up once rather than per datagram.
    counters: Option<Arc<ServiceCounters>>,
    /// Each datagram goes on two disjoint paths (`protect: true`).
    protect: bool,
}

fn lock(m: &Mutex<IngressFlows>) -> MutexGuard<'_, IngressFlows> {
    // Every critical section is a few map operations that cannot leave the
    // map half-updated, so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl UdpIngress {
    pub fn new(
        service: &topology::Service,
        dst: u32,
        socket: SplitSocket,
        counters: Option<Arc<ServiceCounters>>,
    ) -> Self {
        UdpIngress {
            name: service.name.clone(),
            key: service.key,
            allow: service.allow.clone(),
            dst,
            socket,
            flows: Mutex::new(IngressFlows::default()),
            counters,
            protect: service.protect,
        }
    }

    pub fn flow_count(&self) -> usize {
        lock(&self.flows).len()
    }

    /// The ingress socket's inode ([`daemon::sock_drops`]).
    pub fn socket_inode(&self) -> Option<u64> {
        self.socket.inode()
    }

    pub fn service_key(&self) -> u32 {
        self.key
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The wire key of the service's egress node.
    pub fn egress_key(&self) -> u32 {
        self.dst
    }

    /// The id of `client`'s flow here, if it has one.
    pub fn flow_of(&self, client: SocketAddr) -> Option<u32> {
        lock(&self.flows).id_of(client)
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.recv.local_addr()
    }

    fn allowed(&self, src: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&src))
    }

    /// Forgets flows idle since before `cutoff`; returns how many. Replies
    /// they were still missing count as lost.
    pub fn expire(&self, cutoff: std::time::Instant) -> usize {
        let (gone, unseen) = lock(&self.flows).expire(cutoff);
        if let Some(c) = &self.counters {
            c.seq_lost.fetch_add(unseen, Ordering::Relaxed);
        }
        gone
    }

    /// Reads the socket until `cancel`, sending each datagram into the overlay.
    pub async fn run(
        self: Arc<Self>,
        forwarder: Arc<Forwarder>,
        admission: Arc<Admission>,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) {
        let mut buf = vec![0u8; 65_535];
        loop {
            let received = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                r = self.socket.recv.recv_from(&mut buf) => r,
            };
            let (n, client) = match received {
                Ok(r) => r,
                Err(e) => {
                    // e.g. an ICMP error from an earlier reply; the socket is still fine.
                    debug!(service = %self.name, "udp ingress receive error: {e}");
                    continue;
                }
            };
            if !self.allowed(client.ip()) {
                metrics.count_drop(DropReason::NotAllowed);
                continue;
            }
            let admitted = lock(&self.flows).admit(client, core_now(), admission.now());
            let (flow, seq) = match admitted {
                Ok(f) => f,
                Err(reason) => {
                    metrics.count_drop(reason);
                    continue;
                }
            };
            let header = Header {
                kind: Kind::Media,
                ttl: INITIAL_TTL,
                flags: 0,
                dst: self.dst,
                src: forwarder.me,
                service: self.key,
                flow,
                seq,
                timestamp_us: now_us(),
            };
            if let Some(c) = &self.counters {
                c.received(1, n as u64);
            }
            if !self.protect {
                forwarder.originate(header, &buf[..n]);
            } else if !forwarder.originate_protected(header, &buf[..n]) {
                if let Some(c) = &self.counters {
                    c.single_path_sends.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Delivers a reply that came back through the overlay to the flow's
    /// client; of a protected reply's two copies, the first.
    pub fn deliver_reply(&self, header: &Header, payload: &Bytes, metrics: &Metrics) {
        let found = lock(&self.flows).reply_to(header.flow, header.seq, core_now());
        let Some((client, verdict)) = found else {
            return metrics.count_drop(DropReason::UnknownFlow);
        };
        if let Some(c) = &self.counters {
            c.arrived(header, verdict, now_us());
        }
        if header.flags & FLAG_PROTECTED != 0 && !verdict.arrival.is_first() {
            return;
        }
        match self.socket.send_to(payload, client) {
            Ok(_) => {
                metrics.count_delivered(payload.len());
                if let Some(c) = &self.counters {
                    c.delivered(1, payload.len() as u64);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                metrics.count_drop(DropReason::QueueFull)
            }
            Err(_) => metrics.count_drop(DropReason::SendFailed),
        }
    }
}
