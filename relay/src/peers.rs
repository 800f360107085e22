//! Peer links: one QUIC connection per topology link, its registry, the dial loop
//! (reconnect with backoff and jitter) and the accept path (mutual TLS, identity).
//!
//! Either side may dial. When two connections to one peer exist at once, both ends
//! keep the one dialed by the node with the smaller id and close the other, so
//! they converge without talking about it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use quinn::{Connection, Endpoint, Incoming};
use rand::Rng;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use crate::controller_link::{NextHopMove, NextHopMoves};
use crate::fwd::Decision;
use crate::metrics::Metrics;
use crate::node::Shared;
use crate::probe::{DownReason, LinkEvent, LinkProbe};
use crate::wire::{Header, Kind, INITIAL_TTL};

/// QUIC application close codes on peer links.
pub const CLOSE_SHUTDOWN: u32 = 0;
pub const CLOSE_DUPLICATE: u32 = 1;
pub const CLOSE_NOT_A_PEER: u32 = 2;

/// How long a connection that lost the duplicate rule stays open, so datagrams
/// already in flight on it still arrive (senders switch to the winner at once).
const DUPLICATE_GRACE: Duration = Duration::from_secs(1);

/// Closes a connection that lost the duplicate rule, after the grace period.
fn retire(conn: Connection) {
    tokio::spawn(async move {
        tokio::time::sleep(DUPLICATE_GRACE).await;
        conn.close(CLOSE_DUPLICATE.into(), b"duplicate link");
    });
}

/// What the link's probes say, shared between its actor and the forwarding path.
#[derive(Debug, Default)]
pub struct LinkHealth {
    /// Probes say the link carries traffic (hysteresis on both edges).
    pub up: std::sync::atomic::AtomicBool,
    /// The link was up and its probes then failed: its peer may have restarted,
    /// and a new connection from it must replace this one (see [`Peers::register`]).
    pub failed: std::sync::atomic::AtomicBool,
    pub measured: Mutex<Measured>,
}

/// The latest probe figures of a link.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Measured {
    pub rtt_ms: Option<f64>,
    pub min_rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss: f64,
}

impl LinkHealth {
    pub fn is_up(&self) -> bool {
        self.up.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn measured(&self) -> Measured {
        self.measured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How long a replacement connection may carry an inherited "up" before its own
/// probes must confirm it.
const INHERITED_UP_GRACE: Duration = Duration::from_secs(2);

/// A live link to a neighbor.
#[derive(Debug, Clone)]
pub struct Link {
    pub id: String,
    pub conn: Connection,
    pub dialed_by_me: bool,
    pub since: Instant,
    pub health: Arc<LinkHealth>,
}

/// The registry of live links, by peer node key.
#[derive(Debug)]
pub struct Peers {
    me_id: String,
    /// Read on every forwarded packet, written only when links come and go.
    links: RwLock<HashMap<u32, Link>>,
}

impl Peers {
    pub fn new(me_id: &str) -> Self {
        Peers {
            me_id: me_id.to_string(),
            links: RwLock::new(HashMap::new()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u32, Link>> {
        // Every update is a single insert or remove, so a poisoned lock is still consistent.
        self.links.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, Link>> {
        self.links.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection to a peer, if it is open and its probes say it is up.
    pub fn get(&self, key: u32) -> Option<Connection> {
        let links = self.read();
        let link = links.get(&key)?;
        (link.conn.close_reason().is_none() && link.health.is_up()).then(|| link.conn.clone())
    }

    /// The open connection to a peer whether or not probes pass.
    pub fn connected(&self, key: u32) -> Option<Connection> {
        let links = self.read();
        let link = links.get(&key)?;
        link.conn
            .close_reason()
            .is_none()
            .then(|| link.conn.clone())
    }

    /// Whether traffic can go to this peer now.
    pub fn is_up(&self, key: u32) -> bool {
        self.get(key).is_some()
    }

    /// The health record of the link to `key`, if connected.
    pub fn health(&self, key: u32) -> Option<Arc<LinkHealth>> {
        self.read().get(&key).map(|l| l.health.clone())
    }

    /// Whether this node is the one whose dial wins when both sides dial.
    pub fn i_dial_first(&self, peer_id: &str) -> bool {
        self.me_id.as_str() < peer_id
    }

    /// Makes `conn` the link to this peer, unless a live connection that the
    /// duplicate rule prefers exists; the loser is closed after a grace period.
    /// Returns the health record the connection's actor must use, or `None` if
    /// `conn` lost. A connection replacing a live one inherits its health: it is
    /// the same physical link, so it must not look down while it proves itself.
    ///
    /// A connection whose probes failed after it was up loses to any newcomer:
    /// that is what a restarted peer looks like from here (its old connection
    /// lingers until the idle timeout), and the peer, fresh, has no other
    /// connection to prefer, so both ends agree on the new one.
    pub fn register(
        &self,
        key: u32,
        id: &str,
        conn: Connection,
        dialed_by_me: bool,
    ) -> Option<Arc<LinkHealth>> {
        let keeper_dialed_by_me = self.me_id.as_str() < id;
        let preferred = |by_me: bool| by_me == keeper_dialed_by_me;
        let mut links = self.write();
        let mut health = Arc::new(LinkHealth::default());
        if let Some(old) = links.get(&key) {
            let old_live = old.conn.close_reason().is_none();
            let old_failed = old.health.failed.load(std::sync::atomic::Ordering::Relaxed);
            if old_live && !old_failed && preferred(old.dialed_by_me) && !preferred(dialed_by_me) {
                retire(conn);
                return None;
            }
            if old_live && old_failed {
                old.conn
                    .close(CLOSE_DUPLICATE.into(), b"replaced by a new connection");
            } else if old_live {
                retire(old.conn.clone());
                health = old.health.clone();
            }
        }
        let link = Link {
            id: id.to_string(),
            conn,
            dialed_by_me,
            since: Instant::now(),
            health: health.clone(),
        };
        links.insert(key, link);
        Some(health)
    }

    /// Forgets the link to `key` if it is still the connection `stable_id`;
    /// returns whether it was (a retired duplicate is not).
    pub fn remove(&self, key: u32, stable_id: usize) -> bool {
        let mut links = self.write();
        if links
            .get(&key)
            .is_some_and(|l| l.conn.stable_id() == stable_id)
        {
            links.remove(&key);
            return true;
        }
        false
    }

    pub fn snapshot(&self) -> Vec<(u32, Link)> {
        self.read().iter().map(|(k, l)| (*k, l.clone())).collect()
    }
}

/// A backoff delay with ±25% jitter, so a fleet does not reconnect in lockstep.
fn jittered(d: Duration) -> Duration {
    let f: f64 = rand::rng().random_range(0.75..1.25);
    d.mul_f64(f)
}

/// Keeps a link to one neighbor up: waits while it is up, dials when it is not,
/// until `stop` (the relay's shutdown, or a reload that removed the link).
pub async fn dial_loop(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    peer: u32,
    peer_id: String,
    stop: tokio_util::sync::CancellationToken,
) {
    let tuning = shared.cfg().tuning.clone();
    let mut backoff = tuning.reconnect_min;
    let mut failures = 0u32;
    // The node with the larger id lets the other dial first, so both rarely dial
    // at once; it still dials (after a pause) when the other does not.
    let defer = if shared.peers.i_dial_first(&peer_id) {
        Duration::ZERO
    } else {
        tuning.setup_timeout / 5
    };
    loop {
        if let Some(conn) = shared.peers.connected(peer) {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = conn.closed() => {}
            }
            backoff = tuning.reconnect_min;
            continue;
        }
        if !defer.is_zero() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(jittered(defer.max(backoff))) => {}
            }
            if shared.peers.connected(peer).is_some() {
                continue;
            }
        }
        let Some(addr) = shared.dial_addr(peer) else {
            return;
        };
        let attempt = async {
            let connecting = endpoint
                .connect_with(shared.client_config(), addr, &peer_id)
                .map_err(|e| e.to_string())?;
            connecting.await.map_err(|e| e.to_string())
        };
        let result = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(tuning.setup_timeout, attempt) => r,
        };
        match result {
            Ok(Ok(conn)) => {
                failures = 0;
                backoff = tuning.reconnect_min;
                if let Some(health) = shared.peers.register(peer, &peer_id, conn.clone(), true) {
                    info!(peer = %peer_id, %addr, "connected (dialed)");
                    tokio::spawn(run_link(
                        shared.clone(),
                        peer,
                        peer_id.clone(),
                        conn,
                        health,
                    ));
                }
                continue;
            }
            Ok(Err(e)) => log_dial_failure(&peer_id, addr, &e, &mut failures),
            Err(_) => log_dial_failure(&peer_id, addr, "handshake timed out", &mut failures),
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(jittered(backoff)) => {}
        }
        backoff = (backoff * 2).min(tuning.reconnect_max);
    }
}

fn log_dial_failure(peer: &str, addr: std::net::SocketAddr, error: &str, failures: &mut u32) {
    *failures += 1;
    // The first failure is news; a peer that stays down is logged again every 10 tries.
    if *failures == 1 || *failures % 10 == 0 {
        warn!(peer, %addr, failures = *failures, "cannot reach peer: {error}");
    } else {
        debug!(peer, %addr, "cannot reach peer: {error}");
    }
}

/// Accepts peer connections until shutdown.
pub async fn accept_loop(shared: Arc<Shared>, endpoint: Endpoint) {
    let cancel = shared.cancel.clone();
    crate::daemon::accept_each(endpoint, cancel, |incoming| {
        accept_one(shared.clone(), incoming)
    })
    .await;
}

async fn accept_one(shared: Arc<Shared>, incoming: Incoming) {
    let remote = incoming.remote_address();
    let result = tokio::time::timeout(shared.cfg().tuning.setup_timeout, incoming).await;
    let conn = match result {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            Metrics::add(&shared.metrics.peers_refused, 1);
            warn!(%remote, "refused peer connection: {e}");
            return;
        }
        Err(_) => {
            Metrics::add(&shared.metrics.peers_refused, 1);
            warn!(%remote, "refused peer connection: handshake timed out");
            return;
        }
    };
    // The TLS verifier already refused certificates that do not chain to the fleet
    // CA or name no neighbor; this finds which neighbor it is.
    let neighbors = shared.neighbors();
    let candidates = neighbors.iter().map(|(_, id)| id.as_str());
    let Some(id) = crate::tls::peer_node_id(&conn, candidates) else {
        Metrics::add(&shared.metrics.peers_refused, 1);
        warn!(%remote, "refused peer connection: certificate names no neighbor of this node");
        conn.close(CLOSE_NOT_A_PEER.into(), b"not a peer of this node");
        return;
    };
    let key = topology::wire_key(&id);
    if let Some(health) = shared.peers.register(key, &id, conn.clone(), false) {
        info!(peer = %id, %remote, "connected (accepted)");
        run_link(shared, key, id, conn, health).await;
    }
}

/// The actor of one peer connection: probes the link, answers the peer's probes,
/// reads datagrams and accepts streams until the connection ends or the relay
/// shuts down. Probe verdicts (with hysteresis) decide whether traffic may use it.
/// Everything it logs, and its streams' tasks, run in a `peer` span naming the
/// peer node and its address.
pub async fn run_link(
    shared: Arc<Shared>,
    key: u32,
    id: String,
    conn: Connection,
    health: Arc<LinkHealth>,
) {
    let span = tracing::info_span!("peer", peer = %id, remote = %conn.remote_address());
    async {
        let mut probe =
            LinkProbe::new(shared.cfg().tuning.probe.clone(), std::time::Instant::now());
        // Inherited "up" from a connection this one replaced: it must be confirmed
        // by this connection's own probes soon, or the link is down after all.
        let mut confirm_by = health
            .is_up()
            .then(|| std::time::Instant::now() + INHERITED_UP_GRACE);
        let mut closed: Option<quinn::ConnectionError> = None;
        loop {
            let wake = Instant::from_std(probe.poll_timeout());
            tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => {
                    conn.close(CLOSE_SHUTDOWN.into(), b"relay shutting down");
                    break;
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = std::time::Instant::now();
                    probe.handle_timeout(now);
                    while let Some(seq) = probe.poll_transmit(now) {
                        let header = probe_header(Kind::Probe, key, shared.me, seq);
                        let _ = conn.send_datagram(Bytes::copy_from_slice(&header.encode()));
                    }
                    after_probe(&shared, key, &mut probe, &health, now);
                    if let Some(deadline) = confirm_by {
                        if probe.is_up() {
                            confirm_by = None;
                        } else if now >= deadline {
                            confirm_by = None;
                            health.up.store(false, Ordering::Relaxed);
                            warn!("link down: probes never passed on the replacement connection");
                            log_failover(&shared, key, false);
                            shared.links_changed.notify_one();
                        }
                    }
                }
                d = conn.read_datagram() => match d {
                    Ok(packet) => match Header::decode(&packet) {
                        Ok((h, _)) if h.kind == Kind::Probe => {
                            let reply = probe_header(Kind::ProbeReply, key, shared.me, h.seq);
                            let _ = conn.send_datagram(Bytes::copy_from_slice(&reply.encode()));
                        }
                        Ok((h, _)) if h.kind == Kind::ProbeReply => {
                            let now = std::time::Instant::now();
                            probe.handle_reply(h.seq, now);
                            after_probe(&shared, key, &mut probe, &health, now);
                        }
                        _ => crate::dispatch::on_datagram(&shared, packet),
                    },
                    Err(e) => {
                        closed = Some(e);
                        break;
                    }
                },
                s = conn.accept_bi() => match s {
                    Ok((send, recv)) => {
                        let stream = crate::streams::relay_stream(shared.clone(), send, recv);
                        tokio::spawn(stream.in_current_span());
                    }
                    Err(e) => {
                        closed = Some(e);
                        break;
                    }
                },
            }
        }
        // A retired duplicate leaves quietly: the link lives on in its replacement.
        let current = shared.peers.remove(key, conn.stable_id());
        if current && health.up.swap(false, Ordering::Relaxed) {
            match &closed {
                Some(error) => {
                    warn!("link down: connection closed: {error}");
                    log_failover(&shared, key, false);
                }
                None => debug!("link closed: relay shutting down"),
            }
            shared.links_changed.notify_one();
        } else if let Some(error) = &closed {
            if current {
                info!("connection closed before its probes passed: {error}");
            } else {
                debug!("duplicate connection closed: {error}");
            }
        }
    }
    .instrument(span)
    .await;
}

fn probe_header(kind: Kind, dst: u32, src: u32, seq: u32) -> Header {
    Header {
        kind,
        ttl: 1,
        flags: 0,
        dst,
        src,
        service: 0,
        flow: 0,
        seq,
        timestamp_us: 0,
    }
}

/// Publishes the probe's verdicts and figures: state edges flip the link's
/// health (the forwarding path reads it), are logged with the local failover
/// they cause, and wake the controller report. Runs in the link's `peer` span.
fn after_probe(
    shared: &Shared,
    peer: u32,
    probe: &mut LinkProbe,
    health: &LinkHealth,
    now: std::time::Instant,
) {
    let stats = probe.stats();
    *health.measured.lock().unwrap_or_else(|p| p.into_inner()) = Measured {
        rtt_ms: stats.srtt.map(|d| d.as_secs_f64() * 1000.0),
        min_rtt_ms: stats.min_rtt.map(|d| d.as_secs_f64() * 1000.0),
        jitter_ms: stats.jitter.map(|d| d.as_secs_f64() * 1000.0),
        loss: stats.loss,
    };
    let _ = now;
    while let Some(event) = probe.poll_event() {
        match event {
            LinkEvent::Up => {
                // Only a fresh link is news: one that inherited "up" from the
                // connection it replaced was up all along.
                health.failed.store(false, Ordering::Relaxed);
                if !health.up.swap(true, Ordering::Relaxed) {
                    info!(rtt_ms = ?health.measured().rtt_ms, "link up: probes answered");
                    log_failover(shared, peer, true);
                }
            }
            LinkEvent::Down {
                reason: DownReason::ProbesLost { consecutive },
            } => {
                health.up.store(false, Ordering::Relaxed);
                health.failed.store(true, Ordering::Relaxed);
                warn!(
                    consecutive,
                    loss = stats.loss,
                    "link down: {consecutive} probes in a row lost"
                );
                log_failover(shared, peer, false);
            }
        }
        shared.links_changed.notify_one();
    }
}

/// Logs the local failover a link going up or down causes: the table stays,
/// but each destination routed over `peer` (as primary or backup) may now
/// leave by another neighbor, or not at all. Silent when nothing moved.
fn log_failover(shared: &Shared, peer: u32, up: bool) {
    let table = shared.table();
    let live = |peer_up: bool| {
        move |k: u32| {
            if k == peer {
                peer_up
            } else {
                shared.peers.is_up(k)
            }
        }
    };
    let hop = |dst: u32, peer_up: bool| match table.next_hop(dst, INITIAL_TTL, live(peer_up)) {
        Decision::Forward { next_hop, .. } => Some(next_hop),
        _ => None,
    };
    let moves: Vec<NextHopMove> = table
        .routes()
        .filter(|(_, r)| r.primary == peer || r.backup == Some(peer))
        .filter_map(|(dst, _)| {
            let (before, after) = (hop(dst, !up), hop(dst, up));
            (before != after).then_some((dst, before, after))
        })
        .collect();
    if !moves.is_empty() {
        info!(
            cause = "local failover",
            moved = moves.len(),
            next_hops = %NextHopMoves::new(&shared.cfg().topology, &moves),
            "reroute: link {}",
            if up { "up" } else { "down" }
        );
    }
}
