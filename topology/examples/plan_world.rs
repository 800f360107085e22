//! Plans the shipped world (or a topology file) at N classes and prints what
//! `overlay plan` will: per-line load delay-only vs placed, latency, N−1 cuts, and
//! how long each step took.
//!
//! `cargo run --release -p topology --example plan_world -- [--topology F] [--classes N]`

use std::time::Instant;

use topology::demand::Demand;
use topology::paths::Metric;
use topology::placement::{delay_only, place, Capacities, Inputs, LinkLoad, Options, Summary};
use topology::{LinkKind, Topology};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut classes = topology::demand::DEFAULT_CLASSES;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--topology" => file = args.next(),
            "--classes" => classes = args.next().ok_or("--classes N")?.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let t = match file {
        Some(f) => topology::load(std::path::Path::new(&f))?,
        None => topology::world()?,
    };
    let demand = Demand::generate(&t, classes, Default::default());
    let metric = Metric::expected_delay(&t);
    let capacity = Capacities::from_topology(&t);
    let inputs = Inputs {
        topology: &t,
        metric: &metric,
        capacity: &capacity,
        background: None,
        demand: &demand,
    };
    let options = Options::default();

    let start = Instant::now();
    let placed = place(&inputs, &options)?;
    let t_place = start.elapsed();
    let start = Instant::now();
    let baseline = delay_only(&inputs)?;
    let t_base = start.elapsed();
    let start = Instant::now();
    let ps = Summary::of_placement(&inputs, &options, &placed);
    let bs = Summary::of_delay_only(&inputs, &options, &baseline);
    let t_sum = start.elapsed();

    println!(
        "{} nodes, {} links, {} classes over {} pairs",
        t.nodes.len(),
        t.links.len(),
        demand.total_classes(),
        demand.pairs.len()
    );
    println!("\nundersea lines (utilisation a→b / b→a, classes): delay-only | placed");
    for (b, p) in bs.lines.iter().zip(&ps.lines) {
        println!(
            "  {:<8} {:>6} {:>6} {:>6} | {:>6} {:>6} {:>6}",
            b.name.as_deref().unwrap_or("-"),
            pct(&b.load[0]),
            pct(&b.load[1]),
            b.classes,
            pct(&p.load[0]),
            pct(&p.load[1]),
            p.classes
        );
    }
    println!("\nbusiest other links (placed | delay-only):");
    let mut others: Vec<(usize, &LinkLoad)> = ps
        .report
        .loads
        .iter()
        .enumerate()
        .filter(|(_, l)| t.link(l.link).kind != LinkKind::Undersea)
        .collect();
    others.sort_by(|x, y| {
        let u = |l: &LinkLoad| l.utilisation().unwrap_or(0.0);
        u(y.1).total_cmp(&u(x.1))
    });
    for (i, l) in others.iter().take(12) {
        println!(
            "  {:<12} {:>6} | {:>6}",
            name(&t, l),
            pct(l),
            pct(&bs.report.loads[*i])
        );
    }
    for (label, s) in [("delay-only", &bs), ("placed", &ps)] {
        let l = &s.latency;
        println!(
            "\n{label}: p50 {} ms, p99 {} ms, max {} ms, within budget {:.2} %; over ceiling {}, over capacity {}, over budget {} classes",
            ms(l.p50_us),
            ms(l.p99_us),
            ms(l.max_us),
            100.0 * l.share_within_budget(),
            s.report.over_ceiling.len(),
            s.report.over_capacity.len(),
            s.report.classes_over_budget()
        );
        for c in &s.cuts {
            let worst = c.worst();
            println!(
                "  cut {:<8} on line {:>6}, moved {:>6}, left budget {:>5}, at risk {:>6}, worst {} {}",
                c.name.as_deref().unwrap_or("-"),
                c.classes_on_link,
                c.moved,
                c.left_budget,
                c.at_risk,
                worst.map(|w| name(&t, &w)).unwrap_or_default(),
                worst.map(|w| pct(&w)).unwrap_or_default()
            );
        }
    }
    println!(
        "\ntime: place (with N−1 headroom) {:.1} ms, delay-only {:.1} ms, both summaries with cuts {:.1} ms",
        t_place.as_secs_f64() * 1e3,
        t_base.as_secs_f64() * 1e3,
        t_sum.as_secs_f64() * 1e3
    );
    Ok(())
}

fn pct(l: &LinkLoad) -> String {
    l.utilisation()
        .map(|u| format!("{:.0}%", 100.0 * u))
        .unwrap_or_else(|| format!("{}G", l.load_kbps / 1_000_000))
}

fn ms(us: Option<u64>) -> String {
    us.map(|u| format!("{:.1}", u as f64 / 1000.0))
        .unwrap_or_else(|| "-".into())
}

fn name(t: &Topology, l: &LinkLoad) -> String {
    let link = t.link(l.link);
    let (a, b) = (&t.node(link.a).id, &t.node(link.b).id);
    match l.dir {
        topology::placement::Dir::AtoB => format!("{a}>{b}"),
        topology::placement::Dir::BtoA => format!("{b}>{a}"),
    }
}
