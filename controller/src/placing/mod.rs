//! Live placement: the relays' measured demand (Mbit/s per destination) placed
//! on paths with `topology::placement`, under each link's capacity and the
//! utilisation ceiling, within the latency budget (the tightest of the
//! services between the pair's relays), at the lowest latency. The compute
//! task runs it every `interval`; each relay is told, per destination, how to
//! split its flows over the placed paths (see `relay_core::placed`).
//!
//! Demand is placed in units of `unit_kbps` (a pair's traffic rounded up to
//! whole units), so a pair can be split over several paths. Links' measured
//! load minus what the demand itself puts on them is background load
//! (protected copies, TCP, probes): placement plans around it.
//!
//! Routes lead: new demand starts on the route tables' path as far as that
//! path has room (the rest is placed where there is room, as new classes
//! are), and placement moves units off it for need (the path broke, a link
//! on it is past the ceiling, the unit is over its budget) or to a path with
//! room faster by the routes' band under the costs in force; at most
//! `max_moves` units move per run. The compute task also runs it early when
//! demand has grown by a quarter since the last run.
//!
//! Inside: `split.rs` (a pair's paths and weights, as the relays get them),
//! `shortfalls.rs` (where a placement misses its goals, in words).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use topology::demand::{ClassProfile, Demand, Direction, PairDemand, ServiceSpec};
use topology::paths::{Metric, Path};
use topology::placement::{
    self, Capacities, Dir, Inputs, LinkLoads, Options, PairPlacement, PathShare, Placement,
};
use topology::{LinkIdx, LinkKind, NodeIdx, Topology};

mod shortfalls;
mod split;

pub use shortfalls::{line_name, OverCeiling, Shortfalls};
pub use split::{Split, MAX_PLACED_HOPS, MAX_SPLIT};

/// The least time between two runs when new demand brings one forward.
pub const EARLY_AFTER: Duration = Duration::from_secs(1);

/// How the controller places demand.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementConfig {
    /// Place at all; off, every relay's traffic follows the route tables.
    pub enabled: bool,
    /// How often placement runs: 5 s.
    pub interval: Duration,
    /// The unit demand is placed in: 100 kbit/s.
    pub unit_kbps: u64,
    /// Highest share of a link direction's capacity placement plans to use: 0.8.
    pub ceiling: f64,
    /// Most units one run may move: 1,000 (100 Mbit/s at the default unit).
    pub max_moves: u64,
    /// Capacities are the topology's `capacity_mbps` times this: 1 (the lab
    /// scales its emulated links and tells the controller the same).
    pub capacity_scale: f64,
    /// Only undersea lines have a capacity; every other link is unlimited
    /// (the lab's `--undersea-only`): false.
    pub undersea_only: bool,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig {
            enabled: true,
            interval: Duration::from_secs(5),
            unit_kbps: 100,
            ceiling: 0.8,
            max_moves: 1_000,
            capacity_scale: 1.0,
            undersea_only: false,
        }
    }
}

/// The placement in force and the splits it gives each pair.
#[derive(Debug, Default)]
pub struct LivePlacement {
    pub config: PlacementConfig,
    in_force: Option<Placement>,
    last_run: Option<Instant>,
    /// Per (source, destination): how the source splits its traffic, where
    /// that differs from the route tables' one path.
    splits: BTreeMap<(NodeIdx, NodeIdx), Split>,
    /// Bumped each time `splits` changes.
    pub version: u64,
    /// Runs so far.
    pub runs: u64,
    /// The demand the last run placed, Mbit/s in all.
    placed_mbps: f64,
    /// What the last run's placement falls short of.
    pub shortfalls: Shortfalls,
}

impl LivePlacement {
    pub fn new(config: PlacementConfig) -> Self {
        LivePlacement {
            config,
            ..LivePlacement::default()
        }
    }

    pub fn splits(&self) -> &BTreeMap<(NodeIdx, NodeIdx), Split> {
        &self.splits
    }

    /// Whether a run is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.config.enabled
            && self
                .last_run
                .is_none_or(|at| now.saturating_duration_since(at) >= self.config.interval)
    }

    /// Whether demand of `total_mbps` in all has grown enough since the last
    /// run to be placed before the interval is up: by a quarter and by at
    /// least two units, at least [`EARLY_AFTER`] after the last run. New
    /// classes then find room before they crowd the routes' path for a whole
    /// interval (the relays report every second).
    pub fn new_demand_due(&self, total_mbps: f64, now: Instant) -> bool {
        let unit_mbps = self.config.unit_kbps.max(1) as f64 / 1000.0;
        let grown = total_mbps > self.placed_mbps * 1.25
            && total_mbps - self.placed_mbps >= 2.0 * unit_mbps;
        self.config.enabled
            && grown
            && self
                .last_run
                .is_some_and(|at| now.saturating_duration_since(at) >= EARLY_AFTER)
    }

    /// Places `demand` (Mbit/s per (source, destination)) over `metric`
    /// (the link costs in force, `None` for a link down), with `loads` the
    /// links' measured Mbit/s per direction; `table_path(src, dst)` is the
    /// path the route tables give. Returns whether the splits changed.
    pub fn run(
        &mut self,
        topo: &Topology,
        metric: &Metric,
        demand: &BTreeMap<(NodeIdx, NodeIdx), f64>,
        loads: &[[Option<f64>; 2]],
        table_path: impl Fn(NodeIdx, NodeIdx) -> Vec<NodeIdx>,
        now: Instant,
    ) -> Result<bool, placement::PlacementError> {
        self.last_run = Some(now);
        self.placed_mbps = demand.values().filter(|m| m.is_finite()).sum();
        let unit = self.config.unit_kbps.max(1);
        let wanted = self.demand(topo, demand, unit);
        let capacity = self.capacities(topo);
        let background = self.background(topo, loads, &wanted, unit, &table_path);
        let inputs = Inputs {
            topology: topo,
            metric,
            capacity: &capacity,
            background: Some(&background),
            demand: &wanted,
        };
        // A unit moves to a faster path with room when it is faster by the
        // routes' own band (10 % and 5 ms); the costs it compares are the
        // ones in force, which the routes change only once a measurement has
        // lasted their hold, so a better path must last before units follow.
        let options = Options {
            ceiling: self.config.ceiling,
            max_moves: self.config.max_moves,
            ..Options::default()
        };
        // Every run is incremental from what runs now: the placement in force,
        // with demand it does not cover yet on the route tables' path where
        // that has room (the tables keep a path within their band; placement
        // moves traffic off it only for the reasons it moves any). N−1 headroom comes from a
        // fresh placement the first time.
        let headroom = match &self.in_force {
            Some(p) => p.headroom.clone(),
            None => placement::place(&inputs, &options)?.headroom,
        };
        let previous = self.seeded(&inputs, &table_path, headroom, unit);
        let replaced = placement::place_incremental(&previous, &inputs, &options)?;
        log_changes(topo, &replaced);
        let placed = replaced.placement;
        let report = placement::Report::check(&inputs, options.ceiling, &placed);
        let kbps =
            |short: &[placement::Shortfall]| short.iter().map(|s| s.classes).sum::<u64>() * unit;
        self.shortfalls = Shortfalls {
            over_ceiling: report
                .over_ceiling
                .iter()
                .map(|l| OverCeiling {
                    link: l.link,
                    dir: l.dir,
                    utilisation: l.utilisation().unwrap_or(0.0),
                })
                .collect(),
            over_budget_kbps: kbps(&report.over_budget),
            unplaced_kbps: kbps(&report.unplaced),
            at_risk: self.at_risk(topo, &inputs, &placed, &options),
        };
        self.runs += 1;
        let mut splits = BTreeMap::new();
        for p in &placed.pairs {
            let paths: Vec<(&[NodeIdx], u64)> = p
                .shares
                .iter()
                .map(|s| (s.path.nodes.as_slice(), s.classes))
                .collect();
            let follows_table =
                paths.len() == 1 && paths[0].0 == table_path(p.src, p.dst).as_slice();
            if follows_table {
                continue;
            }
            if let Some(split) = Split::new(&paths) {
                splits.insert((p.src, p.dst), split);
            }
        }
        self.in_force = Some(placed);
        if splits == self.splits {
            return Ok(false);
        }
        self.splits = splits;
        self.version += 1;
        Ok(true)
    }

    /// Each undersea line whose loss would leave demand at risk, and how much.
    fn at_risk(
        &self,
        topo: &Topology,
        inputs: &Inputs<'_>,
        placed: &Placement,
        options: &Options,
    ) -> Vec<(LinkIdx, u64)> {
        let unit = self.config.unit_kbps.max(1);
        (0..topo.links.len() as u32)
            .map(LinkIdx)
            .filter(|&l| topo.link(l).kind == LinkKind::Undersea)
            .filter_map(|l| {
                let (cut, _) = placement::cut(inputs, placed, l, options).ok()?;
                (cut.at_risk > 0).then_some((l, cut.at_risk * unit))
            })
            .collect()
    }

    /// The placement in force, each pair grown toward its demand with the
    /// classes it lacks on the route tables' path (when that path is up), as
    /// far as that path has room under the planning share; the rest stays
    /// unplaced, for `place_incremental` to place where there is room (new
    /// classes are placed, not moved, so the move bound does not hold them on
    /// a full line). A pair wholly on one path with no split in force follows
    /// the tables, so once the routes leave that path its traffic is on
    /// theirs: it is seeded again the same way.
    fn seeded(
        &self,
        inputs: &Inputs<'_>,
        table_path: &impl Fn(NodeIdx, NodeIdx) -> Vec<NodeIdx>,
        headroom: Vec<[f64; 2]>,
        unit: u64,
    ) -> Placement {
        let (topo, demand) = (inputs.topology, inputs.demand);
        let in_force: BTreeMap<(NodeIdx, NodeIdx), &PairPlacement> = self
            .in_force
            .iter()
            .flat_map(|p| &p.pairs)
            .map(|p| ((p.src, p.dst), p))
            .collect();
        let mut pairs: Vec<PairPlacement> = demand
            .pairs
            .iter()
            .map(|d| {
                let mut shares: Vec<PathShare> = in_force
                    .get(&(d.src, d.dst))
                    .map(|p| p.shares.clone())
                    .unwrap_or_default();
                let follows_tables = !self.splits.contains_key(&(d.src, d.dst));
                if follows_tables
                    && shares.len() == 1
                    && shares[0].path.nodes != table_path(d.src, d.dst)
                {
                    shares.clear();
                }
                PairPlacement {
                    src: d.src,
                    dst: d.dst,
                    service: d.service,
                    shares,
                    unplaced: 0,
                }
            })
            .collect();
        let mut room = Room::new(inputs, &headroom, unit);
        for p in &pairs {
            for s in &p.shares {
                room.take(&s.path, s.classes);
            }
        }
        for (p, d) in pairs.iter_mut().zip(&demand.pairs) {
            let had: u64 = p.shares.iter().map(|s| s.classes).sum();
            if had >= d.classes {
                continue;
            }
            let Some(path) = path_along(topo, inputs.metric, &table_path(d.src, d.dst)) else {
                continue;
            };
            let seed = (d.classes - had).min(room.classes_on(&path));
            if seed == 0 {
                continue;
            }
            room.take(&path, seed);
            tracing::debug!(
                pair = %format!("{} → {}", topo.node(d.src).id, topo.node(d.dst).id),
                units = seed,
                of = d.classes - had,
                via = %topo.node(path.nodes.get(1).copied().unwrap_or(d.dst)).id,
                "placement: new demand starts on the routes' path"
            );
            match p.shares.iter_mut().find(|s| s.path.nodes == path.nodes) {
                Some(s) => s.classes += seed,
                None => p.shares.push(PathShare {
                    path: Arc::new(path),
                    classes: seed,
                }),
            }
        }
        Placement {
            services: demand.services.iter().map(|s| s.name.clone()).collect(),
            pairs,
            headroom,
        }
    }

    /// The demand in units of `unit` kbit/s, one way: each direction of a
    /// class is measured, and placed, at the relay that sends it. A pair's
    /// budget is the tightest of the services between its two relays (either
    /// way: replies travel back), else the default 200 ms: relays measure
    /// demand per destination, not per service.
    fn demand(
        &self,
        topo: &Topology,
        demand: &BTreeMap<(NodeIdx, NodeIdx), f64>,
        unit: u64,
    ) -> Demand {
        let unit_kbps = u32::try_from(unit).unwrap_or(u32::MAX);
        let pair_budget = |src: NodeIdx, dst: NodeIdx| {
            topo.services
                .iter()
                .filter(|s| {
                    (s.ingress_node, s.egress_node) == (src, dst)
                        || (s.ingress_node, s.egress_node) == (dst, src)
                })
                .map(|s| s.budget_us)
                .min()
                .unwrap_or(topology::demand::DEFAULT_BUDGET_US)
        };
        // One placement service per budget in the topology, named by it, so
        // runs number and match them alike.
        let mut budgets: Vec<u64> = topo.services.iter().map(|s| s.budget_us).collect();
        budgets.push(topology::demand::DEFAULT_BUDGET_US);
        budgets.sort_unstable();
        budgets.dedup();
        let services = budgets
            .iter()
            .map(|&budget_us| ServiceSpec {
                name: format!("within {} ms", budget_us as f64 / 1000.0),
                budget_us,
                profile: ClassProfile {
                    forward: Direction {
                        audio_kbps: 0,
                        video_kbps: unit_kbps,
                        signalling_kbps: 0,
                    },
                    reverse: Direction {
                        audio_kbps: 0,
                        video_kbps: 0,
                        signalling_kbps: 0,
                    },
                },
            })
            .collect();
        let pairs = demand.iter().filter_map(|(&(src, dst), &mbps)| {
            let kbps = mbps * 1000.0;
            let budget = pair_budget(src, dst);
            (kbps.is_finite() && kbps > 0.0).then(|| PairDemand {
                src,
                dst,
                service: budgets.partition_point(|&b| b < budget),
                classes: (kbps / unit as f64).ceil() as u64,
            })
        });
        Demand::new(services, pairs)
    }

    fn capacities(&self, topo: &Topology) -> Capacities {
        let scale = self.config.capacity_scale;
        Capacities::new(
            topo.links
                .iter()
                .map(|l| {
                    let limited = !self.config.undersea_only || l.kind == LinkKind::Undersea;
                    let c = l
                        .capacity_mbps
                        .filter(|_| limited)
                        .map(|m| ((m as f64 * 1000.0 * scale).round() as u64).max(1));
                    [c, c]
                })
                .collect(),
        )
    }

    /// Measured load minus what the demand itself puts on each direction
    /// now: its split where it has one, else the route tables' path.
    fn background(
        &self,
        topo: &Topology,
        loads: &[[Option<f64>; 2]],
        demand: &Demand,
        unit: u64,
        table_path: &impl Fn(NodeIdx, NodeIdx) -> Vec<NodeIdx>,
    ) -> LinkLoads {
        let mut ours = vec![[0u64; 2]; topo.links.len()];
        let mut add = |nodes: &[NodeIdx], kbps: u64| {
            for w in nodes.windows(2) {
                if let Some(l) = topo.link_between(w[0], w[1]) {
                    let from_a = topo.link(l).a == w[0];
                    ours[l.get()][usize::from(!from_a)] += kbps;
                }
            }
        };
        for p in &demand.pairs {
            let kbps = p.classes * unit;
            match self.splits.get(&(p.src, p.dst)) {
                Some(split) => {
                    let total: u64 = split.paths().map(|(_, w)| u64::from(w)).sum();
                    for (hops, w) in split.paths() {
                        let nodes: Vec<NodeIdx> =
                            std::iter::once(p.src).chain(hops.iter().copied()).collect();
                        add(&nodes, kbps * u64::from(w) / total.max(1));
                    }
                }
                None => add(&table_path(p.src, p.dst), kbps),
            }
        }
        let mut out = LinkLoads::zero(topo.links.len());
        for (l, link_loads) in loads.iter().enumerate().take(topo.links.len()) {
            for (d, dir) in Dir::BOTH.into_iter().enumerate() {
                let measured = link_loads[d].map_or(0, |m| (m * 1000.0).max(0.0) as u64);
                let link = LinkIdx(l as u32);
                out.set(link, dir, measured.saturating_sub(ours[l][d]));
            }
        }
        out
    }
}

/// What each link direction can still take under its planning share
/// (`headroom`, at most the ceiling) of its capacity, after the background
/// and what is taken, kbit/s. Links of unknown capacity take anything.
struct Room<'a> {
    topo: &'a Topology,
    left: Vec<[Option<u64>; 2]>,
    unit: u64,
}

impl<'a> Room<'a> {
    fn new(inputs: &Inputs<'a>, headroom: &[[f64; 2]], unit: u64) -> Room<'a> {
        let topo = inputs.topology;
        let left = (0..topo.links.len())
            .map(|l| {
                let link = LinkIdx(l as u32);
                Dir::BOTH.map(|dir| {
                    let capacity = inputs.capacity.get(link, dir)?;
                    let share = headroom.get(l).map_or(1.0, |h| h[dir.index()]);
                    let background = inputs.background.map_or(0, |b| b.get(link, dir));
                    Some(((capacity as f64 * share) as u64).saturating_sub(background))
                })
            })
            .collect();
        Room { topo, left, unit }
    }

    /// The link directions `path` crosses, as indices into `left`.
    fn hops(&self, path: &Path) -> Vec<(usize, usize)> {
        (path.nodes.windows(2).zip(&path.links))
            .map(|(w, l)| {
                let from_a = self.topo.link(*l).a == w[0];
                (l.get(), usize::from(!from_a))
            })
            .collect()
    }

    /// How many classes `path` can still take.
    fn classes_on(&self, path: &Path) -> u64 {
        self.hops(path)
            .into_iter()
            .filter_map(|(l, d)| self.left.get(l).and_then(|x| x[d]))
            .map(|kbps| kbps / self.unit.max(1))
            .min()
            .unwrap_or(u64::MAX)
    }

    fn take(&mut self, path: &Path, classes: u64) {
        let kbps = classes.saturating_mul(self.unit);
        for (l, d) in self.hops(path) {
            if let Some(Some(left)) = self.left.get_mut(l).map(|x| &mut x[d]) {
                *left = left.saturating_sub(kbps);
            }
        }
    }
}

/// The path through `nodes` with its links and cost under `metric`; `None`
/// when a link is missing or down (or there is no path).
fn path_along(topo: &Topology, metric: &Metric, nodes: &[NodeIdx]) -> Option<Path> {
    if nodes.len() < 2 {
        return None;
    }
    let mut links = Vec::with_capacity(nodes.len() - 1);
    let mut cost = 0;
    for w in nodes.windows(2) {
        let l = topo.link_between(w[0], w[1])?;
        cost += metric.cost(l)?;
        links.push(l);
    }
    Some(Path {
        nodes: nodes.to_vec(),
        links,
        cost,
    })
}

#[cfg(test)]
mod tests;

/// At debug level: what a run moved, and why, and what it added or took off.
fn log_changes(topo: &Topology, r: &placement::Replacement) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let ids = |p: &Path| {
        (p.nodes.iter())
            .map(|&n| topo.node(n).id.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    for m in &r.moves {
        tracing::debug!(
            pair = %format!("{} → {}", topo.node(m.src).id, topo.node(m.dst).id),
            from = %ids(&m.from),
            to = %ids(&m.to),
            units = m.classes,
            reason = ?m.reason,
            "placement moved units"
        );
    }
    if r.added + r.removed + r.held > 0 {
        tracing::debug!(
            added = r.added,
            removed = r.removed,
            held = r.held,
            "placement: demand changed"
        );
    }
}
