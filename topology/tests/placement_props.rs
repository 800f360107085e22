//! Property tests of placement on random tiny fleets and demands, against a brute
//! force that enumerates every assignment of classes to paths: the placement meets
//! ceiling and budget exactly when some assignment does; it is deterministic; it
//! does not move classes when delays jitter; when load grows it moves few; it never
//! moves more than `max_moves`.

mod placement_support;

use placement_support::*;
use proptest::prelude::*;
use topology::paths::Metric;
use topology::placement::{
    cut, delay_only, place, place_incremental, Capacities, Dir, LinkLoads, MoveReason, Options,
    Report,
};
use topology::LinkIdx;

/// A random connected fleet of 2 to 5 nodes (a random tree plus up to 4 more links,
/// some undersea, a few down), per-direction capacities of 1 to 6 classes at the
/// ceiling (or unknown), a little background, and 1 to 4 pairs of 1 to 4 classes in
/// two services with different profiles and budgets.
fn case() -> impl Strategy<Value = Case> {
    (2usize..=5)
        .prop_flat_map(|n| {
            let tree = prop::collection::vec(
                (any::<prop::sample::Index>(), 1u64..=40, any::<bool>()),
                n - 1,
            );
            let extra = prop::collection::vec((0..n, 0..n, 1u64..=40, any::<bool>()), 1..=4);
            let per_link = prop::collection::vec(
                (
                    prop::bool::weighted(0.05),
                    [
                        prop::option::weighted(0.9, 20u64..=80),
                        prop::option::weighted(0.9, 20u64..=80),
                    ],
                    [prop::bool::weighted(0.1), prop::bool::weighted(0.1)],
                ),
                n + 2,
            );
            let pairs =
                prop::collection::vec((0..n as u32, 0..n as u32, 0usize..2, 1u64..=4), 1..=4);
            let budgets = (60u64..=150, 60u64..=150);
            (Just(n), tree, extra, per_link, pairs, budgets)
        })
        .prop_map(|(n, tree, extra, per_link, pairs, (b0, b1))| {
            let mut links = Vec::new();
            let mut seen = std::collections::BTreeSet::new();
            for (i, (parent, ms, undersea)) in tree.into_iter().enumerate() {
                let (a, b) = (parent.index(i + 1), i + 1);
                seen.insert((a.min(b), a.max(b)));
                links.push(TinyLink {
                    a,
                    b,
                    undersea,
                    delay_us: ms * 1000,
                });
            }
            for (a, b, ms, undersea) in extra {
                if a != b && seen.insert((a.min(b), a.max(b))) {
                    links.push(TinyLink {
                        a,
                        b,
                        undersea,
                        delay_us: ms * 1000,
                    });
                }
            }
            let t = topology(n, &links);
            let mut costs = Vec::new();
            let mut caps = Vec::new();
            let mut bg = Vec::new();
            for (i, l) in t.links.iter().enumerate() {
                let (down, cap, busy) = per_link[i % per_link.len()];
                costs.push((!down).then_some(l.delay_us));
                caps.push(cap);
                bg.push([u64::from(busy[0]) * 5, u64::from(busy[1]) * 5]);
            }
            let services = vec![
                service("class", b0 * 1000, profile(10, 5)),
                service("audio", b1 * 1000, profile(4, 4)),
            ];
            let pairs: Vec<_> = pairs.into_iter().filter(|p| p.0 != p.1).collect();
            Case {
                demand: demand(services, &pairs),
                metric: Metric::new(costs),
                capacity: Capacities::new(caps),
                background: LinkLoads::new(bg),
                topology: t,
            }
        })
}

/// The cases where placement has work to do: a placement within ceiling and budget
/// exists, but every class on its shortest path is not one (about 7 % of `case()`).
fn contended_case() -> impl Strategy<Value = Case> {
    case().prop_filter("feasible, but not by delay alone", |c| {
        let Ok(b) = delay_only(&c.inputs()) else {
            return false;
        };
        brute_force_feasible(c, 0.8) && !reference_clean(c, &b, 0.8)
    })
}

fn plain() -> Options {
    Options {
        n_minus_1: false,
        ..Options::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn meets_ceiling_and_budget_exactly_when_some_assignment_does(c in case()) {
        let feasible = brute_force_feasible(&c, 0.8);
        for options in [plain(), Options::default()] {
            let p = place(&c.inputs(), &options).expect("valid inputs");
            let clean = reference_clean(&c, &p, 0.8);
            prop_assert_eq!(
                clean,
                feasible,
                "n_minus_1 {}:\n{}{}",
                options.n_minus_1,
                describe(&c),
                describe_placement(&p)
            );
            // The report tells the same story, and every class is accounted for.
            let report = Report::check(&c.inputs(), 0.8, &p);
            prop_assert_eq!(report.is_clean(), clean, "{:#?}", report);
            prop_assert_eq!(p.total_classes(), c.demand.total_classes());
            if !feasible {
                let explained = !report.over_ceiling.is_empty()
                    || report.classes_over_budget() > 0
                    || report.classes_without_path() > 0;
                prop_assert!(explained, "infeasible but nothing reported: {:#?}", report);
            }
        }
    }

    #[test]
    fn the_same_inputs_give_the_same_placement(c in case()) {
        let a = place(&c.inputs(), &Options::default()).expect("valid");
        let b = place(&c.inputs(), &Options::default()).expect("valid");
        prop_assert_eq!(a, b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, max_global_rejects: 100_000, ..ProptestConfig::default() })]

    #[test]
    fn contended_cases_are_placed_within_ceiling_and_budget(c in contended_case()) {
        for options in [plain(), Options::default()] {
            let p = place(&c.inputs(), &options).expect("valid inputs");
            prop_assert!(
                reference_clean(&c, &p, 0.8),
                "n_minus_1 {}:\n{}{}",
                options.n_minus_1,
                describe(&c),
                describe_placement(&p)
            );
            // Deterministic where it has choices to make.
            prop_assert_eq!(&p, &place(&c.inputs(), &options).expect("valid inputs"));
        }
    }

    #[test]
    fn headroom_never_leaves_more_at_risk_than_none(c in contended_case()) {
        let at_risk = |p: &topology::placement::Placement| -> u64 {
            (0..c.topology.links.len())
                .map(|l| LinkIdx(l as u32))
                .filter(|&l| c.topology.link(l).kind == topology::LinkKind::Undersea)
                .map(|l| cut(&c.inputs(), p, l, &Options::default()).expect("valid").0.at_risk)
                .sum()
        };
        let plain_p = place(&c.inputs(), &plain()).expect("valid");
        let kept = place(&c.inputs(), &Options::default()).expect("valid");
        prop_assert!(reference_clean(&c, &kept, 0.8));
        prop_assert!(at_risk(&kept) <= at_risk(&plain_p));
    }

    #[test]
    fn re_placing_under_the_same_inputs_moves_nothing(c in case()) {
        let p = place(&c.inputs(), &Options::default()).expect("valid");
        let r = place_incremental(&p, &c.inputs(), &Options::default()).expect("valid");
        prop_assert!(r.moves.is_empty(), "{:#?}\n{}{}", r.moves, describe(&c), describe_placement(&p));
        prop_assert_eq!(r.placement.pairs, p.pairs);
    }

    #[test]
    fn a_cut_says_what_the_placement_after_it_shows(c in case(), which in any::<prop::sample::Index>()) {
        let p = place(&c.inputs(), &Options::default()).expect("valid");
        let l = LinkIdx(which.index(c.topology.links.len()) as u32);
        let (r, after) = cut(&c.inputs(), &p, l, &Options::default()).expect("valid");
        let mut c2 = c.clone();
        c2.metric = c.metric.with_link_down(l);
        let check = Report::check(&c2.inputs(), 0.8, &after);
        prop_assert_eq!(&r.loads, &check.loads);
        prop_assert_eq!(&r.over_capacity, &check.over_capacity);
        prop_assert_eq!(&r.over_ceiling, &check.over_ceiling);
        prop_assert_eq!(r.stranded, check.classes_without_path());
        prop_assert!(r.left_budget <= check.classes_over_budget());
        prop_assert_eq!(after.total_classes(), c.demand.total_classes());
        prop_assert_eq!(r.classes_on_link, p.classes_on(l));
        prop_assert_eq!(after.classes_on(l), 0);
        // At risk: the classes crossing a link past capacity, and the stranded.
        let full: Vec<LinkIdx> = check.over_capacity.iter().map(|x| x.link).collect();
        let crossing: u64 = after
            .pairs
            .iter()
            .flat_map(|x| &x.shares)
            .filter(|s| s.path.links.iter().any(|l| full.contains(l)))
            .map(|s| s.classes)
            .sum();
        prop_assert_eq!(r.at_risk, crossing + r.stranded);
    }

    #[test]
    fn jitter_in_delay_moves_nothing(c in case(), jitter in prop::collection::vec(-3i64..=3, 8)) {
        let p = place(&c.inputs(), &Options::default()).expect("valid");
        prop_assume!(Report::check(&c.inputs(), 0.8, &p).is_clean());
        // Every link's delay changes by up to ±3 %.
        let costs = (0..c.topology.links.len())
            .map(|l| c.metric.cost(LinkIdx(l as u32)).map(|d| {
                (d as i64 + d as i64 * jitter[l % jitter.len()] / 100) as u64
            }))
            .collect();
        let mut c2 = c.clone();
        c2.metric = Metric::new(costs);
        let r = place_incremental(&p, &c2.inputs(), &Options::default()).expect("valid");
        for m in &r.moves {
            // Only a class that jitter pushed over its budget may move.
            let budget = c.demand.services.iter().find(|s| s.name == m.service).map(|s| s.budget_us);
            let delay: Option<u64> = m.from.links.iter().map(|&l| c2.metric.cost(l)).sum();
            prop_assert_eq!(m.reason, MoveReason::OverBudget, "{:#?}", r.moves);
            prop_assert!(delay > budget, "{:?}", m);
        }
        prop_assert_eq!(r.held, 0);
    }

    #[test]
    fn more_background_load_moves_only_what_the_excess_needs(
        c in case(),
        link in any::<prop::sample::Index>(),
        forward in any::<bool>(),
        extra in 1u64..=20,
    ) {
        let p = place(&c.inputs(), &plain()).expect("valid");
        prop_assume!(Report::check(&c.inputs(), 0.8, &p).is_clean());
        let l = LinkIdx(link.index(c.topology.links.len()) as u32);
        let dir = if forward { Dir::AtoB } else { Dir::BtoA };
        let mut c2 = c.clone();
        c2.background.set(l, dir, c.background.get(l, dir) + extra);
        let r = place_incremental(&p, &c2.inputs(), &plain()).expect("valid");
        // Each class moved off the link frees at least 4 kbit/s on it (the smallest
        // profile figure), so the excess bounds the moves.
        let before = Report::check(&c2.inputs(), 0.8, &p);
        let excess: u64 = before
            .over_ceiling
            .iter()
            .map(|x| x.load_kbps - limit(x.capacity_kbps, 0.8))
            .sum();
        let over_ceiling: u64 = r.moves.iter().filter(|m| m.reason == MoveReason::OverCeiling).map(|m| m.classes).sum();
        prop_assert!(over_ceiling <= excess.div_ceil(4), "{} classes moved for {} kbit/s", over_ceiling, excess);
        if excess == 0 {
            prop_assert!(r.moves.is_empty(), "nothing over the ceiling, yet {:#?}", r.moves);
        }
        let after = Report::check(&c2.inputs(), 0.8, &r.placement);
        prop_assert_eq!(r.placement.total_classes(), c.demand.total_classes());
        // Moves never make the over-ceiling excess worse.
        let excess_after: u64 = after
            .over_ceiling
            .iter()
            .map(|x| x.load_kbps - limit(x.capacity_kbps, 0.8))
            .sum();
        prop_assert!(excess_after <= excess, "{} -> {}", excess, excess_after);
    }

    #[test]
    fn never_more_than_max_moves(
        c in case(),
        down in any::<prop::sample::Index>(),
        max_moves in 0u64..=4,
        more in 0u64..=3,
    ) {
        let p = place(&c.inputs(), &Options::default()).expect("valid");
        let mut c2 = c.clone();
        c2.metric = c.metric.with_link_down(LinkIdx(down.index(c.topology.links.len()) as u32));
        // The demand grows too: new classes are placed, not moved.
        let pairs: Vec<_> = c.demand.pairs.iter().map(|p| (p.src.0, p.dst.0, p.service, p.classes + more)).collect();
        c2.demand = demand(c.demand.services.clone(), &pairs);
        let options = Options { max_moves, ..Options::default() };
        let r = place_incremental(&p, &c2.inputs(), &options).expect("valid");
        prop_assert!(r.moved() <= max_moves, "{} > {}", r.moved(), max_moves);
        prop_assert_eq!(r.placement.total_classes(), c2.demand.total_classes());
        let had_no_path: u64 = p.pairs.iter().map(|x| x.unplaced).sum();
        prop_assert_eq!(r.added, more * c.demand.pairs.len() as u64 + had_no_path);
        // Whatever was on the broken link and did not move is held, never lost.
        let report = Report::check(&c2.inputs(), 0.8, &r.placement);
        let broken: u64 = report.broken.iter().map(|s| s.classes).sum();
        prop_assert!(broken <= r.held, "{} broken, {} held", broken, r.held);
        let unlimited = place_incremental(&p, &c2.inputs(), &Options::default()).expect("valid");
        let broken_unlimited: u64 = Report::check(&c2.inputs(), 0.8, &unlimited.placement).broken.iter().map(|s| s.classes).sum();
        prop_assert_eq!(broken_unlimited, 0, "with no bound every broken class moves");
        prop_assert_eq!(unlimited.held, 0);
    }
}
