//! Time to compute every node's repair table, for the 55-city world and for
//! random fleets of 500 and 2,000 nodes (the fleet shape of `benches/routes.rs`:
//! nodes on a sphere, each linked to its 3 nearest, plus a ring), against the time
//! to compute the routes themselves in the same run. Also prints how long the
//! repair segments are, against [`MAX_REPAIR_HOPS`], and what share of the
//! routes a scheme carrying the whole repair route, capped at 8 hops, would
//! cover instead.
//!
//! Run: `cargo run --release -p topology --example repair_scale [-- --runs N]`.

use std::time::{Duration, Instant};

use topology::paths::{Graph, Metric, Routes};
use topology::repair::{RepairTables, MAX_REPAIR_HOPS};
use topology::{LinkKind, NodeIdx};

/// xorshift64*: enough randomness for a fleet shape, no dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

fn generated(n: usize, seed: u64) -> (Graph, Metric) {
    let mut rng = Rng(seed | 1);
    let points: Vec<(f64, f64)> = (0..n)
        .map(|_| (rng.range(-60.0, 70.0), rng.range(-180.0, 180.0)))
        .collect();
    let km = |a: usize, b: usize| {
        let (pa, pb) = (points[a], points[b]);
        topology::geo::great_circle_km(pa.0, pa.1, pb.0, pb.1)
    };
    let mut seen = std::collections::HashSet::new();
    let mut ends = Vec::new();
    let mut add = |a: usize, b: usize| {
        if a != b && seen.insert((a.min(b), a.max(b))) {
            ends.push((NodeIdx(a as u32), NodeIdx(b as u32)));
        }
    };
    for i in 0..n {
        let mut near: Vec<(f64, usize)> =
            (0..n).filter(|&j| j != i).map(|j| (km(i, j), j)).collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        for &(_, j) in near.iter().take(3) {
            add(i, j);
        }
        add(i, (i + 1) % n);
    }
    let costs = ends
        .iter()
        .map(|(a, b)| {
            Some(topology::geo::expected_delay_us(
                LinkKind::Terrestrial,
                km(a.get(), b.get()),
            ))
        })
        .collect();
    (Graph::new(n, &ends), Metric::new(costs))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn measure(name: &str, g: &Graph, m: &Metric, runs: usize) {
    let (mut route_times, mut repair_times) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        let routes = Routes::compute(g, m);
        route_times.push(started.elapsed());
        let started = Instant::now();
        let tables = RepairTables::compute(g, m, &routes).expect("same graph");
        repair_times.push(started.elapsed());
        last = Some((routes, tables));
    }
    let Some((routes, tables)) = last else { return };
    let n = g.node_count() as u32;
    let (mut pairs, mut covered, mut whole_within_8) = (0u64, 0u64, 0u64);
    let mut segments = [0u64; MAX_REPAIR_HOPS + 1];
    for s in (0..n).map(NodeIdx) {
        for d in (0..n).map(NodeIdx) {
            if routes.get(s, d).primary.is_none() {
                continue;
            }
            pairs += 1;
            if let Some(p) = tables.get(s, d) {
                covered += 1;
                segments[p.hops().len()] += 1;
                whole_within_8 += u64::from(p.route_hops() <= 8);
            }
        }
    }
    let too_long: usize = tables.iter().map(|t| t.too_long()).sum();
    let (r, t) = (median(route_times), median(repair_times));
    let pct = |x: u64| 100.0 * x as f64 / pairs.max(1) as f64;
    println!(
        "{name:<18} {:>5} {:>5} {:>4} {:>10.1} {:>11.1} {:>6.2} {:>9.2}% {:>8} {:>11.1}%",
        g.node_count(),
        g.link_count(),
        runs,
        r.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e3,
        t.as_secs_f64() / r.as_secs_f64(),
        pct(covered),
        too_long,
        pct(whole_within_8),
    );
    let hist: Vec<String> = segments
        .iter()
        .enumerate()
        .skip(1)
        .map(|(len, c)| format!("{len}:{c}"))
        .collect();
    println!(
        "{:<18} segment lengths (nodes:routes) {}",
        "",
        hist.join(" ")
    );
}

fn main() {
    let runs = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .and_then(|r| r.parse().ok())
        .unwrap_or(5usize)
        .max(1);
    println!(
        "repair tables for every source (median of runs), cap {MAX_REPAIR_HOPS} nodes per segment"
    );
    println!(
        "{:<18} {:>5} {:>5} {:>4} {:>10} {:>11} {:>6} {:>10} {:>8} {:>12}",
        "fleet",
        "nodes",
        "links",
        "runs",
        "routes ms",
        "repair ms",
        "ratio",
        "repaired",
        "too long",
        "whole<=8"
    );
    let world = topology::world().expect("the shipped topology is valid");
    measure(
        "world (55 cities)",
        &Graph::from_topology(&world),
        &Metric::expected_delay(&world),
        runs * 20,
    );
    for (n, runs) in [(500, runs), (2000, runs.div_ceil(2))] {
        let (g, m) = generated(n, 7);
        measure(&format!("generated {n}"), &g, &m, runs);
    }
}
