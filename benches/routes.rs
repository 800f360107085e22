//! Benchmark 4: time to compute every route (best paths, primary and loop-free
//! backup next hops for every pair) for the 55-city world and for generated
//! fleets of 500 and 2,000 nodes. Target: 2,000 nodes in under a second.
//!
//! Run: `cargo bench --bench routes`. Prints a table of hdrhistogram percentiles.

use std::time::Instant;

use hdrhistogram::Histogram;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use topology::paths::{Graph, Metric, Routes};
use topology::NodeIdx;

/// A connected random fleet: nodes on a sphere, each linked to its 3 nearest
/// neighbours, plus a ring so that it is connected; link cost = distance delay.
fn generated(n: usize, seed: u64) -> (Graph, Metric) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let points: Vec<(f64, f64)> = (0..n)
        .map(|_| {
            (
                rng.random_range(-60.0..70.0),
                rng.random_range(-180.0..180.0),
            )
        })
        .collect();
    let mut ends = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut add = |a: usize, b: usize, ends: &mut Vec<(NodeIdx, NodeIdx)>| {
        if a != b && seen.insert((a.min(b), a.max(b))) {
            ends.push((NodeIdx(a as u32), NodeIdx(b as u32)));
        }
    };
    for i in 0..n {
        let mut near: Vec<(f64, usize)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| {
                (
                    topology::geo::great_circle_km(
                        points[i].0,
                        points[i].1,
                        points[j].0,
                        points[j].1,
                    ),
                    j,
                )
            })
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0));
        for &(_, j) in near.iter().take(3) {
            add(i, j, &mut ends);
        }
        add(i, (i + 1) % n, &mut ends);
    }
    let costs = ends
        .iter()
        .map(|(a, b)| {
            let (pa, pb) = (points[a.get()], points[b.get()]);
            let km = topology::geo::great_circle_km(pa.0, pa.1, pb.0, pb.1);
            Some(topology::geo::expected_delay_us(
                topology::LinkKind::Terrestrial,
                km,
            ))
        })
        .collect();
    (Graph::new(n, &ends), Metric::new(costs))
}

fn measure(name: &str, graph: &Graph, metric: &Metric, runs: usize) {
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let mut covered = 0.0;
    for _ in 0..runs {
        let started = Instant::now();
        let routes = Routes::compute(graph, metric);
        h.saturating_record(started.elapsed().as_micros() as u64);
        let n = graph.node_count() as u32;
        let (mut pairs, mut with_backup) = (0u64, 0u64);
        for s in 0..n {
            for d in 0..n {
                let e = routes.get(NodeIdx(s), NodeIdx(d));
                if e.primary.is_some() {
                    pairs += 1;
                    with_backup += u64::from(e.backup.is_some());
                }
            }
        }
        covered = with_backup as f64 / pairs.max(1) as f64;
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{name:<22} {:>6} {:>6} {:>5} {:>10.1} {:>10.1} {:>10.1} {:>9.0}%",
        graph.node_count(),
        graph.link_count(),
        runs,
        ms(0.5),
        ms(0.99),
        h.max() as f64 / 1000.0,
        covered * 100.0
    );
}

fn main() {
    // `cargo test --benches` runs benches with `--bench`-less args; keep it quick then.
    let quick =
        std::env::args().any(|a| a == "--quick") || !std::env::args().any(|a| a == "--bench");
    println!("all-pairs routes with loop-free backups (ms per full computation)");
    println!(
        "{:<22} {:>6} {:>6} {:>5} {:>10} {:>10} {:>10} {:>10}",
        "fleet", "nodes", "links", "runs", "p50 ms", "p99 ms", "max ms", "backups"
    );
    let world = topology::world().expect("the shipped topology is valid");
    measure(
        "world (55 cities)",
        &Graph::from_topology(&world),
        &Metric::expected_delay(&world),
        if quick { 5 } else { 200 },
    );
    for (n, runs) in [
        (500, if quick { 1 } else { 20 }),
        (2000, if quick { 1 } else { 5 }),
    ] {
        let (g, m) = generated(n, 7);
        measure(&format!("generated {n}"), &g, &m, runs);
    }
}
