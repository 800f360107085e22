//! The relay's counters, in one typed struct: packets and bytes through the
//! forwarding plane, and every drop by reason. Label sets stay bounded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::fwd::DropReason;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Datagrams handed to a peer link (originated or transit).
    pub datagrams_sent: AtomicU64,
    /// Datagrams received from peer links.
    pub datagrams_received: AtomicU64,
    /// Datagrams delivered to a local service socket (egress target or ingress client).
    pub datagrams_delivered: AtomicU64,
    /// Of `datagrams_sent`, those that went to a backup next hop.
    pub sent_via_backup: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_delivered: AtomicU64,
    /// TCP sessions accepted at an ingress, and streams carried in transit or at egress.
    pub tcp_sessions: AtomicU64,
    pub streams_relayed: AtomicU64,
    /// Peer connections refused (bad certificate, not a neighbor, handshake failure).
    pub peers_refused: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

/// A point-in-time copy of the counters, for status output and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub datagrams_delivered: u64,
    pub sent_via_backup: u64,
    pub bytes_sent: u64,
    pub bytes_delivered: u64,
    pub tcp_sessions: u64,
    pub streams_relayed: u64,
    pub peers_refused: u64,
    pub drops: BTreeMap<&'static str, u64>,
}

impl Counters {
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.as_str()).copied().unwrap_or(0)
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}

impl Metrics {
    pub fn drop(&self, reason: DropReason) {
        self.drops[index(reason)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            datagrams_sent: get(&self.datagrams_sent),
            datagrams_received: get(&self.datagrams_received),
            datagrams_delivered: get(&self.datagrams_delivered),
            sent_via_backup: get(&self.sent_via_backup),
            bytes_sent: get(&self.bytes_sent),
            bytes_delivered: get(&self.bytes_delivered),
            tcp_sessions: get(&self.tcp_sessions),
            streams_relayed: get(&self.streams_relayed),
            peers_refused: get(&self.peers_refused),
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), get(&self.drops[index(*r)])))
                .collect(),
        }
    }
}

fn index(reason: DropReason) -> usize {
    DropReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_by_reason() {
        let m = Metrics::default();
        m.drop(DropReason::TtlExpired);
        m.drop(DropReason::TtlExpired);
        m.drop(DropReason::Malformed);
        let c = m.snapshot();
        assert_eq!(c.drop_count(DropReason::TtlExpired), 2);
        assert_eq!(c.drop_count(DropReason::Malformed), 1);
        assert_eq!(c.drop_count(DropReason::NoRoute), 0);
        assert_eq!(c.total_drops(), 3);
        assert_eq!(c.drops.len(), DropReason::ALL.len());
    }
}
