//! `overlay topology check|show|path`: validate, print and query a topology.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};

use topology::paths::{k_shortest_paths, Graph, Metric, Routes};
use topology::{LinkKind, Protocol, Topology};

use crate::failure::Failure;
use crate::outln;
use crate::table::{indent, ms, Table};

/// Loads `file`, or the embedded default; a bad file is a usage failure (exit 64).
pub fn load(file: Option<&FsPath>) -> Result<Topology, Failure> {
    match file {
        Some(path) => topology::load(path).map_err(Failure::usage),
        None => topology::world().map_err(Failure::usage),
    }
}

pub fn check(file: Option<&FsPath>) -> Result<String, Failure> {
    let mut out = String::new();
    let t = load(file)?;
    let graph = Graph::from_topology(&t);
    let metric = Metric::expected_delay(&t);
    let routes = Routes::compute(&graph, &metric);

    let mut regions: Vec<&str> = t.nodes.iter().map(|n| n.region.as_str()).collect();
    regions.sort_unstable();
    regions.dedup();
    let count = |k: LinkKind| t.links.iter().filter(|l| l.kind == k).count();
    let udp = t
        .services
        .iter()
        .filter(|s| s.protocol == Protocol::Udp)
        .count();

    outln!(out, "{}: ok", t.source);
    let mut s = Table::new(&["", ""]);
    s.row(vec![
        "nodes".into(),
        format!(
            "{} in {} countries, {} regions",
            t.nodes.len(),
            t.countries().len(),
            regions.len()
        ),
    ]);
    s.row(vec![
        "links".into(),
        format!(
            "{}: {} undersea, {} terrestrial, {} internet",
            t.links.len(),
            count(LinkKind::Undersea),
            count(LinkKind::Terrestrial),
            count(LinkKind::Internet)
        ),
    ]);
    for (i, name) in undersea_lines(&t).into_iter().enumerate() {
        s.row(vec![
            if i == 0 {
                "undersea lines".into()
            } else {
                String::new()
            },
            name,
        ]);
    }
    s.row(vec![
        "services".into(),
        format!(
            "{} ({udp} udp, {} tcp)",
            t.services.len(),
            t.services.len() - udp
        ),
    ]);
    s.row(vec!["controllers".into(), t.controllers.len().to_string()]);
    if let Some((a, b, cost)) = routes.diameter() {
        s.row(vec![
            "diameter".into(),
            format!("{} ms ({} → {})", ms(cost), t.node(a).id, t.node(b).id),
        ]);
    }
    let (pairs, covered) = backup_coverage(&t, &routes);
    if pairs > 0 {
        s.row(vec![
            "backups".into(),
            format!(
                "{covered} of {pairs} routes ({:.0}%) have a loop-free backup next hop",
                100.0 * covered as f64 / pairs as f64
            ),
        ]);
    }
    // The header row of a two-column key/value table is empty: skip it.
    out.push_str(&indent(
        s.render()
            .split_once('\n')
            .map(|(_, rest)| rest)
            .unwrap_or(""),
    ));
    Ok(out)
}

/// One line per undersea link: "name (a–b, km, ms)", sorted by name.
fn undersea_lines(t: &Topology) -> Vec<String> {
    let mut lines: BTreeMap<String, String> = BTreeMap::new();
    for l in t.links.iter().filter(|l| l.kind == LinkKind::Undersea) {
        let (a, b) = (&t.node(l.a).id, &t.node(l.b).id);
        let name = l.name.clone().unwrap_or_else(|| format!("{a}-{b}"));
        let text = format!(
            "{name} ({a}–{b}, {:.0} km, {} ms)",
            l.distance_km,
            ms(l.delay_us)
        );
        lines.insert(format!("{name}/{a}/{b}"), text);
    }
    lines.into_values().collect()
}

/// (routes between distinct reachable nodes, how many of them have a backup).
fn backup_coverage(t: &Topology, routes: &Routes) -> (usize, usize) {
    let (mut pairs, mut covered) = (0, 0);
    for s in 0..t.nodes.len() as u32 {
        for d in 0..t.nodes.len() as u32 {
            let e = routes.get(topology::NodeIdx(s), topology::NodeIdx(d));
            if s != d && e.primary.is_some() {
                pairs += 1;
                covered += usize::from(e.backup.is_some());
            }
        }
    }
    (pairs, covered)
}

pub fn show(file: Option<&FsPath>) -> Result<String, Failure> {
    let mut out = String::new();
    let t = load(file)?;
    outln!(out, "{}\n\nnodes ({})", t.source, t.nodes.len());
    let mut nodes = Table::new(&[
        "id", "city", "country", "region", ">lat", ">lon", "address", ">links",
    ]);
    for (i, n) in t.nodes.iter().enumerate() {
        let degree = t
            .links
            .iter()
            .filter(|l| l.a.get() == i || l.b.get() == i)
            .count();
        nodes.row(vec![
            n.id.clone(),
            n.city.clone(),
            n.country.clone(),
            n.region.clone(),
            format!("{:.2}", n.lat),
            format!("{:.2}", n.lon),
            n.addr.to_string(),
            degree.to_string(),
        ]);
    }
    out.push_str(&nodes.render());

    outln!(out, "\nlinks ({})", t.links.len());
    let mut links = Table::new(&[
        "a",
        "b",
        "kind",
        "name",
        ">km",
        ">delay ms",
        "delay from",
        ">capacity Mb/s",
    ]);
    for l in &t.links {
        links.row(vec![
            t.node(l.a).id.clone(),
            t.node(l.b).id.clone(),
            l.kind.to_string(),
            l.name.clone().unwrap_or_else(|| "-".into()),
            format!("{:.0}", l.distance_km),
            ms(l.delay_us),
            if l.delay_stated { "file" } else { "distance" }.into(),
            l.capacity_mbps
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
        ]);
    }
    out.push_str(&links.render());

    if !t.services.is_empty() {
        outln!(out, "\nservices ({})", t.services.len());
        let mut services = Table::new(&[
            "name", "proto", "ingress", "listen", "egress", "target", "allow",
        ]);
        for s in &t.services {
            let allow: Vec<String> = s.allow.iter().map(|n| n.to_string()).collect();
            services.row(vec![
                s.name.clone(),
                s.protocol.to_string(),
                t.node(s.ingress_node).id.clone(),
                s.listen.to_string(),
                t.node(s.egress_node).id.clone(),
                s.target.to_string(),
                if allow.is_empty() {
                    "any".into()
                } else {
                    allow.join(",")
                },
            ]);
        }
        out.push_str(&services.render());
    }
    if !t.controllers.is_empty() {
        outln!(out, "\ncontrollers ({})", t.controllers.len());
        let mut ctl = Table::new(&["id", "address"]);
        for c in &t.controllers {
            ctl.row(vec![c.id.clone(), c.addr.to_string()]);
        }
        out.push_str(&ctl.render());
    }
    Ok(out)
}

/// `overlay topology path [FILE] FROM TO`: with two words they are FROM and TO.
pub fn path(first: &str, second: &str, third: Option<&str>, k: u16) -> Result<String, Failure> {
    let mut out = String::new();
    let (file, from, to) = match third {
        None => (None, first, second),
        Some(to) => (Some(PathBuf::from(first)), second, to),
    };
    let t = load(file.as_deref())?;
    let src = t.require_node(from).map_err(Failure::usage)?;
    let dst = t.require_node(to).map_err(Failure::usage)?;
    if src == dst {
        return Err(Failure::usage(format!(
            "FROM and TO are both `{from}`; give two different nodes"
        )));
    }
    let graph = Graph::from_topology(&t);
    let metric = Metric::expected_delay(&t);
    let paths = k_shortest_paths(&graph, &metric, src, dst, usize::from(k));
    if paths.is_empty() {
        return Err(Failure::runtime(format!(
            "no path from `{from}` to `{to}` in {}",
            t.source
        )));
    }
    for (i, p) in paths.iter().enumerate() {
        if i > 0 {
            outln!(out);
        }
        let route: Vec<&str> = p.nodes.iter().map(|&n| t.node(n).id.as_str()).collect();
        outln!(
            out,
            "path {}: {}  ({} ms one way, {} hop{})",
            i + 1,
            route.join(" → "),
            ms(p.cost),
            p.links.len(),
            if p.links.len() == 1 { "" } else { "s" }
        );
        let mut hops = Table::new(&[
            "from",
            "to",
            "kind",
            "line",
            ">km",
            ">delay ms",
            ">total ms",
        ]);
        let mut total = 0;
        for (j, &l) in p.links.iter().enumerate() {
            let link = t.link(l);
            total += link.delay_us;
            hops.row(vec![
                route[j].to_string(),
                route[j + 1].to_string(),
                link.kind.to_string(),
                link.name.clone().unwrap_or_else(|| "-".into()),
                format!("{:.0}", link.distance_km),
                ms(link.delay_us),
                ms(total),
            ]);
        }
        out.push_str(&indent(&hops.render()));
    }
    if paths.len() < usize::from(k) {
        outln!(
            out,
            "\n(only {} loop-free path{} exist)",
            paths.len(),
            if paths.len() == 1 { "" } else { "s" }
        );
    }
    Ok(out)
}
