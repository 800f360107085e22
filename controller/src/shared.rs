//! What the controller's tasks share: its config, the relays' sessions,
//! handles to what the compute task publishes, and the live map's frames. The
//! compute task is the one writer of the tables and the view; each session
//! writes its own entry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use topology::Topology;

use crate::compute::{Published, Reports};
use crate::config::ControllerConfig;
use crate::election::ElectionView;
use crate::live::Live;
use crate::metrics::ControllerMetrics;
use crate::routing::RouteTables;
use crate::view::FleetView;

/// A connected relay.
#[derive(Debug, Clone)]
pub struct Session {
    pub remote: SocketAddr,
    pub since: Instant,
    pub applied: u64,
    pub(crate) conn_id: usize,
}

/// What the controller's tasks share. The compute task is the one writer of
/// the tables and the view; each session writes its own entry in `sessions`.
#[derive(Debug)]
pub struct Shared {
    pub cfg: ControllerConfig,
    pub(crate) published: Arc<Published>,
    pub(crate) reports: mpsc::Sender<Reports>,
    pub(crate) sessions: Mutex<BTreeMap<String, Session>>,
    /// Incoming handshakes taken on, retried, dropped, failed.
    pub handshakes: Arc<daemon::quic::HandshakeCounters>,
    /// Reports dropped because the compute task's queue was full.
    pub reports_dropped: AtomicU64,
    pub cancel: CancellationToken,
    pub started: Instant,
    /// Route changes and computation times, for `GET /metrics`.
    pub metrics: Arc<ControllerMetrics>,
    /// The live map's stream: frames, recent timeline, cap (see [`crate::live`]).
    pub live: Live,
    /// Whether this controller leads (pushes tables) and with which term.
    /// Writer: the election task (none without etcd: the sole leader).
    pub(crate) election: Arc<watch::Sender<ElectionView>>,
    /// What relays measured of the services' datagrams, recently.
    pub quality: crate::quality::QualityBook,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one map update; a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn topology(&self) -> &Arc<Topology> {
        &self.cfg.topology
    }

    pub fn sessions(&self) -> BTreeMap<String, Session> {
        lock(&self.sessions).clone()
    }

    /// The tables in force.
    pub fn tables(&self) -> Arc<RouteTables> {
        self.published.tables.borrow().clone()
    }

    /// The latest snapshot of links and tables (never waits on a computation).
    pub fn view(&self) -> Arc<FleetView> {
        self.published.view.load_full()
    }

    /// The election as this controller sees it now.
    pub fn election(&self) -> ElectionView {
        self.election.borrow().clone()
    }

    /// Whether this controller pushes tables now (it leads and its lease is
    /// confirmed), and with which term.
    pub fn leads(&self) -> Option<u64> {
        self.election.borrow().leads_at(Instant::now().into_std())
    }

    pub(crate) fn election_rx(&self) -> watch::Receiver<ElectionView> {
        self.election.subscribe()
    }

    pub(crate) fn tables_rx(&self) -> watch::Receiver<Arc<RouteTables>> {
        self.published.tables.subscribe()
    }

    /// Hands a relay's report to the compute task without waiting; a full
    /// queue drops it (counted): the relay reports again within a second.
    pub(crate) fn report(&self, reports: Reports) {
        if self.reports.try_send(reports).is_err() {
            self.reports_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_session(&self, node: &str, session: Session) {
        lock(&self.sessions).insert(node.to_string(), session);
        self.live.sessions_changed();
    }

    pub(crate) fn applied(&self, node: &str, version: u64) {
        if let Some(s) = lock(&self.sessions).get_mut(node) {
            s.applied = version;
        }
        self.live.sessions_changed();
    }

    /// Forgets `node`'s session if it is still connection `conn_id`.
    pub(crate) fn forget_session(&self, node: &str, conn_id: usize) {
        let mut sessions = lock(&self.sessions);
        if sessions.get(node).is_some_and(|s| s.conn_id == conn_id) {
            sessions.remove(node);
            self.live.sessions_changed();
        }
    }
}
