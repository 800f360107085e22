//! The next placement from the one in force: a class keeps its path unless the path
//! is broken, a link on it is past the ceiling, it is over budget while a path within
//! budget has room, or a much better path has room (faster by more than
//! `better_ratio` and `better_min_us`). Never more than `max_moves` classes move;
//! what had to move and could not is counted as held, for the next run.
//!
//! Moves happen in that order of need. New classes are placed (not moves); classes
//! gone from the demand leave their slowest paths first. Time-based holds (how long
//! a better path must last) are the caller's: this takes no clock.

use std::sync::Arc;

use super::engine::{match_pairs, Engine};
use super::net::Tier;
use super::place::priority_order;
use super::{validate, Inputs, Options, Placement, PlacementError};
use crate::model::NodeIdx;
use crate::paths::{Cost, Path};

/// Why a class moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MoveReason {
    /// A link on its path is down (or the path no longer exists).
    Broken,
    /// A link on its path was loaded past the ceiling.
    OverCeiling,
    /// Its path was slower than its budget and one within budget had room.
    OverBudget,
    /// A path faster by more than the band had room.
    Better,
}

/// Some classes of one pair moved from one path to another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub src: NodeIdx,
    pub dst: NodeIdx,
    pub service: String,
    pub from: Arc<Path>,
    pub to: Arc<Path>,
    pub classes: u64,
    pub reason: MoveReason,
}

/// A re-placement and how it differs from the one before.
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    pub placement: Placement,
    /// In the order they were decided; their classes add up to at most `max_moves`.
    pub moves: Vec<Move>,
    /// Classes that had to move (broken path, link past the ceiling) but did not,
    /// because `max_moves` was reached; broken ones stay on their old path.
    pub held: u64,
    /// Classes that were on no path before (new to the demand, or unplaced), now
    /// placed where they fit (or still unplaced if nothing reaches).
    pub added: u64,
    /// Classes gone from the demand, taken off.
    pub removed: u64,
}

impl Replacement {
    pub fn moved(&self) -> u64 {
        self.moves.iter().map(|m| m.classes).sum()
    }
}

/// Re-places from `previous` under new `inputs` (same topology: node and link
/// indices keep their meaning). Keeps `previous.headroom`; a fresh [`super::place`]
/// recomputes it.
pub fn place_incremental(
    previous: &Placement,
    inputs: &Inputs<'_>,
    options: &Options,
) -> Result<Replacement, PlacementError> {
    validate(inputs, options)?;
    let links = inputs.topology.links.len();
    let headroom: Vec<[f64; 2]> = if previous.headroom.len() == links {
        previous
            .headroom
            .iter()
            .map(|h| h.map(|s| s.min(options.ceiling)))
            .collect()
    } else {
        vec![[options.ceiling; 2]; links]
    };
    let mut e = Engine::new(inputs, options.ceiling, &headroom);
    let mut r = Run {
        moves: Vec::new(),
        left: options.max_moves,
        held: 0,
    };
    let (mut added, mut removed) = (0u64, 0u64);
    let mut broken: Vec<(usize, Arc<Path>, u64)> = Vec::new();
    for (p, prev) in match_pairs(previous, inputs.demand).into_iter().enumerate() {
        let total = e.unplaced[p];
        let prev = prev.map_or(&[][..], |i| &previous.pairs[i].shares[..]);
        let had: u64 = prev.iter().map(|s| s.classes).sum();
        if had <= total && prev.iter().all(|s| s.classes > 0) {
            // The common case: nothing to take off, no need to sort.
            for s in prev {
                match e.delay_for(p, &s.path) {
                    Some(d) => {
                        let mut path = s.path.clone();
                        if path.cost != d {
                            Arc::make_mut(&mut path).cost = d;
                        }
                        e.add(p, path, s.classes);
                    }
                    None => broken.push((p, s.path.clone(), s.classes)),
                }
            }
            added += total - had;
            e.unplaced[p] = total - had;
            continue;
        }
        let mut shares: Vec<(Option<Cost>, Arc<Path>, u64)> = prev
            .iter()
            .filter(|s| s.classes > 0)
            .map(|s| (e.delay_for(p, &s.path), s.path.clone(), s.classes))
            .collect();
        // Fewer classes than before: the broken go first, then the slowest.
        shares.sort_by(|x, y| {
            let key = |s: &(Option<Cost>, Arc<Path>, u64)| (s.0.is_some(), std::cmp::Reverse(s.0));
            (key(x), &x.1.links).cmp(&(key(y), &y.1.links))
        });
        let mut have: u64 = shares.iter().map(|s| s.2).sum();
        for s in &mut shares {
            let cut = s.2.min(have.saturating_sub(total));
            s.2 -= cut;
            have -= cut;
            removed += cut;
        }
        for (delay, mut path, classes) in shares.into_iter().filter(|s| s.2 > 0) {
            match delay {
                Some(d) => {
                    if path.cost != d {
                        Arc::make_mut(&mut path).cost = d;
                    }
                    e.add(p, path, classes);
                }
                None => broken.push((p, path, classes)),
            }
        }
        added += total - have;
        e.unplaced[p] = total - have;
    }
    // Only pairs with classes to place need an order (the rest keep their paths).
    let needy: std::collections::BTreeSet<usize> = broken
        .iter()
        .map(|b| b.0)
        .chain((0..e.pairs.len()).filter(|&p| e.unplaced[p] > 0))
        .collect();
    let order = priority_order(&e, needy.into_iter().collect());
    let mut rank = vec![0usize; e.pairs.len()];
    for (i, &p) in order.iter().enumerate() {
        rank[p] = i;
    }
    broken.sort_by(|x, y| (rank[x.0], &x.1.links).cmp(&(rank[y.0], &y.1.links)));
    for (p, from, classes) in broken {
        r.rehome(&mut e, p, from, classes);
    }
    r.relieve(&mut e);
    e.log = None;
    for &p in &order {
        fill_all(&mut e, p);
    }
    r.improve(&mut e, options);
    Ok(Replacement {
        placement: e.into_placement(headroom),
        moves: r.moves,
        held: r.held,
        added,
        removed,
    })
}

/// Fills a pair's unplaced classes through every tier, best first.
fn fill_all(e: &mut Engine<'_>, p: usize) {
    if e.unplaced[p] == 0 {
        return;
    }
    e.fill_unplaced(p, Tier::Headroom, true, true);
    e.fill_unplaced(p, Tier::Ceiling, true, false);
    e.fill_unplaced(p, Tier::Capacity, true, false);
    e.fill_unplaced(p, Tier::Capacity, false, false);
    e.fill_unplaced(p, Tier::Unlimited, false, false);
}

struct Run {
    moves: Vec<Move>,
    /// Moves still allowed.
    left: u64,
    held: u64,
}

impl Run {
    fn record(
        &mut self,
        e: &Engine<'_>,
        p: usize,
        from: &Arc<Path>,
        to: usize,
        k: u64,
        why: MoveReason,
    ) {
        let pd = e.pairs[p];
        self.moves.push(Move {
            src: pd.src,
            dst: pd.dst,
            service: e.services[pd.service].clone(),
            from: from.clone(),
            to: e.assigns[to].path.clone(),
            classes: k,
            reason: why,
        });
        self.left -= k;
    }

    /// Classes on a broken path: placed anew as far as `max_moves` allows; the rest
    /// stay on the broken path (held).
    fn rehome(&mut self, e: &mut Engine<'_>, p: usize, from: Arc<Path>, classes: u64) {
        let k = classes.min(self.left);
        if k < classes {
            self.held += classes - k;
            e.add(p, from.clone(), classes - k);
        }
        if k == 0 {
            return;
        }
        e.log = Some(Vec::new());
        let before = e.unplaced[p];
        e.unplaced[p] = k;
        fill_all(e, p);
        let no_path = e.unplaced[p];
        e.unplaced[p] = before + no_path;
        for (_, id, n) in e.log.take().unwrap_or_default() {
            self.record(e, p, &from, id, n, MoveReason::Broken);
        }
    }

    /// Moves classes off link directions past the ceiling, the most flexible first,
    /// onto paths within budget that avoid the link and have room.
    fn relieve(&mut self, e: &mut Engine<'_>) {
        let mut over: Vec<(u64, usize)> = (0..e.net.load.len())
            .filter(|&d| e.net.load[d] > e.net.ceiling[d])
            .map(|d| (e.net.load[d] - e.net.ceiling[d], d))
            .collect();
        over.sort_by_key(|&(excess, d)| (std::cmp::Reverse(excess), d));
        for (_, dir) in over {
            let link = dir / 2;
            let mut banned = vec![false; e.net.graph.link_count()];
            banned[link] = true;
            let mut users: Vec<(i128, usize, u64)> = e.users[link]
                .iter()
                .copied()
                .filter(|&id| e.assigns[id].classes > 0)
                .filter_map(|id| {
                    let a = &e.assigns[id];
                    let n = e.need(a.pair);
                    let on_dir = e
                        .net
                        .dirs(&a.path)
                        .find_map(|(f, r)| {
                            (f == dir).then_some(n.fwd).or((r == dir).then_some(n.rev))
                        })
                        .unwrap_or(0);
                    let slack = e.budget(a.pair) as i128 - a.path.cost as i128;
                    (on_dir > 0).then_some((slack, id, on_dir))
                })
                .collect();
            users.sort_by_key(|&(slack, id, _)| (std::cmp::Reverse(slack), id));
            for (_, id, on_dir) in users {
                let excess = e.net.load[dir].saturating_sub(e.net.ceiling[dir]);
                if excess == 0 {
                    break;
                }
                if self.left == 0 {
                    self.held += excess.div_ceil(on_dir);
                    break;
                }
                let p = e.assigns[id].pair;
                let (pd, need, budget) = (e.pairs[p], e.need(p), e.budget(p));
                let alt = [Tier::Headroom, Tier::Ceiling]
                    .into_iter()
                    .find_map(|tier| {
                        let q =
                            e.net
                                .shortest(pd.src, pd.dst, need, tier, budget, Some(&banned))?;
                        let fit = e.net.fit(&q, need, tier);
                        Some((q, fit))
                    });
                let Some((q, fit)) = alt else { continue };
                let k = e.assigns[id]
                    .classes
                    .min(excess.div_ceil(on_dir))
                    .min(fit)
                    .min(self.left);
                if k == 0 {
                    continue;
                }
                let from = e.assigns[id].path.clone();
                e.remove(id, k);
                let to = e.add(p, q, k);
                self.record(e, p, &from, to, k, MoveReason::OverCeiling);
            }
        }
    }

    /// Over-budget classes with a path within budget that has room, then classes
    /// with a much faster path that has room, largest gain first.
    fn improve(&mut self, e: &mut Engine<'_>, o: &Options) {
        e.cache.clear();
        let mut wanted: Vec<(MoveReason, std::cmp::Reverse<Cost>, usize, usize, Path)> = Vec::new();
        for p in 0..e.pairs.len() {
            let (pd, need, budget) = (e.pairs[p], e.need(p), e.budget(p));
            let mut next = e.first_of(p);
            while let Some(id) = next {
                next = e.next_of(id);
                let a = &e.assigns[id];
                if a.classes == 0 {
                    continue;
                }
                let (src, dst, svc, tier) = (pd.src, pd.dst, pd.service, Tier::Headroom);
                let Some(best) = e.cache.cost(&e.net, src, dst, svc, need, tier, budget) else {
                    break;
                };
                let current = a.path.cost;
                let gain = current.saturating_sub(best);
                let why = if current > budget {
                    MoveReason::OverBudget
                } else if gain as f64 > o.better_ratio * current as f64 && gain > o.better_min_us {
                    MoveReason::Better
                } else {
                    continue;
                };
                let Some((q, _)) = e.cache.path(&e.net, src, dst, svc, need, tier, budget) else {
                    break;
                };
                wanted.push((why, std::cmp::Reverse(gain), p, id, q));
            }
        }
        wanted.sort_by_key(|x| (x.0, x.1, x.2, x.3));
        for (why, _, _, id, q) in wanted {
            if self.left == 0 {
                break;
            }
            let p = e.assigns[id].pair;
            let need = e.need(p);
            let k = e.assigns[id]
                .classes
                .min(e.net.fit(&q, need, Tier::Headroom))
                .min(self.left);
            if k == 0 || q.links == e.assigns[id].path.links {
                continue;
            }
            let from = e.assigns[id].path.clone();
            e.remove(id, k);
            let to = e.add(p, q, k);
            self.record(e, p, &from, to, k, why);
        }
    }
}
