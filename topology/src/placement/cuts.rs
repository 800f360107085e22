//! What losing one link does to a placement: the classes on it are re-placed, every
//! other class stays where it is, and the result is checked against capacity.
//!
//! After a loss the planning margin is spent: re-placed classes go within budget
//! and ceiling if they can, then within budget up to 100 %, then over budget up to
//! 100 %, and only then past capacity. The delay-only baseline re-places them on
//! their new shortest paths, as routing alone would.

use super::engine::{match_pairs, Engine};
use super::net::Tier;
use super::report::{link_loads, worst_of, LinkLoad};
use super::{validate, Inputs, Options, PairPlacement, PathShare, Placement, PlacementError};
use crate::model::LinkIdx;
use crate::paths::Cost;

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
    /// Classes left with no path at all.
    pub stranded: u64,
    /// Classes on a path crossing a link loaded past capacity after the cut (moved or
    /// not: a full line hurts everyone on it), plus the stranded.
    pub at_risk: u64,
    /// Every link direction after the cut, in link order, a → b before b → a.
    pub loads: Vec<LinkLoad>,
    /// Link directions past the ceiling after the cut, worst first.
    pub over_ceiling: Vec<LinkLoad>,
    /// Link directions past capacity after the cut, worst first.
    pub over_capacity: Vec<LinkLoad>,
}

impl CutResult {
    /// The most loaded link direction of known capacity after the cut.
    pub fn worst(&self) -> Option<LinkLoad> {
        worst_of(&self.loads)
    }
}

/// How classes on a lost link find new paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reroute {
    /// Placement's tiers (budget and load aware).
    Place,
    /// The shortest path, whatever the load (the baseline).
    ShortestPath,
}

/// Cuts `link` under `placement`: its classes re-placed, the others kept. Returns
/// what the cut does and the placement after it.
pub fn cut(
    inputs: &Inputs<'_>,
    placement: &Placement,
    link: LinkIdx,
    options: &Options,
) -> Result<(CutResult, Placement), PlacementError> {
    validate(inputs, options)?;
    let matched = match_pairs(placement, inputs.demand);
    let (result, after) = cut_with(
        inputs,
        placement,
        &matched,
        link,
        options,
        Reroute::Place,
        true,
    );
    // `after` is always built when asked for.
    Ok((result, after.unwrap_or_else(|| placement.clone())))
}

/// The cut itself. `matched` is `match_pairs(placement, demand)`, computed once for
/// all the cuts of one placement. The classes that stay are only loads here (no
/// per-class state), so a cut costs one pass over the placement plus the re-placing
/// of what was on the link; the placement after it is built only if `build`.
pub(crate) fn cut_with(
    inputs: &Inputs<'_>,
    placement: &Placement,
    matched: &[Option<usize>],
    link: LinkIdx,
    options: &Options,
    how: Reroute,
    build: bool,
) -> (CutResult, Option<Placement>) {
    let metric = inputs.metric.with_link_down(link);
    let after_inputs = Inputs {
        metric: &metric,
        ..*inputs
    };
    let mut e = Engine::new(&after_inputs, options.ceiling, &placement.headroom);
    // Per pair, the shares that stay (only kept when the placement is built).
    let mut kept_shares: Vec<Vec<PathShare>> = Vec::new();
    let mut on_link = 0u64;
    // Per pair with classes to move: the delay they had (the slowest), for order.
    let mut had: Vec<(usize, Cost)> = Vec::new();
    for (p, prev) in matched.iter().enumerate() {
        let total = e.unplaced[p];
        let need = e.need(p);
        let mut kept = 0u64;
        let mut mine = Vec::new();
        let mut slowest: Cost = 0;
        for s in prev.map_or(&[][..], |i| &placement.pairs[i].shares[..]) {
            let classes = s.classes.min(total - kept);
            if classes == 0 {
                continue;
            }
            if s.path.links.contains(&link) {
                on_link += classes;
                slowest = slowest.max(s.path.cost);
                continue;
            }
            if e.delay_for(p, &s.path).is_some() {
                e.net.apply(&s.path, need, classes, true);
                kept += classes;
                if build {
                    mine.push(PathShare {
                        path: s.path.clone(),
                        classes,
                    });
                }
            }
        }
        e.unplaced[p] = total - kept;
        if total > kept {
            had.push((p, slowest));
        }
        if build {
            kept_shares.push(mine);
        }
    }
    // Least slack first, as in `place`, but measured on the path each pair had
    // (no search per cut: a cut of a line with 50,000 pairs on it stays cheap).
    had.sort_by_key(|&(p, d)| {
        (
            e.budget(p) as i128 - d as i128,
            std::cmp::Reverse(e.pairs[p].classes),
            p,
        )
    });
    let order: Vec<usize> = had.into_iter().map(|h| h.0).collect();
    for &p in &order {
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
    // Every assignment is a moved class: the kept ones are loads only.
    let moved = e.assigns.iter().map(|a| a.classes).sum();
    let left_budget = e
        .assigns
        .iter()
        .filter(|a| a.path.cost > e.budget(a.pair))
        .map(|a| a.classes)
        .sum();
    let stranded: u64 = e.unplaced.iter().sum();
    let (loads, over_ceiling, over_capacity) =
        link_loads(&after_inputs, options.ceiling, |l, d| e.net.load[2 * l + d]);
    let mut full = vec![false; inputs.topology.links.len()];
    for l in &over_capacity {
        full[l.link.get()] = true;
    }
    let crosses = |links: &[LinkIdx]| links.iter().any(|l| full[l.get()]);
    let mut at_risk = stranded;
    if !over_capacity.is_empty() {
        at_risk += e
            .assigns
            .iter()
            .filter(|a| crosses(&a.path.links))
            .map(|a| a.classes)
            .sum::<u64>();
        for &i in matched.iter().flatten() {
            for s in &placement.pairs[i].shares {
                if !s.path.links.contains(&link) && crosses(&s.path.links) {
                    at_risk += s.classes;
                }
            }
        }
    }
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
        stranded,
        at_risk,
        loads,
        over_ceiling,
        over_capacity,
    };
    let after = build.then(|| merge(e, kept_shares, placement));
    (result, after)
}

/// The placement after a cut: the shares that stayed plus the re-placed ones.
fn merge(e: Engine<'_>, kept: Vec<Vec<PathShare>>, before: &Placement) -> Placement {
    let moved = e.into_placement(before.headroom.clone());
    let pairs = moved
        .pairs
        .into_iter()
        .zip(kept)
        .map(|(pp, mut shares)| {
            for s in pp.shares {
                match shares.iter_mut().find(|k| k.path.links == s.path.links) {
                    Some(k) => k.classes += s.classes,
                    None => shares.push(s),
                }
            }
            shares.sort_by(|x, y| (x.path.cost, &x.path.links).cmp(&(y.path.cost, &y.path.links)));
            PairPlacement { shares, ..pp }
        })
        .collect();
    Placement { pairs, ..moved }
}
