//! The controller's metrics and its Prometheus exposition (`GET /metrics`):
//! route changes pushed per node, route computation time, connected relays,
//! links by state, and the table version. Labels stay bounded: `node` (a relay
//! of the topology) and `state`; every series also carries `controller`.
//!
//! The encoding (a registry built per scrape, classic text format) is shared
//! with the relay: see `relay::prom`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use relay::http::Response;
use relay::prom::Scrape;
use topology::NodeIdx;

use crate::routing::{primary_changes, RouteTables};
use crate::server::Shared;

/// Counters the controller keeps between scrapes.
#[derive(Debug)]
pub struct ControllerMetrics {
    /// Per node (by `NodeIdx`): destinations whose primary next hop changed in
    /// the tables published for it.
    route_changes: Vec<AtomicU64>,
    /// Seconds per route computation (an update that recomputed the tables).
    computation: Histogram,
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

/// The controller's `GET /metrics` response.
pub fn response(shared: &Shared) -> Response {
    scrape(shared).response()
}

/// Reads the controller's state into a fresh registry.
pub fn scrape(shared: &Shared) -> Scrape {
    let topo = shared.topology();
    let mut s = Scrape::new("overlay_controller", &[("controller", &shared.cfg.id)]);
    s.counters(
        "route_changes",
        "Destinations whose primary next hop changed in the tables pushed to this node",
        "node",
        topo.nodes.iter().enumerate().map(|(i, n)| {
            let changes = shared.metrics.route_changes(NodeIdx(i as u32));
            (n.id.clone(), changes)
        }),
    );
    s.metric(
        "route_computation_seconds",
        "Time to recompute every node's routes after link costs changed",
        shared.metrics.computation.clone(),
    );
    s.gauge(
        "relays_connected",
        "Relays with a live session to this controller",
        shared.sessions().len() as f64,
    );
    s.gauge(
        "topology_nodes",
        "Relays (nodes) in the topology",
        topo.nodes.len() as f64,
    );
    let links = crate::api::links(shared);
    s.gauges(
        "links",
        "Links by state as the controller sees them: up, down, or held_down (up again but not yet trusted)",
        "state",
        [("up", "up"), ("down", "down"), ("held-down", "held_down")].map(|(state, label)| {
            let n = links.iter().filter(|l| l.state == state).count();
            (label.to_string(), n as f64)
        }),
    );
    s.gauge(
        "table_version",
        "Version of the route tables in force; grows by one each time some node's table changes",
        shared.tables().version as f64,
    );
    s
}
