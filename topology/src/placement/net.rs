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

/// Shortest paths toward one destination: per node, the link to take next.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    next: Vec<u32>,
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
        let dirs: Vec<(usize, usize)> = self.dirs(path).collect();
        for (f, r) in dirs {
            for (e, k) in [(f, need.fwd), (r, need.rev)] {
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
        let mut dist = vec![(Cost::MAX, u32::MAX); n];
        let mut next = vec![NONE; n];
        let mut via = vec![NONE; n];
        let mut done = vec![false; n];
        let mut heap = BinaryHeap::new();
        dist[dst.get()] = (0, 0);
        heap.push(Reverse((0, 0u32, dst)));
        while let Some(Reverse((d, h, u))) = heap.pop() {
            if done[u.get()] || (d, h) != dist[u.get()] {
                continue;
            }
            done[u.get()] = true;
            if Some(u) == stop_at {
                break;
            }
            for &(v, l) in self.graph.neighbors(u) {
                if done[v.get()] || banned.is_some_and(|b| b.get(l.get()).copied().unwrap_or(false))
                {
                    continue;
                }
                let Some(w) = self.delay[l.get()] else {
                    continue;
                };
                let key = (d.saturating_add(w), h + 1);
                if key.0 > max_cost {
                    continue;
                }
                let f = self.dir(l, v);
                if !self.room(tier, need, f, f ^ 1) {
                    continue;
                }
                let current = dist[v.get()];
                let better = key < current || (key == current && u.0 < via[v.get()]);
                if better {
                    if key < current {
                        heap.push(Reverse((key.0, key.1, v)));
                    }
                    dist[v.get()] = key;
                    next[v.get()] = l.0;
                    via[v.get()] = u.0;
                }
            }
        }
        Tree { next }
    }

    /// The path from `src` down `tree` to its root, with its delay now.
    pub fn walk(&self, tree: &Tree, src: NodeIdx, dst: NodeIdx) -> Option<Path> {
        let mut path = Path {
            nodes: vec![src],
            links: Vec::new(),
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

    /// Whether one more class fits on every link of `path` under `tier`.
    pub fn has_room(&self, path: &Path, need: Need, tier: Tier) -> bool {
        self.dirs(path).all(|(f, r)| self.room(tier, need, f, r))
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

/// Trees per (destination, service) under one tier, reused while they stay right.
///
/// Within a run where loads only grow, links only lose room, so a cached tree's path
/// that still has room everywhere is still the shortest with room: check it, and
/// recompute the tree only when it does not. When loads fall (moves), [`clear`].
#[derive(Debug, Default)]
pub(crate) struct TreeCache {
    trees: std::collections::BTreeMap<(NodeIdx, usize, Tier, Cost), Tree>,
}

impl TreeCache {
    pub fn clear(&mut self) {
        self.trees.clear();
    }

    /// The shortest path with room under `tier` within `max_cost`.
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
    ) -> Option<Path> {
        if src == dst {
            return None;
        }
        let key = (dst, service, tier, max_cost);
        if let Some(tree) = self.trees.get(&key) {
            if let Some(p) = net.walk(tree, src, dst) {
                if net.has_room(&p, need, tier) {
                    return Some(p);
                }
            } else {
                // Unreachable in a graph that only lost room stays unreachable.
                return None;
            }
        }
        let tree = net.tree(dst, need, tier, max_cost, None, None);
        let p = net.walk(&tree, src, dst);
        self.trees.insert(key, tree);
        p
    }
}
