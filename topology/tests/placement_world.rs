//! Placement on the shipped world at the default peak (35,000 HD classes between
//! Asia and North America): routing by delay alone overloads undersea lines; the
//! placement keeps every link within 80 % and every class within 200 ms, and
//! survives the loss of any one undersea line with no link past 100 %.

use topology::demand::Demand;
use topology::placement::{plan, Options, Plan, Problem};
use topology::LinkKind;

fn world_plan() -> (topology::Topology, Plan) {
    let t = topology::world().expect("the shipped world is valid");
    let problem = Problem::new(t.clone(), Demand::default_peak(&t));
    let plan = plan(&problem.inputs(), &Options::default()).expect("valid inputs");
    (t, plan)
}

#[test]
fn delay_only_overloads_a_line_and_placement_keeps_every_link_under_80_percent() {
    let (t, plan) = world_plan();
    assert_eq!(plan.placement.total_classes(), 35_000);

    // Delay alone: at least one undersea line past 100 %.
    let over: Vec<_> = plan
        .delay_only
        .report
        .over_capacity
        .iter()
        .filter(|l| t.link(l.link).kind == LinkKind::Undersea)
        .collect();
    assert!(!over.is_empty(), "{:#?}", plan.delay_only.lines);

    // Placed: nothing over 80 %, nothing over budget, nothing without a path.
    let r = &plan.placed.report;
    assert!(r.is_clean(), "{r:#?}");
    for l in &r.loads {
        if let Some(u) = l.utilisation() {
            assert!(u <= 0.8, "{l:?} at {u}");
        }
    }
    let lat = &plan.placed.latency;
    assert_eq!(lat.within_budget, 35_000);
    assert!(lat.max_us.is_some_and(|m| m <= 200_000), "{lat:?}");
    // Spreading costs little latency: the median stays within 2 ms of delay-only.
    let (p50, base) = (lat.p50_us, plan.delay_only.latency.p50_us);
    assert!(
        p50.zip(base).is_some_and(|(p, b)| p <= b + 2_000),
        "{p50:?} vs {base:?}"
    );
    // Every line carries classes.
    assert!(
        plan.placed.lines.iter().all(|l| l.classes > 0),
        "{:#?}",
        plan.placed.lines
    );
}

#[test]
fn the_placement_absorbs_the_loss_of_any_one_undersea_line() {
    let (_, plan) = world_plan();
    assert_eq!(plan.placed.cuts.len(), 5);
    for c in &plan.placed.cuts {
        assert_eq!(c.at_risk, 0, "{:?}: {:#?}", c.name, c.over_capacity);
        assert!(c.over_capacity.is_empty());
        assert_eq!(c.moved, c.classes_on_link, "{:?}", c.name);
        assert!(c.classes_on_link > 0);
        let worst = c.worst().and_then(|w| w.utilisation()).unwrap_or(0.0);
        assert!(worst <= 1.0, "{:?}: {worst}", c.name);
    }
    // Routing by delay alone does not: its busiest lines' loss overloads the rest.
    assert!(plan.delay_only.cuts.iter().any(|c| c.at_risk > 0));
}
