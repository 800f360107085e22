//! Tests of route selection on small topologies with a fake clock: hold, immediate
//! failover, hold-down, flap resistance, timeouts, and table diffs.

use std::time::{Duration, Instant};

use topology::paths::Hop;
use topology::{LinkIdx, NodeIdx};

use super::*;
use crate::linkstate::tests::{down, topology, up};
use crate::linkstate::{LinkReport, LinkStateDb};

const A: NodeIdx = NodeIdx(0);
const B: NodeIdx = NodeIdx(1);
const C: NodeIdx = NodeIdx(2);
const D: NodeIdx = NodeIdx(3);
const AB: LinkIdx = LinkIdx(0);
const BD: LinkIdx = LinkIdx(1);
const AC: LinkIdx = LinkIdx(2);
const CD: LinkIdx = LinkIdx(3);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// a — b — d at 10 + 10 ms (fast), a — c — d at 15 + 15 ms (slow).
fn diamond() -> (LinkStateDb, RouteSelector) {
    let t = topology(
        &["a", "b", "c", "d"],
        &[
            ("a", "b", 10.0),
            ("b", "d", 10.0),
            ("a", "c", 15.0),
            ("c", "d", 15.0),
        ],
    );
    let db = LinkStateDb::new(t.clone());
    (db, RouteSelector::new(t, StabilityConfig::default()))
}

/// The diamond once both ends of every link have reported it at its expected
/// delay, up for a minute: every link sighted and settled, so later
/// measurements go through the band rules.
fn measured_diamond() -> (LinkStateDb, RouteSelector) {
    let (mut db, mut sel) = diamond();
    let t0 = Instant::now();
    for (link, rtt) in [(AB, 20), (BD, 20), (AC, 30), (CD, 30)] {
        let l = db.topology().link(link).clone();
        for end in [l.a, l.b] {
            let report = LinkReport {
                up_for: Some(Duration::from_secs(60)),
                ..up(end, link, ms(rtt))
            };
            db.handle_report(report, t0).unwrap();
        }
        sel.update(&db, t0);
    }
    assert_eq!(sel.routes().version, 1, "measured as estimated: no change");
    (db, sel)
}

fn next(sel: &RouteSelector, from: NodeIdx, to: NodeIdx) -> Option<NodeIdx> {
    sel.routes()
        .node(from)
        .entries
        .get(&to)
        .map(|e| e.primary.node)
}

/// Both ends of `link` report it up with this RTT, then the selector updates.
fn report_both(
    db: &mut LinkStateDb,
    sel: &mut RouteSelector,
    link: LinkIdx,
    rtt: Duration,
    now: Instant,
) {
    let l = db.topology().link(link).clone();
    db.handle_report(up(l.a, link, rtt), now).unwrap();
    db.handle_report(up(l.b, link, rtt), now).unwrap();
    sel.update(db, now);
}

#[test]
fn starts_on_expected_delays_with_a_backup() {
    let (_, sel) = diamond();
    let e = sel.routes().node(A).entries[&D];
    assert_eq!(e.primary, Hop { node: B, link: AB });
    assert_eq!(e.backup, Some(Hop { node: C, link: AC }));
    assert_eq!(sel.routes().version, 1);
    assert_eq!(sel.in_force(BD), Some(10_000));
    assert_eq!(sel.poll_timeout(), None);
    assert!(!sel.routes().node(A).entries.contains_key(&A));
}

#[test]
fn the_first_measurement_of_a_link_replaces_the_estimate_at_once() {
    // b — d turns out at 30 ms one way, not the 10 ms the topology says: the
    // route moves now, while the fleet starts, not seconds after it is ready.
    let (mut db, mut sel) = diamond();
    let t0 = Instant::now();
    report_both(&mut db, &mut sel, BD, ms(60), t0);
    assert_eq!(sel.in_force(BD), Some(30_000));
    assert_eq!(next(&sel, A, D), Some(C), "40 ms via b, 30 ms via c");
    assert_eq!(sel.poll_timeout(), None, "no hold running");
    // A first measurement that matches the estimate changes nothing.
    let version = sel.routes().version;
    report_both(&mut db, &mut sel, AB, ms(20), t0);
    assert_eq!(sel.routes().version, version);
    // Once the link has settled the band rules apply: the same jump is held.
    let settled = t0 + StabilityConfig::default().settle;
    report_both(&mut db, &mut sel, BD, ms(20), settled);
    assert_eq!(sel.in_force(BD), Some(30_000), "held, not followed");
    assert!(sel.poll_timeout().is_some());
}

#[test]
fn measurements_in_a_links_first_seconds_replace_its_cost_without_a_hold() {
    // Measured while the fleet starts (every relay handshaking at once), b — d
    // first shows 4× its RTT; half a second later it shows its real 10 ms.
    // Routes follow now, before the fleet is ready, not 3 s after.
    let (mut db, mut sel) = diamond();
    let t0 = Instant::now();
    for link in [AB, AC, CD] {
        report_both(
            &mut db,
            &mut sel,
            link,
            ms(if link == AB { 20 } else { 30 }),
            t0,
        );
    }
    report_both(&mut db, &mut sel, BD, ms(80), t0);
    assert_eq!(next(&sel, A, D), Some(C), "50 ms via b, 30 via c");
    report_both(&mut db, &mut sel, BD, ms(20), t0 + ms(500));
    assert_eq!(sel.in_force(BD), Some(10_000), "followed at once");
    assert_eq!(next(&sel, A, D), Some(B));
    assert_eq!(sel.poll_timeout(), None, "no hold running");
    // A rise while settling is start-up noise, held as always.
    report_both(&mut db, &mut sel, BD, ms(80), t0 + ms(600));
    assert_eq!(sel.in_force(BD), Some(10_000), "a rise is held");
    assert!(sel.poll_timeout().is_some());
    // Noise inside the band is still noise while settling.
    let version = sel.routes().version;
    report_both(&mut db, &mut sel, BD, ms(24), t0 + ms(900));
    assert_eq!(sel.in_force(BD), Some(10_000));
    assert_eq!(sel.routes().version, version);
    // The view says until when, so a fleet can wait for it.
    assert_eq!(
        sel.settle_until(BD),
        Some(t0 + StabilityConfig::default().settle)
    );
}

#[test]
fn a_link_up_for_long_before_the_controller_saw_it_does_not_settle_again() {
    // A controller that restarts under a running fleet: its relays say the link
    // has been up a minute, so a jump after the first sighting is held.
    let (mut db, mut sel) = diamond();
    let t0 = Instant::now();
    let l = db.topology().link(BD).clone();
    for end in [l.a, l.b] {
        let report = LinkReport {
            up_for: Some(Duration::from_secs(60)),
            ..up(end, BD, ms(20))
        };
        db.handle_report(report, t0).unwrap();
    }
    sel.update(&db, t0);
    report_both(&mut db, &mut sel, BD, ms(80), t0 + ms(100));
    assert_eq!(sel.in_force(BD), Some(10_000), "held, not followed");
}

#[test]
fn a_lasting_degradation_moves_the_route_after_hold_and_not_before() {
    let (mut db, mut sel) = measured_diamond();
    let t0 = Instant::now();
    // b — d at 5× its delay: 50 ms one way, RTT 100 ms.
    for step in 0..30u64 {
        let now = t0 + ms(100 * step);
        report_both(&mut db, &mut sel, BD, ms(100), now);
        assert_eq!(next(&sel, A, D), Some(B), "moved early, at {step}00 ms");
        assert_eq!(sel.poll_timeout(), Some(t0 + ms(3000)));
    }
    assert_eq!(sel.in_force(BD), Some(10_000));
    report_both(&mut db, &mut sel, BD, ms(100), t0 + ms(3000));
    assert_eq!(next(&sel, A, D), Some(C));
    assert_eq!(next(&sel, B, D), Some(A), "b — a — c — d: 45 ms < 50 ms");
    assert_eq!(sel.in_force(BD), Some(50_000));
    assert_eq!(sel.routes().version, 2);
    assert_eq!(sel.poll_timeout(), None);
}

#[test]
fn the_hold_expires_without_a_new_report() {
    let (mut db, mut sel) = measured_diamond();
    let t0 = Instant::now();
    report_both(&mut db, &mut sel, BD, ms(100), t0);
    let at = sel.poll_timeout().expect("a hold is running");
    assert_eq!(at, t0 + StabilityConfig::default().hold);
    assert!(sel.update(&db, at));
    assert_eq!(next(&sel, A, D), Some(C));
}

#[test]
fn a_measurement_back_inside_the_band_restarts_the_hold() {
    let (mut db, mut sel) = measured_diamond();
    let t0 = Instant::now();
    report_both(&mut db, &mut sel, BD, ms(100), t0);
    report_both(&mut db, &mut sel, BD, ms(100), t0 + ms(2000));
    // 12 ms one way: within 5 ms of the 10 ms in force.
    report_both(&mut db, &mut sel, BD, ms(24), t0 + ms(2500));
    assert_eq!(sel.poll_timeout(), None);
    report_both(&mut db, &mut sel, BD, ms(100), t0 + ms(3000));
    report_both(&mut db, &mut sel, BD, ms(100), t0 + ms(5999));
    assert_eq!(next(&sel, A, D), Some(B));
    report_both(&mut db, &mut sel, BD, ms(100), t0 + ms(6000));
    assert_eq!(next(&sel, A, D), Some(C));
}

#[test]
fn an_improvement_is_held_too() {
    let (mut db, mut sel) = measured_diamond();
    let t0 = Instant::now();
    // a — c and c — d turn out at 4 ms each: 8 ms beats 20 ms, but only once lasting.
    for step in 0..=30u64 {
        let now = t0 + ms(100 * step);
        report_both(&mut db, &mut sel, AC, ms(8), now);
        report_both(&mut db, &mut sel, CD, ms(8), now);
        let expect = if step < 30 { B } else { C };
        assert_eq!(next(&sel, A, D), Some(expect), "at {step}00 ms");
    }
}

#[test]
fn a_link_going_down_moves_the_route_at_once() {
    let (mut db, mut sel) = diamond();
    let t0 = Instant::now();
    report_both(&mut db, &mut sel, BD, ms(20), t0);
    let now = t0 + ms(1000);
    db.handle_report(down(B, BD), now).unwrap();
    assert!(sel.update(&db, now));
    assert_eq!(next(&sel, A, D), Some(C));
    assert_eq!(next(&sel, B, D), Some(A));
    assert_eq!(sel.in_force(BD), None);
    assert_eq!(sel.routes().version, 2);
    // Nothing uses the dead link, not even as a backup.
    for table in &sel.routes().tables {
        for e in table.entries.values() {
            assert_ne!(e.primary.link, BD);
            assert_ne!(e.backup.map(|h| h.link), Some(BD));
        }
    }
}

#[test]
fn a_restored_link_is_held_down_before_reuse() {
    let (mut db, mut sel) = diamond();
    let start = Instant::now();
    report_both(&mut db, &mut sel, BD, ms(20), start); // up, then it fails
    let t0 = start + ms(10);
    db.handle_report(down(D, BD), t0).unwrap();
    sel.update(&db, t0);
    assert_eq!(next(&sel, A, D), Some(C));
    let back = t0 + ms(1000);
    let hold_down = StabilityConfig::default().hold_down;
    let mut now = back;
    while now < back + hold_down {
        report_both(&mut db, &mut sel, BD, ms(20), now);
        assert_eq!(
            next(&sel, A, D),
            Some(C),
            "reused early, {:?} after",
            now - back
        );
        assert_eq!(sel.in_force(BD), None);
        assert_eq!(sel.poll_timeout(), Some(back + hold_down));
        now += ms(250);
    }
    assert_eq!(now, back + hold_down);
    report_both(&mut db, &mut sel, BD, ms(20), now);
    assert_eq!(next(&sel, A, D), Some(B));
    assert_eq!(sel.in_force(BD), Some(10_000));
    assert_eq!(sel.poll_timeout(), None);
}

#[test]
fn a_down_and_up_between_updates_is_still_held_down() {
    let (mut db, mut sel) = diamond();
    let t0 = Instant::now();
    report_both(&mut db, &mut sel, BD, ms(20), t0);
    db.handle_report(down(B, BD), t0 + ms(100)).unwrap();
    db.handle_report(up(B, BD, ms(20)), t0 + ms(200)).unwrap();
    assert!(sel.update(&db, t0 + ms(300)));
    assert_eq!(sel.in_force(BD), None);
    assert_eq!(sel.poll_timeout(), Some(t0 + ms(200) + ms(10_000)));
}

/// xorshift64: deterministic noise for the flap test.
fn noise(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

/// Feeds ±10 % RTT noise on every link, from both ends, every 100 ms for 60 s, and
/// counts how often some node's primary next hop changes.
fn primary_changes_under_noise(config: StabilityConfig) -> usize {
    // Two paths a → d: 60 + 60 ms via b and 63 + 63 ms via c, 5 % apart.
    let t = topology(
        &["a", "b", "c", "d"],
        &[
            ("a", "b", 60.0),
            ("b", "d", 60.0),
            ("a", "c", 63.0),
            ("c", "d", 63.0),
        ],
    );
    let mut db = LinkStateDb::new(t.clone());
    let mut sel = RouteSelector::new(t.clone(), config);
    let mut seed = 0x5eed_1234_abcd_0001u64;
    let t0 = Instant::now();
    // Every link's first measurement, at its expected delay, replaces the
    // estimate (and changes nothing); the noise comes after.
    for (i, l) in t.links.iter().enumerate() {
        for end in [l.a, l.b] {
            let rtt = Duration::from_micros(2 * l.delay_us);
            db.handle_report(up(end, LinkIdx(i as u32), rtt), t0)
                .unwrap();
        }
    }
    sel.update(&db, t0);
    let mut changes = 0;
    for step in 1..=600u64 {
        let now = t0 + ms(100 * step);
        for (i, l) in t.links.iter().enumerate() {
            for end in [l.a, l.b] {
                let factor = 1.0 + (noise(&mut seed) * 0.2 - 0.1);
                let rtt = Duration::from_micros((2.0 * l.delay_us as f64 * factor) as u64);
                db.handle_report(up(end, LinkIdx(i as u32), rtt), now)
                    .unwrap();
            }
        }
        let before = sel.routes().clone();
        sel.update(&db, now);
        for (old, new) in before.tables.iter().zip(&sel.routes().tables) {
            changes += old
                .entries
                .iter()
                .filter(|(dst, e)| new.entries.get(dst).map(|n| n.primary) != Some(e.primary))
                .count();
        }
    }
    changes
}

#[test]
fn noise_within_the_band_never_moves_a_route() {
    let changes = primary_changes_under_noise(StabilityConfig::default());
    assert!(changes <= 1, "{changes} primary next-hop changes");
    assert_eq!(changes, 0);
}

#[test]
fn without_stability_the_same_noise_flaps() {
    // The control: proves the noise is enough to move routes when nothing damps it.
    let none = StabilityConfig {
        relative: 0.0,
        absolute: Duration::ZERO,
        hold: Duration::ZERO,
        hold_down: Duration::ZERO,
        settle: Duration::ZERO,
    };
    let changes = primary_changes_under_noise(none);
    assert!(
        changes > 20,
        "only {changes} changes: the flap test proves nothing"
    );
}

fn entry(node: u32, link: u32, backup: Option<(u32, u32)>) -> TableEntry {
    TableEntry {
        primary: Hop {
            node: NodeIdx(node),
            link: LinkIdx(link),
        },
        backup: backup.map(|(n, l)| Hop {
            node: NodeIdx(n),
            link: LinkIdx(l),
        }),
        repair: None,
        second: None,
    }
}

fn table(entries: &[(u32, TableEntry)]) -> NodeTable {
    NodeTable {
        entries: entries.iter().map(|&(d, e)| (NodeIdx(d), e)).collect(),
        placed: Default::default(),
    }
}

#[test]
fn diff_finds_adds_changes_and_removes() {
    let old = table(&[
        (1, entry(1, 0, None)),
        (2, entry(1, 0, Some((3, 2)))),
        (3, entry(3, 2, None)),
        (4, entry(3, 2, None)),
    ]);
    let new = table(&[
        (1, entry(1, 0, None)),         // same
        (2, entry(1, 0, None)),         // backup gone: change
        (4, entry(1, 0, None)),         // primary moved: change
        (5, entry(3, 2, Some((1, 0)))), // new
    ]);
    let d = diff(&old, &new);
    assert_eq!(d.to_add, vec![(NodeIdx(5), entry(3, 2, Some((1, 0))))]);
    assert_eq!(
        d.to_change,
        vec![
            (NodeIdx(2), entry(1, 0, None)),
            (NodeIdx(4), entry(1, 0, None))
        ]
    );
    assert_eq!(d.to_remove, vec![NodeIdx(3)]);
    assert!(!d.is_empty());
}

#[test]
fn diff_of_a_table_with_itself_is_empty() {
    let t = table(&[(1, entry(1, 0, None)), (2, entry(1, 0, Some((3, 2))))]);
    assert!(diff(&t, &t).is_empty());
    assert_eq!(diff(&t, &t), TableDiff::default());
    let empty = NodeTable::default();
    assert!(diff(&empty, &empty).is_empty());
    assert_eq!(diff(&empty, &t).to_add.len(), 2);
    assert_eq!(diff(&t, &empty).to_remove, vec![NodeIdx(1), NodeIdx(2)]);
}

#[test]
fn diff_of_selector_tables_matches_a_failover() {
    let (mut db, mut sel) = diamond();
    let t0 = Instant::now();
    let before = sel.routes().clone();
    db.handle_report(down(B, BD), t0).unwrap();
    sel.update(&db, t0);
    let d = diff(before.node(A), sel.routes().node(A));
    assert!(d.to_add.is_empty() && d.to_remove.is_empty());
    assert_eq!(
        d.to_change,
        vec![(
            D,
            TableEntry {
                primary: Hop { node: C, link: AC },
                backup: None,
                // B–D is down: no path around C is left to repair with.
                repair: None,
                second: None,
            }
        )]
    );
}

#[test]
fn a_link_down_only_while_relays_start_is_used_as_soon_as_it_comes_up() {
    // Relays report their links down until probes pass; that is not a failure.
    let (mut db, mut sel) = diamond();
    let t0 = Instant::now();
    db.handle_report(down(D, BD), t0).unwrap();
    sel.update(&db, t0);
    assert_eq!(next(&sel, A, D), Some(C));
    report_both(&mut db, &mut sel, BD, ms(20), t0 + ms(500));
    assert_eq!(
        next(&sel, A, D),
        Some(B),
        "no hold-down for a link that never failed"
    );
    assert_eq!(sel.in_force(BD), Some(10_000));
}

#[test]
fn a_draining_node_is_routed_around_at_once_but_stays_reachable() {
    let (_db, mut sel) = measured_diamond();
    assert_eq!(next(&sel, A, D), Some(B), "the fast side first");
    let version = sel.routes().version;

    // No hold applies: a drain has a deadline.
    assert!(sel.set_draining(B, true));
    assert!(sel.routes().version > version);
    assert_eq!(next(&sel, A, D), Some(C), "transit moves off b");
    assert_eq!(next(&sel, D, A), Some(C));
    assert_eq!(next(&sel, A, B), Some(B), "b itself is still reachable");
    assert_eq!(next(&sel, B, D), Some(D), "and still reaches others");
    assert!(!sel.set_draining(B, true), "marking twice changes nothing");

    assert!(sel.set_draining(B, false));
    assert_eq!(next(&sel, A, D), Some(B), "back once it stops draining");
}

#[test]
fn a_held_down_link_carries_only_traffic_with_no_other_way() {
    // a — b — c in a line, plus the diamond's habit of reporting both ends.
    let t = topology(&["a", "b", "c"], &[("a", "b", 10.0), ("b", "c", 10.0)]);
    let mut db = LinkStateDb::new(t.clone());
    let mut sel = RouteSelector::new(t, StabilityConfig::default());
    let (ab, bc) = (LinkIdx(0), LinkIdx(1));
    let start = Instant::now();
    report_both(&mut db, &mut sel, ab, ms(20), start);
    report_both(&mut db, &mut sel, bc, ms(20), start);
    // b — c fails (c restarts, say) and comes back: held down for 10 s.
    let t0 = start + ms(10);
    db.handle_report(down(B, bc), t0).unwrap();
    sel.update(&db, t0);
    assert_eq!(next(&sel, A, C), None, "no route while it is down");
    let back = t0 + ms(1000);
    report_both(&mut db, &mut sel, bc, ms(20), back);
    assert_eq!(sel.in_force(bc), None, "held down");
    // c has no other way in or out: its traffic uses the held link at once.
    assert_eq!(next(&sel, C, A), Some(B));
    assert_eq!(next(&sel, A, C), Some(B));
    let cost = sel.metric().cost(bc).expect("usable as a last resort");
    assert!(cost >= HOLD_DOWN_PENALTY, "at a penalty: {cost}");
}

#[test]
fn a_link_seen_down_then_up_before_it_was_ever_up_is_not_held_down() {
    let (mut db, mut sel) = diamond();
    let t0 = Instant::now();
    sel.update(&db, t0);
    // Both ends report it down while starting, then up, all between two updates.
    db.handle_report(down(B, BD), t0 + ms(100)).unwrap();
    db.handle_report(down(D, BD), t0 + ms(100)).unwrap();
    db.handle_report(up(B, BD, ms(20)), t0 + ms(300)).unwrap();
    db.handle_report(up(D, BD, ms(20)), t0 + ms(300)).unwrap();
    sel.update(&db, t0 + ms(400));
    assert_eq!(sel.in_force(BD), Some(10_000), "in force, not held down");
    assert_eq!(sel.poll_timeout(), None);
    assert_eq!(next(&sel, A, D), Some(B));
    // Once it has been up, the same unseen down-and-up is a flap.
    db.handle_report(down(B, BD), t0 + ms(500)).unwrap();
    db.handle_report(up(B, BD, ms(20)), t0 + ms(600)).unwrap();
    sel.update(&db, t0 + ms(700));
    assert_eq!(sel.in_force(BD), None, "held down");
}
