//! A placement checked against its inputs, independently of how it was made: the
//! load on every link direction, and every way it falls short (links over the
//! ceiling or over capacity, classes over budget, on a broken path, or unplaced).

use super::engine::match_pairs;
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
        // Per placement service: its spec in the demand (by name).
        let specs: Vec<Option<&crate::demand::ServiceSpec>> = placement
            .services
            .iter()
            .map(|n| d.services.iter().find(|s| &s.name == n))
            .collect();
        for pp in &placement.pairs {
            let name = placement
                .services
                .get(pp.service)
                .map_or("", String::as_str);
            let spec = specs.get(pp.service).copied().flatten();
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
                let Some(delay) = walk(inputs, &s.path, pp.src, pp.dst) else {
                    report.broken.push(short(s.classes, None));
                    continue;
                };
                for (&l, &from) in s.path.links.iter().zip(&s.path.nodes) {
                    let forward = usize::from(from != t.links[l.get()].a);
                    let k = &mut load[l.get()];
                    k[forward] = k[forward].saturating_add(fwd.saturating_mul(s.classes));
                    k[1 - forward] = k[1 - forward].saturating_add(rev.saturating_mul(s.classes));
                }
                if delay > budget {
                    report.over_budget.push(short(s.classes, Some(delay)));
                }
            }
        }
        // Classes of the demand not on any path (counted against the demand, so a
        // placement that lost classes is caught as well as one that says so).
        for (p, at) in d.pairs.iter().zip(match_pairs(placement, d)) {
            let s = &d.services[p.service];
            let on: u64 = at.map_or(0, |i| {
                placement.pairs[i].shares.iter().map(|x| x.classes).sum()
            });
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
        let (loads, over_ceiling, over_capacity) = link_loads(inputs, ceiling, |l, d| load[l][d]);
        report.loads = loads;
        report.over_ceiling = over_ceiling;
        report.over_capacity = over_capacity;
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
        worst_of(&self.loads)
    }
}

/// The most utilised of `loads` (of known capacity); ties to the first.
pub(crate) fn worst_of(loads: &[LinkLoad]) -> Option<LinkLoad> {
    let u = |l: &LinkLoad| l.utilisation().unwrap_or(0.0);
    loads
        .iter()
        .filter(|l| l.capacity_kbps.is_some())
        .max_by(|x, y| {
            u(x).total_cmp(&u(y))
                .then((y.link, y.dir).cmp(&(x.link, x.dir)))
        })
        .copied()
}

/// Every link direction's load (`load(link, dir index)`, kbit/s) against capacity:
/// all of them in link order, those past `ceiling` × capacity, and those past
/// capacity, the last two worst first.
pub(crate) fn link_loads(
    inputs: &Inputs<'_>,
    ceiling: f64,
    load: impl Fn(usize, usize) -> u64,
) -> (Vec<LinkLoad>, Vec<LinkLoad>, Vec<LinkLoad>) {
    let links = inputs.topology.links.len();
    let mut all = Vec::with_capacity(2 * links);
    let (mut over_ceiling, mut over_capacity) = (Vec::new(), Vec::new());
    for l in 0..links {
        let link = LinkIdx(l as u32);
        for dir in Dir::BOTH {
            let cap = inputs.capacity.get(link, dir);
            let ll = LinkLoad {
                link,
                dir,
                load_kbps: load(l, dir.index()),
                capacity_kbps: cap,
            };
            if ll.load_kbps > limit_kbps(cap, ceiling) {
                over_ceiling.push(ll);
            }
            if ll.load_kbps > limit_kbps(cap, 1.0) {
                over_capacity.push(ll);
            }
            all.push(ll);
        }
    }
    let u = |l: &LinkLoad| l.utilisation().unwrap_or(0.0);
    let worst_first = |x: &LinkLoad, y: &LinkLoad| {
        u(y).total_cmp(&u(x))
            .then((x.link, x.dir).cmp(&(y.link, y.dir)))
    };
    over_ceiling.sort_by(worst_first);
    over_capacity.sort_by(worst_first);
    (all, over_ceiling, over_capacity)
}

/// The path's delay now, or `None` if it does not run from `src` to `dst` over links
/// of the topology that are up.
fn walk(inputs: &Inputs<'_>, path: &Path, src: NodeIdx, dst: NodeIdx) -> Option<Cost> {
    let t = inputs.topology;
    if path.nodes.first() != Some(&src)
        || path.nodes.last() != Some(&dst)
        || path.links.len() + 1 != path.nodes.len()
    {
        return None;
    }
    let mut delay: Cost = 0;
    for (i, &l) in path.links.iter().enumerate() {
        let link = t.links.get(l.get())?;
        let (x, y) = (path.nodes[i], path.nodes[i + 1]);
        if (x, y) != (link.a, link.b) && (x, y) != (link.b, link.a) {
            return None;
        }
        delay = delay.saturating_add(inputs.metric.cost(l)?);
    }
    Some(delay)
}
