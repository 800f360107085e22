//! Live placement on a small diamond: demand that fits stays on the table's
//! path; demand past one line's ceiling is split over both lines; background
//! load counts; runs are deterministic and wait for their interval.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use topology::paths::Metric;
use topology::{NodeIdx, Topology};

use super::*;

/// aaa → ddd: fast over bbb (10 + 10 ms), slow over ccc (25 + 25 ms); each
/// line carries 10 Mbit/s each way.
const DIAMOND: &str = r#"version: 1
nodes:
  - { id: aaa, city: A, country: JP, region: asia, lat: 35.5, lon: 139.5, addr: "127.0.0.1:1" }
  - { id: bbb, city: B, country: JP, region: asia, lat: 36.0, lon: 140.0, addr: "127.0.0.1:2" }
  - { id: ccc, city: C, country: JP, region: asia, lat: 34.0, lon: 138.0, addr: "127.0.0.1:3" }
  - { id: ddd, city: D, country: US, region: na, lat: 34.0, lon: -118.25, addr: "127.0.0.1:4" }
links:
  - { between: [aaa, bbb], kind: terrestrial, delay_ms: 10, capacity_mbps: 100 }
  - { between: [bbb, ddd], kind: undersea, name: fast-line, delay_ms: 10, capacity_mbps: 10 }
  - { between: [aaa, ccc], kind: terrestrial, delay_ms: 25, capacity_mbps: 100 }
  - { between: [ccc, ddd], kind: undersea, name: slow-line, delay_ms: 25, capacity_mbps: 10 }
"#;

const AAA: NodeIdx = NodeIdx(0);
const BBB: NodeIdx = NodeIdx(1);
const CCC: NodeIdx = NodeIdx(2);
const DDD: NodeIdx = NodeIdx(3);

fn diamond() -> Topology {
    topology::parse("t.yaml", DIAMOND).expect("topology")
}

fn fast_path(_: NodeIdx, _: NodeIdx) -> Vec<NodeIdx> {
    vec![AAA, BBB, DDD]
}

fn placing() -> LivePlacement {
    LivePlacement::new(PlacementConfig::default())
}

fn demand(mbps: f64) -> BTreeMap<(NodeIdx, NodeIdx), f64> {
    BTreeMap::from([((AAA, DDD), mbps)])
}

fn no_load(t: &Topology) -> Vec<[Option<f64>; 2]> {
    vec![[None, None]; t.links.len()]
}

/// Places `mbps` from aaa to ddd over the expected delays, the tables'
/// path the fast one; `loads` measured (none by default). Whether the splits changed.
fn place(
    p: &mut LivePlacement,
    t: &Topology,
    mbps: f64,
    loads: Option<&[[Option<f64>; 2]]>,
    at: Instant,
) -> bool {
    let none = no_load(t);
    p.run(
        t,
        &Metric::expected_delay(t),
        &demand(mbps),
        loads.unwrap_or(&none),
        fast_path,
        at,
    )
    .expect("places")
}

/// Units placement put on the path `hops` (after `aaa`) of aaa → ddd.
fn units_on(p: &LivePlacement, hops: &[NodeIdx]) -> u32 {
    let split = p.splits().get(&(AAA, DDD)).expect("a split of aaa → ddd");
    split
        .paths()
        .filter(|(h, _)| *h == hops)
        .map(|(_, w)| w)
        .sum()
}

#[test]
fn demand_that_fits_follows_the_table_and_needs_no_split() {
    let t = diamond();
    let mut p = placing();
    let changed = place(&mut p, &t, 3.0, None, Instant::now());
    assert!(!changed, "3 Mbit/s fits the fast line's 8 Mbit/s ceiling");
    assert!(p.splits().is_empty());
}

#[test]
fn demand_past_a_lines_ceiling_is_split_over_both_lines() {
    let t = diamond();
    let mut p = placing();
    // 12 Mbit/s: the fast line takes at most 80% of 10; the rest goes slow.
    place(&mut p, &t, 12.0, None, Instant::now());
    let split = p.splits().get(&(AAA, DDD)).expect("a split");
    let paths: BTreeMap<Vec<NodeIdx>, u32> =
        split.paths().map(|(hops, w)| (hops.to_vec(), w)).collect();
    let fast = paths.get(&vec![BBB, DDD]).copied().unwrap_or(0);
    let slow = paths.get(&vec![CCC, DDD]).copied().unwrap_or(0);
    assert_eq!(fast + slow, 120, "every 100 kbit/s unit placed: {paths:?}");
    assert!(
        fast <= 80,
        "the fast line stays under its ceiling: {paths:?}"
    );
    assert!(fast >= 40 && slow > 0, "both lines used: {paths:?}");
    assert_eq!(p.version, 1);

    // The same inputs again: the same split, no new version.
    let later = Instant::now() + Duration::from_secs(10);
    let changed = place(&mut p, &t, 12.0, None, later);
    assert!(!changed);
    assert_eq!(p.version, 1);
}

#[test]
fn background_load_on_a_line_leaves_less_room_for_placed_traffic() {
    let t = diamond();
    let mut p = placing();
    let mut loads = no_load(&t);
    // 10 Mbit/s on the fast line (bbb → ddd): the demand's own 4 (it follows
    // the table there) and 6 that placement did not put there.
    loads[1] = [Some(10.0), None];
    place(&mut p, &t, 4.0, Some(&loads), Instant::now());
    assert!(
        p.splits().contains_key(&(AAA, DDD)),
        "4 Mbit/s no longer fits beside 6"
    );
    let fast = units_on(&p, &[BBB, DDD]);
    assert!(
        fast <= 20,
        "at most 2 Mbit/s more on the fast line: {fast} units"
    );
}

#[test]
fn runs_wait_for_their_interval_and_stop_when_disabled() {
    let t = diamond();
    let mut p = placing();
    let t0 = Instant::now();
    assert!(p.due(t0));
    place(&mut p, &t, 1.0, None, t0);
    assert!(!p.due(t0 + Duration::from_secs(1)));
    assert!(p.due(t0 + Duration::from_secs(5)));
    let off = LivePlacement::new(PlacementConfig {
        enabled: false,
        ..PlacementConfig::default()
    });
    assert!(!off.due(t0));
}

#[test]
fn the_demands_own_traffic_on_its_path_is_not_background() {
    let t = diamond();
    let mut p = placing();
    let mut loads = no_load(&t);
    // The 12 Mbit/s, all on the fast path before anything was placed (the
    // line's queue passes 10 of them).
    loads[0] = [Some(12.0), None];
    loads[1] = [Some(10.0), None];
    place(&mut p, &t, 12.0, Some(&loads), Instant::now());
    let fast = units_on(&p, &[BBB, DDD]);
    assert!(
        fast >= 40,
        "the fast line is free for placement: {fast} units on it"
    );
}

#[test]
fn demand_that_fits_the_tables_path_keeps_it_even_where_another_is_faster() {
    // The tables keep a path within their band (sticky routes); placement
    // must not move traffic off it for want of capacity that is not wanted.
    let t = diamond();
    let mut p = placing();
    // Measured: 20 ms over bbb, 21 ms over ccc, whose path the tables keep.
    let metric = Metric::new(vec![Some(10_000), Some(10_000), Some(10_500), Some(10_500)]);
    let slow_path = |_: NodeIdx, _: NodeIdx| vec![AAA, CCC, DDD];
    p.run(
        &t,
        &metric,
        &demand(3.0),
        &no_load(&t),
        slow_path,
        Instant::now(),
    )
    .expect("places");
    assert!(p.splits().is_empty(), "{:?}", p.splits());
    // More than the slow line's ceiling: the surplus goes to the other line.
    let later = Instant::now() + Duration::from_secs(10);
    p.run(&t, &metric, &demand(12.0), &no_load(&t), slow_path, later)
        .expect("places");
    let slow = units_on(&p, &[CCC, DDD]);
    assert!(
        (30..=80).contains(&slow),
        "the slow line keeps its share: {slow} units"
    );
}

#[test]
fn demand_no_placement_fits_is_reported_as_a_shortfall() {
    let t = diamond();
    let mut p = placing();
    place(&mut p, &t, 3.0, None, Instant::now());
    assert!(p.shortfalls.is_empty(), "{:?}", p.shortfalls);
    // 30 Mbit/s over two 10 Mbit/s lines: past both ceilings whatever the split.
    let mut p = placing();
    place(&mut p, &t, 30.0, None, Instant::now());
    let s = &p.shortfalls;
    assert!(
        !s.over_ceiling.is_empty() || s.unplaced_kbps > 0,
        "said so: {s:?}"
    );
    for o in &s.over_ceiling {
        assert!(o.utilisation > 0.8, "{o:?}");
    }
    assert_eq!(p.runs, 1);
}

#[test]
fn a_line_whose_loss_cannot_be_absorbed_is_named_with_the_demand_at_risk() {
    let t = diamond();
    let mut p = placing();
    // 12 Mbit/s over two 10 Mbit/s lines fits, but neither line alone holds it.
    place(&mut p, &t, 12.0, None, Instant::now());
    let risk = &p.shortfalls.at_risk;
    assert!(!risk.is_empty(), "{:?}", p.shortfalls);
    for &(line, kbps) in risk {
        assert_eq!(t.link(line).kind, topology::LinkKind::Undersea);
        assert!(kbps > 0 && kbps <= 12_000, "{kbps} kbit/s");
    }
    assert!(p
        .shortfalls
        .describe(&t)
        .contains("no headroom for the loss of"));
}

#[test]
fn a_shortfalls_kind_ignores_how_much_so_the_log_speaks_on_change_only() {
    let over = |u| OverCeiling {
        link: topology::LinkIdx(1),
        dir: Dir::AtoB,
        utilisation: u,
    };
    let a = Shortfalls {
        over_ceiling: vec![over(0.83)],
        over_budget_kbps: 200,
        ..Shortfalls::default()
    };
    let b = Shortfalls {
        over_ceiling: vec![over(0.91)],
        over_budget_kbps: 600,
        ..Shortfalls::default()
    };
    assert_eq!(a.kind(), b.kind(), "the same links, other figures");
    let c = Shortfalls {
        over_budget_kbps: 600,
        ..Shortfalls::default()
    };
    assert_ne!(a.kind(), c.kind(), "a link no longer past the ceiling");
}

/// 12 Mbit/s placed while the fast line measured slow (its first seconds'
/// overload priced it at 40 ms a link): the slow line took its ceiling's 80
/// units and the fast line the other 40. Returns the placing and when it ran.
fn placed_while_the_fast_line_was_slow() -> (LivePlacement, Instant) {
    let t = diamond();
    let mut p = placing();
    let slow_fast_line = Metric::new(vec![Some(40_000), Some(40_000), Some(25_000), Some(25_000)]);
    let slow_path = |_: NodeIdx, _: NodeIdx| vec![AAA, CCC, DDD];
    let t0 = Instant::now();
    p.run(
        &t,
        &slow_fast_line,
        &demand(12.0),
        &no_load(&t),
        slow_path,
        t0,
    )
    .expect("places");
    assert_eq!(units_on(&p, &[CCC, DDD]), 80, "{:?}", p.splits());
    assert_eq!(units_on(&p, &[BBB, DDD]), 40, "{:?}", p.splits());
    (p, t0)
}

#[test]
fn once_a_faster_line_has_room_again_the_share_moves_back_to_it() {
    // The lowest latency among placements under the ceiling is 80 units on
    // the fast line (20 ms) and 40 on the slow one (50 ms): once the fast
    // line's cost is back, the split must go there, not stay where the
    // overload left it.
    let t = diamond();
    let (mut p, t0) = placed_while_the_fast_line_was_slow();
    let later = t0 + Duration::from_secs(5);
    place(&mut p, &t, 12.0, None, later);
    assert_eq!(units_on(&p, &[BBB, DDD]), 80, "{:?}", p.splits());
    assert_eq!(units_on(&p, &[CCC, DDD]), 40, "{:?}", p.splits());
    // And it stays there.
    let version = p.version;
    assert!(!place(
        &mut p,
        &t,
        12.0,
        None,
        later + Duration::from_secs(5)
    ));
    assert_eq!(p.version, version);
}

#[test]
fn moves_to_a_faster_line_are_bounded_per_run() {
    let t = diamond();
    let (mut p, t0) = placed_while_the_fast_line_was_slow();
    p.config.max_moves = 15;
    for (run, fast) in [(1, 55), (2, 70), (3, 80), (4, 80)] {
        place(&mut p, &t, 12.0, None, t0 + Duration::from_secs(5 * run));
        assert_eq!(
            units_on(&p, &[BBB, DDD]),
            fast,
            "run {run}: {:?}",
            p.splits()
        );
    }
}

#[test]
fn a_path_faster_by_less_than_the_band_does_not_take_a_share() {
    // Measured 20 ms over bbb and 23 ms over ccc: 3 ms is within the routes'
    // band (5 ms), so a split made while bbb was slow stays as it is.
    let t = diamond();
    let (mut p, t0) = placed_while_the_fast_line_was_slow();
    let close = Metric::new(vec![Some(10_000), Some(10_000), Some(11_500), Some(11_500)]);
    let changed = p
        .run(
            &t,
            &close,
            &demand(12.0),
            &no_load(&t),
            fast_path,
            t0 + Duration::from_secs(5),
        )
        .expect("places");
    assert!(!changed, "{:?}", p.splits());
    assert_eq!(units_on(&p, &[BBB, DDD]), 40);
}

/// A service from aaa to ddd with a 40 ms budget: the slow path (50 ms) is
/// over it, so demand past the fast line's ceiling cannot meet both goals,
/// and the shortfall says so. Without the service (the default 200 ms) the
/// same demand fits.
#[test]
fn a_services_own_budget_applies_to_its_pairs_demand() {
    let with_budget = |budget: &str| {
        let yaml = format!(
            "{DIAMOND}services:\n  - {{ name: media, protocol: udp, ingress: {{ node: aaa, listen: \"127.0.0.1:0\" }}, egress: {{ node: ddd, target: \"127.0.0.1:9\" }}{budget} }}\n"
        );
        let t = topology::parse("t.yaml", &yaml).expect("topology");
        let mut p = placing();
        place(&mut p, &t, 12.0, None, Instant::now());
        p.shortfalls.clone()
    };
    let default = with_budget("");
    assert_eq!(default.over_budget_kbps, 0, "{default:?}");
    assert!(default.over_ceiling.is_empty(), "{default:?}");
    let tight = with_budget(", budget_ms: 40");
    assert!(
        tight.over_budget_kbps >= 4_000 || !tight.over_ceiling.is_empty(),
        "4 Mbit/s cannot go fast (ceiling) nor slow (budget): {tight:?}"
    );
    // The reverse pair (the replies, ddd → aaa) carries the same service.
    let t = topology::parse(
        "t.yaml",
        &format!(
            "{DIAMOND}services:\n  - {{ name: media, protocol: udp, ingress: {{ node: aaa, listen: \"127.0.0.1:0\" }}, egress: {{ node: ddd, target: \"127.0.0.1:9\" }}, budget_ms: 40 }}\n"
        ),
    )
    .expect("topology");
    let mut p = placing();
    let back = BTreeMap::from([((DDD, AAA), 12.0)]);
    p.run(
        &t,
        &Metric::expected_delay(&t),
        &back,
        &no_load(&t),
        |_, _| vec![DDD, BBB, AAA],
        Instant::now(),
    )
    .expect("places");
    assert!(
        p.shortfalls.over_budget_kbps >= 4_000 || !p.shortfalls.over_ceiling.is_empty(),
        "{:?}",
        p.shortfalls
    );
}

/// Two pairs (s1 → d, s2 → d) share line A (via hub h, 51 ms); s1 also has
/// line B and s2 line C (60 ms each); their 61 ms budget keeps each off the
/// other's line. Each line carries 1 Mbit/s (10 units); each pair sends
/// 0.8 Mbit/s. Filling A with one pair's units leaves no room on A for the
/// other's when its own line fails; N−1 headroom keeps A part empty.
const SHARED_LINE: &str = r#"version: 1
nodes:
  - { id: s1, city: S1, country: JP, region: asia, lat: 35.5, lon: 139.5, addr: "127.0.0.1:1" }
  - { id: s2, city: S2, country: JP, region: asia, lat: 36.0, lon: 140.0, addr: "127.0.0.1:2" }
  - { id: hub, city: H, country: JP, region: asia, lat: 34.0, lon: 138.0, addr: "127.0.0.1:3" }
  - { id: dst, city: D, country: US, region: na, lat: 34.0, lon: -118.25, addr: "127.0.0.1:4" }
links:
  - { between: [s1, hub], kind: terrestrial, delay_ms: 1, capacity_mbps: 100 }
  - { between: [s2, hub], kind: terrestrial, delay_ms: 1, capacity_mbps: 100 }
  - { between: [hub, dst], kind: undersea, name: line-a, delay_ms: 50, capacity_mbps: 1 }
  - { between: [s1, dst], kind: undersea, name: line-b, delay_ms: 60, capacity_mbps: 1 }
  - { between: [s2, dst], kind: undersea, name: line-c, delay_ms: 60, capacity_mbps: 1 }
services:
  - { name: one, protocol: udp, ingress: { node: s1, listen: "127.0.0.1:0" }, egress: { node: dst, target: "127.0.0.1:9" }, budget_ms: 61 }
  - { name: two, protocol: udp, ingress: { node: s2, listen: "127.0.0.1:0" }, egress: { node: dst, target: "127.0.0.1:9" }, budget_ms: 61 }
"#;

#[test]
fn n_minus_1_headroom_is_kept_for_the_demand_that_came_after_the_first_run() {
    // The controller's first run comes before any class: no demand, so no
    // headroom is needed then. s1's classes come first and fit on A; then
    // s2's come, and A must not stay full of s1's.
    let t = topology::parse("t.yaml", SHARED_LINE).expect("topology");
    let node = |id: &str| t.node_idx(id).expect("node");
    let (s1, s2, hub, dst) = (node("s1"), node("s2"), node("hub"), node("dst"));
    let via_hub = |src: NodeIdx, dst: NodeIdx| vec![src, hub, dst];
    let metric = Metric::expected_delay(&t);
    let mut p = placing();
    let t0 = Instant::now();
    p.run(&t, &metric, &BTreeMap::new(), &no_load(&t), via_hub, t0)
        .expect("places");
    let first = BTreeMap::from([((s1, dst), 0.8)]);
    let at = t0 + Duration::from_secs(5);
    p.run(&t, &metric, &first, &no_load(&t), via_hub, at)
        .expect("places");
    let both = BTreeMap::from([((s1, dst), 0.8), ((s2, dst), 0.8)]);
    for run in 2..=4 {
        let at = t0 + Duration::from_secs(5 * run);
        p.run(&t, &metric, &both, &no_load(&t), via_hub, at)
            .expect("places");
    }
    assert!(
        p.shortfalls.over_ceiling.is_empty() && p.shortfalls.over_budget_kbps == 0,
        "{:?}",
        p.shortfalls
    );
    assert!(
        p.shortfalls.at_risk.is_empty(),
        "any one line's loss absorbed: {}",
        p.shortfalls.describe(&t)
    );
}

#[test]
fn new_demand_past_the_room_of_the_tables_path_is_placed_not_held_behind_the_move_bound() {
    // New classes have no path yet: those the tables' path has no room for
    // are placed where there is room, not seeded onto a full line and then
    // moved off a few at a time.
    let t = diamond();
    let mut p = placing();
    p.config.max_moves = 10;
    let t0 = Instant::now();
    place(&mut p, &t, 0.0, None, t0);
    place(&mut p, &t, 12.0, None, t0 + Duration::from_secs(5));
    assert!(p.shortfalls.over_ceiling.is_empty(), "{:?}", p.shortfalls);
    assert_eq!(units_on(&p, &[BBB, DDD]), 80, "{:?}", p.splits());
    assert_eq!(units_on(&p, &[CCC, DDD]), 40, "{:?}", p.splits());
}

/// The shipped world's default peak (35,000 HD classes), in Mbit/s per
/// (source, destination) relay, as the relays would report it.
fn default_peak_mbps(t: &Topology) -> BTreeMap<(NodeIdx, NodeIdx), f64> {
    let peak = topology::demand::Demand::default_peak(t);
    let mut mbps: BTreeMap<(NodeIdx, NodeIdx), f64> = BTreeMap::new();
    for d in &peak.pairs {
        let (forward, reverse) = peak.services[d.service].profile.kbps();
        *mbps.entry((d.src, d.dst)).or_default() += (d.classes * forward) as f64 / 1000.0;
        *mbps.entry((d.dst, d.src)).or_default() += (d.classes * reverse) as f64 / 1000.0;
    }
    mbps
}

#[test]
fn the_default_peak_arriving_after_the_first_run_is_placed_under_the_ceiling() {
    // What `overlay plan` shows (every line at or under 80 %) must hold live:
    // the controller's first run sees no demand, the next sees the peak.
    let t = topology::world().expect("world");
    let metric = Metric::expected_delay(&t);
    let g = topology::paths::Graph::from_topology(&t);
    let routes = topology::paths::Routes::compute(&g, &metric);
    let table = |a: NodeIdx, b: NodeIdx| {
        routes
            .path(&g, &metric, a, b)
            .map(|p| p.nodes)
            .unwrap_or_default()
    };
    let none = no_load(&t);
    let t0 = Instant::now();
    let mut p = placing();
    p.run(&t, &metric, &BTreeMap::new(), &none, table, t0)
        .expect("places");
    let peak = default_peak_mbps(&t);
    p.run(
        &t,
        &metric,
        &peak,
        &none,
        table,
        t0 + Duration::from_secs(5),
    )
    .expect("places");
    let s = &p.shortfalls;
    assert!(
        s.over_ceiling.is_empty() && s.over_budget_kbps == 0 && s.unplaced_kbps == 0,
        "{}",
        s.describe(&t)
    );
}

#[test]
fn demand_that_grew_by_a_quarter_is_placed_a_second_after_the_last_run() {
    let t = diamond();
    let mut p = placing();
    let t0 = Instant::now();
    place(&mut p, &t, 3.0, None, t0);
    let later = |ms| t0 + Duration::from_millis(ms);
    assert!(!p.new_demand_due(12.0, later(500)), "not within a second");
    assert!(p.new_demand_due(12.0, later(1_000)));
    assert!(
        !p.new_demand_due(3.7, later(2_000)),
        "grown by less than a quarter"
    );
    assert!(!p.new_demand_due(0.1, later(2_000)));
    // From nothing: two units' worth is news.
    let mut empty = placing();
    place(&mut empty, &t, 0.0, None, t0);
    assert!(!empty.new_demand_due(0.15, later(2_000)), "under two units");
    assert!(empty.new_demand_due(0.2, later(2_000)));
    empty.config.enabled = false;
    assert!(!empty.new_demand_due(12.0, later(2_000)));
}
