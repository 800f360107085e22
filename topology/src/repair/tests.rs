//! Hand-checked repair paths on small graphs.

use super::*;

fn n(i: u32) -> NodeIdx {
    NodeIdx(i)
}

fn tables(g: &Graph, m: &Metric) -> RepairTables {
    let routes = Routes::compute(g, m);
    RepairTables::compute(g, m, &routes).unwrap_or_else(|e| panic!("{e}"))
}

/// 0 — 1 — 3 (cost 1 + 1) and 0 — 2 — 3 (cost 2 + 2), plus a direct 0 — 3 at 10.
fn diamond() -> (Graph, Metric) {
    let g = Graph::new(
        4,
        &[
            (n(0), n(1)),
            (n(1), n(3)),
            (n(0), n(2)),
            (n(2), n(3)),
            (n(0), n(3)),
        ],
    );
    let m = Metric::new(vec![Some(1), Some(1), Some(2), Some(2), Some(10)]);
    (g, m)
}

#[test]
fn node_protecting_path_released_where_the_tables_avoid_the_failure() {
    let (g, m) = diamond();
    let t = tables(&g, &m);
    // 0 → 3 goes via 1. Without 1: 0 → 2 → 3 (4). 2's own best path to 3 is direct,
    // so the segment is just [2].
    let p = t.get(n(0), n(3)).expect("repairable");
    assert_eq!(p.protects(), Protection::Node);
    assert_eq!(p.hops(), &[n(2)]);
    assert_eq!(p.release(), n(2));
    assert_eq!((p.cost(), p.route_hops()), (4, 2));
}

#[test]
fn link_protecting_path_for_the_neighbour_itself_and_no_release_on_a_tie() {
    let (g, m) = diamond();
    let t = tables(&g, &m);
    // 0 → 1 is the direct link. Without it: 0 → 2 → 3 → 1 (5). Node 2 reaches 1 at
    // cost 3 both via 0 (over the dead link) and via 3, so it must not release: the
    // segment runs on to 3, whose best path to 1 is direct.
    let p = t.get(n(0), n(1)).expect("repairable");
    assert_eq!(p.protects(), Protection::Link);
    assert_eq!(p.hops(), &[n(2), n(3)]);
    assert_eq!((p.cost(), p.route_hops()), (5, 3));
    assert!(t.get(n(0), n(0)).is_none(), "no repair toward oneself");
}

#[test]
fn a_dead_end_repair_point_turns_the_packet_round() {
    // 0 — 1 — 2 — 3 (cost 1 each) and 0 — 4 — 3 (cost 10 each). From 0 to 3 the
    // packet goes 0 → 1 → 2. If 2 dies, 1 can only send it back through 0: the
    // walk visits 0 twice. It cannot loop: the segment [0, 4] is explicit.
    let g = Graph::new(
        5,
        &[
            (n(0), n(1)),
            (n(1), n(2)),
            (n(2), n(3)),
            (n(0), n(4)),
            (n(4), n(3)),
        ],
    );
    let m = Metric::new(vec![Some(1), Some(1), Some(1), Some(10), Some(10)]);
    let t = tables(&g, &m);
    let p = t.get(n(1), n(3)).expect("repairable");
    assert_eq!(p.hops(), &[n(0), n(4)]);
    assert_eq!(p.protects(), Protection::Node);
    let c = coverage(&g, &m);
    assert!(c.node_failures.repair_u_turns > 0, "{c}");
    assert_eq!(c.node_failures.repair_delivered, c.node_failures.affected);
    assert_eq!(c.link_failures.repair_delivered, c.link_failures.affected);
}

#[test]
fn parallel_links_are_all_avoided() {
    // Two links 0 — 1 (costs 1 and 2) and 0 — 2 — 1 (5 + 5). A relay sees one peer
    // over both, so the repair of 0 → 1 goes round by 2, whose own path is direct.
    let g = Graph::new(3, &[(n(0), n(1)), (n(0), n(1)), (n(0), n(2)), (n(2), n(1))]);
    let m = Metric::new(vec![Some(1), Some(2), Some(5), Some(5)]);
    let t = tables(&g, &m);
    let p = t.get(n(0), n(1)).expect("repairable");
    assert_eq!(p.hops(), &[n(2)]);
    assert_eq!((p.protects(), p.cost()), (Protection::Link, 10));
}

#[test]
fn a_cut_vertex_leaves_only_link_protection_or_nothing() {
    // 0 — 1 — 2 and 0 — 3 — 1: 1 separates 0 from 2, so 0 can only protect the link
    // to 1, by way of 3 (whose own path to 2 does not use it).
    let g = Graph::new(4, &[(n(0), n(1)), (n(1), n(2)), (n(0), n(3)), (n(3), n(1))]);
    let m = Metric::new(vec![Some(1), Some(1), Some(2), Some(2)]);
    let t = tables(&g, &m);
    let p = t.get(n(0), n(2)).expect("around the link");
    assert_eq!((p.protects(), p.hops()), (Protection::Link, &[n(3)][..]));
    assert_eq!((p.cost(), p.route_hops()), (5, 3));
    // Without the spare link there is no repair at all.
    let g = Graph::new(3, &[(n(0), n(1)), (n(1), n(2))]);
    let t = tables(&g, &Metric::new(vec![Some(1), Some(1)]));
    assert!(t.get(n(0), n(2)).is_none() && t.get(n(0), n(1)).is_none());
}

#[test]
fn long_segments_are_capped_and_counted() {
    // A ring of equal links: around a dead neighbour, the far side is up to half
    // the ring away before anyone's own path avoids it.
    let k = 2 * MAX_REPAIR_HOPS as u32 + 6;
    let ends: Vec<_> = (0..k).map(|i| (n(i), n((i + 1) % k))).collect();
    let g = Graph::new(k as usize, &ends);
    let m = Metric::new(vec![Some(7); k as usize]);
    let t = tables(&g, &m);
    let too_long: usize = t.iter().map(|t| t.too_long()).sum();
    assert!(too_long > 0);
    for table in t.iter() {
        for (_, p) in table.iter() {
            assert!(!p.hops().is_empty() && p.hops().len() <= MAX_REPAIR_HOPS);
        }
    }
    let c = coverage(&g, &m);
    assert_eq!(c.repair_too_long, too_long as u64);
    assert!(c.link_failures.repair_delivered < c.link_failures.affected);
}

#[test]
fn mismatched_inputs_are_errors() {
    let (g, m) = diamond();
    let other = Graph::new(3, &[(n(0), n(1))]);
    let routes = Routes::compute(&other, &Metric::new(vec![Some(1)]));
    assert_eq!(
        RepairTables::compute(&g, &m, &routes),
        Err(RepairError::SizeMismatch {
            graph: 4,
            routes: 3
        })
    );
    let routes = Routes::compute(&g, &m);
    let err = RepairTable::compute(&g, &m, &routes, n(9)).expect_err("out of range");
    assert_eq!(
        err.to_string(),
        "node index 9 is out of range: the graph has 4 nodes"
    );
    // A metric shorter than the graph: the missing links are down, nothing panics.
    let short = Metric::new(vec![Some(1)]);
    let routes = Routes::compute(&g, &short);
    let t = RepairTables::compute(&g, &short, &routes).expect("same graph");
    assert!(t.get(n(0), n(1)).is_none());
}
