//! Shared by the placement tests: tiny fleets built as topology files, and a
//! brute-force reference that enumerates every assignment of classes to paths.

#![allow(dead_code)]

use topology::demand::{ClassProfile, Demand, Direction, PairDemand, ServiceSpec};
use topology::paths::{Cost, Metric};
use topology::placement::{Capacities, Dir, Inputs, LinkLoads, Placement};
use topology::{LinkIdx, NodeIdx, Topology};

/// A link of a tiny fleet: ends, undersea or not, delay in µs.
#[derive(Debug, Clone)]
pub struct TinyLink {
    pub a: usize,
    pub b: usize,
    pub undersea: bool,
    pub delay_us: u64,
}

/// A topology of `n` nodes `n0`.. and the given links (callers keep it connected).
pub fn topology(n: usize, links: &[TinyLink]) -> Topology {
    let mut y = String::from("version: 1\nnodes:\n");
    for i in 0..n {
        y.push_str(&format!(
            "  - {{ id: n{i}, city: C{i}, country: US, region: r, lat: {}, lon: {}, addr: \"127.0.0.1:{}\" }}\n",
            i as f64,
            i as f64,
            7000 + i
        ));
    }
    y.push_str("links:\n");
    for l in links {
        y.push_str(&format!(
            "  - {{ between: [n{}, n{}], kind: {}, delay_ms: {} }}\n",
            l.a,
            l.b,
            if l.undersea {
                "undersea"
            } else {
                "terrestrial"
            },
            l.delay_us as f64 / 1000.0
        ));
    }
    topology::parse("tiny.yaml", &y).unwrap_or_else(|e| panic!("tiny fleet:\n{e}\n{y}"))
}

/// A one-service profile of `fwd` kbit/s forward and `rev` back (all in video).
pub fn profile(fwd: u32, rev: u32) -> ClassProfile {
    let d = |v| Direction {
        audio_kbps: 0,
        video_kbps: v,
        signalling_kbps: 0,
    };
    ClassProfile {
        forward: d(fwd),
        reverse: d(rev),
    }
}

pub fn demand(services: Vec<ServiceSpec>, pairs: &[(u32, u32, usize, u64)]) -> Demand {
    Demand::new(
        services,
        pairs.iter().map(|&(s, d, service, classes)| PairDemand {
            src: NodeIdx(s),
            dst: NodeIdx(d),
            service,
            classes,
        }),
    )
}

pub fn service(name: &str, budget_us: u64, profile: ClassProfile) -> ServiceSpec {
    ServiceSpec {
        name: name.to_string(),
        budget_us,
        profile,
    }
}

/// Everything an `Inputs` borrows.
#[derive(Debug, Clone)]
pub struct Case {
    pub topology: Topology,
    pub metric: Metric,
    pub capacity: Capacities,
    pub background: LinkLoads,
    pub demand: Demand,
}

impl Case {
    pub fn inputs(&self) -> Inputs<'_> {
        Inputs {
            topology: &self.topology,
            metric: &self.metric,
            capacity: &self.capacity,
            background: Some(&self.background),
            demand: &self.demand,
        }
    }
}

/// `capacity × ceiling` rounded down, as the crate documents it.
pub fn limit(cap: Option<u64>, ceiling: f64) -> u64 {
    cap.map_or(u64::MAX, |c| (c as f64 * ceiling).floor() as u64)
}

/// A loop-free path as (link, direction walked) and its delay.
pub type RefPath = (Vec<(LinkIdx, Dir)>, Cost);

/// Every loop-free path from `s` to `d` over links that are up.
pub fn simple_paths(c: &Case, s: NodeIdx, d: NodeIdx) -> Vec<RefPath> {
    fn walk(
        c: &Case,
        at: NodeIdx,
        d: NodeIdx,
        seen: &mut Vec<bool>,
        path: &mut Vec<(LinkIdx, Dir)>,
        cost: Cost,
        out: &mut Vec<RefPath>,
    ) {
        if at == d {
            out.push((path.clone(), cost));
            return;
        }
        for (i, l) in c.topology.links.iter().enumerate() {
            let li = LinkIdx(i as u32);
            let Some(w) = c.metric.cost(li) else { continue };
            let (next, dir) = if l.a == at {
                (l.b, Dir::AtoB)
            } else if l.b == at {
                (l.a, Dir::BtoA)
            } else {
                continue;
            };
            if seen[next.get()] {
                continue;
            }
            seen[next.get()] = true;
            path.push((li, dir));
            walk(c, next, d, seen, path, cost + w, out);
            path.pop();
            seen[next.get()] = false;
        }
    }
    let mut seen = vec![false; c.topology.nodes.len()];
    seen[s.get()] = true;
    let mut out = Vec::new();
    walk(c, s, d, &mut seen, &mut Vec::new(), 0, &mut out);
    out
}

fn index(l: LinkIdx, d: Dir) -> usize {
    2 * l.get() + usize::from(d == Dir::BtoA)
}

/// Adds (or with `sign` false removes) `k` classes of (`fwd`, `rev`) on `path`.
fn load_path(load: &mut [u64], path: &[(LinkIdx, Dir)], fwd: u64, rev: u64, k: u64, add: bool) {
    for &(l, d) in path {
        let f = index(l, d);
        for (e, per) in [(f, fwd), (f ^ 1, rev)] {
            if add {
                load[e] += per * k;
            } else {
                load[e] -= per * k;
            }
        }
    }
}

fn limits(c: &Case, ceiling: f64) -> Vec<u64> {
    (0..c.topology.links.len())
        .flat_map(|l| Dir::BOTH.map(|d| limit(c.capacity.get(LinkIdx(l as u32), d), ceiling)))
        .collect()
}

fn background(c: &Case) -> Vec<u64> {
    (0..c.topology.links.len())
        .flat_map(|l| Dir::BOTH.map(|d| c.background.get(LinkIdx(l as u32), d)))
        .collect()
}

/// Whether some assignment of every class to a path puts every class within its
/// budget and every link direction at or under `ceiling`: exhaustive search.
pub fn brute_force_feasible(c: &Case, ceiling: f64) -> bool {
    let lim = limits(c, ceiling);
    let mut load = background(c);
    if load.iter().zip(&lim).any(|(l, m)| l > m) {
        return false;
    }
    let options: Vec<(Vec<RefPath>, u64, u64, u64)> = c
        .demand
        .pairs
        .iter()
        .map(|p| {
            let s = &c.demand.services[p.service];
            let (fwd, rev) = s.profile.kbps();
            let paths = simple_paths(c, p.src, p.dst)
                .into_iter()
                .filter(|(_, d)| *d <= s.budget_us)
                .collect();
            (paths, p.classes, fwd, rev)
        })
        .collect();
    fn go(
        options: &[(Vec<RefPath>, u64, u64, u64)],
        pair: usize,
        path: usize,
        left: u64,
        load: &mut Vec<u64>,
        lim: &[u64],
    ) -> bool {
        if pair == options.len() {
            return true;
        }
        let (paths, classes, fwd, rev) = &options[pair];
        if left == 0 {
            return go(
                options,
                pair + 1,
                0,
                options.get(pair + 1).map_or(0, |o| o.1),
                load,
                lim,
            );
        }
        if path == paths.len() {
            return false;
        }
        let _ = classes;
        // Put k of the remaining classes on this path, the rest on later paths.
        for k in (0..=left).rev() {
            load_path(load, &paths[path].0, *fwd, *rev, k, true);
            let ok = load.iter().zip(lim).all(|(l, m)| l <= m);
            if ok && go(options, pair, path + 1, left - k, load, lim) {
                load_path(load, &paths[path].0, *fwd, *rev, k, false);
                return true;
            }
            load_path(load, &paths[path].0, *fwd, *rev, k, false);
        }
        false
    }
    let first = options.first().map_or(0, |o| o.1);
    go(&options, 0, 0, first, &mut load, &lim)
}

/// Checks a placement with the reference's own arithmetic: every demanded class on
/// a path of the topology that is up and within budget, every link direction at or
/// under `ceiling`.
pub fn reference_clean(c: &Case, placement: &Placement, ceiling: f64) -> bool {
    let lim = limits(c, ceiling);
    let mut load = background(c);
    for p in &c.demand.pairs {
        let s = &c.demand.services[p.service];
        let (fwd, rev) = s.profile.kbps();
        let Some(pp) = placement
            .pairs
            .iter()
            .find(|x| x.src == p.src && x.dst == p.dst && placement.services[x.service] == s.name)
        else {
            return false;
        };
        if pp.unplaced > 0 || pp.shares.iter().map(|x| x.classes).sum::<u64>() != p.classes {
            return false;
        }
        for share in &pp.shares {
            let Some((path, delay)) = as_ref_path(c, &share.path.nodes, &share.path.links) else {
                return false;
            };
            if delay > s.budget_us || share.path.nodes.first() != Some(&p.src) {
                return false;
            }
            load_path(&mut load, &path, fwd, rev, share.classes, true);
        }
    }
    load.iter().zip(&lim).all(|(l, m)| l <= m)
}

/// A placed path in the reference's terms, if it is a real path over links that are up.
pub fn as_ref_path(c: &Case, nodes: &[NodeIdx], links: &[LinkIdx]) -> Option<RefPath> {
    if nodes.len() != links.len() + 1 {
        return None;
    }
    let mut out = Vec::new();
    let mut delay = 0;
    for (i, &l) in links.iter().enumerate() {
        let link = c.topology.links.get(l.get())?;
        let dir = if (nodes[i], nodes[i + 1]) == (link.a, link.b) {
            Dir::AtoB
        } else if (nodes[i], nodes[i + 1]) == (link.b, link.a) {
            Dir::BtoA
        } else {
            return None;
        };
        delay += c.metric.cost(l)?;
        out.push((l, dir));
    }
    let mut seen: Vec<NodeIdx> = nodes.to_vec();
    seen.sort_unstable();
    seen.dedup();
    (seen.len() == nodes.len()).then_some((out, delay))
}

/// A case in a few lines, for failure messages.
pub fn describe(c: &Case) -> String {
    let mut s = String::new();
    for (i, l) in c.topology.links.iter().enumerate() {
        let li = LinkIdx(i as u32);
        s.push_str(&format!(
            "link {i}: n{}-n{} {} cost {:?} cap {:?}/{:?} bg {}/{}\n",
            l.a.0,
            l.b.0,
            l.kind,
            c.metric.cost(li),
            c.capacity.get(li, Dir::AtoB),
            c.capacity.get(li, Dir::BtoA),
            c.background.get(li, Dir::AtoB),
            c.background.get(li, Dir::BtoA),
        ));
    }
    for s2 in &c.demand.services {
        s.push_str(&format!(
            "service {} budget {} kbps {:?}\n",
            s2.name,
            s2.budget_us,
            s2.profile.kbps()
        ));
    }
    for p in &c.demand.pairs {
        s.push_str(&format!(
            "pair n{} -> n{} service {} classes {}\n",
            p.src.0, p.dst.0, p.service, p.classes
        ));
    }
    s
}

pub fn describe_placement(p: &Placement) -> String {
    let mut s = String::new();
    for pp in &p.pairs {
        s.push_str(&format!(
            "n{} -> n{} [{}] unplaced {}:",
            pp.src.0, pp.dst.0, p.services[pp.service], pp.unplaced
        ));
        for sh in &pp.shares {
            let nodes: Vec<String> = sh.path.nodes.iter().map(|n| format!("n{}", n.0)).collect();
            s.push_str(&format!(
                " {}x{} ({}µs)",
                sh.classes,
                nodes.join("-"),
                sh.path.cost
            ));
        }
        s.push('\n');
    }
    s
}
