//! Freeing room for a pair the greedy pass could not fit: on one of its k shortest
//! paths within budget, move classes of other pairs off the full links onto their
//! own detours (within their budgets, with room, avoiding those links), then place
//! the pair there. Moves that do not end with room for at least one class are
//! undone. One level deep: a detour must already have room.
//!
//! Bounded: at most [`WORK`] shortest-path searches per run, so a fleet where many
//! pairs do not fit still finishes; what is left goes to the fallback tiers and is
//! reported.

use super::engine::Engine;
use super::net::Tier;
use crate::paths::{k_shortest_paths, Metric, Path};

/// Most detour searches in one run (a few ms on the shipped world, well under a
/// second on 2,000 nodes): a demand that does not fit spends no more than this
/// finding out.
const WORK: usize = 10_000;
/// Most assignments tried as movers for one full link direction in one attempt…
const MOVERS_PER_LINK: usize = 64;
/// …chosen (most slack first) among at most this many of its users.
const SCAN_PER_LINK: usize = 4096;

/// Tries to place every pair's unplaced classes under `tier` by freeing room.
pub(crate) fn run(e: &mut Engine<'_>, order: &[usize], tier: Tier, k: usize) {
    if order.iter().all(|&p| e.unplaced[p] == 0) {
        return;
    }
    let metric = Metric::new(e.net.delay.clone());
    let mut work = WORK;
    for &p in order {
        if e.unplaced[p] == 0 || work == 0 {
            continue;
        }
        let pd = e.pairs[p];
        let budget = e.budget(p);
        let candidates = k_shortest_paths(&e.net.graph, &metric, pd.src, pd.dst, k);
        for path in candidates.into_iter().filter(|c| c.cost <= budget) {
            loop {
                let fit = e.net.fit(&path, e.need(p), tier);
                if fit > 0 {
                    let n = fit.min(e.unplaced[p]);
                    e.add(p, path.clone(), n);
                    e.unplaced[p] -= n;
                }
                if e.unplaced[p] == 0 || !free(e, p, &path, tier, &mut work) {
                    break;
                }
            }
            if e.unplaced[p] == 0 {
                break;
            }
        }
    }
    // Loads fell where classes moved: cached trees may miss paths that opened.
    e.cache.clear();
}

/// Moves other pairs' classes off the links of `path` that lack room for `pair`'s
/// unplaced classes. True if afterwards at least one class of `pair` fits; if not,
/// every move made here is undone.
fn free(e: &mut Engine<'_>, pair: usize, path: &Path, tier: Tier, work: &mut usize) -> bool {
    let need = e.need(pair);
    let want = e.unplaced[pair];
    let dirs: Vec<(usize, u64)> = e
        .net
        .dirs(path)
        .flat_map(|(f, r)| [(f, need.fwd), (r, need.rev)])
        .filter(|&(d, k)| k > 0 && e.net.load[d].saturating_add(k) > e.net.limit(tier, d))
        .collect();
    // Detours avoid the links being freed. They may share the path's other links:
    // if that takes the room the pair needs, the final check undoes it all.
    let mut banned = vec![false; e.net.graph.link_count()];
    for &(d, _) in &dirs {
        banned[d / 2] = true;
    }
    // (mover's new assignment, its old path, classes): to undo.
    let mut undo: Vec<(usize, std::sync::Arc<Path>, u64)> = Vec::new();
    for (dir, per_class) in dirs {
        let limit = e.net.limit(tier, dir);
        let wanted = per_class.saturating_mul(want);
        let mut deficit = e.net.load[dir].saturating_add(wanted).saturating_sub(limit);
        if deficit == 0 {
            continue;
        }
        let link = dir / 2;
        let mut movers: Vec<(i128, usize, u64)> = e.users[link]
            .iter()
            .copied()
            .filter(|&id| e.assigns[id].classes > 0 && e.assigns[id].pair != pair)
            .take(SCAN_PER_LINK)
            .filter_map(|id| {
                let a = &e.assigns[id];
                let n = e.need(a.pair);
                // What one class of this mover puts on `dir`.
                let on_dir = e
                    .net
                    .dirs(&a.path)
                    .find_map(|(f, r)| {
                        (f == dir)
                            .then_some(n.fwd)
                            .or_else(|| (r == dir).then_some(n.rev))
                    })
                    .unwrap_or(0);
                let slack = e.budget(a.pair) as i128 - a.path.cost as i128;
                (on_dir > 0).then_some((slack, id, on_dir))
            })
            .collect();
        // Most slack first: those detour at the least risk to their budget.
        movers.sort_by_key(|&(slack, id, _)| (std::cmp::Reverse(slack), id));
        for (_, id, on_dir) in movers.into_iter().take(MOVERS_PER_LINK) {
            if deficit == 0 || *work == 0 {
                break;
            }
            *work -= 1;
            let a = &e.assigns[id];
            let (mp, mneed, mbudget) = (a.pair, e.need(a.pair), e.budget(a.pair));
            let pd = e.pairs[mp];
            let Some(alt) = e
                .net
                .shortest(pd.src, pd.dst, mneed, tier, mbudget, Some(&banned))
            else {
                continue;
            };
            let take = e.assigns[id]
                .classes
                .min(deficit.div_ceil(on_dir))
                .min(e.net.fit(&alt, mneed, tier));
            if take == 0 {
                continue;
            }
            let old = e.assigns[id].path.clone();
            e.remove(id, take);
            let new_id = e.add(mp, alt, take);
            undo.push((new_id, old, take));
            deficit = deficit.saturating_sub(take.saturating_mul(on_dir));
        }
    }
    if e.net.fit(path, need, tier) > 0 {
        return true;
    }
    for (new_id, old, take) in undo.into_iter().rev() {
        let mp = e.assigns[new_id].pair;
        e.remove(new_id, take);
        e.add(mp, old, take);
    }
    false
}
