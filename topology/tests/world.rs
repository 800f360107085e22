//! The shipped default topology: its size, its undersea lines and its routes.

use std::collections::HashSet;

use topology::paths::{Graph, Metric, Routes};
use topology::{LinkKind, NodeIdx};

#[test]
fn default_topology_has_55_nodes_16_countries_5_undersea_lines_and_is_connected() {
    let t = topology::world().unwrap_or_else(|e| panic!("the default must validate:\n{e}"));
    assert_eq!(t.nodes.len(), 55);
    assert_eq!(t.countries().len(), 16);
    let undersea: Vec<_> = t
        .links
        .iter()
        .filter(|l| l.kind == LinkKind::Undersea)
        .collect();
    assert_eq!(undersea.len(), 5);

    // Each undersea line is named and joins Asia to North America.
    let names: HashSet<_> = undersea.iter().filter_map(|l| l.name.as_deref()).collect();
    assert_eq!(names.len(), 5, "five distinct line names");
    for l in &undersea {
        let regions = [t.node(l.a).region.as_str(), t.node(l.b).region.as_str()];
        assert!(regions.iter().any(|r| r.starts_with("asia")), "{regions:?}");
        assert!(
            regions.iter().any(|r| r.starts_with("north-america")),
            "{regions:?}"
        );
        // A trans-Pacific line is thousands of km and tens of ms, never less.
        assert!(l.distance_km > 5000.0 && l.delay_us > 30_000, "{l:?}");
    }

    // Connected: every node reaches every other.
    let routes = Routes::compute(&Graph::from_topology(&t), &Metric::expected_delay(&t));
    for s in 0..55 {
        for d in 0..55 {
            assert!(
                routes.get(NodeIdx(s), NodeIdx(d)).cost.is_some(),
                "{s} -> {d}"
            );
        }
    }
}

#[test]
fn default_topology_uses_real_coordinates() {
    let t = topology::world().expect("valid");
    let at = |id: &str| {
        let n = t.node(t.node_idx(id).unwrap_or_else(|| panic!("node {id}")));
        (n.lat, n.lon)
    };
    // Known great-circle distances, ±3%.
    for (a, b, km) in [
        ("sha", "lax", 10_450.0),
        ("sin", "syd", 6_300.0),
        ("nyc", "lax", 3_940.0),
    ] {
        let ((la, oa), (lb, ob)) = (at(a), at(b));
        let d = topology::geo::great_circle_km(la, oa, lb, ob);
        assert!(
            (d - km).abs() / km < 0.03,
            "{a}-{b}: {d:.0} km, expected about {km}"
        );
    }
    // Hemispheres and the date line: Asia east, America west, Australia south.
    assert!(at("tyo").1 > 100.0 && at("lax").1 < -100.0 && at("syd").0 < -30.0);
}

#[test]
fn a_class_from_shanghai_to_new_york_crosses_an_undersea_line_within_budget() {
    let t = topology::world().expect("valid");
    let (g, m) = (Graph::from_topology(&t), Metric::expected_delay(&t));
    let routes = Routes::compute(&g, &m);
    let (sha, nyc) = (
        t.node_idx("sha").expect("sha"),
        t.node_idx("nyc").expect("nyc"),
    );
    let path = routes.path(&g, &m, sha, nyc).expect("reachable");
    assert!(path
        .links
        .iter()
        .any(|&l| t.link(l).kind == LinkKind::Undersea));
    // Physical floor: Shanghai-New York is ~11,900 km, ≥ 59 ms in fiber; the
    // 200 ms end-to-end budget leaves room for the overlay.
    assert!(
        path.cost > 59_000 && path.cost < 150_000,
        "{} µs",
        path.cost
    );
}

#[test]
fn the_default_survives_the_loss_of_any_single_undersea_line() {
    let t = topology::world().expect("valid");
    let g = Graph::from_topology(&t);
    for (i, l) in t
        .links
        .iter()
        .enumerate()
        .filter(|(_, l)| l.kind == LinkKind::Undersea)
    {
        let m = Metric::expected_delay(&t).with_link_down(topology::LinkIdx(i as u32));
        let routes = Routes::compute(&g, &m);
        let (a, b) = (l.a, l.b);
        assert!(
            routes.get(a, b).cost.is_some(),
            "cutting {:?} partitions the fleet",
            l.name
        );
    }
}
