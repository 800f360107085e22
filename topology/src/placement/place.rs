//! A fresh placement: pairs in order of least slack, each filled greedily onto the
//! shortest paths with room, room freed for those that do not fit, the order
//! changed if some still do not, an exact search if the demand is small, the rest
//! placed by an explicit order of what to give up, then a pass that takes freed
//! room back.
//!
//! What to give up, in order, when a class fits nowhere within its budget and the
//! ceiling: first the N−1 headroom, then the ceiling (up to 100 % of capacity),
//! then the budget; only then does a class go on its shortest path regardless of
//! load. A class's budget is a promise to it; the ceiling is planning margin.

use super::engine::Engine;
use super::net::Tier;
use super::{
    exact, headroom, place_incremental, repair, validate, Inputs, Options, Placement,
    PlacementError,
};

/// Places every class of `inputs.demand`. Deterministic: the same inputs give the
/// same placement. With `options.n_minus_1`, keeps headroom for the loss of any
/// one undersea line where capacity allows (see `headroom.rs`).
///
/// The result is settled: re-placing it incrementally under the same inputs moves
/// nothing, so a placement in force is not disturbed by recomputing it. It is by
/// construction when the last improvement pass found nothing and no link is past
/// the ceiling (then no class has a faster path with room, none is over budget
/// with a path within budget, and none sits on a link to relieve); otherwise it is
/// run through [`place_incremental`] until it moves nothing, a bounded number of
/// times.
pub fn place(inputs: &Inputs<'_>, options: &Options) -> Result<Placement, PlacementError> {
    validate(inputs, options)?;
    let (mut p, settled) = if options.n_minus_1 {
        headroom::place_with_headroom(inputs, options)
    } else {
        let nominal = vec![[options.ceiling; 2]; inputs.topology.links.len()];
        place_against(inputs, options, nominal)
    };
    let settle = Options {
        max_moves: u64::MAX,
        ..options.clone()
    };
    for _ in 0..SETTLE_ROUNDS {
        if settled {
            break;
        }
        let r = place_incremental(&p, inputs, &settle)?;
        if r.moves.is_empty() {
            break;
        }
        p = r.placement;
    }
    Ok(p)
}

/// Most incremental passes to settle a fresh placement.
const SETTLE_ROUNDS: usize = 4;

/// Rounds of re-placing with the pairs that did not fit moved to the front.
const REORDER_ROUNDS: usize = 3;

/// One placement against per-link planning shares `headroom` (≤ the ceiling).
///
/// If some pairs do not fit, the whole placement is redone with those pairs first
/// (rip-up and re-place: the greedy order is what left them out), up to
/// [`REORDER_ROUNDS`] times while it helps; the round with the fewest classes left
/// out wins. If classes are still left out and the demand is small, an exact
/// search decides.
/// Also says whether the placement is settled (see [`place`]).
pub(crate) fn place_against(
    inputs: &Inputs<'_>,
    options: &Options,
    headroom: Vec<[f64; 2]>,
) -> (Placement, bool) {
    let reduced = headroom
        .iter()
        .any(|h| h.iter().any(|&s| s < options.ceiling));
    let tiers: &[Tier] = if reduced {
        &[Tier::Headroom, Tier::Ceiling]
    } else {
        &[Tier::Headroom]
    };
    let mut e = Engine::new(inputs, options.ceiling, &headroom);
    let first = priority_order(&e, (0..e.pairs.len()).collect());
    let short = fill_round(&mut e, &first, tiers, options);
    let mut next = promoted(&e, &first);
    let (mut short, mut e, mut order) = (short, e, first);
    for _ in 0..REORDER_ROUNDS {
        if short == 0 {
            break;
        }
        let mut again = Engine::new(inputs, options.ceiling, &headroom);
        let used = std::mem::take(&mut next);
        let s = fill_round(&mut again, &used, tiers, options);
        if s >= short {
            break; // reordering is not helping: the demand does not fit
        }
        next = promoted(&again, &used);
        (short, e, order) = (s, again, used);
    }
    if short > 0 {
        if let Some(exact) = exact::solve(inputs, options, &headroom, &order) {
            e = exact;
        }
    }
    place_leftovers(&mut e, &order);
    let converged = improve(&mut e, &order);
    let relieved = e.net.load.iter().zip(&e.net.ceiling).all(|(l, c)| l <= c);
    (e.into_placement(headroom), converged && relieved)
}

/// Greedy then repair under each tier in turn; returns the classes left out.
///
/// Repair runs only when few pairs are left out: it frees room pair by pair, which
/// pays for a handful; when thousands are left out the order is what is wrong,
/// and the next round (those pairs first) is the cheaper fix.
fn fill_round(e: &mut Engine<'_>, order: &[usize], tiers: &[Tier], options: &Options) -> u64 {
    for &tier in tiers {
        for &p in order {
            e.fill_unplaced(p, tier, true, true);
        }
        if e.unplaced.iter().filter(|&&u| u > 0).count() <= REPAIR_PAIRS {
            repair::run(e, order, tier, options.repair_paths);
        }
    }
    e.unplaced.iter().sum()
}

/// Most pairs left out for which a round tries to free room.
const REPAIR_PAIRS: usize = 256;

/// `order` with the pairs that have classes left out moved to the front.
fn promoted(e: &Engine<'_>, order: &[usize]) -> Vec<usize> {
    let (mut failing, rest): (Vec<usize>, Vec<usize>) =
        order.iter().partition(|&&p| e.unplaced[p] > 0);
    failing.extend(rest);
    failing
}

/// `pairs` by how little room they have to detour: budget minus shortest delay,
/// least first (the far pairs have the fewest paths within budget, so they choose
/// first); then more classes first; then the demand's order. Unreachable pairs
/// first (they fail at once).
pub(crate) fn priority_order(e: &Engine<'_>, pairs: Vec<usize>) -> Vec<usize> {
    let shortest = e.shortest_delays(&pairs);
    let mut keyed: Vec<_> = pairs
        .into_iter()
        .zip(shortest)
        .map(|(p, d)| {
            let slack = d.map(|d| e.budget(p) as i128 - d as i128);
            ((slack, std::cmp::Reverse(e.pairs[p].classes), p), p)
        })
        .collect();
    keyed.sort_unstable_by_key(|k| k.0);
    keyed.into_iter().map(|k| k.1).collect()
}

/// What does not fit within budget and ceiling: give up the ceiling (to 100 %),
/// then the budget, then capacity itself. Classes with no path at all stay unplaced.
pub(crate) fn place_leftovers(e: &mut Engine<'_>, order: &[usize]) {
    for &p in order {
        if e.unplaced[p] == 0 {
            continue;
        }
        e.fill_unplaced(p, Tier::Ceiling, true, false);
        e.fill_unplaced(p, Tier::Capacity, true, false);
        e.fill_unplaced(p, Tier::Capacity, false, false);
        e.fill_unplaced(p, Tier::Unlimited, false, false);
    }
}

/// Most passes of [`improve`]; each strictly lowers total latency, so it ends
/// anyway, this bounds the work.
const IMPROVE_PASSES: usize = 8;

/// Moves classes onto strictly faster paths with room (under the headroom tier,
/// within budget) until a pass finds none. A pass ends with fresh trees, so when
/// it moves nothing, no class has a faster path with room: the fixed point the
/// incremental band is measured against. True if it got there within
/// [`IMPROVE_PASSES`].
pub(crate) fn improve(e: &mut Engine<'_>, order: &[usize]) -> bool {
    for _ in 0..IMPROVE_PASSES {
        e.cache.clear();
        let mut moved = false;
        for &p in order {
            let pd = e.pairs[p];
            let need = e.need(p);
            let budget = e.budget(p);
            // Moves append to the pair's list; those need no second look.
            let mut next = e.first_of(p);
            while let Some(id) = next {
                next = e.next_of(id);
                if e.assigns[id].classes == 0 {
                    continue;
                }
                let (src, dst, svc) = (pd.src, pd.dst, pd.service);
                let tier = Tier::Headroom;
                let Some(best) = e.cache.cost(&e.net, src, dst, svc, need, tier, budget) else {
                    break; // nothing with room for this pair
                };
                let current = e.net.delay_of(&e.assigns[id].path);
                if current.is_some_and(|c| best >= c) {
                    continue;
                }
                let Some((q, fit)) = e.cache.path(&e.net, src, dst, svc, need, tier, budget) else {
                    break;
                };
                let k = e.assigns[id].classes.min(fit);
                if k > 0 {
                    e.shift(id, q, k);
                    moved = true;
                }
            }
        }
        if !moved {
            return true;
        }
    }
    false
}
