//! The network as placement sees it: per link-direction limits and loads (kbit/s),
//! and a capacity-aware Dijkstra that finds the shortest path with room for one
//! more class.
//!
//! A link direction is indexed `2 · link + d`, `d = 0` from `Link::a` to `Link::b`.
//! A class on a path loads every link in the direction it is walked with the
//! service's forward kbit/s and the opposite direction with its reverse kbit/s.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::model::{LinkIdx, NodeIdx};
use crate::paths::{Cost, Graph, Path};

/// No limit (a link of unknown capacity).
pub(crate) const UNLIMITED: u64 = u64::MAX;

/// kbit/s one class puts on a link: in the direction it is walked, and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Need {
    pub fwd: u64,
    pub rev: u64,
}

/// Which limit a search respects, tightest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Tier {
    /// The ceiling lowered where N−1 needs headroom.
    Headroom,
    /// The utilisation ceiling (default 80 %).
    Ceiling,
    /// The physical capacity (100 %).
    Capacity,
    /// No limit: delay alone.
    Unlimited,
}

/// `capacity × factor`, rounded down; the one place the ceiling becomes kbit/s, so the
/// placement and its report agree to the kbit.
pub(crate) fn limit_kbps(capacity: Option<u64>, factor: f64) -> u64 {
    match capacity {
        None => UNLIMITED,
        Some(c) => (c as f64 * factor).floor().max(0.0) as u64,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Net {
    pub graph: Graph,
    /// Per link: one-way delay in µs, `None` when down.
    pub delay: Vec<Option<Cost>>,
    /// Per link direction.
    pub capacity: Vec<u64>,
    pub ceiling: Vec<u64>,
    pub headroom: Vec<u64>,
    pub load: Vec<u64>,
}

/// Shortest paths toward one destination: per node, the link to take next, the
/// (cost, hops) from there and the next node (for ties).
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    next: Vec<u32>,
    dist: Vec<(Cost, u32)>,
    via: Vec<u32>,
}

impl Tree {
    /// The cost from `n` to the root, if it is reached.
    pub fn dist(&self, n: NodeIdx) -> Option<Cost> {
        self.dist
            .get(n.get())
            .map(|d| d.0)
            .filter(|&d| d != Cost::MAX)
    }
}

/// Where a node stands when a tree is brought up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Unknown,
    /// Its path to the root still has room everywhere (or it has none to lose).
    Kept,
    /// Its path crosses a link that lost room.
    Cut,
}

const NONE: u32 = u32::MAX;

impl Net {
    pub fn limit(&self, tier: Tier, e: usize) -> u64 {
        match tier {
            Tier::Headroom => self.headroom[e],
            Tier::Ceiling => self.ceiling[e],
            Tier::Capacity => self.capacity[e],
            Tier::Unlimited => UNLIMITED,
        }
    }

    fn residual(&self, tier: Tier, e: usize) -> u64 {
        self.limit(tier, e).saturating_sub(self.load[e])
    }

    /// The direction index of `link` walked away from `from`.
    pub fn dir(&self, link: LinkIdx, from: NodeIdx) -> usize {
        let (a, _) = self.graph.ends(link);
        2 * link.get() + usize::from(from != a)
    }

    /// (forward, reverse) direction indices of every link of `path`.
    pub fn dirs<'p>(&'p self, path: &'p Path) -> impl Iterator<Item = (usize, usize)> + 'p {
        path.links.iter().zip(&path.nodes).map(|(&l, &from)| {
            let f = self.dir(l, from);
            (f, f ^ 1)
        })
    }

    /// Whether one more class fits on a link walked as (`f`, `r`) under `tier`.
    fn room(&self, tier: Tier, need: Need, f: usize, r: usize) -> bool {
        tier == Tier::Unlimited
            || (self.residual(tier, f) >= need.fwd && self.residual(tier, r) >= need.rev)
    }

    /// How many classes fit on `path` under `tier` (`u64::MAX` when nothing limits).
    pub fn fit(&self, path: &Path, need: Need, tier: Tier) -> u64 {
        if tier == Tier::Unlimited {
            return u64::MAX;
        }
        let per = |residual: u64, k: u64| residual.checked_div(k).unwrap_or(u64::MAX);
        self.dirs(path)
            .map(|(f, r)| {
                per(self.residual(tier, f), need.fwd).min(per(self.residual(tier, r), need.rev))
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Adds (`add`) or removes `count` classes on `path`.
    pub fn apply(&mut self, path: &Path, need: Need, count: u64, add: bool) {
        for (&l, &from) in path.links.iter().zip(&path.nodes) {
            let f = self.dir(l, from);
            for (e, k) in [(f, need.fwd), (f ^ 1, need.rev)] {
                let delta = k.saturating_mul(count);
                self.load[e] = if add {
                    self.load[e].saturating_add(delta)
                } else {
                    self.load[e].saturating_sub(delta)
                };
            }
        }
    }

    /// The delay of `path` now, or `None` if a link on it is down or it does not
    /// join its nodes.
    pub fn delay_of(&self, path: &Path) -> Option<Cost> {
        if path.links.len() + 1 != path.nodes.len() {
            return None;
        }
        let mut sum: Cost = 0;
        for (i, &l) in path.links.iter().enumerate() {
            if l.get() >= self.graph.link_count() {
                return None;
            }
            let (a, b) = self.graph.ends(l);
            let (x, y) = (path.nodes[i], path.nodes[i + 1]);
            if !((x == a && y == b) || (x == b && y == a)) {
                return None;
            }
            sum = sum.saturating_add(self.delay[l.get()]?);
        }
        Some(sum)
    }

    /// Dijkstra rooted at `dst` over links with room for one class under `tier`,
    /// skipping `banned` links and never going past `max_cost`. Stops early once
    /// `stop_at` is settled. Ties: lower cost, fewer hops, smaller next-hop index
    /// (as `paths`).
    pub fn tree(
        &self,
        dst: NodeIdx,
        need: Need,
        tier: Tier,
        max_cost: Cost,
        banned: Option<&[bool]>,
        stop_at: Option<NodeIdx>,
    ) -> Tree {
        let n = self.graph.node_count();
        let mut t = Tree {
            next: vec![NONE; n],
            dist: vec![(Cost::MAX, u32::MAX); n],
            via: vec![NONE; n],
        };
        t.dist[dst.get()] = (0, 0);
        let mut done = vec![false; n];
        let mut heap = BinaryHeap::new();
        heap.push(Reverse((0, 0u32, dst)));
        let limits = Search {
            need,
            tier,
            max_cost,
            banned,
            stop_at,
        };
        self.settle(&mut t, &mut done, heap, &limits);
        t
    }

    /// Dijkstra from what `heap` holds, over the nodes not `done`.
    fn settle(
        &self,
        t: &mut Tree,
        done: &mut [bool],
        mut heap: BinaryHeap<Reverse<(Cost, u32, NodeIdx)>>,
        s: &Search<'_>,
    ) {
        while let Some(Reverse((d, h, u))) = heap.pop() {
            if done[u.get()] || (d, h) != t.dist[u.get()] {
                continue;
            }
            done[u.get()] = true;
            if Some(u) == s.stop_at {
                break;
            }
            for &(v, l) in self.graph.neighbors(u) {
                if done[v.get()] {
                    continue;
                }
                if let Some(key) = self.offer(t, s, u, v, l) {
                    heap.push(Reverse((key.0, key.1, v)));
                }
            }
        }
    }

    /// Relaxes `v` through its neighbour `u` (closer to the root) over `l`: returns
    /// the new (cost, hops) if `v` got a strictly better one.
    fn offer(
        &self,
        t: &mut Tree,
        s: &Search<'_>,
        u: NodeIdx,
        v: NodeIdx,
        l: LinkIdx,
    ) -> Option<(Cost, u32)> {
        if s.banned
            .is_some_and(|b| b.get(l.get()).copied().unwrap_or(false))
        {
            return None;
        }
        let w = self.delay[l.get()]?;
        let (d, h) = t.dist[u.get()];
        let key = (d.saturating_add(w), h + 1);
        if key.0 > s.max_cost {
            return None;
        }
        let f = self.dir(l, v);
        if !self.room(s.tier, s.need, f, f ^ 1) {
            return None;
        }
        let current = t.dist[v.get()];
        if key < current || (key == current && u.0 < t.via[v.get()]) {
            t.dist[v.get()] = key;
            t.next[v.get()] = l.0;
            t.via[v.get()] = u.0;
            return (key < current).then_some(key);
        }
        None
    }

    /// Brings a tree rooted at `root` up to date after links lost room (loads only
    /// grew since it was built): the nodes whose path crosses a link without room
    /// are detached and re-attached by Dijkstra from the rest, whose paths are still
    /// shortest (a graph that only lost links cannot offer them a shorter one). When
    /// a line fills, that touches the nodes routed over it, not the whole fleet.
    pub fn repair(&self, t: &mut Tree, root: NodeIdx, need: Need, tier: Tier, max_cost: Cost) {
        let n = self.graph.node_count();
        let mut mark = vec![Mark::Unknown; n];
        mark[root.get()] = Mark::Kept;
        let mut chain = Vec::new();
        let mut any_cut = false;
        for v in 0..n {
            chain.clear();
            let mut x = v;
            let verdict = loop {
                match mark[x] {
                    Mark::Kept => break Mark::Kept,
                    Mark::Cut => break Mark::Cut,
                    Mark::Unknown => {}
                }
                let l = t.next[x];
                if l == NONE {
                    break Mark::Kept; // not reached: nothing to lose
                }
                let l = LinkIdx(l);
                let f = self.dir(l, NodeIdx(x as u32));
                chain.push(x);
                if self.delay[l.get()].is_none() || !self.room(tier, need, f, f ^ 1) {
                    break Mark::Cut;
                }
                let (a, b) = self.graph.ends(l);
                x = if a.get() == x { b.get() } else { a.get() };
            };
            any_cut |= verdict == Mark::Cut;
            for &y in &chain {
                mark[y] = verdict;
            }
        }
        if !any_cut {
            return;
        }
        let mut done: Vec<bool> = mark.iter().map(|&m| m != Mark::Cut).collect();
        for (v, _) in mark.iter().enumerate().filter(|(_, &m)| m == Mark::Cut) {
            t.dist[v] = (Cost::MAX, u32::MAX);
            t.next[v] = NONE;
            t.via[v] = NONE;
        }
        let s = Search {
            need,
            tier,
            max_cost,
            banned: None,
            stop_at: None,
        };
        let mut heap = BinaryHeap::new();
        for v in (0..n).filter(|&v| mark[v] == Mark::Cut) {
            let v = NodeIdx(v as u32);
            for &(u, l) in self.graph.neighbors(v) {
                if done[u.get()] && t.dist[u.get()].0 != Cost::MAX {
                    self.offer(t, &s, u, v, l);
                }
            }
            let (d, h) = t.dist[v.get()];
            if d != Cost::MAX {
                heap.push(Reverse((d, h, v)));
            }
        }
        self.settle(t, &mut done, heap, &s);
    }

    /// The path from `src` down `tree` to its root, with its delay now.
    pub fn walk(&self, tree: &Tree, src: NodeIdx, dst: NodeIdx) -> Option<Path> {
        // Overlay paths are a handful of hops: one allocation each, usually.
        let mut nodes = Vec::with_capacity(8);
        nodes.push(src);
        let mut path = Path {
            nodes,
            links: Vec::with_capacity(7),
            cost: 0,
        };
        let mut at = src;
        while at != dst {
            let l = *tree.next.get(at.get())?;
            if l == NONE || path.links.len() > self.graph.node_count() {
                return None;
            }
            let l = LinkIdx(l);
            let (a, b) = self.graph.ends(l);
            at = if at == a { b } else { a };
            path.cost = path.cost.saturating_add(self.delay[l.get()]?);
            path.nodes.push(at);
            path.links.push(l);
        }
        Some(path)
    }

    /// Follows `tree` from `src` to `dst`, checking on the way that every link has
    /// room for one class under `tier`: the delay and how many classes fit, and the
    /// path itself into `path` if given (cleared first). One pass, no allocation
    /// beyond the path's.
    fn trace(
        &self,
        tree: &Tree,
        src: NodeIdx,
        dst: NodeIdx,
        need: Need,
        tier: Tier,
        mut path: Option<&mut Path>,
    ) -> Walked {
        if let Some(p) = path.as_deref_mut() {
            p.nodes.clear();
            p.links.clear();
            p.nodes.push(src);
        }
        let per = |residual: u64, k: u64| residual.checked_div(k).unwrap_or(u64::MAX);
        let mut at = src;
        let (mut cost, mut fit): (Cost, u64) = (0, u64::MAX);
        let mut hops = 0;
        while at != dst {
            let Some(&l) = tree.next.get(at.get()) else {
                return Walked::Unreachable;
            };
            if l == NONE || hops > self.graph.node_count() {
                return Walked::Unreachable;
            }
            let l = LinkIdx(l);
            let Some(w) = self.delay[l.get()] else {
                return Walked::Unreachable;
            };
            let f = self.dir(l, at);
            if !self.room(tier, need, f, f ^ 1) {
                return Walked::NoRoom;
            }
            if tier != Tier::Unlimited {
                let (rf, rr) = (self.residual(tier, f), self.residual(tier, f ^ 1));
                fit = fit.min(per(rf, need.fwd)).min(per(rr, need.rev));
            }
            let (a, b) = self.graph.ends(l);
            at = if at == a { b } else { a };
            cost = cost.saturating_add(w);
            hops += 1;
            if let Some(p) = path.as_deref_mut() {
                p.nodes.push(at);
                p.links.push(l);
            }
        }
        if let Some(p) = path {
            p.cost = cost;
        }
        Walked::Cost(cost, fit)
    }

    /// The shortest path from `src` to `dst` with room for one class under `tier`,
    /// within `max_cost`, avoiding `banned` links.
    pub fn shortest(
        &self,
        src: NodeIdx,
        dst: NodeIdx,
        need: Need,
        tier: Tier,
        max_cost: Cost,
        banned: Option<&[bool]>,
    ) -> Option<Path> {
        if src == dst {
            return None;
        }
        let tree = self.tree(dst, need, tier, max_cost, banned, Some(src));
        self.walk(&tree, src, dst)
    }
}

/// What a Dijkstra run may use.
struct Search<'a> {
    need: Need,
    tier: Tier,
    max_cost: Cost,
    banned: Option<&'a [bool]>,
    stop_at: Option<NodeIdx>,
}

/// What walking a cached tree found.
enum Walked {
    /// The path's delay and how many classes fit on it.
    Cost(Cost, u64),
    NoRoom,
    Unreachable,
}

/// Trees per (destination, service) under one tier, reused while they stay right.
///
/// Within a run where loads only grow, links only lose room, so a cached tree's path
/// that still has room everywhere is still the shortest with room: check it, and
/// repair the tree ([`Net::repair`]) only when it does not. When loads fall
/// (moves), [`TreeCache::clear`]: until then answers stay paths with room, maybe
/// not the shortest.
#[derive(Debug, Default)]
pub(crate) struct TreeCache {
    trees: std::collections::BTreeMap<(NodeIdx, usize, Tier, Cost), Tree>,
}

impl TreeCache {
    pub fn clear(&mut self) {
        self.trees.clear();
    }

    /// Walks the cached tree for (`dst`, `service`, `tier`, `max_cost`) from `src`,
    /// building the tree if missing and repairing it if the path lost room.
    #[allow(clippy::too_many_arguments)]
    fn trace(
        &mut self,
        net: &Net,
        src: NodeIdx,
        dst: NodeIdx,
        service: usize,
        need: Need,
        tier: Tier,
        max_cost: Cost,
        mut path: Option<&mut Path>,
    ) -> Walked {
        let tree = self
            .trees
            .entry((dst, service, tier, max_cost))
            .or_insert_with(|| net.tree(dst, need, tier, max_cost, None, None));
        match net.trace(tree, src, dst, need, tier, path.as_deref_mut()) {
            Walked::NoRoom => {
                net.repair(tree, dst, need, tier, max_cost);
                net.trace(tree, src, dst, need, tier, path)
            }
            walked => walked,
        }
    }

    /// The delay of the shortest path with room under `tier` within `max_cost`,
    /// without building the path (for checking whether a move would pay).
    #[allow(clippy::too_many_arguments)]
    pub fn cost(
        &mut self,
        net: &Net,
        src: NodeIdx,
        dst: NodeIdx,
        service: usize,
        need: Need,
        tier: Tier,
        max_cost: Cost,
    ) -> Option<Cost> {
        if src == dst {
            return None;
        }
        match self.trace(net, src, dst, service, need, tier, max_cost, None) {
            Walked::Cost(c, _) => Some(c),
            Walked::NoRoom | Walked::Unreachable => None,
        }
    }

    /// The shortest path with room under `tier` within `max_cost`, and how many
    /// classes fit on it.
    #[allow(clippy::too_many_arguments)]
    pub fn path(
        &mut self,
        net: &Net,
        src: NodeIdx,
        dst: NodeIdx,
        service: usize,
        need: Need,
        tier: Tier,
        max_cost: Cost,
    ) -> Option<(Path, u64)> {
        if src == dst {
            return None;
        }
        // Overlay paths are a handful of hops: one allocation each, usually.
        let mut path = Path {
            nodes: Vec::with_capacity(8),
            links: Vec::with_capacity(7),
            cost: 0,
        };
        match self.trace(
            net,
            src,
            dst,
            service,
            need,
            tier,
            max_cost,
            Some(&mut path),
        ) {
            Walked::Cost(_, fit) => Some((path, fit)),
            Walked::NoRoom | Walked::Unreachable => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A random net: up to 8 nodes, links with delays 1..=20, capacities 0..=40 per
    /// direction (or unlimited), loads 0..=20; and more load to add later.
    fn net() -> impl Strategy<Value = (Net, Vec<u64>)> {
        (2usize..=8).prop_flat_map(|n| {
            prop::collection::vec(
                (
                    0..n,
                    0..n,
                    1u64..=20,
                    prop::option::weighted(0.8, 0u64..=40),
                    0u64..=20,
                    0u64..=30,
                ),
                1..=n * 3,
            )
            .prop_map(move |raw| {
                let mut seen = std::collections::BTreeSet::new();
                let (mut ends, mut delay, mut cap, mut load, mut more) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for (i, (a, b, d, c, l, m)) in raw.into_iter().enumerate() {
                    if a != b && seen.insert((a.min(b), a.max(b))) {
                        ends.push((NodeIdx(a as u32), NodeIdx(b as u32)));
                        delay.push(Some(d));
                        // The two directions differ: one gets the capacity, the other twice it.
                        let c2 = c.map(|c| c * 2);
                        cap.extend([c.unwrap_or(UNLIMITED), c2.unwrap_or(UNLIMITED)]);
                        load.extend([l, l / 2]);
                        more.extend([if i % 2 == 0 { m } else { 0 }, m / 3]);
                    }
                }
                let net = Net {
                    graph: Graph::new(n, &ends),
                    delay,
                    ceiling: cap.clone(),
                    headroom: cap.clone(),
                    capacity: cap,
                    load,
                };
                (net, more)
            })
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// After loads grow, a repaired tree gives every node the same cost as a tree
        /// built afresh, over a path with room.
        #[test]
        fn a_repaired_tree_is_as_short_as_a_fresh_one((mut net, more) in net(), fwd in 0u64..=6, rev in 0u64..=6, root in 0u32..8) {
            let root = NodeIdx(root % net.graph.node_count() as u32);
            let need = Need { fwd, rev };
            let mut tree = net.tree(root, need, Tier::Capacity, Cost::MAX, None, None);
            for (l, m) in net.load.iter_mut().zip(&more) {
                *l += m;
            }
            net.repair(&mut tree, root, need, Tier::Capacity, Cost::MAX);
            let fresh = net.tree(root, need, Tier::Capacity, Cost::MAX, None, None);
            for v in 0..net.graph.node_count() {
                let v = NodeIdx(v as u32);
                prop_assert_eq!(tree.dist(v), fresh.dist(v), "node {:?}", v);
                if v == root {
                    continue;
                }
                match net.trace(&tree, v, root, need, Tier::Capacity, None) {
                    Walked::Cost(c, _) => prop_assert_eq!(Some(c), fresh.dist(v)),
                    Walked::Unreachable => prop_assert_eq!(fresh.dist(v), None),
                    Walked::NoRoom => prop_assert!(false, "repaired path without room from {:?}", v),
                }
            }
        }
    }
}
