//! Benchmark 9: placement of the default peak on the shipped world: every one
//! of 35,000 classes placed within its budget and under the 80 % ceiling with
//! N−1 headroom, plus the delay-only baseline and each undersea line cut in
//! turn (`topology::placement::plan`, what `overlay plan` and the controller
//! run). Target: seconds on 2 cores. The 2,000-node, 1,000,000-class fleet is
//! timed by `cargo run --release -p topology --example place_scale` (one run
//! of each step; see BENCHMARKS.md).
//!
//! Run: `cargo bench --bench placement`.

use std::time::Instant;

use hdrhistogram::Histogram;
use topology::demand::Demand;
use topology::placement::{place, plan, Options, Problem};

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runs = if full { 30 } else { 3 };
    let t = topology::world().expect("the shipped world is valid");
    let problem = Problem::new(t.clone(), Demand::default_peak(&t));
    let (inputs, demand) = (problem.inputs(), &problem.demand);
    let options = Options::default();
    let timed = |what: &str, run: &dyn Fn()| {
        let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
        for _ in 0..runs {
            let start = Instant::now();
            run();
            h.saturating_record(start.elapsed().as_micros() as u64);
        }
        let ms = |us: u64| us as f64 / 1000.0;
        println!(
            "{what:<44} {:>5} {:>9.1} {:>9.1} {:>9.1}",
            h.len(),
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.max())
        );
    };
    println!(
        "placement, shipped world, {} classes (ms)",
        demand.total_classes()
    );
    println!(
        "{:<44} {:>5} {:>9} {:>9} {:>9}",
        "step", "runs", "p50", "p99", "max"
    );
    timed("place (N-1 headroom)", &|| {
        let p = place(&inputs, &options).expect("places");
        assert_eq!(p.total_classes(), 35_000);
    });
    timed("plan (place, delay-only, 5 cuts each)", &|| {
        let p = plan(&inputs, &options).expect("plans");
        assert!(p.placed.report.is_clean());
    });
}
