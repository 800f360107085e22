//! What losing one link does to a placement: the classes on it are re-placed, every
//! other class stays where it is, and the result is checked against capacity.
//!
//! After a loss the planning margin is spent: re-placed classes go within budget
//! and ceiling if they can, then within budget up to 100 %, then over budget up to
//! 100 %, and only then past capacity. The delay-only baseline re-places them on
//! their new shortest paths, as routing alone would.

use super::engine::{match_pairs, Engine};
use super::net::Tier;
use super::place::priority_order;
use super::report::Report;
use super::{validate, Inputs, Options, Placement, PlacementError};
use crate::model::LinkIdx;

/// The loss of one link, as `overlay plan` prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct CutResult {
    pub link: LinkIdx,
    pub name: Option<String>,
    /// Classes whose path used the link.
    pub classes_on_link: u64,
    /// Classes that got a new path (those on the link, and any that had none).
    pub moved: u64,
    /// Of the moved, classes whose new path is slower than their budget.
    pub left_budget: u64,
    /// Classes on a path crossing a link loaded past capacity after the cut (moved or
    /// not: a full line hurts everyone on it), plus classes with no path at all.
    pub at_risk: u64,
    /// The placement after the cut, checked at the ceiling: `worst()` is the worst
    /// utilisation left, `over_capacity` the links past 100 %.
    pub after: Report,
}

/// How classes on a lost link find new paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reroute {
    /// Placement's tiers (budget and load aware).
    Place,
    /// The shortest path, whatever the load (the baseline).
    ShortestPath,
}

/// Cuts `link` under `placement`: its classes re-placed, the others kept.
pub fn cut(
    inputs: &Inputs<'_>,
    placement: &Placement,
    link: LinkIdx,
    options: &Options,
) -> Result<(CutResult, Placement), PlacementError> {
    validate(inputs, options)?;
    Ok(cut_with(inputs, placement, link, options, Reroute::Place))
}

pub(crate) fn cut_with(
    inputs: &Inputs<'_>,
    placement: &Placement,
    link: LinkIdx,
    options: &Options,
    how: Reroute,
) -> (CutResult, Placement) {
    let metric = inputs.metric.with_link_down(link);
    let after_inputs = Inputs {
        metric: &metric,
        ..*inputs
    };
    let mut e = Engine::new(&after_inputs, options.ceiling, &placement.headroom);
    let mut on_link = 0u64;
    for (p, prev) in match_pairs(placement, inputs.demand)
        .into_iter()
        .enumerate()
    {
        let total = e.unplaced[p];
        let mut kept = 0u64;
        for s in prev.map_or(&[][..], |i| &placement.pairs[i].shares[..]) {
            let classes = s.classes.min(total - kept);
            if classes == 0 {
                continue;
            }
            if s.path.links.contains(&link) {
                on_link += classes;
                continue;
            }
            if let Some(delay) = e.delay_for(p, &s.path) {
                let mut path = s.path.clone();
                path.cost = delay;
                e.add(p, path, classes);
                kept += classes;
            }
        }
        e.unplaced[p] = total - kept;
    }
    let order = priority_order(&e);
    e.log = Some(Vec::new());
    for &p in &order {
        if e.unplaced[p] == 0 {
            continue;
        }
        match how {
            Reroute::Place => {
                e.fill_unplaced(p, Tier::Ceiling, true, true);
                e.fill_unplaced(p, Tier::Capacity, true, false);
                e.fill_unplaced(p, Tier::Capacity, false, false);
                e.fill_unplaced(p, Tier::Unlimited, false, false);
            }
            Reroute::ShortestPath => e.fill_unplaced(p, Tier::Unlimited, false, true),
        }
    }
    let log = e.log.take().unwrap_or_default();
    let moved = log.iter().map(|&(_, _, k)| k).sum();
    let left_budget = log
        .iter()
        .filter(|&&(p, id, _)| e.assigns[id].path.cost > e.budget(p))
        .map(|&(_, _, k)| k)
        .sum();
    let after = e.into_placement(placement.headroom.clone());
    let report = Report::check(&after_inputs, options.ceiling, &after);
    let at_risk = classes_at_risk(&after, &report);
    let result = CutResult {
        link,
        name: inputs
            .topology
            .links
            .get(link.get())
            .and_then(|l| l.name.clone()),
        classes_on_link: on_link,
        moved,
        left_budget,
        at_risk,
        after: report,
    };
    (result, after)
}

/// Classes on a path over a link past capacity (either way), plus those without a
/// working path.
pub(crate) fn classes_at_risk(placement: &Placement, report: &Report) -> u64 {
    let mut over = vec![false; report.loads.len() / 2];
    for l in &report.over_capacity {
        if let Some(o) = over.get_mut(l.link.get()) {
            *o = true;
        }
    }
    let on_full: u64 = placement
        .pairs
        .iter()
        .flat_map(|p| &p.shares)
        .filter(|s| {
            s.path
                .links
                .iter()
                .any(|l| over.get(l.get()) == Some(&true))
        })
        .map(|s| s.classes)
        .sum();
    on_full + report.classes_without_path()
}
