//! Exact search for small demands: when the greedy pass, repairs and reordering still
//! leave classes out, and the demand is small (at most [`MAX_PAIRS`] pairs and
//! [`MAX_CLASSES`] classes), try every split of every pair's classes over its paths
//! within budget, branch and bound on total latency, under the ceiling.
//!
//! Placing integer classes on shared links is integer multi-commodity flow, which
//! is NP-hard: no fast method finds a placement whenever one exists. The heuristics
//! do well at scale, where a class is a sliver of a line; on a handful of classes a
//! single unlucky choice matters and enumeration is cheap, so this settles it. The
//! search stops after `Options::exact_steps` steps; it is exact when it finishes and
//! each pair has fewer than [`PATHS`] paths within budget.

use super::engine::Engine;
use super::net::{Need, Tier};
use super::{Inputs, Options};
use crate::paths::{k_shortest_paths, Cost, Metric, Path};

/// Largest demand searched: pairs with classes…
const MAX_PAIRS: usize = 16;
/// …and classes in all.
const MAX_CLASSES: u64 = 64;
/// Candidate paths per pair.
const PATHS: usize = 32;

/// A placement of every class within budget and ceiling, the fastest the search
/// found; `None` if there is none, the demand is too large, or the steps ran out
/// first.
pub(crate) fn solve<'a>(
    inputs: &Inputs<'a>,
    options: &Options,
    headroom: &[[f64; 2]],
    order: &[usize],
) -> Option<Engine<'a>> {
    let mut e = Engine::new(inputs, options.ceiling, headroom);
    let pairs: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&p| e.pairs[p].classes > 0)
        .collect();
    let total: u64 = pairs.iter().map(|&p| e.pairs[p].classes).sum();
    if options.exact_steps == 0 || pairs.len() > MAX_PAIRS || total > MAX_CLASSES {
        return None;
    }
    let metric = Metric::new(e.net.delay.clone());
    let mut s = Search {
        pairs: Vec::with_capacity(pairs.len()),
        steps: options.exact_steps,
        best: None,
        stack: Vec::new(),
    };
    for &p in &pairs {
        let pd = e.pairs[p];
        let budget = e.budget(p);
        let paths: Vec<Path> = k_shortest_paths(&e.net.graph, &metric, pd.src, pd.dst, PATHS)
            .into_iter()
            .filter(|c| c.cost <= budget)
            .collect();
        if paths.is_empty() {
            return None;
        }
        s.pairs.push((p, e.need(p), pd.classes, paths));
    }
    // rest[i]: the least latency pairs i.. can have (all on their fastest path).
    let mut rest = vec![0u128; s.pairs.len() + 1];
    for i in (0..s.pairs.len()).rev() {
        let (_, _, classes, paths) = &s.pairs[i];
        rest[i] = rest[i + 1] + u128::from(*classes) * u128::from(paths[0].cost);
    }
    let first = s.pairs[0].2;
    s.go(&mut e, &rest, 0, 0, first, 0);
    let (_, chosen) = s.best?;
    let mut out = Engine::new(inputs, options.ceiling, headroom);
    for (i, j, k) in chosen {
        let (p, _, _, paths) = &s.pairs[i];
        out.add(*p, paths[j].clone(), k);
        out.unplaced[*p] -= k;
    }
    Some(out)
}

/// (pair index, path index, classes) for each split chosen.
type Splits = Vec<(usize, usize, u64)>;

struct Search {
    /// (pair, need, classes, paths within budget fastest first).
    pairs: Vec<(usize, Need, u64, Vec<Path>)>,
    steps: u64,
    /// Total latency and (pair index, path index, classes) of the best found.
    best: Option<(u128, Splits)>,
    stack: Splits,
}

impl Search {
    /// Places `left` classes of pair `i` on its paths `j..`, then the pairs after it.
    fn go(&mut self, e: &mut Engine<'_>, rest: &[u128], i: usize, j: usize, left: u64, lat: u128) {
        if i == self.pairs.len() {
            if self.best.as_ref().is_none_or(|(b, _)| lat < *b) {
                self.best = Some((lat, self.stack.clone()));
            }
            return;
        }
        if self.steps == 0 {
            return;
        }
        self.steps -= 1;
        if left == 0 {
            let next = self.pairs.get(i + 1).map_or(0, |x| x.2);
            return self.go(e, rest, i + 1, 0, next, lat);
        }
        let Some(path) = self.pairs[i].3.get(j).cloned() else {
            return;
        };
        let cost: Cost = path.cost;
        // Paths are fastest first: nothing below can beat this bound.
        let bound = lat + u128::from(left) * u128::from(cost) + rest[i + 1];
        if self.best.as_ref().is_some_and(|(b, _)| bound >= *b) {
            return;
        }
        let need = self.pairs[i].1;
        let fit = e.net.fit(&path, need, Tier::Ceiling).min(left);
        for k in (0..=fit).rev() {
            if k > 0 {
                e.net.apply(&path, need, k, true);
                self.stack.push((i, j, k));
            }
            let lat_k = lat + u128::from(k) * u128::from(cost);
            self.go(e, rest, i, j + 1, left - k, lat_k);
            if k > 0 {
                e.net.apply(&path, need, k, false);
                self.stack.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demand::{ClassProfile, Demand, Direction, PairDemand, ServiceSpec};
    use crate::model::{LinkIdx, NodeIdx};
    use crate::placement::{Capacities, Report};

    /// n0 — n1 — n2 — n0, 1 ms each. 4 classes n0 → n1 and 3 back, 10 kbit/s
    /// forward and 5 back each; n0 → n1 holds 30 kbit/s at the ceiling, n1 → n2 25.
    /// Only 2 + 2 direct (and the rest around) fits: each pair's best split depends
    /// on the other's.
    fn swap_case(n1_n2_kbps: u64) -> (crate::Topology, Metric, Capacities, Demand) {
        let y = "version: 1\nnodes:\n\
  - { id: n0, city: A, country: US, region: r, lat: 0, lon: 0, addr: \"127.0.0.1:1\" }\n\
  - { id: n1, city: B, country: US, region: r, lat: 1, lon: 1, addr: \"127.0.0.1:2\" }\n\
  - { id: n2, city: C, country: US, region: r, lat: 2, lon: 2, addr: \"127.0.0.1:3\" }\n\
links:\n\
  - { between: [n0, n1], kind: terrestrial, delay_ms: 1 }\n\
  - { between: [n0, n2], kind: terrestrial, delay_ms: 1 }\n\
  - { between: [n1, n2], kind: terrestrial, delay_ms: 1 }\n";
        let t = crate::parse("swap.yaml", y).expect("valid");
        let m = Metric::expected_delay(&t);
        let cap = Capacities::new(vec![
            [Some(38), None],
            [None, None],
            [Some(n1_n2_kbps), None],
        ]);
        let d = |v| Direction {
            audio_kbps: 0,
            video_kbps: v,
            signalling_kbps: 0,
        };
        let profile = ClassProfile {
            forward: d(10),
            reverse: d(5),
        };
        let service = ServiceSpec {
            profile,
            ..ServiceSpec::default()
        };
        let pair = |s, d, classes| PairDemand {
            src: NodeIdx(s),
            dst: NodeIdx(d),
            service: 0,
            classes,
        };
        let demand = Demand::new(vec![service], [pair(0, 1, 4), pair(1, 0, 3)]);
        (t, m, cap, demand)
    }

    #[test]
    fn finds_the_split_that_needs_both_pairs_to_give_way() {
        let (t, m, cap, d) = swap_case(32);
        let inputs = Inputs {
            topology: &t,
            metric: &m,
            capacity: &cap,
            background: None,
            demand: &d,
        };
        let o = Options::default();
        let shares = vec![[o.ceiling; 2]; 3];
        let e = solve(&inputs, &o, &shares, &[0, 1]).expect("a placement exists");
        assert!(e.unplaced.iter().all(|&u| u == 0));
        let p = e.into_placement(shares);
        let report = Report::check(&inputs, o.ceiling, &p);
        assert!(report.is_clean(), "{report:#?}");
        // The fastest of the feasible splits: 2 + 2 classes direct (1 ms), 3 around (2 ms).
        let direct: u64 = p
            .pairs
            .iter()
            .flat_map(|x| &x.shares)
            .filter(|s| s.path.links == [LinkIdx(0)])
            .map(|s| s.classes)
            .sum();
        assert_eq!(direct, 4);
    }

    #[test]
    fn says_none_when_nothing_fits_and_when_too_large() {
        let (t, m, cap, d) = swap_case(10);
        let inputs = Inputs {
            topology: &t,
            metric: &m,
            capacity: &cap,
            background: None,
            demand: &d,
        };
        let o = Options::default();
        let shares = vec![[o.ceiling; 2]; 3];
        assert!(solve(&inputs, &o, &shares, &[0, 1]).is_none());
        let off = Options {
            exact_steps: 0,
            ..Options::default()
        };
        let (t, m, cap, d) = swap_case(32);
        let inputs = Inputs {
            topology: &t,
            metric: &m,
            capacity: &cap,
            background: None,
            demand: &d,
        };
        assert!(solve(&inputs, &off, &shares, &[0, 1]).is_none());
    }
}
