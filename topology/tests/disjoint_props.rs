//! Property tests of second paths (`topology::disjoint`): on random graphs
//! every second path is a real path of direct links, shares nothing with the
//! first but what its kind admits, and is missing only where no disjoint path
//! exists; in the shipped world every pair has one, node-disjoint, short
//! enough for a segment.

use std::collections::HashSet;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use topology::disjoint::{
    second_path, Disjointness, NoSecondPath, SecondPath, MAX_SECOND_PATH_HOPS,
};
use topology::paths::{Cost, Graph, Metric, Path, Routes};
use topology::NodeIdx;

fn build(n: usize, links: Vec<(usize, usize, Cost)>) -> (Graph, Metric) {
    let ends: Vec<_> = links
        .iter()
        .map(|&(a, b, _)| (NodeIdx(a as u32), NodeIdx(b as u32)))
        .filter(|(a, b)| a != b)
        .collect();
    let costs = links
        .iter()
        .filter(|(a, b, _)| a != b)
        .map(|&(_, _, c)| Some(c))
        .collect();
    (Graph::new(n, &ends), Metric::new(costs))
}

/// Random graphs of 2 to 10 nodes with parallel links allowed: some
/// 2-connected, some with bridges and cut vertices.
fn any_graph() -> impl Strategy<Value = (Graph, Metric)> {
    (2usize..=10).prop_flat_map(|n| {
        prop::collection::vec((0..n, 0..n, 1u64..=20), n..=(n * 3))
            .prop_map(move |links| build(n, links))
    })
}

/// Whether `src` reaches `dst` without the links of `first` (and, for
/// `node_disjoint`, without its inner nodes): breadth-first search.
fn reachable_avoiding(g: &Graph, first: &Path, node_disjoint: bool) -> bool {
    let (src, dst) = (first.nodes[0], *first.nodes.last().expect("path"));
    let banned_links: HashSet<_> = first.links.iter().copied().collect();
    let inner: HashSet<_> = first.nodes[1..first.nodes.len() - 1]
        .iter()
        .copied()
        .collect();
    let mut seen = HashSet::from([src]);
    let mut queue = vec![src];
    while let Some(at) = queue.pop() {
        if at == dst {
            return true;
        }
        for &(nb, l) in g.neighbors(at) {
            if banned_links.contains(&l) || (node_disjoint && inner.contains(&nb)) {
                continue;
            }
            if seen.insert(nb) {
                queue.push(nb);
            }
        }
    }
    false
}

/// The whole way a copy takes: the segment, then (where it was released
/// early) the tables' own path from its last node on.
fn whole_way(
    g: &Graph,
    m: &Metric,
    routes: &Routes,
    src: NodeIdx,
    dst: NodeIdx,
    p: &SecondPath,
) -> Vec<NodeIdx> {
    let mut way = vec![src];
    way.extend_from_slice(p.hops());
    let last = *way.last().expect("source");
    if last != dst {
        let rest = routes
            .path(g, m, last, dst)
            .expect("release node reaches the destination");
        way.extend_from_slice(&rest.nodes[1..]);
    }
    way
}

fn check_pair(g: &Graph, m: &Metric, routes: &Routes, first: &Path) -> Result<(), TestCaseError> {
    let (src, dst) = (first.nodes[0], *first.nodes.last().expect("path"));
    match second_path(g, m, first, |from| routes.path(g, m, from, dst)) {
        Ok(p) => {
            prop_assert!(p.hops().len() <= MAX_SECOND_PATH_HOPS, "segment fits");
            let way = whole_way(g, m, routes, src, dst, &p);
            let inner: HashSet<_> = first.nodes[1..first.nodes.len() - 1].iter().collect();
            let first_links: HashSet<_> = first.links.iter().collect();
            let mut shares_a_relay = false;
            for step in way.windows(2) {
                let (at, next) = (step[0], step[1]);
                // Some direct link not on the first path joins each step.
                let joined = g
                    .neighbors(at)
                    .iter()
                    .any(|&(nb, l)| nb == next && !first_links.contains(&l));
                prop_assert!(joined, "{at:?} → {next:?} is no link off the first path");
                shares_a_relay |= inner.contains(&next);
            }
            prop_assert_eq!(way.last(), Some(&dst), "ends at the destination");
            if p.disjointness() == Disjointness::Node {
                prop_assert!(!shares_a_relay, "node-disjoint as claimed");
            } else {
                prop_assert!(
                    !reachable_avoiding(g, first, true),
                    "a node-disjoint path existed"
                );
            }
        }
        Err(NoSecondPath::Bridged) => {
            prop_assert!(
                !reachable_avoiding(g, first, false),
                "a link-disjoint path existed"
            );
        }
        Err(NoSecondPath::TooLong(len)) => prop_assert!(len > MAX_SECOND_PATH_HOPS),
        Err(NoSecondPath::Empty) => prop_assert!(false, "a real path is never empty"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn second_paths_are_disjoint_real_and_missing_only_when_none_exists((g, m) in any_graph()) {
        let routes = Routes::compute(&g, &m);
        for s in 0..g.node_count() as u32 {
            for d in 0..g.node_count() as u32 {
                if s == d {
                    continue;
                }
                if let Some(first) = routes.path(&g, &m, NodeIdx(s), NodeIdx(d)) {
                    check_pair(&g, &m, &routes, &first)?;
                }
            }
        }
    }
}

/// In the shipped world every pair that a single link does not cut apart (a
/// single-homed city) has a second path short enough for a segment,
/// node-disjoint unless one relay joins the two ends (`check_pair` proves
/// it); the counts are the figures BENCHMARKS.md quotes.
#[test]
fn every_pair_of_the_world_has_a_second_path_unless_a_bridge_forbids_it() {
    let world = topology::world().expect("the shipped world compiles");
    let g = Graph::from_topology(&world);
    let m = Metric::expected_delay(&world);
    let routes = Routes::compute(&g, &m);
    let (mut pairs, mut node, mut link, mut bridged, mut longest, mut worst_stretch) =
        (0, 0, 0, 0, 0, 0.0f64);
    for s in 0..g.node_count() as u32 {
        for d in 0..g.node_count() as u32 {
            if s == d {
                continue;
            }
            let first = routes
                .path(&g, &m, NodeIdx(s), NodeIdx(d))
                .expect("the world is connected");
            check_pair(&g, &m, &routes, &first).expect("sound second path");
            pairs += 1;
            let dst = NodeIdx(d);
            match second_path(&g, &m, &first, |from| routes.path(&g, &m, from, dst)) {
                Ok(p) => {
                    match p.disjointness() {
                        Disjointness::Node => node += 1,
                        Disjointness::Link => link += 1,
                    }
                    longest = longest.max(p.hops().len());
                    worst_stretch = worst_stretch.max(p.cost() as f64 / first.cost as f64);
                }
                Err(NoSecondPath::Bridged) => bridged += 1,
                Err(e) => panic!(
                    "{} → {}: {e}",
                    world.nodes[s as usize].id, world.nodes[d as usize].id
                ),
            }
        }
    }
    println!(
        "world: {pairs} ordered pairs: {node} node-disjoint, {link} link-disjoint, {bridged} across a \
         bridge; longest second path {longest} hops, worst cost ratio second/first {worst_stretch:.2}"
    );
    assert_eq!(node + link + bridged, pairs);
    assert!(longest <= MAX_SECOND_PATH_HOPS);
}
