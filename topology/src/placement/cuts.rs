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
    let base = Base::new(inputs, options, placement);
    let (result, after) = cut_with(
        inputs,
        placement,
        &base,
        link,
        options,
        Reroute::Place,
        true,
    );
    // `after` is always built when asked for.
    Ok((result, after.unwrap_or_else(|| placement.clone())))
}

/// What every cut of one placement starts from, computed once for all of them: a
/// cut then costs what was on the cut link, not a pass over every class.
#[derive(Debug)]
pub(crate) struct Base {
    /// Per link direction: background plus every class on a working path, kbit/s.
    load: Vec<u64>,
    /// Per link: (pair, share index, classes) of the working shares that use it.
    on: Vec<Vec<(u32, u32, u64)>>,
    /// Per demand pair: its shares in the placement that work (index, classes kept).
    kept: Vec<Vec<(usize, u64)>>,
    /// Per demand pair: the placement pair, if any.
    matched: Vec<Option<usize>>,
    /// Classes with no working path before any cut: (pair, classes).
    pending: Vec<(usize, u64)>,
}

impl Base {
    pub fn new(inputs: &Inputs<'_>, options: &Options, placement: &Placement) -> Base {
        let matched = match_pairs(placement, inputs.demand);
        let mut e = Engine::new(inputs, options.ceiling, &placement.headroom);
        let mut on = vec![Vec::new(); inputs.topology.links.len()];
        let mut kept_all = Vec::with_capacity(matched.len());
        let mut pending = Vec::new();
        for (p, prev) in matched.iter().enumerate() {
            let total = e.unplaced[p];
            let need = e.need(p);
            let mut kept = 0u64;
            let mut mine = Vec::new();
            for (si, s) in prev
                .map_or(&[][..], |i| &placement.pairs[i].shares[..])
                .iter()
                .enumerate()
            {
                let classes = s.classes.min(total - kept);
                if classes == 0 || e.delay_for(p, &s.path).is_none() {
                    continue;
                }
                e.net.apply(&s.path, need, classes, true);
                kept += classes;
                mine.push((si, classes));
                for l in &s.path.links {
                    on[l.get()].push((p as u32, si as u32, classes));
                }
            }
            if total > kept {
                pending.push((p, total - kept));
            }
            kept_all.push(mine);
        }
        Base {
            load: e.net.load,
            on,
            kept: kept_all,
            matched,
            pending,
        }
    }
}

/// The cut itself, from the `base` of `placement`; the placement after it is
/// built only if `build`.
pub(crate) fn cut_with(
    inputs: &Inputs<'_>,
    placement: &Placement,
    base: &Base,
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
    e.net.load.clone_from(&base.load);
    e.unplaced.iter_mut().for_each(|u| *u = 0);
    let share = |p: usize, si: usize| -> Option<&PathShare> {
        base.matched[p].and_then(|i| placement.pairs[i].shares.get(si))
    };
    // Per pair with classes to move: the delay they had (the slowest), for order.
    let mut had: std::collections::BTreeMap<usize, Cost> = std::collections::BTreeMap::new();
    let on = base.on.get(link.get()).map_or(&[][..], |v| &v[..]);
    let mut on_link = 0u64;
    for &(p, si, classes) in on {
        let (p, si) = (p as usize, si as usize);
        if let Some(s) = share(p, si) {
            e.net.apply(&s.path, e.need(p), classes, false);
            e.unplaced[p] += classes;
            on_link += classes;
            let d = had.entry(p).or_insert(0);
            *d = (*d).max(s.path.cost);
        }
    }
    for &(p, classes) in &base.pending {
        e.unplaced[p] += classes;
        had.entry(p).or_insert(0);
    }
    // Least slack first, as in `place`, but measured on the path each pair had
    // (no search per cut: a cut of a line with 50,000 pairs on it stays cheap).
    let mut order: Vec<(i128, std::cmp::Reverse<u64>, usize)> = had
        .into_iter()
        .map(|(p, d)| {
            (
                e.budget(p) as i128 - d as i128,
                std::cmp::Reverse(e.pairs[p].classes),
                p,
            )
        })
        .collect();
    order.sort_unstable();
    for &(_, _, p) in &order {
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
        for (p, kept) in base.kept.iter().enumerate() {
            for &(si, classes) in kept {
                let stays = share(p, si).filter(|s| !s.path.links.contains(&link));
                if stays.is_some_and(|s| crosses(&s.path.links)) {
                    at_risk += classes;
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
    let after = build.then(|| {
        let kept: Vec<Vec<PathShare>> = base
            .kept
            .iter()
            .enumerate()
            .map(|(p, kept)| {
                kept.iter()
                    .filter_map(|&(si, classes)| {
                        let s = share(p, si)?;
                        (!s.path.links.contains(&link)).then(|| PathShare {
                            path: s.path.clone(),
                            classes,
                        })
                    })
                    .collect()
            })
            .collect();
        merge(e, kept, placement)
    });
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
