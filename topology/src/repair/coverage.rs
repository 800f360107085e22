//! How many pairs survive each single failure: loop-free alternates (today's relay)
//! against repair paths, by simulating both forwarding rules hop by hop.

use std::fmt;

use crate::model::{LinkIdx, NodeIdx};
use crate::paths::{Graph, Hop, Metric, Routes};

use super::{compute_tables, RepairTables};

/// Repair coverage of one kind of failure (every usable link, or every node).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureCoverage {
    /// Failures simulated.
    pub failures: u64,
    /// (failure, source, destination) with source ≠ destination, neither failed,
    /// and the destination still reachable from the source.
    pub pairs: u64,
    /// Of `pairs`, those whose primary path meets the failure. The others are
    /// delivered by either scheme and are not counted below.
    pub affected: u64,
    /// Affected pairs delivered by today's rule: each node sends to its primary next
    /// hop, else to its loop-free alternate, else drops.
    pub lfa_delivered: u64,
    /// Affected pairs that today's rule sends round a loop (until the TTL runs out).
    pub lfa_looped: u64,
    /// Affected pairs delivered by the repair paths.
    pub repair_delivered: u64,
    /// Affected pairs delivered by the repair paths that visit some node twice on
    /// the way (a U-turn at a repair point with no way on but back).
    pub repair_u_turns: u64,
}

impl FailureCoverage {
    /// Share of the affected pairs that loop-free alternates deliver (1 if none).
    pub fn lfa_share(&self) -> f64 {
        share(self.lfa_delivered, self.affected)
    }

    /// Share of the affected pairs that repair paths deliver (1 if none).
    pub fn repair_share(&self) -> f64 {
        share(self.repair_delivered, self.affected)
    }

    fn add(&mut self, o: &FailureCoverage) {
        self.failures += o.failures;
        self.pairs += o.pairs;
        self.affected += o.affected;
        self.lfa_delivered += o.lfa_delivered;
        self.lfa_looped += o.lfa_looped;
        self.repair_delivered += o.repair_delivered;
        self.repair_u_turns += o.repair_u_turns;
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

/// Repair coverage of a graph under a metric.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Routes (source ≠ destination, reachable) with nothing failed.
    pub routes: u64,
    /// Routes with a loop-free alternate next hop (the static figure
    /// `overlay topology check` prints).
    pub routes_with_lfa: u64,
    /// Routes with a repair path.
    pub routes_with_repair: u64,
    /// Routes whose repair segment would exceed `MAX_REPAIR_HOPS` (uncovered).
    pub repair_too_long: u64,
    /// The longest repair segment, in nodes.
    pub longest_segment: usize,
    /// The longest whole repair route, in links (what a segment all the way to the
    /// destination would have to list).
    pub longest_route: u32,
    /// Every usable link failing alone.
    pub link_failures: FailureCoverage,
    /// Every node failing alone.
    pub node_failures: FailureCoverage,
}

impl Coverage {
    /// Link and node failures together.
    pub fn all_failures(&self) -> FailureCoverage {
        let mut all = self.link_failures;
        all.add(&self.node_failures);
        all
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "routes: {}; with a loop-free alternate {} ({:.1}%); with a repair path {} ({:.1}%); \
             segment too long {}; longest segment {} nodes, longest repair route {} links",
            self.routes,
            self.routes_with_lfa,
            100.0 * share(self.routes_with_lfa, self.routes),
            self.routes_with_repair,
            100.0 * share(self.routes_with_repair, self.routes),
            self.repair_too_long,
            self.longest_segment,
            self.longest_route,
        )?;
        for (what, c) in [
            ("link failures", self.link_failures),
            ("node failures", self.node_failures),
            ("all failures", self.all_failures()),
        ] {
            writeln!(
                f,
                "{what}: {} failures, {} connected pairs, {} affected; LFA delivers {} ({:.1}%, \
                 {} loop); repair delivers {} ({:.1}%, {} with a U-turn)",
                c.failures,
                c.pairs,
                c.affected,
                c.lfa_delivered,
                100.0 * c.lfa_share(),
                c.lfa_looped,
                c.repair_delivered,
                100.0 * c.repair_share(),
                c.repair_u_turns,
            )?;
        }
        Ok(())
    }
}

/// Simulates every single link failure and every single node failure, for every
/// pair that stays connected, under both forwarding rules, with tables computed
/// from `g` and `m` before the failure (what the relays hold when it happens).
///
/// O((n + m) · n² · path length): meant for fleets of tens to low hundreds of nodes.
pub fn coverage(g: &Graph, m: &Metric) -> Coverage {
    let routes = Routes::compute(g, m);
    let tables = compute_tables(g, m, &routes);
    let n = g.node_count();
    let mut c = Coverage::default();
    for s in 0..n as u32 {
        for d in 0..n as u32 {
            let (s, d) = (NodeIdx(s), NodeIdx(d));
            let e = routes.get(s, d);
            if e.primary.is_none() {
                continue;
            }
            c.routes += 1;
            c.routes_with_lfa += u64::from(e.backup.is_some());
            if let Some(p) = tables.get(s, d) {
                c.routes_with_repair += 1;
                c.longest_segment = c.longest_segment.max(p.hops().len());
                c.longest_route = c.longest_route.max(p.route_hops());
            }
        }
    }
    c.repair_too_long = tables.iter().map(|t| t.too_long() as u64).sum();
    let mut sim = Sim {
        g,
        m,
        routes: &routes,
        tables: &tables,
        seen: vec![0; n],
        stamp: 0,
    };
    for l in 0..g.link_count() as u32 {
        let l = LinkIdx(l);
        if m.cost(l).is_some() {
            sim.failure(Failure::Link(l), &mut c.link_failures);
        }
    }
    for f in 0..n as u32 {
        sim.failure(Failure::Node(NodeIdx(f)), &mut c.node_failures);
    }
    c
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Link(LinkIdx),
    Node(NodeIdx),
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Dropped,
    Looped,
}

#[derive(Debug)]
struct Sim<'a> {
    g: &'a Graph,
    m: &'a Metric,
    routes: &'a Routes,
    tables: &'a RepairTables,
    /// `seen[x] == stamp`: the current walk visited x.
    seen: Vec<u32>,
    stamp: u32,
}

impl Sim<'_> {
    fn failure(&mut self, f: Failure, out: &mut FailureCoverage) {
        out.failures += 1;
        let component = self.components(f);
        let n = self.g.node_count();
        for s in 0..n as u32 {
            for d in 0..n as u32 {
                let (s, d) = (NodeIdx(s), NodeIdx(d));
                if s == d || f == Failure::Node(s) || f == Failure::Node(d) {
                    continue;
                }
                if component[s.get()] != component[d.get()] {
                    continue;
                }
                out.pairs += 1;
                let (affected, repair, u_turn) = self.repair_walk(f, s, d);
                if !affected {
                    continue;
                }
                out.affected += 1;
                match self.lfa_walk(f, s, d) {
                    Outcome::Delivered => out.lfa_delivered += 1,
                    Outcome::Looped => out.lfa_looped += 1,
                    Outcome::Dropped => {}
                }
                if repair == Outcome::Delivered {
                    out.repair_delivered += 1;
                    out.repair_u_turns += u64::from(u_turn);
                }
            }
        }
    }

    /// Connected components after the failure (the failed node in none: `u32::MAX`).
    fn components(&self, f: Failure) -> Vec<u32> {
        let n = self.g.node_count();
        let mut comp = vec![u32::MAX; n];
        let mut stack = Vec::new();
        for root in 0..n {
            if comp[root] != u32::MAX || f == Failure::Node(NodeIdx(root as u32)) {
                continue;
            }
            comp[root] = root as u32;
            stack.push(NodeIdx(root as u32));
            while let Some(x) = stack.pop() {
                for &(nb, l) in self.g.neighbors(x) {
                    if comp[nb.get()] == u32::MAX && self.usable(f, Hop { node: nb, link: l }) {
                        comp[nb.get()] = root as u32;
                        stack.push(nb);
                    }
                }
            }
        }
        comp
    }

    fn usable(&self, f: Failure, hop: Hop) -> bool {
        self.m.cost(hop.link).is_some()
            && f != Failure::Link(hop.link)
            && f != Failure::Node(hop.node)
    }

    /// A usable direct link from `a` to `b`.
    fn link(&self, f: Failure, a: NodeIdx, b: NodeIdx) -> Option<Hop> {
        self.g
            .neighbors(a)
            .iter()
            .map(|&(node, link)| Hop { node, link })
            .find(|&h| h.node == b && self.usable(f, h))
    }

    fn new_walk(&mut self) {
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.seen.iter_mut().for_each(|x| *x = 0);
            self.stamp = 1;
        }
    }

    /// Marks `x` visited; false if it already was.
    fn visit(&mut self, x: NodeIdx) -> bool {
        let first = self.seen[x.get()] != self.stamp;
        self.seen[x.get()] = self.stamp;
        first
    }

    /// Today's rule: primary, else loop-free alternate, else drop.
    fn lfa_walk(&mut self, f: Failure, s: NodeIdx, d: NodeIdx) -> Outcome {
        self.new_walk();
        let mut at = s;
        while at != d {
            if !self.visit(at) {
                return Outcome::Looped;
            }
            let e = self.routes.get(at, d);
            let next = [e.primary, e.backup]
                .into_iter()
                .flatten()
                .find(|&h| self.usable(f, h));
            match next {
                Some(h) => at = h.node,
                None => return Outcome::Dropped,
            }
        }
        Outcome::Delivered
    }

    /// The repair rule. Returns (whether the primary path met the failure, how the
    /// walk ended, whether it visited a node twice).
    fn repair_walk(&mut self, f: Failure, s: NodeIdx, d: NodeIdx) -> (bool, Outcome, bool) {
        self.new_walk();
        let (mut at, mut repaired, mut twice) = (s, false, false);
        let limit = 2 * self.g.node_count() + super::MAX_REPAIR_HOPS;
        let mut steps = 0;
        while at != d {
            twice |= !self.visit(at);
            steps += 1;
            if steps > limit {
                return (repaired, Outcome::Looped, twice);
            }
            let primary = self.routes.get(at, d).primary;
            if let Some(h) = primary.filter(|&h| self.usable(f, h)) {
                at = h.node;
                continue;
            }
            if repaired {
                return (true, Outcome::Dropped, twice);
            }
            repaired = true;
            let Some(path) = self.tables.get(at, d) else {
                return (true, Outcome::Dropped, twice);
            };
            let hops = *path;
            for &next in hops.hops() {
                if self.link(f, at, next).is_none() {
                    return (true, Outcome::Dropped, twice);
                }
                at = next;
                if at != hops.release() {
                    twice |= !self.visit(at);
                }
            }
        }
        (repaired, Outcome::Delivered, twice)
    }
}
