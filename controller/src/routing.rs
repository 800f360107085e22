//! Route selection with stability: the per-link costs in force (damped measurements),
//! the forwarding tables they give every node, and table diffs.
//!
//! Stability works at two levels. First on the metric: a measured cost takes effect
//! only when it leaves a band around the cost in force for a hold time, so noise never
//! reaches the tables. Then on each node's next hop: a node keeps its current next hop
//! while that stays within the band of the best path *and* is strictly closer to the
//! destination (see `sticky_tables`). All tables come from one metric, and the
//! "strictly closer" rule keeps every table loop-free although nodes may keep different
//! next hops than a fresh shortest-path computation would give.
//!
//! Sans-IO: measurements come in through [`RouteSelector::update`] or
//! [`RouteSelector::handle_link_views`] with their `now`; [`RouteSelector::poll_timeout`]
//! says when a hold or hold-down expires, so a driver can sleep until then.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use topology::disjoint::SecondPath;
use topology::paths::{Cost, Graph, Hop, Metric, Routes};
use topology::repair::{Protection, RepairPath, RepairTables};
use topology::{LinkIdx, NodeIdx, Topology};

use crate::linkstate::{measured_cost, LinkStateDb, LinkView};

/// How much and for how long a measurement must differ before routes follow it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StabilityConfig {
    /// A change smaller than this fraction of the cost in force is noise. Default 0.10.
    pub relative: f64,
    /// A change this small is noise whatever the cost (so short links do not flap on
    /// a millisecond). Default 5 ms. The band is `max(relative × in force, absolute)`.
    pub absolute: Duration,
    /// How long a measurement must stay outside the band, continuously, before it
    /// takes effect. Default 3 s.
    pub hold: Duration,
    /// How long a link that came back up must stay up before it is used again; going
    /// down always takes effect at once. Default 10 s.
    pub hold_down: Duration,
    /// For this long after a link first comes up, a measurement below the band
    /// replaces the cost in force at once, with no hold. A link's first
    /// measurements are taken while its relays start (handshakes on every link
    /// at once) and came out 2–7× its real RTT in the lab; held, their
    /// correction moved routes 2–3 s after the fleet was ready, with no event.
    /// Start-up only inflates a measurement, so a rise is held as always.
    /// Counted from when the relays say the link came up, so a controller that
    /// restarts under a running fleet does not settle again. Default 2 s.
    pub settle: Duration,
}

impl Default for StabilityConfig {
    fn default() -> Self {
        StabilityConfig {
            relative: 0.10,
            absolute: Duration::from_millis(5),
            hold: Duration::from_secs(3),
            hold_down: Duration::from_secs(10),
            settle: Duration::from_secs(2),
        }
    }
}

/// What one node does with traffic for one destination.
///
/// Hops name the neighbor by `NodeIdx` and the link by `LinkIdx`, both indexes into the
/// selector's topology; whoever sends tables to relays translates them (e.g. to
/// `topology::wire_key` of the node id), since indexes mean nothing across revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableEntry {
    pub primary: Hop,
    /// A loop-free alternate for when the primary link fails (see `paths::RouteEntry`).
    pub backup: Option<Hop>,
    /// The repair segment around the primary (see `topology::repair`), checked
    /// against the tables in force: from its release node every node's primary
    /// avoids what it protects.
    pub repair: Option<RepairPath>,
    /// For a destination of protected traffic from this node: the path of the
    /// second copy, disjoint from the path the tables give (see
    /// `topology::disjoint`).
    pub second: Option<SecondPath>,
}

/// One node's forwarding table: destination → next hops. Holds only destinations
/// the node can reach, never the node itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTable {
    pub entries: BTreeMap<NodeIdx, TableEntry>,
    /// Destinations whose traffic from this node placement splits over paths
    /// of its own (see [`crate::placing`]); the others follow `entries`.
    pub placed: BTreeMap<NodeIdx, crate::placing::Split>,
}

/// Every node's table, indexed by `NodeIdx`, and the version they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTables {
    /// Starts at 1; grows by one each time some table changes, and only then.
    pub version: u64,
    pub tables: Vec<NodeTable>,
}

impl RouteTables {
    /// The table of `node`. Panics if `node` is not in the topology.
    pub fn node(&self, node: NodeIdx) -> &NodeTable {
        &self.tables[node.get()]
    }

    /// The hops from `from` toward `to` following each node's primary. Empty
    /// when `from == to`.
    pub fn walk(&self, from: NodeIdx, to: NodeIdx) -> Walk {
        let mut hops = Vec::new();
        let mut at = from;
        while at != to {
            let Some(e) = self.tables.get(at.get()).and_then(|t| t.entries.get(&to)) else {
                return Walk {
                    hops,
                    end: WalkEnd::NoRoute,
                };
            };
            hops.push(e.primary);
            at = e.primary.node;
            if hops.len() > self.tables.len() {
                return Walk {
                    hops,
                    end: WalkEnd::Loop,
                };
            }
        }
        Walk {
            hops,
            end: WalkEnd::Reached,
        }
    }
}

/// Where a [`RouteTables::walk`] went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    pub hops: Vec<Hop>,
    pub end: WalkEnd,
}

/// How a walk along the tables ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkEnd {
    /// At the destination.
    Reached,
    /// At a node with no route to the destination (the last hop's node, or
    /// the start).
    NoRoute,
    /// The tables loop (a bug: they are loop-free by construction).
    Loop,
}

/// What turns one node table into another.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDiff {
    /// Destinations that are new, with their entries; sorted by destination.
    pub to_add: Vec<(NodeIdx, TableEntry)>,
    /// Destinations whose primary or backup changed, with the new entries; sorted.
    pub to_change: Vec<(NodeIdx, TableEntry)>,
    /// Destinations no longer reachable; sorted.
    pub to_remove: Vec<NodeIdx>,
}

impl TableDiff {
    pub fn is_empty(&self) -> bool {
        self.to_add.is_empty() && self.to_change.is_empty() && self.to_remove.is_empty()
    }
}

/// The changes that turn `old` into `new`.
pub fn diff(old: &NodeTable, new: &NodeTable) -> TableDiff {
    let mut d = TableDiff::default();
    for (&dst, entry) in &new.entries {
        match old.entries.get(&dst) {
            None => d.to_add.push((dst, *entry)),
            Some(before) if before != entry || old.placed.get(&dst) != new.placed.get(&dst) => {
                d.to_change.push((dst, *entry))
            }
            Some(_) => {}
        }
    }
    d.to_remove = old
        .entries
        .keys()
        .filter(|dst| !new.entries.contains_key(dst))
        .copied()
        .collect();
    d
}

/// How many destinations have a different primary next hop in `new` than in
/// `old`: the route changes a relay is told about. Destinations that become
/// reachable or unreachable are not counted: no traffic moves between neighbors.
pub fn primary_changes(old: &NodeTable, new: &NodeTable) -> u64 {
    new.entries
        .iter()
        .filter(|(dst, e)| {
            old.entries
                .get(dst)
                .is_some_and(|o| o.primary.node != e.primary.node)
        })
        .count() as u64
}

/// Damping state of one link.
#[derive(Debug, Clone, Copy)]
struct LinkCtl {
    /// The cost routes use; `None` while down or held down.
    in_force: Option<Cost>,
    /// Since when the measurement has been outside the band, and whether above it.
    pending: Option<(Instant, bool)>,
    /// For a link held down that is up again: when it may be used.
    restore_at: Option<Instant>,
    /// While held down: its measured cost. Routes may still use it, at
    /// [`HOLD_DOWN_PENALTY`] more, where no other path exists (a restarted
    /// relay's own traffic must not wait out the hold-down).
    held: Option<Cost>,
    /// Whether any report has shown it up. Hold-down is for links that failed;
    /// a link reported down only while its relays were still starting (probes not
    /// yet passing) is used as soon as it first comes up.
    ever_up: bool,
    /// Until when its lower measurements replace the cost in force at once
    /// (see [`StabilityConfig::settle`]).
    settle_until: Option<Instant>,
}

/// Keeps the metric in force and the tables computed from it.
#[derive(Debug, Clone)]
pub struct RouteSelector {
    topology: Arc<Topology>,
    config: StabilityConfig,
    graph: Graph,
    links: Vec<LinkCtl>,
    metric: Metric,
    routes: Routes,
    tables: RouteTables,
    /// The `now` of the latest update, to notice a down-and-up we were not shown.
    last_update: Option<Instant>,
    /// Nodes draining (stopping): their links carry a penalty so no path crosses
    /// them while another exists; paths to and from them still work.
    draining: std::collections::BTreeSet<NodeIdx>,
}

/// Added to every link of a draining node, in µs: far above any real path.
pub const DRAIN_PENALTY: Cost = 10_000_000;
/// Added to a held-down link, in µs: above any real path and above a drain, so
/// such a link carries only traffic that has no other way.
pub const HOLD_DOWN_PENALTY: Cost = 20_000_000;

impl RouteSelector {
    /// Starts with every link up at its expected delay from the topology.
    pub fn new(topology: Arc<Topology>, config: StabilityConfig) -> Self {
        let graph = Graph::from_topology(&topology);
        let links: Vec<LinkCtl> = topology
            .links
            .iter()
            .map(|l| LinkCtl {
                in_force: Some(l.delay_us.max(1)),
                pending: None,
                restore_at: None,
                held: None,
                ever_up: false,
                settle_until: None,
            })
            .collect();
        let metric = Metric::new(links.iter().map(|c| c.in_force).collect());
        let routes = Routes::compute(&graph, &metric);
        let tables = RouteTables {
            version: 1,
            tables: tables_of(&routes),
        };
        RouteSelector {
            topology,
            config,
            graph,
            links,
            metric,
            routes,
            tables,
            last_update: None,
            draining: Default::default(),
        }
    }

    /// Marks `node` as draining or not. A change applies at once (no hold: a
    /// drain has a deadline); returns true if it changed the tables.
    pub fn set_draining(&mut self, node: NodeIdx, draining: bool) -> bool {
        let changed = if draining {
            self.draining.insert(node)
        } else {
            self.draining.remove(&node)
        };
        changed && self.recompute()
    }

    pub fn is_draining(&self, node: NodeIdx) -> bool {
        self.draining.contains(&node)
    }

    /// Rebuilds the metric from the costs in force (plus drain penalties) and the
    /// tables from it; true if some table changed (its version then grows).
    fn recompute(&mut self) -> bool {
        let topology = &self.topology;
        let draining = &self.draining;
        self.metric = Metric::new(
            self.links
                .iter()
                .zip(&topology.links)
                .map(|(c, l)| {
                    let drained = draining.contains(&l.a) || draining.contains(&l.b);
                    let cost = c.in_force.or(c.held.map(|m| m + HOLD_DOWN_PENALTY))?;
                    Some(if drained { cost + DRAIN_PENALTY } else { cost })
                })
                .collect(),
        );
        self.routes = Routes::compute(&self.graph, &self.metric);
        let mut tables = sticky_tables(
            &self.routes,
            &self.metric,
            &self.tables.tables,
            &self.config,
        );
        attach_repairs(&mut tables, &self.graph, &self.metric, &self.routes);
        attach_second_paths(&mut tables, topology, &self.graph, &self.metric);
        if tables != self.tables.tables {
            self.tables.tables = tables;
            self.tables.version += 1;
            return true;
        }
        false
    }

    pub fn config(&self) -> &StabilityConfig {
        &self.config
    }

    /// Takes in every link's merged view from `db` at `now`; true if any cost in
    /// force changed. Call it after each report and when `poll_timeout` (this one's
    /// or the database's) is reached.
    pub fn update(&mut self, db: &LinkStateDb, now: Instant) -> bool {
        self.handle_link_views(db.links(), now)
    }

    /// Takes in views of some links at `now`; links not given keep their state.
    /// Returns true if any cost in force changed; the tables are recomputed then, and
    /// their version grows if some table differs.
    pub fn handle_link_views(
        &mut self,
        views: impl IntoIterator<Item = (LinkIdx, LinkView)>,
        now: Instant,
    ) -> bool {
        let mut changed = false;
        for (link, view) in views {
            let Some(l) = self.topology.links.get(link.get()) else {
                continue;
            };
            let measured = measured_cost(&view, l.delay_us);
            let ctl = &mut self.links[link.get()];
            changed |= step(ctl, &self.config, &view, measured, self.last_update, now);
        }
        self.last_update = Some(self.last_update.map_or(now, |t| t.max(now)));
        if changed {
            self.recompute();
        }
        changed
    }

    /// When `update` next needs calling even if no report arrives: the earliest
    /// expiry of a hold or a hold-down. `None` when nothing is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.links
            .iter()
            .flat_map(|c| [c.pending.map(|(t, _)| t + self.config.hold), c.restore_at])
            .flatten()
            .min()
    }

    /// Every node's forwarding table, from the metric in force.
    pub fn routes(&self) -> &RouteTables {
        &self.tables
    }

    /// The full route computation behind the tables (with path costs).
    pub fn paths(&self) -> &Routes {
        &self.routes
    }

    /// The per-link costs in force.
    pub fn metric(&self) -> &Metric {
        &self.metric
    }

    /// Until when `link`'s lower measurements replace its cost at once;
    /// `None` if it has never been seen up.
    pub fn settle_until(&self, link: LinkIdx) -> Option<Instant> {
        self.links.get(link.get()).and_then(|c| c.settle_until)
    }

    /// The cost in force on `link`; `None` if down or held down.
    pub fn in_force(&self, link: LinkIdx) -> Option<Cost> {
        self.links.get(link.get()).and_then(|c| c.in_force)
    }
}

/// Advances one link's damping state; true if its cost in force changed.
fn step(
    ctl: &mut LinkCtl,
    cfg: &StabilityConfig,
    view: &LinkView,
    measured: Option<Cost>,
    last_update: Option<Instant>,
    now: Instant,
) -> bool {
    let Some(m) = measured else {
        // Down: at once.
        ctl.pending = None;
        ctl.restore_at = None;
        let was_held = ctl.held.take().is_some();
        return ctl.in_force.take().is_some() || was_held;
    };
    // First sight of it up: its first measurement replaces the topology's
    // estimate at once (or, reported down while relays started, brings it into
    // force at once). Passing the estimate through the band rules instead moved
    // routes seconds after a fleet was ready, with no event. Afterwards the band
    // rules below apply. (A link nobody has reported on yet shows as up but
    // stale: that is not a sighting.)
    let first_sighting = !ctl.ever_up && !view.stale;
    if first_sighting {
        ctl.ever_up = true;
        ctl.pending = None;
        ctl.restore_at = None;
        ctl.settle_until = Some(view.up_since_reported.unwrap_or(now) + cfg.settle);
        let before = ctl.in_force;
        ctl.in_force = Some(m);
        return before != ctl.in_force;
    }
    // Up now, but it changed state after our last look: it went down and came back
    // in between. Treat it as we would have: held down from when it came back.
    // Not on first sight: a down-and-up of a link never up before is its ends
    // starting, not a flap (taking it for one held links down for 10 s when a
    // fleet started, in about a third of the lab's runs).
    let unseen_flap = !first_sighting
        && ctl.in_force.is_some()
        && matches!((view.since, last_update), (Some(s), Some(u)) if s > u);
    if ctl.in_force.is_none() || unseen_flap {
        ctl.pending = None;
        let at = match view.since {
            Some(s) => s + cfg.hold_down,
            None => *ctl.restore_at.get_or_insert(now + cfg.hold_down),
        };
        let before = (ctl.in_force, ctl.held);
        if now >= at {
            ctl.restore_at = None;
            ctl.held = None;
            ctl.in_force = Some(m);
        } else {
            ctl.restore_at = Some(at);
            // The first measurement while held is the one it is used at, as a last
            // resort: following every wobble would churn the tables for nothing.
            ctl.held = ctl.held.or(Some(m));
            ctl.in_force = None;
        }
        return (ctl.in_force, ctl.held) != before;
    }
    let Some(c) = ctl.in_force else {
        return false;
    };
    let band = (cfg.relative * c as f64).max(cfg.absolute.as_micros() as f64);
    if (m.abs_diff(c) as f64) <= band {
        ctl.pending = None;
        return false;
    }
    if m < c && ctl.settle_until.is_some_and(|t| now < t) {
        ctl.pending = None;
        ctl.in_force = Some(m);
        return true;
    }
    let above = m > c;
    let since = match ctl.pending {
        Some((t, dir)) if dir == above => t,
        _ => now,
    };
    if now.saturating_duration_since(since) >= cfg.hold {
        ctl.pending = None;
        ctl.in_force = Some(m);
        true
    } else {
        ctl.pending = Some((since, above));
        false
    }
}

/// Per node, every reachable destination's next hops, keeping a node's current
/// primary when the best path is better only within the stability band.
///
/// Damping link costs stops noise from moving routes, but two nearly equal paths
/// can still swap back and forth as one link's cost and then another's is
/// updated. So a node keeps its current next hop `n` toward `d` while (1) the link
/// to `n` is usable, (2) going via `n` costs at most the best plus the band, and
/// (3) `n` is strictly closer to `d` than this node is. (3) keeps every table
/// loop-free: along any route the distance to `d` strictly falls.
fn sticky_tables(
    routes: &Routes,
    metric: &Metric,
    old: &[NodeTable],
    cfg: &StabilityConfig,
) -> Vec<NodeTable> {
    let mut tables = tables_of(routes);
    for (s, table) in tables.iter_mut().enumerate() {
        let Some(previous) = old.get(s) else { continue };
        for (d, entry) in table.entries.iter_mut() {
            let Some(kept) = previous.entries.get(d).map(|e| e.primary) else {
                continue;
            };
            if kept.node == entry.primary.node {
                continue;
            }
            let src = NodeIdx(s as u32);
            let (Some(best), Some(w), Some(via)) = (
                routes.get(src, *d).cost,
                metric.cost(kept.link),
                routes.get(kept.node, *d).cost,
            ) else {
                continue;
            };
            let band = (cfg.relative * best as f64).max(cfg.absolute.as_micros() as f64);
            let closer = via < best;
            let good_enough = (w.saturating_add(via) as f64) <= best as f64 + band;
            if closer && good_enough {
                // The new best is loop-free by construction; it makes a fine backup.
                let best_hop = entry.primary;
                entry.primary = kept;
                if entry.backup.is_none_or(|b| b.node == kept.node) {
                    entry.backup = Some(best_hop);
                }
            }
        }
    }
    tables
}

/// Gives each entry its repair segment where one exists and is sound for the
/// tables as they are: computed for the entry's own primary, and from the
/// segment's release node on, every node's primary avoids the protected
/// neighbour (or link). Stickiness can keep a primary the shortest paths would
/// not choose; such an entry goes without a segment (its backup still serves).
fn attach_repairs(tables: &mut [NodeTable], graph: &Graph, metric: &Metric, routes: &Routes) {
    let Ok(repairs) = RepairTables::compute(graph, metric, routes) else {
        return;
    };
    let snapshot: Vec<NodeTable> = tables.to_vec();
    for (s, table) in tables.iter_mut().enumerate() {
        let src = NodeIdx(s as u32);
        for (d, entry) in table.entries.iter_mut() {
            entry.repair = repairs
                .get(src, *d)
                .filter(|_| routes.get(src, *d).primary == Some(entry.primary))
                .filter(|p| sound(&snapshot, src, *d, entry.primary, p))
                .copied();
        }
    }
}

/// Gives the entries of protected traffic their second paths, against the
/// first paths these tables give.
fn attach_second_paths(tables: &mut [NodeTable], t: &Topology, graph: &Graph, metric: &Metric) {
    let seconds = topology::disjoint::second_paths(
        t,
        graph,
        metric,
        |_| true,
        |at, dst| tables.get(at.get())?.entries.get(&dst).map(|e| e.primary),
    );
    for ((src, dst), second) in seconds {
        if let Some(e) = tables[src.get()].entries.get_mut(&dst) {
            e.second = Some(second);
        }
    }
}

/// Whether table forwarding from `path`'s release node to `dst` avoids what
/// the path protects around `src`'s primary hop `primary`.
fn sound(
    tables: &[NodeTable],
    src: NodeIdx,
    dst: NodeIdx,
    primary: Hop,
    path: &RepairPath,
) -> bool {
    let n = primary.node;
    let avoided = |from: NodeIdx, to: NodeIdx| match path.protects() {
        Protection::Node => to != n && from != n,
        Protection::Link => !((from == src && to == n) || (from == n && to == src)),
    };
    let mut at = path.release();
    for _ in 0..tables.len() {
        if at == dst {
            return true;
        }
        let Some(e) = tables.get(at.get()).and_then(|t| t.entries.get(&dst)) else {
            return false;
        };
        if !avoided(at, e.primary.node) {
            return false;
        }
        at = e.primary.node;
    }
    false
}

/// Per node, the table `Routes` gives: every reachable destination's next hops.
fn tables_of(routes: &Routes) -> Vec<NodeTable> {
    let n = routes.node_count();
    (0..n)
        .map(|s| NodeTable {
            entries: (0..n)
                .filter(|&d| d != s)
                .filter_map(|d| {
                    let (s, d) = (NodeIdx(s as u32), NodeIdx(d as u32));
                    let e = routes.get(s, d);
                    let primary = e.primary?;
                    Some((
                        d,
                        TableEntry {
                            primary,
                            backup: e.backup,
                            repair: None,
                            second: None,
                        },
                    ))
                })
                .collect(),
            placed: BTreeMap::new(),
        })
        .collect()
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;

#[cfg(test)]
mod change_tests {
    use super::*;

    fn table(entries: &[(u32, u32)]) -> NodeTable {
        let hop = |n: u32| Hop {
            node: NodeIdx(n),
            link: LinkIdx(n),
        };
        NodeTable {
            entries: entries
                .iter()
                .map(|&(dst, via)| {
                    (
                        NodeIdx(dst),
                        TableEntry {
                            primary: hop(via),
                            backup: None,
                            repair: None,
                            second: None,
                        },
                    )
                })
                .collect(),
            placed: BTreeMap::new(),
        }
    }

    #[test]
    fn primary_changes_count_moved_destinations_only() {
        let old = table(&[(2, 1), (3, 1), (4, 5), (6, 1)]);
        // 2 moves, 3 stays, 4 moves, 6 is lost, 7 is new.
        let new = table(&[(2, 5), (3, 1), (4, 1), (7, 1)]);
        assert_eq!(primary_changes(&old, &new), 2);
        assert_eq!(primary_changes(&new, &old), 2);
        assert_eq!(primary_changes(&old, &old), 0);
        assert_eq!(primary_changes(&NodeTable::default(), &new), 0);
        // A new backup moves no traffic.
        let mut with_backup = old.clone();
        if let Some(e) = with_backup.entries.get_mut(&NodeIdx(2)) {
            e.backup = Some(Hop {
                node: NodeIdx(5),
                link: LinkIdx(5),
            });
        }
        assert_eq!(primary_changes(&old, &with_backup), 0);
        assert!(
            !diff(&old, &with_backup).is_empty(),
            "the diff still sends it"
        );
    }
}

#[cfg(test)]
#[path = "routing_props_tests.rs"]
mod props;
