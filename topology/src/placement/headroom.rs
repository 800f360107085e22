//! N−1 headroom: place, cut every undersea line in turn, and where a cut leaves a
//! link past 100 %, lower that link's planning share by its excess and place again.
//!
//! A link that overflows when some line fails lacked spare room for that failure:
//! planning it lower moves classes off it in normal operation (onto links that have
//! room), so that it has the room when the line fails (the SWAN idea: keep spare
//! capacity for the change). Shares only go down, by at least a step each round;
//! the rounds are bounded, and stop once the placement itself falls short of
//! ceiling or budget (headroom is kept only where the fleet can spare it). The best
//! round wins: first the fewest shortfalls of
//! the placement itself (ceiling and budget come before headroom), then the fewest
//! classes at risk over all cuts, then the lowest total latency. Where no round
//! clears every cut, the cut results say which line and how many classes are at
//! risk.

use super::cuts::{cut_with, Base, Reroute};
use super::net::limit_kbps;
use super::place::place_against;
use super::report::Report;
use super::{Dir, Inputs, Options, Placement};
use crate::model::{LinkIdx, LinkKind};

/// Most placements tried.
const ROUNDS: usize = 8;
/// Extra share of a link's capacity taken off on top of its overload, so that
/// rounds make headway.
const STEP: f64 = 0.01;

/// The placement, and whether it is settled (see `place`).
pub(crate) fn place_with_headroom(inputs: &Inputs<'_>, options: &Options) -> (Placement, bool) {
    let t = inputs.topology;
    let lines: Vec<LinkIdx> = (0..t.links.len())
        .map(|l| LinkIdx(l as u32))
        .filter(|&l| t.link(l).kind == LinkKind::Undersea && inputs.metric.cost(l).is_some())
        .collect();
    let mut shares = vec![[options.ceiling; 2]; t.links.len()];
    let mut best: Option<(Score, (Placement, bool))> = None;
    for _ in 0..ROUNDS {
        let (placement, settled) = place_against(inputs, options, shares.clone());
        let report = Report::check(inputs, options.ceiling, &placement);
        let mut at_risk = 0u64;
        // Per link direction: the worst overload any one cut left on it, kbit/s.
        let mut excess: Vec<u64> = vec![0; 2 * t.links.len()];
        let base = Base::new(inputs, options, &placement);
        for &line in &lines {
            let (cut, _) = cut_with(
                inputs,
                &placement,
                &base,
                line,
                options,
                Reroute::Place,
                false,
            );
            at_risk += cut.at_risk;
            for l in &cut.over_capacity {
                let over = l
                    .load_kbps
                    .saturating_sub(l.capacity_kbps.unwrap_or(u64::MAX));
                let e = &mut excess[2 * l.link.get() + l.dir.index()];
                *e = (*e).max(over);
            }
        }
        let score = Score {
            over_ceiling: report.over_ceiling.len(),
            short: report.classes_over_budget() + report.classes_without_path(),
            at_risk,
            latency: total_latency(&placement),
        };
        // Headroom only ever makes the placement itself worse: once it is short of
        // ceiling or budget, lowering more cannot help.
        let stop = at_risk == 0 || !report.is_clean() || excess.iter().all(|&e| e == 0);
        if best.as_ref().is_none_or(|(b, _)| score < *b) {
            best = Some((score, (placement, settled)));
        }
        if stop {
            break;
        }
        for (l, share) in shares.iter_mut().enumerate() {
            for dir in Dir::BOTH {
                let over = excess[2 * l + dir.index()];
                let cap = limit_kbps(inputs.capacity.get(LinkIdx(l as u32), dir), 1.0);
                if over == 0 || cap == u64::MAX || cap == 0 {
                    continue;
                }
                let s = &mut share[dir.index()];
                *s = (*s - over as f64 / cap as f64 - STEP).max(0.0);
            }
        }
    }
    match best {
        Some((_, p)) => p,
        // ROUNDS > 0, so a round ran; keep a placement against the plain ceiling anyway.
        None => place_against(inputs, options, vec![[options.ceiling; 2]; t.links.len()]),
    }
}

/// Lower is better, field by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    over_ceiling: usize,
    short: u64,
    at_risk: u64,
    latency: u128,
}

fn total_latency(p: &Placement) -> u128 {
    p.pairs
        .iter()
        .flat_map(|pp| &pp.shares)
        .map(|s| u128::from(s.classes) * u128::from(s.path.cost))
        .sum()
}
