//! Placement: which path every class takes, so that each stays within its latency
//! budget and no link direction runs past the utilisation ceiling, at the lowest
//! latency found; kept stable from one run to the next, with headroom for the loss
//! of any one undersea line.
//!
//! Pure: no I/O, no clock. Everything works in class counts per (pair, path), never
//! per class, so a million classes cost what their distinct paths cost.
//!
//! - [`place`]: a fresh placement (`place.rs`), with N−1 headroom (`headroom.rs`).
//! - [`place_incremental`]: the next placement from the one in force (`incremental.rs`).
//! - [`cut`]: what losing one link does to a placement (`cuts.rs`).
//! - [`delay_only`]: every class on its shortest path, the baseline (`summary.rs`).
//! - [`Report`]: a placement checked against the inputs (`report.rs`); [`plan`] and
//!   [`Summary`]: what `overlay plan` prints.
//!
//! Inside: `net.rs` holds link-direction limits and loads and the capacity-aware
//! shortest paths (trees per destination, repaired as lines fill); `engine.rs` the
//! classes placed so far; `repair.rs` frees room for pairs that do not fit;
//! `exact.rs` settles small demands by enumeration.

mod cuts;
mod engine;
mod exact;
mod headroom;
mod incremental;
mod net;
mod place;
mod repair;
mod report;
mod summary;

pub use cuts::{cut, CutResult};
pub use incremental::{place_incremental, Move, MoveReason, Replacement};
pub use place::place;
pub use report::{LinkLoad, Report, Shortfall};
pub use summary::{delay_only, plan, LatencyStats, LineSummary, Plan, Summary};

use std::sync::Arc;

use crate::demand::Demand;
use crate::model::{LinkIdx, NodeIdx, Topology};
use crate::paths::{Metric, Path};

/// A direction along a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dir {
    /// From `Link::a` to `Link::b`.
    AtoB,
    /// From `Link::b` to `Link::a`.
    BtoA,
}

impl Dir {
    pub const BOTH: [Dir; 2] = [Dir::AtoB, Dir::BtoA];

    /// 0 for a → b, 1 for b → a: the index into a `[_; 2]` per link.
    pub fn index(self) -> usize {
        match self {
            Dir::AtoB => 0,
            Dir::BtoA => 1,
        }
    }
}

/// kbit/s per link and direction (a background load, or a placement's load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkLoads {
    kbps: Vec<[u64; 2]>,
}

impl LinkLoads {
    /// No load on any of `links` links.
    pub fn zero(links: usize) -> Self {
        LinkLoads {
            kbps: vec![[0; 2]; links],
        }
    }

    /// Per link: [a → b, b → a].
    pub fn new(kbps: Vec<[u64; 2]>) -> Self {
        LinkLoads { kbps }
    }

    pub fn len(&self) -> usize {
        self.kbps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kbps.is_empty()
    }

    /// The load of one direction (0 for a link out of range).
    pub fn get(&self, link: LinkIdx, dir: Dir) -> u64 {
        self.kbps.get(link.get()).map_or(0, |k| k[dir.index()])
    }

    pub fn set(&mut self, link: LinkIdx, dir: Dir, kbps: u64) {
        if let Some(k) = self.kbps.get_mut(link.get()) {
            k[dir.index()] = kbps;
        }
    }
}

/// Capacity per link and direction, kbit/s; `None` for a link of unknown capacity,
/// which placement treats as unlimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacities {
    kbps: Vec<[Option<u64>; 2]>,
}

impl Capacities {
    /// Per link: [a → b, b → a].
    pub fn new(kbps: Vec<[Option<u64>; 2]>) -> Self {
        Capacities { kbps }
    }

    /// The topology's `capacity_mbps`, each way (leased circuits are full duplex).
    pub fn from_topology(t: &Topology) -> Self {
        Capacities {
            kbps: t
                .links
                .iter()
                .map(|l| {
                    let c = l.capacity_mbps.map(|m| m.saturating_mul(1000));
                    [c, c]
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.kbps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kbps.is_empty()
    }

    pub fn get(&self, link: LinkIdx, dir: Dir) -> Option<u64> {
        self.kbps.get(link.get()).and_then(|k| k[dir.index()])
    }
}

/// What a placement is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub topology: &'a Topology,
    /// Per link one-way delay, µs; a link without a cost is down.
    pub metric: &'a Metric,
    pub capacity: &'a Capacities,
    /// Traffic already on the links that placement does not move; `None` for none.
    pub background: Option<&'a LinkLoads>,
    pub demand: &'a Demand,
}

/// What a placement is computed from, owned, with the topology's own view of
/// the links: expected delays and leased capacities, no background load (what
/// `overlay plan`, the benchmarks and the tests start from).
#[derive(Debug, Clone)]
pub struct Problem {
    pub topology: Topology,
    pub metric: Metric,
    pub capacity: Capacities,
    pub demand: Demand,
}

impl Problem {
    pub fn new(topology: Topology, demand: Demand) -> Problem {
        Problem {
            metric: Metric::expected_delay(&topology),
            capacity: Capacities::from_topology(&topology),
            topology,
            demand,
        }
    }

    pub fn inputs(&self) -> Inputs<'_> {
        Inputs {
            topology: &self.topology,
            metric: &self.metric,
            capacity: &self.capacity,
            background: None,
            demand: &self.demand,
        }
    }
}

/// Knobs, with the defaults `Options::default()` gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Highest share of a link direction's capacity placement plans to use: 0.8.
    pub ceiling: f64,
    /// Keep headroom so that losing any one undersea line leaves no link past
    /// 100 %: true.
    pub n_minus_1: bool,
    /// A class moves to a better path only if it is faster by more than this
    /// share of its current delay…: 0.10.
    pub better_ratio: f64,
    /// …and by more than this many µs: 5,000.
    pub better_min_us: u64,
    /// Most classes one incremental re-placement may move: unlimited.
    pub max_moves: u64,
    /// Candidate paths per pair when freeing room for a pair that does not fit: 8.
    pub repair_paths: usize,
    /// Most steps of the exact search, tried when the heuristics leave classes out
    /// on a small demand (see `exact.rs`); 0 turns it off: 200,000.
    pub exact_steps: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ceiling: 0.8,
            n_minus_1: true,
            better_ratio: 0.10,
            better_min_us: 5_000,
            max_moves: u64::MAX,
            repair_paths: 8,
            exact_steps: 200_000,
        }
    }
}

/// Some classes of a pair on one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathShare {
    /// `path.cost` is the path's delay in µs when it was placed. Shared (`Arc`)
    /// between placements that keep it.
    pub path: Arc<Path>,
    pub classes: u64,
}

/// Where the classes of one (src, dst, service) go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairPlacement {
    pub src: NodeIdx,
    pub dst: NodeIdx,
    /// Index into [`Placement::services`].
    pub service: usize,
    /// Fastest first.
    pub shares: Vec<PathShare>,
    /// Classes with no path at all (the pair is cut off).
    pub unplaced: u64,
}

impl PairPlacement {
    pub fn classes(&self) -> u64 {
        self.shares.iter().map(|s| s.classes).sum::<u64>() + self.unplaced
    }
}

/// Every class's path.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Service names, as the demand had them (pairs refer to them by index).
    pub services: Vec<String>,
    /// Sorted by (src, dst, service), as the demand's pairs.
    pub pairs: Vec<PairPlacement>,
    /// Per link [a → b, b → a]: the share of capacity placement planned against;
    /// below the ceiling where N−1 headroom is kept. Incremental re-placements keep it.
    pub headroom: Vec<[f64; 2]>,
}

impl Placement {
    pub fn total_classes(&self) -> u64 {
        self.pairs.iter().map(PairPlacement::classes).sum()
    }

    /// Classes whose path uses `link`.
    pub fn classes_on(&self, link: LinkIdx) -> u64 {
        self.pairs
            .iter()
            .flat_map(|p| &p.shares)
            .filter(|s| s.path.links.contains(&link))
            .map(|s| s.classes)
            .sum()
    }
}

/// Inputs that do not fit together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    #[error("the metric has {metric} link costs but the topology has {links} links")]
    MetricLength { metric: usize, links: usize },
    #[error("capacities are given for {given} links but the topology has {links} links")]
    CapacityLength { given: usize, links: usize },
    #[error("background loads are given for {given} links but the topology has {links} links")]
    BackgroundLength { given: usize, links: usize },
    #[error("ceiling {0} is not a share of capacity; expected a number above 0, such as 0.8")]
    Ceiling(f64),
    #[error(
        "better_ratio {0} is not a share of delay; expected a number from 0 to 1, such as 0.1"
    )]
    BetterRatio(f64),
    #[error("demand pair {index} names node {node}, but the topology has {nodes} nodes")]
    DemandNode {
        index: usize,
        node: u32,
        nodes: usize,
    },
    #[error("demand pair {index} names service {service}, but the demand has {services}")]
    DemandService {
        index: usize,
        service: usize,
        services: usize,
    },
}

/// Checks that the inputs describe one network.
pub(crate) fn validate(i: &Inputs<'_>, o: &Options) -> Result<(), PlacementError> {
    let links = i.topology.links.len();
    if i.metric.len() != links {
        return Err(PlacementError::MetricLength {
            metric: i.metric.len(),
            links,
        });
    }
    if i.capacity.len() != links {
        return Err(PlacementError::CapacityLength {
            given: i.capacity.len(),
            links,
        });
    }
    if let Some(b) = i.background {
        if b.len() != links {
            return Err(PlacementError::BackgroundLength {
                given: b.len(),
                links,
            });
        }
    }
    if !(o.ceiling.is_finite() && o.ceiling > 0.0) {
        return Err(PlacementError::Ceiling(o.ceiling));
    }
    if !(o.better_ratio.is_finite() && (0.0..=1.0).contains(&o.better_ratio)) {
        return Err(PlacementError::BetterRatio(o.better_ratio));
    }
    let nodes = i.topology.nodes.len();
    for (index, p) in i.demand.pairs.iter().enumerate() {
        for n in [p.src, p.dst] {
            if n.get() >= nodes {
                return Err(PlacementError::DemandNode {
                    index,
                    node: n.0,
                    nodes,
                });
            }
        }
        if p.service >= i.demand.services.len() {
            return Err(PlacementError::DemandService {
                index,
                service: p.service,
                services: i.demand.services.len(),
            });
        }
    }
    Ok(())
}
