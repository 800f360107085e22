//! Hand-checked second paths on small graphs.

use super::*;
use crate::paths::Routes;

fn n(i: u32) -> NodeIdx {
    NodeIdx(i)
}

fn first(g: &Graph, m: &Metric, s: u32, d: u32) -> Path {
    Routes::compute(g, m)
        .path(g, m, n(s), n(d))
        .expect("connected")
}

/// The second path of the pair, released (if it must be) onto `g`'s shortest paths.
fn second(g: &Graph, m: &Metric, first: &Path) -> Result<SecondPath, NoSecondPath> {
    let routes = Routes::compute(g, m);
    let dst = *first.nodes.last().expect("path");
    second_path(g, m, first, |from| routes.path(g, m, from, dst))
}

#[test]
fn the_diamond_gives_the_other_side() {
    // 0 — 1 — 3 (1 + 1), 0 — 2 — 3 (2 + 2), and 0 — 3 direct at 10.
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
    let p = second(&g, &m, &first(&g, &m, 0, 3)).expect("disjoint path");
    assert_eq!(p.hops(), &[n(2), n(3)]);
    assert_eq!((p.disjointness(), p.cost()), (Disjointness::Node, 4));
}

#[test]
fn a_shared_relay_leaves_a_link_disjoint_path() {
    // Two triangles joined at relay 2: 0 — 1 — 2 — 3 — 4, with chords 0 — 2 and
    // 2 — 4. Every path from 0 to 4 crosses 2; the links can still differ.
    let g = Graph::new(
        5,
        &[
            (n(0), n(1)),
            (n(1), n(2)),
            (n(0), n(2)),
            (n(2), n(3)),
            (n(3), n(4)),
            (n(2), n(4)),
        ],
    );
    let m = Metric::new(vec![Some(5); 6]);
    let one = first(&g, &m, 0, 4);
    assert_eq!(one.nodes, vec![n(0), n(2), n(4)]);
    let p = second(&g, &m, &one).expect("link-disjoint path");
    assert_eq!(p.hops(), &[n(1), n(2), n(3), n(4)]);
    assert_eq!(p.disjointness(), Disjointness::Link);
}

#[test]
fn a_bridge_or_a_path_too_long_for_a_segment_is_an_error() {
    let g = Graph::new(3, &[(n(0), n(1)), (n(1), n(2))]);
    let m = Metric::new(vec![Some(1), Some(1)]);
    assert_eq!(
        second(&g, &m, &first(&g, &m, 0, 2)),
        Err(NoSecondPath::Bridged)
    );
    // 0 — 1 directly, and a chain 0 — 2 — 3 — … — 20 — 1 whose last link is
    // dear (cost 100): the only other way is 20 hops, and every chain node's
    // own path to 1 runs back over 0 and the direct link: nowhere to release.
    let mut ends = vec![(n(0), n(1)), (n(0), n(2))];
    ends.extend((2..20).map(|i| (n(i), n(i + 1))));
    ends.push((n(20), n(1)));
    let mut costs = vec![Some(1); ends.len()];
    *costs.last_mut().expect("links") = Some(100);
    let g = Graph::new(21, &ends);
    let m = Metric::new(costs);
    assert_eq!(
        second(&g, &m, &first(&g, &m, 0, 1)),
        Err(NoSecondPath::TooLong(20))
    );
    let alone = Path {
        nodes: vec![n(0)],
        links: vec![],
        cost: 0,
    };
    assert_eq!(second(&g, &m, &alone), Err(NoSecondPath::Empty));
}

#[test]
fn a_long_second_path_is_released_onto_tables_that_stay_disjoint() {
    // A ring of 20 plus a chord 0 — 10 of cost 1: from 0 to 1 the first path
    // is the direct link; the second goes 0 → 10 over the chord, then round
    // 10 → 11 → … → 19 → 1? No: from 10, the tables go 10 → 9 → … → 2 → 1,
    // 9 hops, away from the 0 — 1 link: the segment is released at 10.
    let mut ends: Vec<_> = (0..20).map(|i| (n(i), n((i + 1) % 20))).collect();
    ends.push((n(0), n(10)));
    let mut costs = vec![Some(1); 20];
    costs.push(Some(1));
    let g = Graph::new(20, &ends);
    let m = Metric::new(costs);
    let p = second(&g, &m, &first(&g, &m, 0, 1)).expect("released second path");
    assert_eq!(p.disjointness(), Disjointness::Node);
    assert!(p.hops().len() <= MAX_SECOND_PATH_HOPS);
    assert_eq!(p.hops().first(), Some(&n(10)));
}
