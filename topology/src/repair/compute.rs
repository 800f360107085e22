//! One source's repair routes. A shortest-path tree from the source gives every
//! destination's best route; losing a node, or the link to it, can only change
//! the routes of that node's descendants in the tree, so for each neighbour
//! Dijkstra runs again over its subtree alone, seeded from the nodes around it
//! whose distances stand. The subtrees of a source's tree are disjoint, so that
//! is about one more Dijkstra per source for the node-protecting routes and one
//! for the link-protecting ones, whatever the degree.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crate::model::NodeIdx;
use crate::paths::{shortest_tree, Cost, Graph, Hop, Metric, Routes, Tree, UNREACHABLE};

use super::{Protection, RepairPath, RepairTable, MAX_REPAIR_HOPS};

/// One source's table; sizes and `s` already checked by the caller.
pub(super) fn compute_table(g: &Graph, m: &Metric, routes: &Routes, s: NodeIdx) -> RepairTable {
    let n = g.node_count();
    let mut table = RepairTable {
        source: s,
        paths: vec![None; n],
        too_long: 0,
    };
    let base = shortest_tree(g, m, s, &[], &[]);
    let subtrees = Subtrees::new(&base, s);
    // Destinations by primary next hop.
    let mut by_next: BTreeMap<NodeIdx, Vec<NodeIdx>> = BTreeMap::new();
    for d in (0..n as u32).map(NodeIdx) {
        if let Some(p) = routes.get(s, d).primary {
            by_next.entry(p.node).or_default().push(d);
        }
    }
    let mut work = Rerouter::new(&base);
    let mut scratch = Vec::new();
    for (next, dests) in by_next {
        let mut need_link: Vec<NodeIdx> = Vec::new();
        if dests.iter().any(|&d| d != next) {
            let affected = subtrees.of(next);
            work.reroute(g, m, affected, Cut::Node(next), &dests);
            for &d in &dests {
                let guard = Guard::Node(next);
                if d == next
                    || !repair_into(&mut table, &work.tree, routes, s, d, guard, &mut scratch)
                {
                    need_link.push(d);
                }
            }
            work.restore(&base, affected);
        } else {
            need_link = dests;
        }
        if need_link.is_empty() {
            continue;
        }
        // Without the links s–next: only next's subtree changes, and only if the tree
        // reaches next over one of them (next's parent is s).
        let hangs_off_s = base.toward_root[next.get()].is_some_and(|h| h.node == s);
        let affected = if hangs_off_s { subtrees.of(next) } else { &[] };
        work.reroute(g, m, affected, Cut::Links(s, next), &need_link);
        for d in need_link {
            repair_into(
                &mut table,
                &work.tree,
                routes,
                s,
                d,
                Guard::Link,
                &mut scratch,
            );
        }
        work.restore(&base, affected);
    }
    table
}

/// Every node's descendants in a tree, each as one slice of a preorder.
#[derive(Debug)]
struct Subtrees {
    order: Vec<NodeIdx>,
    /// Per node: where its subtree starts in `order` and how many nodes it has
    /// (`(0, 0)` for a node not in the tree).
    span: Vec<(u32, u32)>,
}

impl Subtrees {
    fn new(tree: &Tree, root: NodeIdx) -> Subtrees {
        let n = tree.toward_root.len();
        // Children in compressed rows: first[p]..first[p + 1] in `kids`, by index.
        let mut first = vec![0u32; n + 1];
        for hop in tree.toward_root.iter().flatten() {
            first[hop.node.get() + 1] += 1;
        }
        for i in 0..n {
            first[i + 1] += first[i];
        }
        let mut fill = first.clone();
        let mut kids = vec![root; first[n] as usize];
        for (v, hop) in tree.toward_root.iter().enumerate() {
            if let Some(hop) = hop {
                kids[fill[hop.node.get()] as usize] = NodeIdx(v as u32);
                fill[hop.node.get()] += 1;
            }
        }
        let mut order = Vec::with_capacity(n);
        let mut span = vec![(0u32, 0u32); n];
        // Iterative preorder; a node's span closes when its entry is popped again.
        let mut stack = vec![(root, false)];
        while let Some((v, closing)) = stack.pop() {
            if closing {
                span[v.get()].1 = order.len() as u32 - span[v.get()].0;
                continue;
            }
            span[v.get()].0 = order.len() as u32;
            order.push(v);
            stack.push((v, true));
            let (a, b) = (first[v.get()] as usize, first[v.get() + 1] as usize);
            stack.extend(kids[a..b].iter().rev().map(|&k| (k, false)));
        }
        Subtrees { order, span }
    }

    /// `v` and its descendants.
    fn of(&self, v: NodeIdx) -> &[NodeIdx] {
        let (start, len) = self.span.get(v.get()).copied().unwrap_or((0, 0));
        &self.order[start as usize..(start + len) as usize]
    }
}

/// What a reroute takes out of the graph.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Node(NodeIdx),
    /// Every link between the two nodes.
    Links(NodeIdx, NodeIdx),
}

impl Cut {
    fn blocks(self, a: NodeIdx, b: NodeIdx) -> bool {
        match self {
            Cut::Node(x) => a == x || b == x,
            Cut::Links(x, y) => (a, b) == (x, y) || (a, b) == (y, x),
        }
    }
}

/// The source's tree, rerouted around one cut at a time and then restored.
#[derive(Debug)]
struct Rerouter {
    tree: Tree,
    inside: Vec<bool>,
    done: Vec<bool>,
    wanted: Vec<bool>,
    heap: BinaryHeap<Reverse<(Cost, u32, NodeIdx)>>,
}

impl Rerouter {
    fn new(base: &Tree) -> Self {
        let n = base.dist.len();
        Rerouter {
            tree: base.clone(),
            inside: vec![false; n],
            done: vec![false; n],
            wanted: vec![false; n],
            heap: BinaryHeap::new(),
        }
    }

    /// Best routes from the root with `cut` out of the graph, recomputed for the
    /// `affected` nodes (those whose tree path the cut breaks); everyone else's
    /// route stands. Same order and tie-breaks as `paths::shortest_tree`. Stops
    /// once every affected node of `targets` is settled: a settled node's route
    /// only runs through nodes settled before it.
    fn reroute(
        &mut self,
        g: &Graph,
        m: &Metric,
        affected: &[NodeIdx],
        cut: Cut,
        targets: &[NodeIdx],
    ) {
        let t = &mut self.tree;
        for &v in affected {
            t.dist[v.get()] = UNREACHABLE;
            t.hops[v.get()] = u32::MAX;
            t.toward_root[v.get()] = None;
            self.inside[v.get()] = true;
        }
        let mut left = 0usize;
        for &v in targets {
            if self.inside[v.get()]
                && !self.wanted[v.get()]
                && !matches!(cut, Cut::Node(x) if x == v)
            {
                self.wanted[v.get()] = true;
                left += 1;
            }
        }
        // Seeds: each affected node's best way in from a node whose route stands.
        for &v in affected {
            if matches!(cut, Cut::Node(x) if x == v) {
                continue;
            }
            for &(u, l) in g.neighbors(v) {
                let Some(w) = m.cost(l) else { continue };
                if self.inside[u.get()] || cut.blocks(u, v) || t.dist[u.get()] == UNREACHABLE {
                    continue;
                }
                offer(
                    t,
                    v,
                    (t.dist[u.get()].saturating_add(w), t.hops[u.get()] + 1),
                    Hop { node: u, link: l },
                );
            }
            if t.dist[v.get()] != UNREACHABLE {
                self.heap
                    .push(Reverse((t.dist[v.get()], t.hops[v.get()], v)));
            }
        }
        while let Some(Reverse((d, h, u))) = self.heap.pop() {
            if self.done[u.get()] || (d, h) != (t.dist[u.get()], t.hops[u.get()]) {
                continue;
            }
            self.done[u.get()] = true;
            if self.wanted[u.get()] {
                left -= 1;
                if left == 0 {
                    break;
                }
            }
            for &(v, l) in g.neighbors(u) {
                let Some(w) = m.cost(l) else { continue };
                if !self.inside[v.get()] || self.done[v.get()] || cut.blocks(u, v) {
                    continue;
                }
                let key = (d.saturating_add(w), h + 1);
                if offer(t, v, key, Hop { node: u, link: l }) {
                    self.heap.push(Reverse((key.0, key.1, v)));
                }
            }
        }
    }

    /// Puts the base routes of `affected` back.
    fn restore(&mut self, base: &Tree, affected: &[NodeIdx]) {
        for &v in affected {
            let i = v.get();
            self.tree.dist[i] = base.dist[i];
            self.tree.hops[i] = base.hops[i];
            self.tree.toward_root[i] = base.toward_root[i];
            self.inside[i] = false;
            self.done[i] = false;
            self.wanted[i] = false;
        }
        self.heap.clear();
    }
}

/// Takes `via` as `v`'s way toward the root if it is better: lower (cost, hops),
/// or as good through a smaller node. Returns whether the key went down.
fn offer(t: &mut Tree, v: NodeIdx, key: (Cost, u32), via: Hop) -> bool {
    let current = (t.dist[v.get()], t.hops[v.get()]);
    let tie_won = key == current && t.toward_root[v.get()].is_some_and(|h| via.node < h.node);
    if key < current || tie_won {
        t.dist[v.get()] = key.0;
        t.hops[v.get()] = key.1;
        t.toward_root[v.get()] = Some(via);
    }
    key < current
}

/// What the release node's own primary path must avoid.
#[derive(Debug, Clone, Copy)]
enum Guard {
    /// This node (the source's primary next hop).
    Node(NodeIdx),
    /// The source's primary link (the first link of the source's primary path).
    Link,
}

/// Whether `r`'s primary path toward `d` surely avoids the guarded element of
/// source `s`: no best path of `r` touches it (strict, on the tables' own costs).
fn releases(routes: &Routes, s: NodeIdx, r: NodeIdx, d: NodeIdx, guard: Guard) -> bool {
    let cost = |a, b| routes.get(a, b).cost.unwrap_or(UNREACHABLE);
    let r_d = cost(r, d);
    if r_d == UNREACHABLE {
        return false;
    }
    let through = match guard {
        Guard::Node(n) => cost(r, n).saturating_add(cost(n, d)),
        // s's primary path starts with the protected link, so a best path of r
        // that uses it passes through s: dist(r, s) + dist(s, d).
        Guard::Link => cost(r, s).saturating_add(cost(s, d)),
    };
    r_d < through
}

/// Reads the route `s` → `d` off `tree` (rooted at `s`), cuts its segment at the
/// release node and stores it. Returns whether `d` is reachable in the tree (an
/// over-long segment is stored as `None` and counted, and still returns true).
fn repair_into(
    table: &mut RepairTable,
    tree: &Tree,
    routes: &Routes,
    s: NodeIdx,
    d: NodeIdx,
    guard: Guard,
    scratch: &mut Vec<NodeIdx>,
) -> bool {
    let (Some(&cost), Some(&route_hops)) = (tree.dist.get(d.get()), tree.hops.get(d.get())) else {
        return false;
    };
    if cost == UNREACHABLE {
        return false;
    }
    // The tree points toward s: walk d → s, then read it backwards.
    scratch.clear();
    let mut at = d;
    while at != s {
        scratch.push(at);
        match tree.toward_root.get(at.get()).copied().flatten() {
            Some(hop) if scratch.len() <= route_hops as usize => at = hop.node,
            _ => return false, // cannot happen: the tree reaches s in route_hops links
        }
    }
    scratch.reverse();
    let Some(len) = scratch
        .iter()
        .position(|&r| releases(routes, s, r, d, guard))
        .map(|i| i + 1)
    else {
        return false; // cannot happen: d itself always releases
    };
    let protects = match guard {
        Guard::Node(_) => Protection::Node,
        Guard::Link => Protection::Link,
    };
    if len > MAX_REPAIR_HOPS {
        table.too_long += 1;
        return true;
    }
    let mut hops = [s; MAX_REPAIR_HOPS];
    hops[..len].copy_from_slice(&scratch[..len]);
    if let Some(slot) = table.paths.get_mut(d.get()) {
        *slot = Some(RepairPath {
            hops,
            len: len as u8,
            protects,
            route_hops,
            cost,
        });
    }
    true
}
