//! The kernel's drops on the relay's UDP sockets, as counters for `/metrics`:
//! datagrams that reached this host and were dropped because a socket's
//! receive buffer was full, which no relay counter could otherwise see. The
//! QUIC socket and each UDP ingress live as long as the relay (or until a
//! reload rebinds them); egress flow sockets come and go, so what a closed
//! flow's socket had dropped when last scraped is kept per service. Plain
//! code: the drops read at a scrape in, totals out.

use std::collections::HashMap;

/// Egress flow sockets' drops seen at the last scrape, and those of flows
/// since closed, per service (by wire key).
#[derive(Debug, Default)]
pub struct EgressDrops {
    /// By socket inode: the service and the drops read last time.
    last: HashMap<u64, (u32, u64)>,
    retired: HashMap<u32, u64>,
}

impl EgressDrops {
    /// Takes the flow sockets open now `(service, inode, drops)` and returns
    /// each service's total: its open sockets' drops plus what closed ones had
    /// when last seen (drops between that scrape and the close are missed).
    pub fn update(&mut self, open: &[(u32, u64, u64)]) -> HashMap<u32, u64> {
        let now: HashMap<u64, (u32, u64)> = open.iter().map(|&(s, i, d)| (i, (s, d))).collect();
        for (inode, (service, drops)) in &self.last {
            if !now.contains_key(inode) {
                *self.retired.entry(*service).or_default() += drops;
            }
        }
        self.last = now;
        let mut totals = self.retired.clone();
        for (service, drops) in self.last.values() {
            *totals.entry(*service).or_default() += drops;
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_flow_keeps_its_drops_in_the_service_total() {
        let mut d = EgressDrops::default();
        let t = d.update(&[(1, 100, 3), (1, 101, 4), (2, 200, 0)]);
        assert_eq!((t[&1], t[&2]), (7, 0));
        // Flow 100 closed; 101 dropped one more.
        let t = d.update(&[(1, 101, 5), (2, 200, 1)]);
        assert_eq!((t[&1], t[&2]), (8, 1), "3 of the closed flow + 5");
        let t = d.update(&[]);
        assert_eq!((t[&1], t[&2]), (8, 1), "never goes down");
    }
}
