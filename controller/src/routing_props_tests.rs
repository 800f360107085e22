//! Property tests of route selection: on random small connected topologies fed random
//! report sequences, every table is loop-free and complete, never uses a link whose
//! cost in force is `None`, and the version only grows, exactly when tables change.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use topology::{LinkIdx, NodeIdx, Topology};

use super::*;
use crate::linkstate::tests::topology;
use crate::linkstate::{LinkReport, LinkStateDb};

/// A connected topology: a random spanning tree plus random extra links, 1..=100 ms.
fn connected_topology() -> impl Strategy<Value = Arc<Topology>> {
    (2usize..=7).prop_flat_map(|n| {
        let tree = prop::collection::vec((any::<prop::sample::Index>(), 1u32..=100), n - 1);
        let extra = prop::collection::vec((0..n, 0..n, 1u32..=100), 0..=n);
        (tree, extra).prop_map(move |(tree, extra)| {
            let ids: Vec<String> = (0..n).map(|i| format!("n{i}")).collect();
            let mut seen = HashSet::new();
            let mut links = Vec::new();
            let parents = tree
                .iter()
                .enumerate()
                .map(|(i, (p, ms))| (i + 1, p.index(i + 1), *ms));
            for (a, b, ms) in parents.chain(extra) {
                if a != b && seen.insert((a.min(b), a.max(b))) {
                    links.push((ids[a].as_str(), ids[b].as_str(), f64::from(ms)));
                }
            }
            let nodes: Vec<&str> = ids.iter().map(String::as_str).collect();
            topology(&nodes, &links)
        })
    })
}

/// One event: after `after_ms`, one end of a link reports.
#[derive(Debug, Clone)]
struct Event {
    after_ms: u64,
    link: prop::sample::Index,
    from_b: bool,
    up: bool,
    /// Measured RTT as a multiple of twice the expected delay.
    rtt_factor: f64,
    loss: f64,
}

fn event() -> impl Strategy<Value = Event> {
    (
        0u64..3000,
        any::<prop::sample::Index>(),
        any::<bool>(),
        prop::bool::weighted(0.8),
        0.3f64..6.0,
        prop_oneof![Just(0.0), 0.0f64..0.2],
    )
        .prop_map(|(after_ms, link, from_b, up, rtt_factor, loss)| Event {
            after_ms,
            link,
            from_b,
            up,
            rtt_factor,
            loss,
        })
}

fn config() -> impl Strategy<Value = StabilityConfig> {
    (0.0f64..0.3, 0u64..10, 0u64..4000, 0u64..12_000, 0u64..3000).prop_map(
        |(relative, abs, hold, hd, settle)| StabilityConfig {
            relative,
            absolute: Duration::from_millis(abs),
            hold: Duration::from_millis(hold),
            hold_down: Duration::from_millis(hd),
            settle: Duration::from_millis(settle),
        },
    )
}

/// Checks the selector's tables against the invariants; `prev` is the previous tables.
fn check(sel: &RouteSelector, t: &Topology, prev: &RouteTables, now: Instant) {
    let tables = sel.routes();
    let n = t.nodes.len();
    assert!(tables.version >= prev.version, "version went back");
    if tables.tables == prev.tables {
        assert_eq!(
            tables.version, prev.version,
            "version grew without a change"
        );
    } else {
        assert_eq!(
            tables.version,
            prev.version + 1,
            "a change without a new version"
        );
    }
    if let Some(at) = sel.poll_timeout() {
        assert!(at > now, "poll_timeout {at:?} is not after now {now:?}");
    }
    // Reachability over links routes may use (held-down ones as a last resort), by flooding.
    let usable = |l: usize| sel.metric().cost(LinkIdx(l as u32)).is_some();
    for s in 0..n {
        let mut reach = vec![false; n];
        reach[s] = true;
        let mut grew = true;
        while grew {
            grew = false;
            for (i, l) in t.links.iter().enumerate() {
                let (a, b) = (l.a.get(), l.b.get());
                if usable(i) && reach[a] != reach[b] {
                    reach[a] = true;
                    reach[b] = true;
                    grew = true;
                }
            }
        }
        let table = tables.node(NodeIdx(s as u32));
        for (d, &reachable) in reach.iter().enumerate() {
            let dst = NodeIdx(d as u32);
            assert_eq!(
                table.entries.contains_key(&dst),
                reachable && d != s,
                "entry {s} → {d} present iff reachable"
            );
        }
        for (&dst, e) in &table.entries {
            for hop in std::iter::once(e.primary).chain(e.backup) {
                assert!(
                    usable(hop.link.get()),
                    "{s} → {dst:?} uses a link not in force"
                );
                assert_eq!(t.link(hop.link).other(NodeIdx(s as u32)), Some(hop.node));
            }
            // Follow primaries: reach dst within n - 1 hops, never revisiting a node.
            let mut at = NodeIdx(s as u32);
            let mut visited = vec![false; n];
            visited[s] = true;
            let mut hops = 0;
            while at != dst {
                let Some(next) = tables.node(at).entries.get(&dst) else {
                    panic!("{at:?} has no route to {dst:?} on the way from {s}");
                };
                at = next.primary.node;
                hops += 1;
                assert!(!visited[at.get()], "loop from {s} to {dst:?} at {at:?}");
                visited[at.get()] = true;
            }
            assert!(hops < n);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn tables_stay_loop_free_and_versions_only_grow(
        t in connected_topology(),
        cfg in config(),
        events in prop::collection::vec(event(), 1..50),
    ) {
        let mut db = LinkStateDb::new(t.clone());
        let mut sel = RouteSelector::new(t.clone(), cfg);
        let t0 = Instant::now();
        let mut now = t0;
        let mut prev = sel.routes().clone();
        check(&sel, &t, &prev, now);
        for ev in events {
            let at = now + Duration::from_millis(ev.after_ms);
            // Let timers that fall before this event fire first, as a driver would.
            while let Some(due) = [sel.poll_timeout(), db.poll_timeout()].into_iter().flatten().min() {
                if due > at {
                    break;
                }
                now = due;
                db.handle_timeout(now);
                sel.update(&db, now);
                check(&sel, &t, &prev, now);
                prev = sel.routes().clone();
            }
            now = at;
            let link = LinkIdx(ev.link.index(t.links.len()) as u32);
            let l = t.link(link);
            let delay = Duration::from_micros(l.delay_us);
            let report = LinkReport {
                from: if ev.from_b { l.b } else { l.a },
                link,
                up: ev.up,
                rtt: Some(delay.mul_f64(2.0 * ev.rtt_factor)),
                min_rtt: Some(delay.mul_f64(2.0)),
                jitter: Some(delay.mul_f64(0.05)),
                loss: ev.loss,
                up_for: None,
            };
            db.handle_report(report, now).unwrap();
            let changed = sel.update(&db, now);
            if !changed {
                prop_assert_eq!(sel.routes(), &prev, "tables moved with no cost change");
            }
            check(&sel, &t, &prev, now);
            prev = sel.routes().clone();
        }
    }
}
