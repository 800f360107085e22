//! What `overlay plan` prints: per-line load, the per-class latency distribution,
//! classes per undersea line and what each undersea cut would do, for the placement
//! and for the delay-only baseline (every class on its shortest path).

use super::cuts::{cut_with, Base, CutResult, Reroute};
use super::engine::Engine;
use super::net::Tier;
use super::report::{LinkLoad, Report};
use super::{place, validate, Dir, Inputs, Options, Placement, PlacementError};
use crate::model::{LinkIdx, LinkKind};
use crate::paths::Cost;

/// One-way latency over all classes of a placement (nearest-rank percentiles).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyStats {
    pub classes: u64,
    /// Classes on a working path (the percentiles are over these).
    pub with_path: u64,
    pub p50_us: Option<Cost>,
    pub p99_us: Option<Cost>,
    pub max_us: Option<Cost>,
    /// Classes on a working path within their budget.
    pub within_budget: u64,
}

impl LatencyStats {
    pub fn of(inputs: &Inputs<'_>, placement: &Placement) -> LatencyStats {
        let mut delays: Vec<(Cost, u64)> = Vec::new();
        let mut within = 0u64;
        for pp in &placement.pairs {
            let budget = placement
                .services
                .get(pp.service)
                .and_then(|n| inputs.demand.services.iter().find(|s| &s.name == n))
                .map_or(Cost::MAX, |s| s.budget_us);
            for s in &pp.shares {
                let delay: Option<Cost> = s.path.links.iter().map(|&l| inputs.metric.cost(l)).sum();
                if let Some(d) = delay {
                    delays.push((d, s.classes));
                    if d <= budget {
                        within += s.classes;
                    }
                }
            }
        }
        delays.sort_unstable();
        let with_path: u64 = delays.iter().map(|d| d.1).sum();
        let rank = |q: f64| -> Option<Cost> {
            if with_path == 0 {
                return None;
            }
            let want = ((q * with_path as f64).ceil() as u64).clamp(1, with_path);
            let mut seen = 0;
            delays.iter().find_map(|&(d, k)| {
                seen += k;
                (seen >= want).then_some(d)
            })
        };
        LatencyStats {
            classes: placement.total_classes(),
            with_path,
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            max_us: delays.last().map(|d| d.0),
            within_budget: within,
        }
    }

    /// Share of all classes within budget (1.0 when there are none).
    pub fn share_within_budget(&self) -> f64 {
        if self.classes == 0 {
            1.0
        } else {
            self.within_budget as f64 / self.classes as f64
        }
    }
}

/// One undersea line.
#[derive(Debug, Clone, PartialEq)]
pub struct LineSummary {
    pub link: LinkIdx,
    pub name: Option<String>,
    pub classes: u64,
    /// [a → b, b → a].
    pub load: [LinkLoad; 2],
}

/// A placement with everything `overlay plan` shows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub latency: LatencyStats,
    /// Loads of every link direction, and every shortfall.
    pub report: Report,
    /// The undersea lines, in link order.
    pub lines: Vec<LineSummary>,
    /// Each undersea line cut in turn.
    pub cuts: Vec<CutResult>,
}

/// The placement and the delay-only baseline, side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub placement: Placement,
    pub placed: Summary,
    pub baseline: Placement,
    pub delay_only: Summary,
}

/// Every class on its shortest path by delay, whatever the load: what routing alone
/// does, and the baseline placement is measured against.
pub fn delay_only(inputs: &Inputs<'_>) -> Result<Placement, PlacementError> {
    validate(inputs, &Options::default())?;
    let links = inputs.topology.links.len();
    let mut e = Engine::new(inputs, 1.0, &vec![[1.0; 2]; links]);
    for p in 0..e.pairs.len() {
        e.fill_unplaced(p, Tier::Unlimited, false, true);
    }
    Ok(e.into_placement(vec![[1.0; 2]; links]))
}

/// Places, builds the baseline, and summarises both with every undersea cut.
pub fn plan(inputs: &Inputs<'_>, options: &Options) -> Result<Plan, PlacementError> {
    let placement = place(inputs, options)?;
    let baseline = delay_only(inputs)?;
    Ok(Plan {
        placed: summarize(inputs, options, &placement, Reroute::Place),
        delay_only: summarize(inputs, options, &baseline, Reroute::ShortestPath),
        placement,
        baseline,
    })
}

impl Summary {
    /// Summarises a placement made by [`place`] (cuts re-placed the same way).
    pub fn of_placement(inputs: &Inputs<'_>, options: &Options, p: &Placement) -> Summary {
        summarize(inputs, options, p, Reroute::Place)
    }

    /// Summarises a delay-only placement (cuts rerouted on shortest paths).
    pub fn of_delay_only(inputs: &Inputs<'_>, options: &Options, p: &Placement) -> Summary {
        summarize(inputs, options, p, Reroute::ShortestPath)
    }
}

fn summarize(inputs: &Inputs<'_>, options: &Options, p: &Placement, how: Reroute) -> Summary {
    let report = Report::check(inputs, options.ceiling, p);
    let t = inputs.topology;
    let undersea: Vec<LinkIdx> = (0..t.links.len())
        .map(|l| LinkIdx(l as u32))
        .filter(|&l| t.link(l).kind == LinkKind::Undersea)
        .collect();
    let lines = undersea
        .iter()
        .map(|&l| LineSummary {
            link: l,
            name: t.link(l).name.clone(),
            classes: p.classes_on(l),
            load: Dir::BOTH.map(|dir| report.loads[2 * l.get() + dir.index()]),
        })
        .collect();
    let base = Base::new(inputs, options, p);
    let cuts = undersea
        .iter()
        .map(|&l| cut_with(inputs, p, &base, l, options, how, false).0)
        .collect();
    Summary {
        latency: LatencyStats::of(inputs, p),
        report,
        lines,
        cuts,
    }
}
