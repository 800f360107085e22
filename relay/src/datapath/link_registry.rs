//! The registry of live peer links, by peer node key, and each link's health as
//! its probes see it. The forwarding path reads it for every packet without a
//! lock (an `ArcSwap` of the map); links are added and removed under a writers'
//! lock, which only connection set-up and tear-down take.
//!
//! Either side of a link may dial. When two connections to one peer exist at
//! once, both ends keep the one dialed by the node with the smaller id and close
//! the other, so they converge without talking about it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use daemon::{OnFailure, Spawner};
use quinn::Connection;
use tokio::time::Instant;

use crate::datapath::send_queue;

/// QUIC application close codes on peer links.
pub const CLOSE_SHUTDOWN: u32 = 0;
pub const CLOSE_DUPLICATE: u32 = 1;
pub const CLOSE_NOT_A_PEER: u32 = 2;

/// How long a connection that lost the duplicate rule stays open, so datagrams
/// already in flight on it still arrive (senders switch to the winner at once).
const DUPLICATE_GRACE: Duration = Duration::from_secs(1);

/// What the link's probes say, shared between its actor (the writer) and the
/// forwarding path.
#[derive(Debug, Default)]
pub struct LinkHealth {
    /// Probes say the link carries traffic (hysteresis on both edges).
    pub up: AtomicBool,
    /// The link was up and its probes then failed: its peer may have restarted,
    /// and a new connection from it must replace this one (see [`LinkRegistry::register`]).
    pub failed: AtomicBool,
    /// Probes have passed on this link at least once.
    pub ever_up: AtomicBool,
    pub measured: Mutex<Measured>,
    /// When `up` last went from false to true (a replacement connection
    /// inherits it with the rest of the record): how long the link has been up.
    pub up_since: Mutex<Option<std::time::Instant>>,
    /// The media bound of the link's send queue, bytes, from its congestion
    /// window at the last probe tick; 0 before the first.
    media_queue_limit: AtomicUsize,
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
        self.up.load(Ordering::Relaxed)
    }

    /// How long the link has been up, while it is.
    pub fn up_for(&self) -> Option<Duration> {
        if !self.is_up() {
            return None;
        }
        let since = *self.up_since.lock().unwrap_or_else(|p| p.into_inner());
        since.map(|t| t.elapsed())
    }

    /// How many bytes of media the link's send queue may hold now.
    pub fn media_queue_limit(&self) -> usize {
        self.media_queue_limit
            .load(Ordering::Relaxed)
            .max(send_queue::MEDIA_QUEUE_FLOOR)
    }

    /// Sets the bound from the connection's congestion window and RTT.
    pub fn set_media_queue_limit(&self, cwnd: u64, rtt: Duration) {
        let limit = send_queue::media_queue_limit(cwnd, rtt);
        self.media_queue_limit.store(limit, Ordering::Relaxed);
    }

    pub fn measured(&self) -> Measured {
        self.measured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A live link to a neighbor.
#[derive(Debug, Clone)]
pub struct Link {
    pub conn: Connection,
    pub dialed_by_me: bool,
    pub since: Instant,
    pub health: Arc<LinkHealth>,
}

impl Link {
    /// Open, and its probes say it carries traffic.
    pub fn is_usable(&self) -> bool {
        self.conn.close_reason().is_none() && self.health.is_up()
    }
}

/// The live links of one relay (see the module docs).
#[derive(Debug)]
pub struct LinkRegistry {
    me_id: String,
    links: ArcSwap<HashMap<u32, Link>>,
    /// Taken by writers only, so two changes never race.
    writing: Mutex<()>,
    /// Where closing a retired duplicate after its grace runs.
    tasks: Spawner,
}

impl LinkRegistry {
    pub fn new(me_id: &str, tasks: Spawner) -> Self {
        LinkRegistry {
            me_id: me_id.to_string(),
            links: ArcSwap::from_pointee(HashMap::new()),
            writing: Mutex::new(()),
            tasks,
        }
    }

    /// The links as they are now; lock-free, for the per-packet path.
    pub fn current(&self) -> arc_swap::Guard<Arc<HashMap<u32, Link>>> {
        self.links.load()
    }

    /// The connection to a peer, if it is open and its probes say it is up.
    pub fn get(&self, key: u32) -> Option<Connection> {
        self.current()
            .get(&key)
            .filter(|l| l.is_usable())
            .map(|l| l.conn.clone())
    }

    /// The open connection to a peer whether or not probes pass.
    pub fn connected(&self, key: u32) -> Option<Connection> {
        self.current()
            .get(&key)
            .filter(|l| l.conn.close_reason().is_none())
            .map(|l| l.conn.clone())
    }

    /// Whether traffic can go to this peer now.
    pub fn is_up(&self, key: u32) -> bool {
        self.current().get(&key).is_some_and(Link::is_usable)
    }

    /// The health record of the link to `key`, if connected.
    pub fn health(&self, key: u32) -> Option<Arc<LinkHealth>> {
        self.current().get(&key).map(|l| l.health.clone())
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
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let mut links = HashMap::clone(&self.links.load());
        let mut health = Arc::new(LinkHealth::default());
        if let Some(old) = links.get(&key) {
            let old_live = old.conn.close_reason().is_none();
            let old_failed = old.health.failed.load(Ordering::Relaxed);
            if old_live && !old_failed && preferred(old.dialed_by_me) && !preferred(dialed_by_me) {
                self.retire(conn);
                return None;
            }
            if old_live && old_failed {
                old.conn
                    .close(CLOSE_DUPLICATE.into(), b"replaced by a new connection");
            } else if old_live {
                self.retire(old.conn.clone());
                health = old.health.clone();
            }
        }
        links.insert(
            key,
            Link {
                conn,
                dialed_by_me,
                since: Instant::now(),
                health: health.clone(),
            },
        );
        self.links.store(Arc::new(links));
        Some(health)
    }

    /// Forgets the link to `key` if it is still the connection `stable_id`;
    /// returns whether it was (a retired duplicate is not).
    pub fn remove(&self, key: u32, stable_id: usize) -> bool {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.links.load();
        if current
            .get(&key)
            .is_none_or(|l| l.conn.stable_id() != stable_id)
        {
            return false;
        }
        let mut links = HashMap::clone(&current);
        links.remove(&key);
        self.links.store(Arc::new(links));
        true
    }

    pub fn snapshot(&self) -> Vec<(u32, Link)> {
        self.current()
            .iter()
            .map(|(k, l)| (*k, l.clone()))
            .collect()
    }

    /// Closes a connection that lost the duplicate rule, after the grace period.
    fn retire(&self, conn: Connection) {
        self.tasks
            .spawn("retire duplicate link", OnFailure::Log, async move {
                tokio::time::sleep(DUPLICATE_GRACE).await;
                conn.close(CLOSE_DUPLICATE.into(), b"duplicate link");
            });
    }
}
