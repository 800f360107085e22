//! Placement on hand-made fleets where the right answer is known: N−1 headroom where
//! it is needed, shortfalls reported precisely, and what an incremental re-placement
//! moves and keeps.

mod placement_support;

use placement_support::*;
use topology::demand::Demand;
use topology::paths::Metric;
use topology::placement::{
    cut, place, place_incremental, Capacities, Dir, Inputs, LinkLoads, MoveReason, Options,
    PlacementError, Report,
};
use topology::{LinkIdx, LinkKind, NodeIdx};

fn link(a: usize, b: usize, undersea: bool, ms: u64) -> TinyLink {
    TinyLink {
        a,
        b,
        undersea,
        delay_us: ms * 1000,
    }
}

fn case(links: &[TinyLink], caps: Vec<[Option<u64>; 2]>, demand: Demand) -> Case {
    let t = topology(
        links.iter().map(|l| l.a.max(l.b) + 1).max().unwrap_or(1),
        links,
    );
    Case {
        metric: Metric::expected_delay(&t),
        capacity: Capacities::new(caps),
        background: LinkLoads::zero(t.links.len()),
        demand,
        topology: t,
    }
}

/// Two pairs (s1 → d, s2 → d) share line A (via hub h, 51 ms); s1 also has line B
/// and s2 line C (60 ms each). Budget 61 ms: neither can use the other's line. Each
/// line holds 10 classes; each pair has 8. Filling A with s1's classes leaves no
/// room on A for s2's if C fails; keeping A mostly empty does.
fn shared_line() -> Case {
    let links = [
        link(0, 2, false, 1), // s1 - h
        link(1, 2, false, 1), // s2 - h
        link(2, 3, true, 50), // A: h - d
        link(0, 3, true, 60), // B: s1 - d
        link(1, 3, true, 60), // C: s2 - d
    ];
    // The hub never sends back toward s1 or s2 (so s2 cannot reach B through s1).
    let caps = vec![
        [None, Some(0)],
        [None, Some(0)],
        [Some(10_000); 2],
        [Some(10_000); 2],
        [Some(10_000); 2],
    ];
    let d = demand(
        vec![service("class", 61_000, profile(1000, 0))],
        &[(0, 3, 0, 8), (1, 3, 0, 8)],
    );
    case(&links, caps, d)
}

#[test]
fn headroom_is_kept_where_a_single_cut_would_overload_a_line() {
    let c = shared_line();
    let plain = Options {
        n_minus_1: false,
        ..Options::default()
    };
    let p = place(&c.inputs(), &plain).expect("valid");
    assert!(Report::check(&c.inputs(), 0.8, &p).is_clean());
    let (cut_c, _) = cut(&c.inputs(), &p, LinkIdx(4), &plain).expect("valid");
    assert!(
        cut_c.at_risk > 0,
        "without headroom, losing C overloads A: {cut_c:#?}"
    );

    let p = place(&c.inputs(), &Options::default()).expect("valid");
    assert!(Report::check(&c.inputs(), 0.8, &p).is_clean());
    assert!(
        p.headroom[2][0] < 0.8,
        "line A planned below the ceiling: {:?}",
        p.headroom
    );
    for l in [2, 3, 4] {
        let (r, _) = cut(&c.inputs(), &p, LinkIdx(l), &Options::default()).expect("valid");
        assert_eq!(r.at_risk, 0, "cut of link {l}: {r:#?}");
        assert!(r.over_capacity.is_empty());
    }
}

#[test]
fn where_no_headroom_can_help_the_cut_says_which_line_and_how_many() {
    // Same fleet, but s2 has 12 classes: after losing C they have only A, which
    // holds 10, however the rest is placed.
    let mut c = shared_line();
    c.demand = demand(
        vec![service("class", 61_000, profile(1000, 0))],
        &[(0, 3, 0, 8), (1, 3, 0, 12)],
    );
    let p = place(&c.inputs(), &Options::default()).expect("valid");
    let (r, _) = cut(&c.inputs(), &p, LinkIdx(4), &Options::default()).expect("valid");
    assert_eq!(r.name, None);
    assert!(r.at_risk > 0, "{r:#?}");
    assert_eq!(
        r.over_capacity[0].link,
        LinkIdx(2),
        "A is the line past 100 %"
    );
}

#[test]
fn shortfalls_name_the_links_and_the_classes() {
    let links = [
        link(0, 1, false, 10),
        link(1, 2, false, 10),
        link(2, 3, false, 10),
    ];
    let caps = vec![[Some(5_000); 2], [None, None], [None, None]];
    // 6 classes on a link that holds 4 at the ceiling and 5 at all; 2 classes whose
    // only path (30 ms) is slower than their 25 ms budget.
    let d = demand(
        vec![
            service("class", 200_000, profile(1000, 1000)),
            service("tight", 25_000, profile(1, 1)),
        ],
        &[(0, 1, 0, 6), (0, 3, 1, 2)],
    );
    let mut c = case(&links, caps, d);
    let p = place(&c.inputs(), &Options::default()).expect("valid");
    let r = Report::check(&c.inputs(), 0.8, &p);
    let over: Vec<(LinkIdx, Dir, u64)> = r
        .over_capacity
        .iter()
        .map(|l| (l.link, l.dir, l.load_kbps))
        .collect();
    assert_eq!(
        over,
        vec![
            (LinkIdx(0), Dir::AtoB, 6_002),
            (LinkIdx(0), Dir::BtoA, 6_002)
        ]
    );
    assert_eq!(r.over_ceiling.len(), 2);
    assert_eq!(r.over_budget.len(), 1);
    let ob = &r.over_budget[0];
    assert_eq!(
        (ob.src, ob.dst, ob.service.as_str()),
        (NodeIdx(0), NodeIdx(3), "tight")
    );
    assert_eq!(
        (ob.classes, ob.delay_us, ob.budget_us),
        (2, Some(30_000), 25_000)
    );

    // A pair cut off entirely: its classes are unplaced, never dropped.
    c.metric = c.metric.with_link_down(LinkIdx(1));
    let p = place(&c.inputs(), &Options::default()).expect("valid");
    let r = Report::check(&c.inputs(), 0.8, &p);
    assert_eq!(r.unplaced.len(), 1);
    assert_eq!((r.unplaced[0].dst, r.unplaced[0].classes), (NodeIdx(3), 2));
    assert_eq!(p.total_classes(), 8);
}

fn world_inputs() -> (topology::Topology, Metric, Capacities, Demand) {
    let t = topology::world().expect("valid");
    let m = Metric::expected_delay(&t);
    let cap = Capacities::from_topology(&t);
    let d = Demand::default_peak(&t);
    (t, m, cap, d)
}

#[test]
fn a_cut_line_moves_its_classes_and_nothing_else() {
    let (t, m, cap, d) = world_inputs();
    let inputs = Inputs {
        topology: &t,
        metric: &m,
        capacity: &cap,
        background: None,
        demand: &d,
    };
    let o = Options::default();
    let p = place(&inputs, &o).expect("valid");
    // Nothing changed: nothing moves.
    let same = place_incremental(&p, &inputs, &o).expect("valid");
    assert!(
        same.moves.is_empty(),
        "{:#?}",
        &same.moves[..same.moves.len().min(3)]
    );
    assert_eq!(same.placement.pairs, p.pairs);

    let topaz = (0..t.links.len())
        .map(|l| LinkIdx(l as u32))
        .find(|&l| t.link(l).name.as_deref() == Some("topaz"))
        .expect("topaz");
    assert_eq!(t.link(topaz).kind, LinkKind::Undersea);
    let on_topaz = p.classes_on(topaz);
    let down = m.with_link_down(topaz);
    let after = Inputs {
        metric: &down,
        ..inputs
    };
    let r = place_incremental(&p, &after, &o).expect("valid");
    assert!(
        r.moves.iter().all(|x| x.reason == MoveReason::Broken),
        "{:#?}",
        r.moves
    );
    assert_eq!(r.moved(), on_topaz);
    assert!(Report::check(&after, 0.8, &r.placement)
        .over_capacity
        .is_empty());
    // Every class not on topaz is where it was.
    for (old, new) in p.pairs.iter().zip(&r.placement.pairs) {
        for s in old.shares.iter().filter(|s| !s.path.links.contains(&topaz)) {
            let kept = new.shares.iter().find(|n| n.path.links == s.path.links);
            assert!(kept.is_some_and(|k| k.classes >= s.classes), "{s:?}");
        }
    }
    // At most 1,000 at once: the rest are held for the next run.
    let bounded = Options {
        max_moves: 1_000,
        ..Options::default()
    };
    let r = place_incremental(&p, &after, &bounded).expect("valid");
    assert_eq!(r.moved(), 1_000);
    assert_eq!(r.held, on_topaz - 1_000);
    let next = place_incremental(&r.placement, &after, &bounded).expect("valid");
    assert_eq!(next.moved(), 1_000.min(on_topaz - 1_000));
}

#[test]
fn a_class_moves_to_a_faster_path_only_past_the_band() {
    // n0 → n1 directly (100 ms), or through n2 (40 + 50 = 90 ms): placed through n2.
    let links = [
        link(0, 1, false, 100),
        link(0, 2, false, 40),
        link(2, 1, false, 50),
    ];
    let caps = vec![[None, None]; 3];
    let d = demand(
        vec![service("class", 200_000, profile(10, 10))],
        &[(0, 1, 0, 3)],
    );
    let c = case(&links, caps, d);
    let o = Options::default();
    let p = place(&c.inputs(), &o).expect("valid");
    assert_eq!(
        p.pairs[0].shares[0].path.links,
        vec![LinkIdx(1), LinkIdx(2)]
    );
    let with_direct = |ms: u64| {
        let mut c2 = c.clone();
        c2.metric = Metric::new(vec![Some(ms * 1000), Some(40_000), Some(50_000)]);
        place_incremental(&p, &c2.inputs(), &o).expect("valid")
    };
    // 85 ms: 5 ms (5.6 %) faster, not past the band.
    assert!(with_direct(85).moves.is_empty());
    // 80 ms: 10 ms and 11 % faster: all three move.
    let r = with_direct(80);
    assert_eq!(r.moved(), 3);
    assert!(r.moves.iter().all(|m| m.reason == MoveReason::Better));
    assert_eq!(r.placement.pairs[0].shares[0].path.links, vec![LinkIdx(0)]);
}

#[test]
fn fewer_classes_leave_the_slowest_path_first() {
    // The direct link holds 2 classes at the ceiling; the rest go around.
    let links = [
        link(0, 1, false, 10),
        link(0, 2, false, 10),
        link(2, 1, false, 10),
    ];
    let caps = vec![[Some(25), Some(25)], [None, None], [None, None]];
    let d = demand(
        vec![service("class", 200_000, profile(10, 10))],
        &[(0, 1, 0, 5)],
    );
    let mut c = case(&links, caps, d);
    let o = Options::default();
    let p = place(&c.inputs(), &o).expect("valid");
    assert_eq!(
        p.pairs[0]
            .shares
            .iter()
            .map(|s| s.classes)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    c.demand = demand(c.demand.services.clone(), &[(0, 1, 0, 3)]);
    let r = place_incremental(&p, &c.inputs(), &o).expect("valid");
    assert_eq!((r.removed, r.added, r.moved()), (2, 0, 0));
    let left: Vec<u64> = r.placement.pairs[0]
        .shares
        .iter()
        .map(|s| s.classes)
        .collect();
    assert_eq!(left, vec![2, 1]);
}

#[test]
fn inputs_that_do_not_fit_together_are_refused_with_what_is_wrong() {
    let links = [link(0, 1, false, 10)];
    let d = demand(
        vec![service("class", 200_000, profile(10, 10))],
        &[(0, 1, 0, 3)],
    );
    let c = case(&links, vec![[None, None]], d);
    let o = Options::default();
    let mut bad = c.clone();
    bad.metric = Metric::new(vec![]);
    assert_eq!(
        place(&bad.inputs(), &o),
        Err(PlacementError::MetricLength {
            metric: 0,
            links: 1
        })
    );
    let mut bad = c.clone();
    bad.demand = demand(c.demand.services.clone(), &[(0, 7, 0, 1)]);
    assert!(matches!(
        place(&bad.inputs(), &o),
        Err(PlacementError::DemandNode { node: 7, .. })
    ));
    let mut bad = c.clone();
    bad.demand = demand(c.demand.services.clone(), &[(0, 1, 3, 1)]);
    let err = place(&bad.inputs(), &o).expect_err("no service 3");
    assert!(err.to_string().contains("service 3"), "{err}");
    let nan = Options {
        ceiling: f64::NAN,
        ..Options::default()
    };
    assert!(matches!(
        place(&c.inputs(), &nan),
        Err(PlacementError::Ceiling(_))
    ));
}
