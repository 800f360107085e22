//! Times placement on a generated fleet: 2,000 nodes (1,000 in Asia, 1,000 in North
//! America; regional hubs on a backbone, every other node linked to its two nearest
//! hubs), 20 undersea lines, and
//! 1,000,000 classes spread evenly over every Asia × North America pair (one class
//! per pair: the most pairs, the worst case for per-pair work).
//!
//! `cargo run --release -p topology --example place_scale -- [--nodes N] [--classes N] [--lines N] [--only STEP]`

use std::time::Instant;

use topology::demand::Demand;
use topology::placement::{
    cut, delay_only, place, place_incremental, LatencyStats, Options, Problem, Report,
};
use topology::{LinkIdx, LinkKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut nodes, mut classes, mut lines) = (2_000usize, 1_000_000u64, 20usize);
    // `--only setup|delay-only|place|n-1`: run one step (to time it with
    // `/usr/bin/time`, on a machine where wall time is shared).
    let mut only = String::new();
    while let Some(a) = args.next() {
        let v = args.next().ok_or("missing value")?;
        match a.as_str() {
            "--nodes" => nodes = v.parse()?,
            "--classes" => classes = v.parse()?,
            "--lines" => lines = v.parse()?,
            "--only" => only = v,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    // Each line leases what its share of the peak needs at 70 %, so the fleet fits
    // under the ceiling only if placement spreads classes over every line.
    let per_line_mbps = classes * 1707 / 1000 / lines as u64 * 10 / 7;
    let yaml = fleet(nodes, lines, per_line_mbps);
    let start = Instant::now();
    let t = topology::parse("generated", &yaml)?;
    let t_parse = start.elapsed();
    let demand = Demand::generate(&t, classes, Default::default());
    let problem = Problem::new(t.clone(), demand);
    let (inputs, demand) = (problem.inputs(), &problem.demand);
    println!(
        "{} nodes, {} links ({lines} undersea at {} Gbit/s), {} classes over {} pairs (parse {:.0} ms)",
        t.nodes.len(),
        t.links.len(),
        per_line_mbps / 1000,
        demand.total_classes(),
        demand.pairs.len(),
        ms(t_parse)
    );
    let plain = Options {
        n_minus_1: false,
        ..Options::default()
    };
    let one = |what: &str, run: &dyn Fn() -> Result<(), topology::placement::PlacementError>| {
        let start = Instant::now();
        let r = run();
        println!("{what}: {:.0} ms", ms(start.elapsed()));
        r
    };
    match only.as_str() {
        "" => {}
        "setup" => return Ok(()),
        "delay-only" => return Ok(one(&only, &|| delay_only(&inputs).map(drop))?),
        "place" => return Ok(one(&only, &|| place(&inputs, &plain).map(drop))?),
        "n-1" => {
            return Ok(one(&only, &|| {
                place(&inputs, &Options::default()).map(drop)
            })?)
        }
        other => {
            return Err(format!("--only {other}: expected setup, delay-only, place or n-1").into())
        }
    }

    let start = Instant::now();
    let base = delay_only(&inputs)?;
    let t_base = start.elapsed();
    let start = Instant::now();
    let p = place(&inputs, &plain)?;
    let t_plain = start.elapsed();
    let start = Instant::now();
    let report = Report::check(&inputs, 0.8, &p);
    let t_check = start.elapsed();
    let base_report = Report::check(&inputs, 0.8, &base);
    let line = (0..t.links.len())
        .map(|l| LinkIdx(l as u32))
        .find(|&l| t.link(l).kind == LinkKind::Undersea)
        .ok_or("no undersea line")?;
    let start = Instant::now();
    let (c, _) = cut(&inputs, &p, line, &plain)?;
    let t_cut = start.elapsed();
    let start = Instant::now();
    let r = place_incremental(&p, &inputs, &plain)?;
    let t_inc = start.elapsed();
    let start = Instant::now();
    let with_headroom = place(&inputs, &Options::default())?;
    let t_n1 = start.elapsed();

    let worst = |r: &Report| r.worst().and_then(|w| w.utilisation()).unwrap_or(0.0);
    println!(
        "delay-only   {:>8.0} ms: worst link {:.0} %, {} link directions over the ceiling",
        ms(t_base),
        100.0 * worst(&base_report),
        base_report.over_ceiling.len()
    );
    println!(
        "place        {:>8.0} ms: worst link {:.0} %, {} over the ceiling, {} classes over budget",
        ms(t_plain),
        100.0 * worst(&report),
        report.over_ceiling.len(),
        report.classes_over_budget()
    );
    println!("check        {:>8.0} ms", ms(t_check));
    let (lp, lb) = (
        LatencyStats::of(&inputs, &p),
        LatencyStats::of(&inputs, &base),
    );
    let at = |us: Option<u64>| us.map_or(0.0, |u| u as f64 / 1000.0);
    println!(
        "latency      placed p50 {:.1} / p99 {:.1} / max {:.1} ms, delay-only {:.1} / {:.1} / {:.1} ms",
        at(lp.p50_us),
        at(lp.p99_us),
        at(lp.max_us),
        at(lb.p50_us),
        at(lb.p99_us),
        at(lb.max_us)
    );
    println!(
        "cut one line {:>8.0} ms: {} classes moved, {} at risk",
        ms(t_cut),
        c.moved,
        c.at_risk
    );
    println!(
        "incremental  {:>8.0} ms: {} classes moved (nothing changed)",
        ms(t_inc),
        r.moved()
    );
    println!(
        "place + N-1  {:>8.0} ms: headroom on {} link directions",
        ms(t_n1),
        with_headroom
            .headroom
            .iter()
            .flatten()
            .filter(|&&s| s < 0.8)
            .count()
    );
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A deterministic fleet as topology YAML, built like an overlay: on each side of
/// the Pacific, one node in 25 is a regional hub; hubs form a backbone (each to its
/// 4 nearest hubs, and the previous hub by longitude so the side is connected);
/// every other node links to its 2 nearest hubs. `lines` undersea lines join the
/// easternmost Asian hubs to the westernmost American ones. Paths are then 3 to 8
/// hops, as overlay paths are (a relay dials any relay it has a link to).
fn fleet(nodes: usize, lines: usize, line_mbps: u64) -> String {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let half = nodes / 2;
    let mut y = String::from("version: 1\nnodes:\n");
    // Per side: (id, lat, lon, hub).
    let mut sides: [Vec<(String, f64, f64, bool)>; 2] = [Vec::new(), Vec::new()];
    for i in 0..nodes {
        let asia = i < half;
        let (lat, lon) = if asia {
            (next() * 45.0, 95.0 + next() * 50.0)
        } else {
            (25.0 + next() * 25.0, -125.0 + next() * 55.0)
        };
        let id = format!("{}{i:05}", if asia { "a" } else { "n" });
        y.push_str(&format!(
            "  - {{ id: {id}, city: {id}, country: {}, region: {}, lat: {lat:.4}, lon: {lon:.4}, addr: \"10.{}.{}.{}:4433\" }}\n",
            if asia { "CN" } else { "US" },
            if asia { "asia-gen" } else { "north-america-gen" },
            i / 65536,
            (i / 256) % 256,
            i % 256
        ));
        sides[usize::from(!asia)].push((id, lat, lon, i % 25 == 0));
    }
    y.push_str("links:\n");
    let mut seen = std::collections::BTreeSet::new();
    let mut add = |y: &mut String, a: &str, b: &str, extra: &str| {
        let key = if a < b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        };
        if a != b && seen.insert(key) {
            y.push_str(&format!("  - {{ between: [{a}, {b}], {extra} }}\n"));
        }
    };
    let near = |side: &[(String, f64, f64, bool)], lat: f64, lon: f64, k: usize| -> Vec<usize> {
        let mut d: Vec<(f64, usize)> = (0..side.len())
            .filter(|&j| side[j].3)
            .map(|j| ((side[j].1 - lat).powi(2) + (side[j].2 - lon).powi(2), j))
            .collect();
        d.sort_by(|x, z| x.0.total_cmp(&z.0));
        d.into_iter()
            .skip_while(|x| x.0 == 0.0)
            .take(k)
            .map(|x| x.1)
            .collect()
    };
    let mut hubs: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    for (s, side) in sides.iter().enumerate() {
        let mut h: Vec<usize> = (0..side.len()).filter(|&j| side[j].3).collect();
        h.sort_by(|&x, &z| side[x].2.total_cmp(&side[z].2));
        for (k, &j) in h.iter().enumerate() {
            let (id, lat, lon, _) = &side[j];
            for n in near(side, *lat, *lon, 4) {
                add(
                    &mut y,
                    id,
                    &side[n].0,
                    "kind: terrestrial, capacity_mbps: 1000000",
                );
            }
            if k > 0 {
                add(
                    &mut y,
                    id,
                    &side[h[k - 1]].0,
                    "kind: terrestrial, capacity_mbps: 1000000",
                );
            }
        }
        for (id, lat, lon, hub) in side {
            if !hub {
                for n in near(side, *lat, *lon, 2) {
                    add(
                        &mut y,
                        id,
                        &side[n].0,
                        "kind: terrestrial, capacity_mbps: 100000",
                    );
                }
            }
        }
        hubs[s] = h;
    }
    // Easternmost Asian hubs (sorted by longitude: the end) to the westernmost American.
    for k in 0..lines {
        let a = &sides[0][hubs[0][hubs[0].len() - 1 - (k % hubs[0].len())]].0;
        let b = &sides[1][hubs[1][k % hubs[1].len()]].0;
        let extra = format!("kind: undersea, name: u{k:02}, capacity_mbps: {line_mbps}");
        add(&mut y, a, b, &extra);
    }
    y
}
