//! Property tests of path computation on random graphs, against simple references:
//! Floyd–Warshall for costs and brute-force enumeration for k best paths.

use proptest::prelude::*;
use topology::paths::{k_shortest_paths, Cost, Graph, Metric, Routes};
use topology::{LinkIdx, NodeIdx};

/// A random graph: up to 9 nodes, links with costs 1..=50 (small, so ties happen),
/// some links down.
fn graph() -> impl Strategy<Value = (Graph, Metric)> {
    (1usize..=9).prop_flat_map(|n| {
        prop::collection::vec(
            (0..n, 0..n, 1u64..=50, prop::bool::weighted(0.15)),
            0..=(n * 3),
        )
        .prop_map(move |raw| {
            let mut seen = std::collections::HashSet::new();
            let mut ends = Vec::new();
            let mut costs = Vec::new();
            for (a, b, c, down) in raw {
                if a != b && seen.insert((a.min(b), a.max(b))) {
                    ends.push((NodeIdx(a as u32), NodeIdx(b as u32)));
                    costs.push((!down).then_some(c));
                }
            }
            (Graph::new(n, &ends), Metric::new(costs))
        })
    })
}

fn floyd_warshall(g: &Graph, m: &Metric) -> Vec<Vec<Option<Cost>>> {
    let n = g.node_count();
    let mut d = vec![vec![None; n]; n];
    for (i, row) in d.iter_mut().enumerate() {
        row[i] = Some(0);
    }
    for l in 0..g.link_count() {
        let l = LinkIdx(l as u32);
        let (a, b) = g.ends(l);
        if let Some(c) = m.cost(l) {
            d[a.get()][b.get()] = Some(c);
            d[b.get()][a.get()] = Some(c);
        }
    }
    for k in 0..n {
        for i in 0..n {
            for j in 0..n {
                if let (Some(x), Some(y)) = (d[i][k], d[k][j]) {
                    if d[i][j].is_none_or(|cur| x + y < cur) {
                        d[i][j] = Some(x + y);
                    }
                }
            }
        }
    }
    d
}

/// Costs of every loop-free path from `s` to `t`, sorted.
fn all_simple_path_costs(g: &Graph, m: &Metric, s: NodeIdx, t: NodeIdx) -> Vec<Cost> {
    fn walk(
        g: &Graph,
        m: &Metric,
        at: NodeIdx,
        t: NodeIdx,
        seen: &mut Vec<bool>,
        cost: Cost,
        out: &mut Vec<Cost>,
    ) {
        if at == t {
            out.push(cost);
            return;
        }
        for &(nb, l) in g.neighbors(at) {
            let Some(c) = m.cost(l) else { continue };
            if !seen[nb.get()] {
                seen[nb.get()] = true;
                walk(g, m, nb, t, seen, cost + c, out);
                seen[nb.get()] = false;
            }
        }
    }
    let mut seen = vec![false; g.node_count()];
    seen[s.get()] = true;
    let mut out = Vec::new();
    walk(g, m, s, t, &mut seen, 0, &mut out);
    out.sort_unstable();
    out
}

fn nodes(g: &Graph) -> impl Iterator<Item = NodeIdx> {
    (0..g.node_count() as u32).map(NodeIdx)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn best_costs_equal_floyd_warshall_and_primaries_walk_there((g, m) in graph()) {
        let routes = Routes::compute(&g, &m);
        let reference = floyd_warshall(&g, &m);
        for s in nodes(&g) {
            for d in nodes(&g) {
                let e = routes.get(s, d);
                prop_assert_eq!(e.cost, reference[s.get()][d.get()], "cost {:?} -> {:?}", s, d);
                if s == d || e.cost.is_none() {
                    prop_assert!(e.primary.is_none() && e.backup.is_none());
                    continue;
                }
                let path = routes.path(&g, &m, s, d).expect("a reachable pair has a path");
                prop_assert_eq!(Some(path.cost), e.cost);
                let mut unique = path.nodes.clone();
                unique.sort_unstable();
                unique.dedup();
                prop_assert_eq!(unique.len(), path.nodes.len(), "the path has no loop");
            }
        }
    }

    #[test]
    fn backups_deliver_without_the_primary_link_and_without_loops((g, m) in graph()) {
        let routes = Routes::compute(&g, &m);
        let reference = floyd_warshall(&g, &m);
        for s in nodes(&g) {
            for d in nodes(&g) {
                let e = *routes.get(s, d);
                let Some(primary) = e.primary else { continue };
                // Reference: a loop-free alternate exists iff some other neighbor n has
                // dist(n, d) < dist(n, s) + dist(s, d).
                let lfa_exists = g.neighbors(s).iter().any(|&(n, l)| {
                    n != primary.node && m.cost(l).is_some() && match (reference[n.get()][d.get()], reference[n.get()][s.get()], reference[s.get()][d.get()]) {
                        (Some(nd), Some(ns), Some(sd)) => nd < ns + sd,
                        _ => false,
                    }
                });
                prop_assert_eq!(e.backup.is_some(), lfa_exists, "backup found iff an LFA exists");
                let Some(backup) = e.backup else { continue };
                prop_assert_ne!(backup.node, primary.node);
                prop_assert_ne!(backup.link, primary.link);
                // Hand the packet to the backup, then every node uses its primary.
                let mut at = backup.node;
                let mut hops = 0;
                while at != d {
                    prop_assert_ne!(at, s, "the backup path came back to the source");
                    let hop = routes.get(at, d).primary.expect("on the way, every node has a route");
                    prop_assert_ne!(hop.link, primary.link, "the backup path used the failed link");
                    at = hop.node;
                    hops += 1;
                    prop_assert!(hops <= g.node_count(), "loop");
                }
            }
        }
    }

    #[test]
    fn routes_are_deterministic_and_independent_of_link_order((g, m) in graph(), seed in any::<u64>()) {
        let routes = Routes::compute(&g, &m);
        prop_assert_eq!(&routes, &Routes::compute(&g, &m));
        // Shuffle the link order: next-hop *nodes* and costs must not change.
        let mut order: Vec<usize> = (0..g.link_count()).collect();
        let mut x = seed | 1;
        for i in (1..order.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let ends: Vec<_> = order.iter().map(|&i| g.ends(LinkIdx(i as u32))).collect();
        let costs: Vec<_> = order.iter().map(|&i| m.cost(LinkIdx(i as u32))).collect();
        let shuffled = Routes::compute(&Graph::new(g.node_count(), &ends), &Metric::new(costs));
        for s in nodes(&g) {
            for d in nodes(&g) {
                let (a, b) = (routes.get(s, d), shuffled.get(s, d));
                prop_assert_eq!(a.cost, b.cost);
                prop_assert_eq!(a.primary.map(|h| h.node), b.primary.map(|h| h.node));
                prop_assert_eq!(a.backup.map(|h| h.node), b.backup.map(|h| h.node));
            }
        }
    }

    #[test]
    fn k_best_paths_match_brute_force((g, m) in graph(), k in 1usize..6) {
        for s in nodes(&g) {
            for d in nodes(&g) {
                if s == d { continue; }
                let paths = k_shortest_paths(&g, &m, s, d, k);
                let all = all_simple_path_costs(&g, &m, s, d);
                let costs: Vec<Cost> = paths.iter().map(|p| p.cost).collect();
                let want: Vec<Cost> = all.iter().copied().take(k).collect();
                prop_assert_eq!(&costs, &want, "{:?} -> {:?}", s, d);
                for p in &paths {
                    prop_assert_eq!(p.nodes.first(), Some(&s));
                    prop_assert_eq!(p.nodes.last(), Some(&d));
                    prop_assert_eq!(p.links.len() + 1, p.nodes.len());
                    let sum: Cost = p.links.iter().map(|&l| m.cost(l).expect("up link")).sum();
                    prop_assert_eq!(sum, p.cost);
                    let mut u = p.nodes.clone(); u.sort_unstable(); u.dedup();
                    prop_assert_eq!(u.len(), p.nodes.len(), "loop-free");
                }
                let mut distinct: Vec<_> = paths.iter().map(|p| p.links.clone()).collect();
                distinct.sort(); distinct.dedup();
                prop_assert_eq!(distinct.len(), paths.len(), "no path listed twice");
            }
        }
    }
}
