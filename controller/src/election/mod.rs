//! Leader election for several controllers (high availability): which
//! controller pushes tables, and with what term.
//!
//! Without an `etcd:` section a controller leads for ever with term 0 (one
//! controller: the lab, the embedded topology). With one, the controllers of a
//! fleet campaign on an etcd election under a lease of a few seconds; the one
//! whose key etcd ranks first leads, and its term is that key's create
//! revision, a number etcd only ever increases, so every later leader has a
//! higher term. Relays refuse tables of a term below the one in force
//! (fencing), so a paused old leader that wakes up cannot overwrite a newer
//! leader's tables.
//!
//! [`core`] is the sans-IO state machine (am I leader now, until when, what
//! changed); [`etcd`] is the driver that talks to etcd and feeds it. What they
//! publish, an [`ElectionView`], is read by the relay sessions (push or not,
//! with which term) and the metrics.

pub mod core;
pub mod etcd;

#[cfg(test)]
mod tests;

use std::time::Instant;

pub use self::core::{Change, Leadership, Role};

/// What the election publishes (on a `watch`): this controller's role and
/// what it knows of the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionView {
    pub role: Role,
    /// The highest term seen: this controller's own while it leads, else the
    /// leader's as last read from etcd (0 before any).
    pub term: u64,
    /// The controller id of the leader as last read from etcd (this one's own
    /// id without etcd).
    pub leader: Option<String>,
    /// Whether etcd answered the last round; `None` without etcd.
    pub etcd_reachable: Option<bool>,
    /// Times this controller became leader, and stopped being leader.
    pub won: u64,
    pub lost: u64,
}

impl ElectionView {
    /// A single controller without etcd: the leader for ever, term 0.
    pub fn sole(id: &str) -> ElectionView {
        ElectionView {
            role: Role::Leader {
                term: 0,
                until: None,
            },
            term: 0,
            leader: Some(id.to_string()),
            etcd_reachable: None,
            won: 1,
            lost: 0,
        }
    }

    /// A controller waiting for its first election round.
    pub fn starting() -> ElectionView {
        ElectionView {
            role: Role::Standby,
            term: 0,
            leader: None,
            etcd_reachable: Some(false),
            won: 0,
            lost: 0,
        }
    }

    /// The term to push tables with, if this controller leads at `now`.
    pub fn leads_at(&self, now: Instant) -> Option<u64> {
        self.role.leads_at(now)
    }
}
