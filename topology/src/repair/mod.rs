//! Local repair of every single link or node failure the graph survives: explicit
//! repair paths, computed per source for any [`Metric`].
//!
//! # The scheme
//!
//! Every node `s` routes traffic for a destination `d` to its primary next hop
//! `n` ([`Routes`]). For each such pair `s` also keeps a [`RepairPath`]: the best
//! route from `s` to `d` in the graph *without node `n`* (node-protecting), or,
//! when `d == n` or `n` is a cut vertex between `s` and `d`, in the graph without
//! the links `s`–`n` (link-protecting). `s` cannot tell a dead link from a dead
//! neighbour, so it takes the node-protecting route whenever one exists: it
//! avoids both. When the link-protecting route is taken, a dead `n` would leave
//! `d` unreachable anyway (it is `n`, or behind it), so there is nothing to save.
//!
//! The packet does not carry the whole route. It carries an explicit *segment*,
//! [`RepairPath::hops`]: the route's nodes after `s` up to the first node `r`
//! (the *release node*) whose own primary path to `d` is certain to avoid the
//! protected element, as in the Q-space of remote LFA (RFC 7490):
//! `dist(r, d) < dist(r, n) + dist(n, d)` for a node, `dist(r, d) < dist(r, s) +
//! dist(s, d)` for the link (strict: no best path of `r` may touch it, so ties
//! cannot matter). `d` itself always qualifies. The route's suffix after `r` is a
//! best path in the reduced graph that is also a best path in the whole graph,
//! so handing the packet back to the tables at `r` costs nothing: the packet
//! still follows a best route of the reduced graph ([`RepairPath::cost`],
//! [`RepairPath::route_hops`]). Releasing early keeps segments short: the
//! [`MAX_REPAIR_HOPS`] cap leaves 0.04% of routes uncovered on a 2,000-node
//! fleet whose whole repair routes run past 8 hops for three in four routes.
//!
//! # Forwarding contract (what a relay does with a table)
//!
//! 1. Table mode: forward to the primary next hop while it is usable.
//! 2. At the first node whose primary next hop is unusable (the point of local
//!    repair, adjacent to the failure), if the packet is not yet marked repaired:
//!    mark it repaired, write the segment into it and send it to the segment's
//!    first node.
//! 3. A node that finds itself on a segment forwards over the direct link to the
//!    next listed node; at the last one the packet is back in table mode, still
//!    marked.
//! 4. A marked packet is never repaired again: a second unusable hop drops it
//!    (counted). That is a second failure, outside the single-failure guarantee.
//!
//! # Why it cannot loop
//!
//! A packet goes through at most three legs: table mode to the repair point, the
//! explicit segment, table mode from the release node, and never back (the
//! repaired mark). Table mode follows one shortest-path tree per destination, so
//! every step strictly lowers the distance to `d`; the segment is a simple path
//! of at most [`MAX_REPAIR_HOPS`] nodes that the packet consumes. No leg repeats
//! a node (the segment and the last leg together are one best route of the
//! reduced graph, so they share none either), and the walk ends. Table mode is
//! loop-free while the nodes hold the same tables; while they do not (an update
//! on its way through the fleet) that is the TTL's job, as it is today without
//! repair. Nodes on the segment need no agreement with `s`'s
//! tables; the release node does, which is why it is chosen by a strict
//! inequality on the tables' own costs and why the mark exists: if the release
//! node's table disagrees (a controller update halfway through the fleet) the
//! worst outcome is a counted drop, not a loop. Between the first and the third
//! leg a node may be visited twice: a repair point with no way on but back turns
//! the packet round (a U-turn). That is a detour, not a loop, and no local repair
//! can avoid it.
//!
//! # Cost
//!
//! Per source: one shortest-path tree, then per neighbour that is a primary next
//! hop, Dijkstra again over that neighbour's subtree only (nobody else's best
//! route can change when it or its link goes). The subtrees are disjoint, so a
//! source costs about three Dijkstras, well under the one per neighbour a direct
//! approach needs: O(m log n) per source, O(n · m log n) for every table.
//! `examples/repair_scale.rs` measures it.

mod compute;
mod coverage;

pub use coverage::{coverage, Coverage, FailureCoverage};

use crate::model::NodeIdx;
use crate::paths::{Cost, Graph, Metric, Routes};

use compute::compute_table;

/// The most nodes an explicit repair segment lists; a pair whose segment would be
/// longer counts as uncovered ([`RepairTable::too_long`]).
///
/// Twelve, from measurement (`examples/repair_scale.rs`). The 55-city world needs
/// 9: tyo → mnl with hkg down follows the China coast down to kul before anyone's
/// own path to mnl avoids hkg. On random fleets of 500 and 2,000 nodes a cap of 8
/// leaves 0.12% and 0.19% of routes uncovered, 12 leaves 0.02% and 0.04%. The cost
/// is 4 bytes of node key per entry, on repaired packets only (a relay must keep
/// that much room in datagrams it may repair). Whole routes (no release) would
/// need 14 in the world, and more than 8 for 16% of its repairable routes.
pub const MAX_REPAIR_HOPS: usize = 12;

/// What a repair route avoids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protection {
    /// The primary next hop, and so every link of it: survives a dead neighbour
    /// or a dead link.
    Node,
    /// Only the link(s) to the primary next hop: taken when the destination is that
    /// neighbour, or lies behind it.
    Link,
}

/// How a source repairs traffic for one destination when its primary next hop is
/// unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairPath {
    hops: [NodeIdx; MAX_REPAIR_HOPS],
    len: u8,
    protects: Protection,
    route_hops: u32,
    cost: Cost,
}

impl RepairPath {
    /// The explicit segment: the nodes after the source, in order, each joined to
    /// the previous one by a direct link. The last is the release node (possibly the
    /// destination), where table forwarding resumes. Never empty, never longer than
    /// [`MAX_REPAIR_HOPS`].
    pub fn hops(&self) -> &[NodeIdx] {
        &self.hops[..usize::from(self.len)]
    }

    /// The release node: the last node of the segment.
    pub fn release(&self) -> NodeIdx {
        self.hops[usize::from(self.len) - 1]
    }

    pub fn protects(&self) -> Protection {
        self.protects
    }

    /// Cost of the whole repair route from the source to the destination (segment,
    /// then tables from the release node): the best cost in the reduced graph.
    pub fn cost(&self) -> Cost {
        self.cost
    }

    /// Links on the whole repair route from the source to the destination.
    pub fn route_hops(&self) -> u32 {
        self.route_hops
    }
}

/// One source's repair paths, by destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairTable {
    source: NodeIdx,
    /// Indexed by destination.
    paths: Vec<Option<RepairPath>>,
    too_long: usize,
}

/// Why repair tables could not be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepairError {
    #[error(
        "routes are for {routes} nodes but the graph has {graph}: compute them from the same graph"
    )]
    SizeMismatch { graph: usize, routes: usize },
    #[error("node index {source_node} is out of range: the graph has {graph} nodes")]
    UnknownSource { source_node: usize, graph: usize },
}

impl RepairTable {
    /// The repair paths of `source` toward every destination, for the primary next
    /// hops in `routes` and the link costs in `m`.
    pub fn compute(
        g: &Graph,
        m: &Metric,
        routes: &Routes,
        source: NodeIdx,
    ) -> Result<RepairTable, RepairError> {
        check_sizes(g, routes)?;
        if source.get() >= g.node_count() {
            return Err(RepairError::UnknownSource {
                source_node: source.get(),
                graph: g.node_count(),
            });
        }
        Ok(compute_table(g, m, routes, source))
    }

    pub fn source(&self) -> NodeIdx {
        self.source
    }

    /// The repair path toward `dst`; `None` when `dst` is this node, unreachable,
    /// unreachable without the primary link, or only reachable over a segment
    /// longer than [`MAX_REPAIR_HOPS`].
    pub fn get(&self, dst: NodeIdx) -> Option<&RepairPath> {
        self.paths.get(dst.get())?.as_ref()
    }

    /// (destination, repair path) for every destination that has one, in order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeIdx, &RepairPath)> {
        self.paths
            .iter()
            .enumerate()
            .filter_map(|(d, p)| Some((NodeIdx(d as u32), p.as_ref()?)))
    }

    /// Destinations whose repair route exists but needs a segment longer than
    /// [`MAX_REPAIR_HOPS`]: uncovered.
    pub fn too_long(&self) -> usize {
        self.too_long
    }
}

/// The repair tables of every source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairTables {
    tables: Vec<RepairTable>,
}

impl RepairTables {
    /// Every source's [`RepairTable`]. `routes` must come from the same graph; it
    /// should come from the same metric too, or the repair routes are best for `m`
    /// while the primaries are best for another (still loop-free, no longer best).
    pub fn compute(g: &Graph, m: &Metric, routes: &Routes) -> Result<RepairTables, RepairError> {
        check_sizes(g, routes)?;
        Ok(compute_tables(g, m, routes))
    }

    pub fn table(&self, src: NodeIdx) -> Option<&RepairTable> {
        self.tables.get(src.get())
    }

    /// The repair path from `src` toward `dst`, if any.
    pub fn get(&self, src: NodeIdx, dst: NodeIdx) -> Option<&RepairPath> {
        self.table(src)?.get(dst)
    }

    pub fn iter(&self) -> impl Iterator<Item = &RepairTable> {
        self.tables.iter()
    }
}

fn check_sizes(g: &Graph, routes: &Routes) -> Result<(), RepairError> {
    if routes.node_count() == g.node_count() {
        Ok(())
    } else {
        Err(RepairError::SizeMismatch {
            graph: g.node_count(),
            routes: routes.node_count(),
        })
    }
}

/// Every table; sizes already checked.
pub(crate) fn compute_tables(g: &Graph, m: &Metric, routes: &Routes) -> RepairTables {
    let tables = (0..g.node_count() as u32)
        .map(|s| compute_table(g, m, routes, NodeIdx(s)))
        .collect();
    RepairTables { tables }
}

#[cfg(test)]
mod tests;
