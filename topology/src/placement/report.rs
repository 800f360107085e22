//! A placement checked against its inputs, independently of how it was made: the
//! load on every link direction, and every way it falls short (links over the
//! ceiling or over capacity, classes over budget, on a broken path, or unplaced).

use std::collections::BTreeMap;

use super::net::limit_kbps;
use super::{Dir, Inputs, Placement};
use crate::demand::ClassProfile;
use crate::model::{LinkIdx, NodeIdx};
use crate::paths::{Cost, Path};

/// The load of one link direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLoad {
    pub link: LinkIdx,
    pub dir: Dir,
    /// Background plus placed classes, kbit/s.
    pub load_kbps: u64,
    /// `None`: unknown (unlimited).
    pub capacity_kbps: Option<u64>,
}

impl LinkLoad {
    /// Load over capacity (1.0 = full); `None` when the capacity is unknown.
    pub fn utilisation(&self) -> Option<f64> {
        self.capacity_kbps
            .map(|c| self.load_kbps as f64 / (c.max(1)) as f64)
    }
}

/// Classes of one pair that miss something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub src: NodeIdx,
    pub dst: NodeIdx,
    pub service: String,
    pub classes: u64,
    /// Their one-way delay now; `None` when they have no working path.
    pub delay_us: Option<Cost>,
    pub budget_us: Cost,
}

/// A placement against its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Every link direction, in link order, a → b before b → a.
    pub loads: Vec<LinkLoad>,
    pub ceiling: f64,
    /// Link directions loaded past `ceiling` × capacity, worst first.
    pub over_ceiling: Vec<LinkLoad>,
    /// Link directions loaded past capacity, worst first.
    pub over_capacity: Vec<LinkLoad>,
    /// Per pair and path: classes whose path is slower than their budget.
    pub over_budget: Vec<Shortfall>,
    /// Per pair and path: classes on a path with a link down (or no longer valid).
    pub broken: Vec<Shortfall>,
    /// Per pair: classes on no path.
    pub unplaced: Vec<Shortfall>,
}

impl Report {
    /// Checks `placement` against `inputs` at utilisation `ceiling`.
    pub fn check(inputs: &Inputs<'_>, ceiling: f64, placement: &Placement) -> Report {
        let t = inputs.topology;
        let d = inputs.demand;
        let links = t.links.len();
        let mut load: Vec<[u64; 2]> = (0..links)
            .map(|l| {
                let l = LinkIdx(l as u32);
                Dir::BOTH.map(|dir| inputs.background.map_or(0, |b| b.get(l, dir)))
            })
            .collect();
        let mut report = Report {
            loads: Vec::new(),
            ceiling,
            over_ceiling: Vec::new(),
            over_capacity: Vec::new(),
            over_budget: Vec::new(),
            broken: Vec::new(),
            unplaced: Vec::new(),
        };
        let mut placed: BTreeMap<(NodeIdx, NodeIdx, &str), u64> = BTreeMap::new();
        for pp in &placement.pairs {
            let name = placement
                .services
                .get(pp.service)
                .map_or("", String::as_str);
            let spec = d.services.iter().find(|s| s.name == name);
            let profile = spec.map_or(ClassProfile::HD, |s| s.profile);
            let budget = spec.map_or(Cost::MAX, |s| s.budget_us);
            let (fwd, rev) = profile.kbps();
            let short = |classes, delay_us| Shortfall {
                src: pp.src,
                dst: pp.dst,
                service: name.to_string(),
                classes,
                delay_us,
                budget_us: budget,
            };
            for s in &pp.shares {
                *placed.entry((pp.src, pp.dst, name)).or_default() += s.classes;
                match walk(inputs, &s.path, pp.src, pp.dst) {
                    None => report.broken.push(short(s.classes, None)),
                    Some((delay, dirs)) => {
                        for (l, dir) in dirs {
                            let k = &mut load[l.get()];
                            k[dir.index()] =
                                k[dir.index()].saturating_add(fwd.saturating_mul(s.classes));
                            let back = 1 - dir.index();
                            k[back] = k[back].saturating_add(rev.saturating_mul(s.classes));
                        }
                        if delay > budget {
                            report.over_budget.push(short(s.classes, Some(delay)));
                        }
                    }
                }
            }
        }
        // Classes of the demand not on any path (counted against the demand, so a
        // placement that lost classes is caught as well as one that says so).
        for p in &d.pairs {
            let s = &d.services[p.service];
            let on = placed
                .get(&(p.src, p.dst, s.name.as_str()))
                .copied()
                .unwrap_or(0);
            if p.classes > on {
                report.unplaced.push(Shortfall {
                    src: p.src,
                    dst: p.dst,
                    service: s.name.clone(),
                    classes: p.classes - on,
                    delay_us: None,
                    budget_us: s.budget_us,
                });
            }
        }
        for (l, k) in load.iter().enumerate() {
            let link = LinkIdx(l as u32);
            for dir in Dir::BOTH {
                let cap = inputs.capacity.get(link, dir);
                let ll = LinkLoad {
                    link,
                    dir,
                    load_kbps: k[dir.index()],
                    capacity_kbps: cap,
                };
                if ll.load_kbps > limit_kbps(cap, ceiling) {
                    report.over_ceiling.push(ll);
                }
                if ll.load_kbps > limit_kbps(cap, 1.0) {
                    report.over_capacity.push(ll);
                }
                report.loads.push(ll);
            }
        }
        let worst_first = |x: &LinkLoad, y: &LinkLoad| {
            let (ux, uy) = (
                x.utilisation().unwrap_or(0.0),
                y.utilisation().unwrap_or(0.0),
            );
            uy.total_cmp(&ux)
                .then((x.link, x.dir).cmp(&(y.link, y.dir)))
        };
        report.over_ceiling.sort_by(worst_first);
        report.over_capacity.sort_by(worst_first);
        report
    }

    /// Nothing over the ceiling, nothing over budget, nothing broken or unplaced.
    pub fn is_clean(&self) -> bool {
        self.over_ceiling.is_empty()
            && self.over_capacity.is_empty()
            && self.over_budget.is_empty()
            && self.broken.is_empty()
            && self.unplaced.is_empty()
    }

    pub fn classes_over_budget(&self) -> u64 {
        self.over_budget.iter().map(|s| s.classes).sum()
    }

    /// Classes with no working path: broken or unplaced.
    pub fn classes_without_path(&self) -> u64 {
        self.broken
            .iter()
            .chain(&self.unplaced)
            .map(|s| s.classes)
            .sum()
    }

    /// The highest utilisation of any link direction of known capacity.
    pub fn worst(&self) -> Option<LinkLoad> {
        self.loads
            .iter()
            .filter(|l| l.capacity_kbps.is_some())
            .max_by(|x, y| {
                let (ux, uy) = (
                    x.utilisation().unwrap_or(0.0),
                    y.utilisation().unwrap_or(0.0),
                );
                ux.total_cmp(&uy)
                    .then((y.link, y.dir).cmp(&(x.link, x.dir)))
            })
            .copied()
    }
}

/// The path's delay now and the direction it walks each link, or `None` if it does
/// not run from `src` to `dst` over links of the topology that are up.
fn walk(
    inputs: &Inputs<'_>,
    path: &Path,
    src: NodeIdx,
    dst: NodeIdx,
) -> Option<(Cost, Vec<(LinkIdx, Dir)>)> {
    let t = inputs.topology;
    if path.nodes.first() != Some(&src)
        || path.nodes.last() != Some(&dst)
        || path.links.len() + 1 != path.nodes.len()
    {
        return None;
    }
    let mut delay: Cost = 0;
    let mut dirs = Vec::with_capacity(path.links.len());
    for (i, &l) in path.links.iter().enumerate() {
        let link = t.links.get(l.get())?;
        let (x, y) = (path.nodes[i], path.nodes[i + 1]);
        let dir = if (x, y) == (link.a, link.b) {
            Dir::AtoB
        } else if (x, y) == (link.b, link.a) {
            Dir::BtoA
        } else {
            return None;
        };
        delay = delay.saturating_add(inputs.metric.cost(l)?);
        dirs.push((l, dir));
    }
    Some((delay, dirs))
}
