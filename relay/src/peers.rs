//! Peer links: one QUIC connection per topology link, its registry, the dial loop
//! (reconnect with backoff and jitter) and the accept path (mutual TLS, identity).
//!
//! Either side may dial. When two connections to one peer exist at once, both ends
//! keep the one dialed by the node with the smaller id and close the other, so
//! they converge without talking about it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, Endpoint, Incoming};
use rand::Rng;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use crate::metrics::Metrics;
use crate::node::Shared;

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

/// A live link to a neighbor.
#[derive(Debug, Clone)]
pub struct Link {
    pub id: String,
    pub conn: Connection,
    pub dialed_by_me: bool,
    pub since: Instant,
}

/// The registry of live links, by peer node key.
#[derive(Debug)]
pub struct Peers {
    me_id: String,
    links: Mutex<HashMap<u32, Link>>,
}

impl Peers {
    pub fn new(me_id: &str) -> Self {
        Peers {
            me_id: me_id.to_string(),
            links: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Link>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (every update is a single insert or remove), so poisoning is ignored.
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live connection to a peer, if any.
    pub fn get(&self, key: u32) -> Option<Connection> {
        let links = self.lock();
        let link = links.get(&key)?;
        link.conn
            .close_reason()
            .is_none()
            .then(|| link.conn.clone())
    }

    pub fn is_up(&self, key: u32) -> bool {
        self.get(key).is_some()
    }

    /// Whether this node is the one whose dial wins when both sides dial.
    pub fn i_dial_first(&self, peer_id: &str) -> bool {
        self.me_id.as_str() < peer_id
    }

    /// Makes `conn` the link to this peer, unless a live connection that the
    /// duplicate rule prefers exists; the loser is closed. Returns whether `conn` won.
    pub fn register(&self, key: u32, id: &str, conn: Connection, dialed_by_me: bool) -> bool {
        let keeper_dialed_by_me = self.me_id.as_str() < id;
        let preferred = |by_me: bool| by_me == keeper_dialed_by_me;
        let mut links = self.lock();
        if let Some(old) = links.get(&key) {
            let old_live = old.conn.close_reason().is_none();
            if old_live && preferred(old.dialed_by_me) && !preferred(dialed_by_me) {
                retire(conn);
                return false;
            }
            if old_live {
                retire(old.conn.clone());
            }
        }
        let link = Link {
            id: id.to_string(),
            conn,
            dialed_by_me,
            since: Instant::now(),
        };
        links.insert(key, link);
        true
    }

    /// Forgets the link to `key` if it is still the connection `stable_id`.
    pub fn remove(&self, key: u32, stable_id: usize) {
        let mut links = self.lock();
        if links
            .get(&key)
            .is_some_and(|l| l.conn.stable_id() == stable_id)
        {
            links.remove(&key);
        }
    }

    pub fn snapshot(&self) -> Vec<(u32, Link)> {
        self.lock().iter().map(|(k, l)| (*k, l.clone())).collect()
    }
}

/// A backoff delay with ±25% jitter, so a fleet does not reconnect in lockstep.
fn jittered(d: Duration) -> Duration {
    let f: f64 = rand::rng().random_range(0.75..1.25);
    d.mul_f64(f)
}

/// Keeps a link to one neighbor up: waits while it is up, dials when it is not.
pub async fn dial_loop(
    shared: Arc<Shared>,
    endpoint: Endpoint,
    client: quinn::ClientConfig,
    peer: u32,
    peer_id: String,
) {
    let tuning = shared.cfg.tuning.clone();
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
        if let Some(conn) = shared.peers.get(peer) {
            tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return,
                _ = conn.closed() => {}
            }
            backoff = tuning.reconnect_min;
            continue;
        }
        if !defer.is_zero() {
            tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return,
                _ = tokio::time::sleep(jittered(defer.max(backoff))) => {}
            }
            if shared.peers.is_up(peer) {
                continue;
            }
        }
        let Some(addr) = shared.dial_addr(peer) else {
            return;
        };
        let attempt = async {
            let connecting = endpoint
                .connect_with(client.clone(), addr, &peer_id)
                .map_err(|e| e.to_string())?;
            connecting.await.map_err(|e| e.to_string())
        };
        let result = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            r = tokio::time::timeout(tuning.setup_timeout, attempt) => r,
        };
        match result {
            Ok(Ok(conn)) => {
                failures = 0;
                backoff = tuning.reconnect_min;
                if shared.peers.register(peer, &peer_id, conn.clone(), true) {
                    info!(peer = %peer_id, %addr, "link up (dialed)");
                    tokio::spawn(run_link(shared.clone(), peer, peer_id.clone(), conn));
                }
                continue;
            }
            Ok(Err(e)) => log_dial_failure(&peer_id, addr, &e, &mut failures),
            Err(_) => log_dial_failure(&peer_id, addr, "handshake timed out", &mut failures),
        }
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
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
    loop {
        let incoming = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            i = endpoint.accept() => i,
        };
        let Some(incoming) = incoming else { return };
        tokio::spawn(accept_one(shared.clone(), incoming));
    }
}

async fn accept_one(shared: Arc<Shared>, incoming: Incoming) {
    let remote = incoming.remote_address();
    let result = tokio::time::timeout(shared.cfg.tuning.setup_timeout, incoming).await;
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
    let candidates = shared.neighbors.iter().map(|(_, id)| id.as_str());
    let Some(id) = crate::tls::peer_node_id(&conn, candidates) else {
        Metrics::add(&shared.metrics.peers_refused, 1);
        warn!(%remote, "refused peer connection: certificate names no neighbor of this node");
        conn.close(CLOSE_NOT_A_PEER.into(), b"not a peer of this node");
        return;
    };
    let key = topology::wire_key(&id);
    if shared.peers.register(key, &id, conn.clone(), false) {
        info!(peer = %id, %remote, "link up (accepted)");
        run_link(shared, key, id, conn).await;
    }
}

/// The actor of one peer connection: reads datagrams and accepts streams until the
/// connection ends or the relay shuts down.
pub async fn run_link(shared: Arc<Shared>, key: u32, id: String, conn: Connection) {
    let span = tracing::info_span!("peer", peer = %id);
    async {
        loop {
            tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => {
                    conn.close(CLOSE_SHUTDOWN.into(), b"relay shutting down");
                    break;
                }
                d = conn.read_datagram() => match d {
                    Ok(packet) => crate::dispatch::on_datagram(&shared, packet),
                    Err(e) => {
                        info!("link down: {e}");
                        break;
                    }
                },
                s = conn.accept_bi() => match s {
                    Ok((send, recv)) => {
                        tokio::spawn(crate::streams::relay_stream(shared.clone(), send, recv));
                    }
                    Err(e) => {
                        info!("link down: {e}");
                        break;
                    }
                },
            }
        }
        shared.peers.remove(key, conn.stable_id());
    }
    .instrument(span)
    .await;
}
