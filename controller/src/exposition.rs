//! The controller's Prometheus exposition (`GET /metrics`): route changes
//! pushed per node, route computation time, connected relays, links by state,
//! the table version, and the election (leader or not, term, etcd reachable,
//! elections won and leadership lost). Labels stay bounded: `node` (a relay of the topology)
//! and `state`; every series also carries `controller`. The encoding is the
//! daemons' shared one (`daemon::exposition`).

use daemon::exposition::Scrape;
use topology::NodeIdx;

use crate::shared::Shared;

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
    let view = shared.view();
    s.gauges(
        "links",
        "Links by state as the controller sees them: up, down, held_down (up again but not yet trusted), or unknown (no fresh report from either end)",
        "state",
        [
            ("up", "up"),
            ("down", "down"),
            ("held-down", "held_down"),
            ("unknown", "unknown"),
        ]
        .map(|(state, label)| {
            let n = view.links.iter().filter(|l| l.state() == state).count();
            (label.to_string(), n as f64)
        }),
    );
    let placement = &view.placement;
    s.gauge(
        "placement_split_pairs",
        "Source-destination pairs whose traffic placement splits over paths of its own (the rest follow their routes)",
        view.tables.tables.iter().map(|t| t.placed.len()).sum::<usize>() as f64,
    );
    s.gauge(
        "placement_links_over_ceiling",
        "Link directions the placement in force plans past the utilisation ceiling: no placement fits under it (see the log or /api/v1/placement for which)",
        placement.shortfalls.over_ceiling.len() as f64,
    );
    s.gauge(
        "placement_over_budget_mbps",
        "Demand the placement in force leaves on paths slower than its latency budget, Mbit/s",
        placement.shortfalls.over_budget_kbps as f64 / 1000.0,
    );
    s.gauges(
        "placement_at_risk_mbps",
        "N−1: demand at risk if this undersea line were cut (no headroom absorbs its loss), Mbit/s; only lines with some",
        "line",
        placement.shortfalls.at_risk.iter().map(|&(l, kbps)| {
            (crate::placing::line_name(topo, l), kbps as f64 / 1000.0)
        }),
    );
    s.gauge(
        "placement_unplaced_mbps",
        "Demand with no path at all, Mbit/s",
        placement.shortfalls.unplaced_kbps as f64 / 1000.0,
    );
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let h = &shared.handshakes;
    s.counters(
        "handshakes",
        "Incoming QUIC handshakes by outcome: accepted (taken on), retried (sent a Retry to prove the address), dropped (too many in progress or over the rate), failed (taken on, then failed or timed out)",
        "outcome",
        [
            ("accepted", load(&h.accepted)),
            ("retried", load(&h.retried)),
            ("dropped", load(&h.dropped)),
            ("failed", load(&h.failed)),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    s.counter(
        "reports_dropped",
        "Relay reports dropped because the route computation's queue was full",
        load(&shared.reports_dropped),
    );
    s.gauge(
        "table_version",
        "Version of the route tables in force; grows by one each time some node's table changes",
        shared.tables().version as f64,
    );
    let election = shared.election();
    s.gauge(
        "leader",
        "1 while this controller leads (pushes route tables; a single controller always does), else 0",
        if shared.leads().is_some() { 1.0 } else { 0.0 },
    );
    s.gauge(
        "term",
        "The leader's term as this controller knows it (its own while it leads; 0 for a single controller); relays refuse tables of a lower term",
        election.term as f64,
    );
    if let Some(reachable) = election.etcd_reachable {
        s.gauge(
            "etcd_reachable",
            "1 if etcd answered this controller's last election round, else 0 (only with an etcd section)",
            if reachable { 1.0 } else { 0.0 },
        );
    }
    s.counter(
        "elections_won",
        "Times this controller became leader",
        election.won,
    );
    s.counter(
        "leadership_lost",
        "Times this controller stopped leading: another leads, or etcd did not confirm its lease in time",
        election.lost,
    );
    s.daemon(env!("CARGO_PKG_VERSION"), &shared.cfg.identity);
    s
}
