//! The counters and histograms the controller keeps between scrapes: route
//! changes pushed per node and route computation time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use topology::NodeIdx;

use crate::routing::{primary_changes, RouteTables};

/// Counters the controller keeps between scrapes.
#[derive(Debug)]
pub struct ControllerMetrics {
    /// Per node (by `NodeIdx`): destinations whose primary next hop changed in
    /// the tables published for it.
    route_changes: Vec<AtomicU64>,
    /// Seconds per route computation (an update that recomputed the tables).
    pub(crate) computation: Histogram,
}

impl ControllerMetrics {
    pub fn new(nodes: usize) -> Self {
        ControllerMetrics {
            route_changes: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            // 100 µs to about 3.3 s: 55 nodes compute in well under a millisecond,
            // 2,000 in hundreds of milliseconds.
            computation: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        }
    }

    pub fn observe_computation(&self, took: Duration) {
        self.computation.observe(took.as_secs_f64());
    }

    /// Counts the route changes that publishing `new` in place of `old` pushes.
    pub fn count_route_changes(&self, old: &RouteTables, new: &RouteTables) {
        for (i, counter) in self.route_changes.iter().enumerate() {
            let (Some(before), Some(after)) = (old.tables.get(i), new.tables.get(i)) else {
                continue;
            };
            counter.fetch_add(primary_changes(before, after), Ordering::Relaxed);
        }
    }

    /// Route changes of one node so far.
    pub fn route_changes(&self, node: NodeIdx) -> u64 {
        self.route_changes
            .get(node.get())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}
