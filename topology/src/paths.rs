//! Path computation over the link graph: best paths for every pair, primary and
//! loop-free backup next hops, and the k best loop-free paths between two nodes.
//!
//! Costs are integers (microseconds of expected delay today; later a blend of live
//! RTT, loss and jitter) so that ties are exact and results are deterministic.
//! Links are symmetric: a link costs the same both ways.
//!
//! Tie-breaking, everywhere: lower cost, then fewer hops, then the next hop with
//! the smaller node index (nodes are indexed in id order, so: the smaller id).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use crate::model::{LinkIdx, NodeIdx, Topology};

/// Cost of a link or path. Every usable link costs at least 1.
pub type Cost = u64;

/// Adjacency lists of the link graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// Per node: (neighbor, link), sorted by neighbor index.
    adj: Vec<Vec<(NodeIdx, LinkIdx)>>,
    ends: Vec<(NodeIdx, NodeIdx)>,
}

impl Graph {
    /// A graph of `node_count` nodes and one link per entry of `ends`.
    ///
    /// Panics if an end is out of range: callers build `ends` from validated data.
    pub fn new(node_count: usize, ends: &[(NodeIdx, NodeIdx)]) -> Self {
        let mut adj = vec![Vec::new(); node_count];
        for (i, &(a, b)) in ends.iter().enumerate() {
            let l = LinkIdx(i as u32);
            adj[a.get()].push((b, l));
            adj[b.get()].push((a, l));
        }
        for list in &mut adj {
            list.sort_unstable();
        }
        Graph {
            adj,
            ends: ends.to_vec(),
        }
    }

    pub fn from_topology(t: &Topology) -> Self {
        let ends: Vec<_> = t.links.iter().map(|l| (l.a, l.b)).collect();
        Graph::new(t.nodes.len(), &ends)
    }

    pub fn node_count(&self) -> usize {
        self.adj.len()
    }

    pub fn link_count(&self) -> usize {
        self.ends.len()
    }

    /// (neighbor, link) pairs of `n`, sorted by neighbor.
    pub fn neighbors(&self, n: NodeIdx) -> &[(NodeIdx, LinkIdx)] {
        &self.adj[n.get()]
    }

    pub fn ends(&self, l: LinkIdx) -> (NodeIdx, NodeIdx) {
        self.ends[l.get()]
    }
}

/// The cost of every link; `None` marks a link that cannot be used (down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    costs: Vec<Option<Cost>>,
}

impl Metric {
    /// Costs per link, in link order. Zero costs are raised to 1.
    pub fn new(costs: Vec<Option<Cost>>) -> Self {
        Metric {
            costs: costs.into_iter().map(|c| c.map(|c| c.max(1))).collect(),
        }
    }

    /// Each link costs its expected one-way delay in µs.
    pub fn expected_delay(t: &Topology) -> Self {
        Metric::new(t.links.iter().map(|l| Some(l.delay_us)).collect())
    }

    /// How many links the metric covers.
    pub fn len(&self) -> usize {
        self.costs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.costs.is_empty()
    }

    pub fn cost(&self, l: LinkIdx) -> Option<Cost> {
        self.costs.get(l.get()).copied().flatten()
    }

    /// The same metric with link `l` unusable.
    pub fn with_link_down(&self, l: LinkIdx) -> Self {
        let mut m = self.clone();
        if let Some(c) = m.costs.get_mut(l.get()) {
            *c = None;
        }
        m
    }
}

/// One step along a route: the neighbor to hand the packet to and the link to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hop {
    pub node: NodeIdx,
    pub link: LinkIdx,
}

/// A loop-free path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// From the source to the destination, both included.
    pub nodes: Vec<NodeIdx>,
    /// `links[i]` joins `nodes[i]` and `nodes[i + 1]`.
    pub links: Vec<LinkIdx>,
    pub cost: Cost,
}

/// Shortest paths from every node to one root, as a tree pointing at the root.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    /// Per node, the cost of its best path to the root; `UNREACHABLE` if none.
    pub(crate) dist: Vec<Cost>,
    /// Per node, the number of links on that path (`u32::MAX` if unreachable).
    pub(crate) hops: Vec<u32>,
    /// Per node, the next hop toward the root; `None` for the root and the unreachable.
    pub(crate) toward_root: Vec<Option<Hop>>,
}

pub(crate) const UNREACHABLE: Cost = Cost::MAX;

/// Dijkstra from `root`, skipping banned nodes and links. Because links are
/// symmetric, the tree gives every node its best next hop *toward* `root`.
pub(crate) fn shortest_tree(
    g: &Graph,
    m: &Metric,
    root: NodeIdx,
    banned_nodes: &[bool],
    banned_links: &[bool],
) -> Tree {
    let n = g.node_count();
    let mut dist = vec![UNREACHABLE; n];
    let mut hops = vec![u32::MAX; n];
    let mut toward_root: Vec<Option<Hop>> = vec![None; n];
    let mut done = vec![false; n];
    let mut heap = BinaryHeap::new();
    dist[root.get()] = 0;
    hops[root.get()] = 0;
    heap.push(Reverse((0, 0u32, root)));
    while let Some(Reverse((d, h, u))) = heap.pop() {
        if done[u.get()] || (d, h) != (dist[u.get()], hops[u.get()]) {
            continue;
        }
        done[u.get()] = true;
        for &(v, l) in g.neighbors(u) {
            let banned = banned_nodes.get(v.get()).copied().unwrap_or(false)
                || banned_links.get(l.get()).copied().unwrap_or(false);
            let Some(w) = m.cost(l) else { continue };
            if banned || done[v.get()] {
                continue;
            }
            let key = (d.saturating_add(w), h + 1);
            let current = (dist[v.get()], hops[v.get()]);
            let better = key < current
                || (key == current && toward_root[v.get()].is_some_and(|hop| u < hop.node));
            if better {
                if key < current {
                    heap.push(Reverse((key.0, key.1, v)));
                }
                dist[v.get()] = key.0;
                hops[v.get()] = key.1;
                toward_root[v.get()] = Some(Hop { node: u, link: l });
            }
        }
    }
    Tree {
        dist,
        hops,
        toward_root,
    }
}

/// What a node does with traffic for one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteEntry {
    /// Cost of the best path; `None` if the destination is unreachable.
    pub cost: Option<Cost>,
    /// First hop of the best path.
    pub primary: Option<Hop>,
    /// A loop-free alternate (RFC 5286): a neighbor whose own best path to the
    /// destination does not come back through this node, so it still delivers
    /// when the primary link is gone. `None` when no neighbor qualifies.
    pub backup: Option<Hop>,
}

/// Primary and backup next hops for every (source, destination) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    n: usize,
    /// Row-major by source: `entries[src * n + dst]`.
    entries: Vec<RouteEntry>,
}

impl Routes {
    /// Computes every route. O(n · (m log n)) for the trees plus O(n · m) for backups.
    pub fn compute(g: &Graph, m: &Metric) -> Routes {
        let n = g.node_count();
        // dist[d * n + x]: cost from x to d (equal to d to x: links are symmetric).
        let mut dist = vec![UNREACHABLE; n * n];
        let mut entries = vec![
            RouteEntry {
                cost: None,
                primary: None,
                backup: None
            };
            n * n
        ];
        for d in 0..n {
            let tree = shortest_tree(g, m, NodeIdx(d as u32), &[], &[]);
            for s in 0..n {
                let c = tree.dist[s];
                dist[d * n + s] = c;
                let e = &mut entries[s * n + d];
                e.cost = (c != UNREACHABLE).then_some(c);
                e.primary = tree.toward_root[s];
            }
        }
        // Destination-major: row `d` of `dist` (everyone's cost to d) stays in cache
        // while every source is considered; source-major thrashes it on big fleets.
        for d in 0..n {
            for s in 0..n {
                let e = &mut entries[s * n + d];
                let Some(primary) = e.primary else { continue };
                let s_to_d = dist[d * n + s];
                let mut best: Option<(Cost, Hop)> = None;
                for &(nb, l) in g.neighbors(NodeIdx(s as u32)) {
                    let Some(w) = m.cost(l) else { continue };
                    let nb_to_d = dist[d * n + nb.get()];
                    let nb_to_s = dist[s * n + nb.get()];
                    let loop_free = nb_to_d < nb_to_s.saturating_add(s_to_d);
                    if nb == primary.node || nb_to_d == UNREACHABLE || !loop_free {
                        continue;
                    }
                    let via = w.saturating_add(nb_to_d);
                    let hop = Hop { node: nb, link: l };
                    if best.is_none_or(|(c, h)| (via, hop) < (c, h)) {
                        best = Some((via, hop));
                    }
                }
                e.backup = best.map(|(_, h)| h);
            }
        }
        Routes { n, entries }
    }

    pub fn node_count(&self) -> usize {
        self.n
    }

    pub fn get(&self, src: NodeIdx, dst: NodeIdx) -> &RouteEntry {
        &self.entries[src.get() * self.n + dst.get()]
    }

    /// The best path, following primary next hops from `src` to `dst`.
    pub fn path(&self, g: &Graph, m: &Metric, src: NodeIdx, dst: NodeIdx) -> Option<Path> {
        self.get(src, dst).cost?;
        follow(g, m, src, dst, |at| self.get(at, dst).primary)
    }

    /// The reachable pair with the highest best-path cost: (src, dst, cost).
    pub fn diameter(&self) -> Option<(NodeIdx, NodeIdx, Cost)> {
        let mut best: Option<(NodeIdx, NodeIdx, Cost)> = None;
        for s in 0..self.n {
            for d in 0..self.n {
                let Some(c) = self.entries[s * self.n + d].cost else {
                    continue;
                };
                if best.is_none_or(|(_, _, bc)| c > bc) {
                    best = Some((NodeIdx(s as u32), NodeIdx(d as u32), c));
                }
            }
        }
        best
    }
}

/// The path from `src` to `dst` that `next_hop(node)` gives hop by hop (a
/// node's primary toward `dst`, from routes or from tables); `None` where
/// a node has no next hop, a link no cost, or the hops loop.
pub fn follow(
    g: &Graph,
    m: &Metric,
    src: NodeIdx,
    dst: NodeIdx,
    next_hop: impl Fn(NodeIdx) -> Option<Hop>,
) -> Option<Path> {
    let mut path = Path {
        nodes: vec![src],
        links: Vec::new(),
        cost: 0,
    };
    let mut at = src;
    while at != dst {
        let hop = next_hop(at)?;
        path.cost = path.cost.saturating_add(m.cost(hop.link)?);
        path.nodes.push(hop.node);
        path.links.push(hop.link);
        at = hop.node;
        if path.links.len() > g.node_count() {
            return None; // a loop: never follow it forever
        }
    }
    Some(path)
}

/// The shortest path from `src` to `dst` avoiding banned nodes and links.
fn shortest_path(
    g: &Graph,
    m: &Metric,
    src: NodeIdx,
    dst: NodeIdx,
    banned_nodes: &[bool],
    banned_links: &[bool],
) -> Option<Path> {
    // Root the tree at the destination so that walking next hops from `src` is the path.
    let tree = shortest_tree(g, m, dst, banned_nodes, banned_links);
    if tree.dist[src.get()] == UNREACHABLE {
        return None;
    }
    let mut path = Path {
        nodes: vec![src],
        links: Vec::new(),
        cost: tree.dist[src.get()],
    };
    let mut at = src;
    while at != dst {
        let hop = tree.toward_root[at.get()]?;
        path.nodes.push(hop.node);
        path.links.push(hop.link);
        at = hop.node;
    }
    Some(path)
}

/// Up to `k` best loop-free paths from `src` to `dst`, best first (Yen's algorithm).
pub fn k_shortest_paths(g: &Graph, m: &Metric, src: NodeIdx, dst: NodeIdx, k: usize) -> Vec<Path> {
    let mut found: Vec<Path> = Vec::new();
    if k == 0 {
        return found;
    }
    let Some(first) = shortest_path(g, m, src, dst, &[], &[]) else {
        return found;
    };
    found.push(first);
    // Candidates ordered by (cost, hops, nodes, links): deterministic and de-duplicated.
    let mut candidates: BTreeSet<(Cost, usize, Vec<NodeIdx>, Vec<LinkIdx>)> = BTreeSet::new();
    while found.len() < k {
        let prev = found
            .last()
            .cloned()
            .unwrap_or_else(|| unreachable!("found is not empty"));
        for i in 0..prev.links.len() {
            let spur = prev.nodes[i];
            let root_nodes = &prev.nodes[..=i];
            let root_links = &prev.links[..i];
            let mut banned_links = vec![false; g.link_count()];
            for p in &found {
                if p.nodes.len() > i && p.nodes[..=i] == *root_nodes {
                    if let Some(l) = p.links.get(i) {
                        banned_links[l.get()] = true;
                    }
                }
            }
            let mut banned_nodes = vec![false; g.node_count()];
            for n in &root_nodes[..i] {
                banned_nodes[n.get()] = true;
            }
            let Some(spur_path) = shortest_path(g, m, spur, dst, &banned_nodes, &banned_links)
            else {
                continue;
            };
            let mut nodes = root_nodes.to_vec();
            nodes.extend_from_slice(&spur_path.nodes[1..]);
            let mut links = root_links.to_vec();
            links.extend_from_slice(&spur_path.links);
            let root_cost: Cost = root_links.iter().filter_map(|&l| m.cost(l)).sum();
            let cost = root_cost.saturating_add(spur_path.cost);
            // Never a path already found: every found path sharing this root has its
            // next link banned above. The set removes repeats among candidates.
            candidates.insert((cost, links.len(), nodes, links));
        }
        let Some((cost, _, nodes, links)) = candidates.pop_first() else {
            break;
        };
        found.push(Path { nodes, links, cost });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(i: u32) -> NodeIdx {
        NodeIdx(i)
    }

    /// 0 — 1 — 3 (cost 1 + 1) and 0 — 2 — 3 (cost 2 + 2), plus a direct 0 — 3 at 10.
    fn diamond() -> (Graph, Metric) {
        let g = Graph::new(
            4,
            &[
                (n(0), n(1)),
                (n(1), n(3)),
                (n(0), n(2)),
                (n(2), n(3)),
                (n(0), n(3)),
            ],
        );
        let m = Metric::new(vec![Some(1), Some(1), Some(2), Some(2), Some(10)]);
        (g, m)
    }

    #[test]
    fn best_path_and_backup_in_a_diamond() {
        let (g, m) = diamond();
        let r = Routes::compute(&g, &m);
        let e = r.get(n(0), n(3));
        assert_eq!(e.cost, Some(2));
        assert_eq!(
            e.primary,
            Some(Hop {
                node: n(1),
                link: LinkIdx(0)
            })
        );
        assert_eq!(
            e.backup,
            Some(Hop {
                node: n(2),
                link: LinkIdx(2)
            })
        );
        let p = r.path(&g, &m, n(0), n(3)).expect("reachable");
        assert_eq!(p.nodes, vec![n(0), n(1), n(3)]);
        assert_eq!(r.diameter().map(|(_, _, c)| c), Some(3));
    }

    #[test]
    fn a_down_link_is_avoided() {
        let (g, m) = diamond();
        let m = m.with_link_down(LinkIdx(1));
        let r = Routes::compute(&g, &m);
        assert_eq!(r.get(n(0), n(3)).cost, Some(4));
        assert_eq!(r.get(n(0), n(3)).primary.map(|h| h.node), Some(n(2)));
    }

    #[test]
    fn ties_go_to_the_smaller_next_hop() {
        // 0 — 1 — 3 and 0 — 2 — 3, all costs equal.
        let g = Graph::new(4, &[(n(0), n(2)), (n(2), n(3)), (n(0), n(1)), (n(1), n(3))]);
        let m = Metric::new(vec![Some(5); 4]);
        let r = Routes::compute(&g, &m);
        assert_eq!(r.get(n(0), n(3)).primary.map(|h| h.node), Some(n(1)));
        assert_eq!(r.get(n(3), n(0)).primary.map(|h| h.node), Some(n(1)));
    }

    #[test]
    fn no_backup_on_a_chain() {
        let g = Graph::new(3, &[(n(0), n(1)), (n(1), n(2))]);
        let r = Routes::compute(&g, &Metric::new(vec![Some(1), Some(1)]));
        assert!(r.get(n(0), n(2)).primary.is_some());
        assert_eq!(r.get(n(0), n(2)).backup, None);
    }

    #[test]
    fn k_shortest_in_a_diamond() {
        let (g, m) = diamond();
        let paths = k_shortest_paths(&g, &m, n(0), n(3), 5);
        let costs: Vec<Cost> = paths.iter().map(|p| p.cost).collect();
        // The simple paths 0→3: via 1 (2), via 2 (4), direct (10).
        assert_eq!(costs, vec![2, 4, 10]);
        assert_eq!(paths[2].nodes, vec![n(0), n(3)]);
    }
}
