//! Second paths for protected services: a service with `protect: true` sends
//! each datagram twice, once along the routes in force and once along a path
//! that shares nothing with them but the two ends, so that no single link or
//! relay failure loses both copies.
//!
//! The second path is computed against the first as it is (the path the
//! tables in force give), not as a pair chosen together: the first path stays
//! whatever placement and repair make it. Node-disjoint where the graph
//! allows, else link-disjoint (it may share a relay with the first path, never
//! a link). It travels as an explicit segment of at most
//! [`MAX_SECOND_PATH_HOPS`] nodes after the source: the whole path where it
//! fits, else a segment released (like a repair segment) at a node from which
//! the tables' own path to the destination is just as disjoint from the first.

use std::collections::BTreeMap;

use crate::paths::{follow, shortest_tree, Cost, Graph, Hop, Metric, Path, UNREACHABLE};
use crate::{NodeIdx, Protocol, Topology};

/// The longest second path, in nodes after the source: the segment a datagram
/// can carry. Longer than a repair segment: a second path avoids the best
/// way on purpose, and in the shipped world the longest takes 16 hops (see
/// the tests).
pub const MAX_SECOND_PATH_HOPS: usize = 16;

/// How much a second path shares with the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Disjointness {
    /// No relay but the two ends, and so no link: survives any single failure.
    Node,
    /// No link, but at least one relay: survives any single link failure.
    Link,
}

/// A second path: the segment a copy carries, and what the whole way shares
/// with the first path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecondPath {
    hops: [NodeIdx; MAX_SECOND_PATH_HOPS],
    len: u8,
    disjointness: Disjointness,
    cost: Cost,
}

impl SecondPath {
    /// The explicit segment: the nodes after the source, in order, each joined
    /// to the one before by a direct link. The last is the destination, or
    /// the release node where table forwarding takes the copy on.
    pub fn hops(&self) -> &[NodeIdx] {
        &self.hops[..usize::from(self.len)]
    }

    pub fn disjointness(&self) -> Disjointness {
        self.disjointness
    }

    pub fn cost(&self) -> Cost {
        self.cost
    }
}

/// Why a protected pair has no second path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoSecondPath {
    #[error("no path avoids every link of the first path: the graph has a bridge between them")]
    Bridged,
    #[error("the disjoint path has {0} hops and no node within {MAX_SECOND_PATH_HOPS} of the source hands it to equally disjoint tables")]
    TooLong(usize),
    #[error("the first path is empty: source and destination are the same node")]
    Empty,
}

/// The second path for traffic whose first path is `first` (source first,
/// destination last): the cheapest under `m` that is node-disjoint from it,
/// else the cheapest that is link-disjoint. `tables_path(node)` is the path
/// the tables in force take from `node` to the destination: a segment may
/// end at any node whose tables path stays as disjoint, so the whole way is
/// the cheapest segment of at most [`MAX_SECOND_PATH_HOPS`] plus that path.
pub fn second_path(
    g: &Graph,
    m: &Metric,
    first: &Path,
    tables_path: impl Fn(NodeIdx) -> Option<Path>,
) -> Result<SecondPath, NoSecondPath> {
    let (Some(&src), Some(&dst)) = (first.nodes.first(), first.nodes.last()) else {
        return Err(NoSecondPath::Empty);
    };
    if src == dst {
        return Err(NoSecondPath::Empty);
    }
    let mut banned_links = vec![false; g.link_count()];
    for l in &first.links {
        banned_links[l.get()] = true;
    }
    let mut banned_nodes = vec![false; g.node_count()];
    for n in &first.nodes[1..first.nodes.len() - 1] {
        banned_nodes[n.get()] = true;
    }
    let mut longest = None;
    for (disjointness, nodes) in [
        (Disjointness::Node, &banned_nodes[..]),
        (Disjointness::Link, &[][..]),
    ] {
        // Rooted at the source: walking toward the root from a node is the
        // segment to it, backwards.
        let tree = shortest_tree(g, m, src, nodes, &banned_links);
        if tree.dist[dst.get()] == UNREACHABLE {
            continue;
        }
        longest.get_or_insert(tree.hops[dst.get()] as usize);
        let stays_disjoint = |p: &Path| {
            p.links.iter().all(|l| !banned_links[l.get()])
                && p.nodes
                    .iter()
                    .all(|n| !nodes.get(n.get()).copied().unwrap_or(false))
        };
        // The cheapest way: a segment of at most MAX_SECOND_PATH_HOPS to a
        // release node, then the tables' own path from there; the
        // destination itself is the release node when the segment reaches it.
        // At equal cost the whole way explicit wins (tables may change under a
        // released copy), then the longer segment.
        let mut best: Option<(Cost, bool, std::cmp::Reverse<u32>, NodeIdx)> = None;
        for r in (0..g.node_count()).map(|i| NodeIdx(i as u32)) {
            let hops = tree.hops[r.get()];
            if r == src || tree.dist[r.get()] == UNREACHABLE || hops as usize > MAX_SECOND_PATH_HOPS
            {
                continue;
            }
            let rest = if r == dst {
                Some(0)
            } else {
                tables_path(r).filter(|p| stays_disjoint(p)).map(|p| p.cost)
            };
            let Some(rest) = rest else { continue };
            let key = (
                tree.dist[r.get()].saturating_add(rest),
                r != dst,
                std::cmp::Reverse(hops),
                r,
            );
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        let Some((cost, _, std::cmp::Reverse(len), release)) = best else {
            continue;
        };
        let mut hops = [NodeIdx(0); MAX_SECOND_PATH_HOPS];
        let mut at = release;
        for i in (0..len as usize).rev() {
            hops[i] = at;
            at = tree.toward_root[at.get()]
                .expect("a reached node has a way back")
                .node;
        }
        return Ok(SecondPath {
            hops,
            len: len as u8,
            disjointness,
            cost,
        });
    }
    Err(longest.map_or(NoSecondPath::Bridged, NoSecondPath::TooLong))
}

/// The (source, destination) pairs that carry protected traffic: both
/// directions of every protected UDP service, each pair once, in order.
pub fn protected_pairs(t: &Topology) -> Vec<(NodeIdx, NodeIdx)> {
    let mut pairs: Vec<_> = t
        .services
        .iter()
        .filter(|s| s.protect && s.protocol == Protocol::Udp && s.ingress_node != s.egress_node)
        .flat_map(|s| {
            [
                (s.ingress_node, s.egress_node),
                (s.egress_node, s.ingress_node),
            ]
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
}

/// The second path of every protected pair of `t` whose source `from`
/// accepts, against the first paths that `next_hop(node, dst)` gives (the
/// tables in force). Pairs without one are left out: their traffic goes on
/// one path (the relays count it).
pub fn second_paths(
    t: &Topology,
    g: &Graph,
    m: &Metric,
    from: impl Fn(NodeIdx) -> bool,
    next_hop: impl Fn(NodeIdx, NodeIdx) -> Option<Hop>,
) -> BTreeMap<(NodeIdx, NodeIdx), SecondPath> {
    protected_pairs(t)
        .into_iter()
        .filter(|&(src, _)| from(src))
        .filter_map(|(src, dst)| {
            let along = |at: NodeIdx| follow(g, m, at, dst, |n| next_hop(n, dst));
            let first = along(src)?;
            let second = second_path(g, m, &first, along).ok()?;
            Some(((src, dst), second))
        })
        .collect()
}

#[cfg(test)]
#[path = "disjoint_tests.rs"]
mod tests;
