//! The state one placement run works on: the network with its loads, each pair's
//! need and budget, and the classes placed so far as (pair, path, count).

use std::sync::Arc;

use super::net::{limit_kbps, Need, Net, Tier, TreeCache};
use super::{Dir, Inputs, PairPlacement, PathShare, Placement};
use crate::demand::{Demand, PairDemand};
use crate::model::{LinkIdx, NodeIdx};
use crate::paths::{Cost, Graph, Path};

/// Some classes of one pair on one path.
#[derive(Debug, Clone)]
pub(crate) struct Assign {
    pub pair: usize,
    /// Shared with the placement it came from and goes to: seeding an engine from
    /// a placement of a million classes copies pointers, not paths.
    pub path: Arc<Path>,
    pub classes: u64,
    /// The pair's next assignment ([`NO_ASSIGN`] ends the list).
    next: u32,
}

/// End of a pair's list of assignments.
const NO_ASSIGN: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct Engine<'a> {
    pub net: Net,
    pub pairs: &'a [PairDemand],
    needs: Vec<Need>,
    budgets: Vec<Cost>,
    pub services: Vec<String>,
    /// Never shrinks: an emptied assignment keeps its id with 0 classes.
    pub assigns: Vec<Assign>,
    /// Per pair, its newest assignment; each links to the one before (no
    /// allocation per pair: a million pairs stay cheap).
    first: Vec<u32>,
    /// Per pair: classes not on any path yet.
    pub unplaced: Vec<u64>,
    /// Per link: the assignments whose path uses it (some may be empty by now).
    pub users: Vec<Vec<usize>>,
    pub cache: TreeCache,
    /// When set, every [`Engine::add`] is logged here as (pair, assignment id, classes).
    pub log: Option<Vec<(usize, usize, u64)>>,
}

impl<'a> Engine<'a> {
    /// An engine with nothing placed: every class unplaced, links carrying only the
    /// background. `headroom[l][d]` is the planning share of capacity (≤ `ceiling`).
    pub fn new(i: &Inputs<'a>, ceiling: f64, headroom: &[[f64; 2]]) -> Engine<'a> {
        let t = i.topology;
        let links = t.links.len();
        let mut capacity = Vec::with_capacity(2 * links);
        let mut nominal = Vec::with_capacity(2 * links);
        let mut reduced = Vec::with_capacity(2 * links);
        let mut load = Vec::with_capacity(2 * links);
        for l in 0..links {
            let link = LinkIdx(l as u32);
            for (d, dir) in Dir::BOTH.into_iter().enumerate() {
                let cap = i.capacity.get(link, dir);
                let share = headroom.get(l).map_or(ceiling, |h| h[d]).min(ceiling);
                capacity.push(limit_kbps(cap, 1.0));
                nominal.push(limit_kbps(cap, ceiling));
                reduced.push(limit_kbps(cap, share));
                load.push(i.background.map_or(0, |b| b.get(link, dir)));
            }
        }
        let net = Net {
            graph: Graph::from_topology(t),
            delay: (0..links)
                .map(|l| i.metric.cost(LinkIdx(l as u32)))
                .collect(),
            capacity,
            ceiling: nominal,
            headroom: reduced,
            load,
        };
        let d = i.demand;
        Engine {
            net,
            pairs: &d.pairs,
            needs: d
                .services
                .iter()
                .map(|s| {
                    let (fwd, rev) = s.profile.kbps();
                    Need { fwd, rev }
                })
                .collect(),
            budgets: d.services.iter().map(|s| s.budget_us).collect(),
            services: d.services.iter().map(|s| s.name.clone()).collect(),
            assigns: Vec::new(),
            first: vec![NO_ASSIGN; d.pairs.len()],
            unplaced: d.pairs.iter().map(|p| p.classes).collect(),
            users: vec![Vec::new(); links],
            cache: TreeCache::default(),
            log: None,
        }
    }

    pub fn need(&self, pair: usize) -> Need {
        self.needs[self.pairs[pair].service]
    }

    pub fn budget(&self, pair: usize) -> Cost {
        self.budgets[self.pairs[pair].service]
    }

    /// Puts `count` classes of `pair` on `path` (no room check), merging with the
    /// pair's assignment on the same path. Returns the assignment's id.
    pub fn add(&mut self, pair: usize, path: impl Into<Arc<Path>>, count: u64) -> usize {
        let path: Arc<Path> = path.into();
        let need = self.need(pair);
        self.net.apply(&path, need, count, true);
        let same = self
            .ids(pair)
            .find(|&id| self.assigns[id].path.links == path.links);
        let id = same.unwrap_or(self.assigns.len());
        if let Some(log) = &mut self.log {
            log.push((pair, id, count));
        }
        if same.is_some() {
            self.assigns[id].classes += count;
            return id;
        }
        for l in &path.links {
            self.users[l.get()].push(id);
        }
        self.assigns.push(Assign {
            pair,
            path,
            classes: count,
            next: self.first[pair],
        });
        self.first[pair] = id as u32;
        id
    }

    /// The ids of `pair`'s assignments, newest first.
    pub fn ids(&self, pair: usize) -> impl Iterator<Item = usize> + '_ {
        let mut at = self.first[pair];
        std::iter::from_fn(move || {
            (at != NO_ASSIGN).then(|| {
                let id = at as usize;
                at = self.assigns[id].next;
                id
            })
        })
    }

    /// The assignment added to `pair` before `id` (for walking the list while
    /// changing the engine; new assignments go in front, so they are not seen).
    pub fn next_of(&self, id: usize) -> Option<usize> {
        let n = self.assigns[id].next;
        (n != NO_ASSIGN).then_some(n as usize)
    }

    /// `pair`'s newest assignment.
    pub fn first_of(&self, pair: usize) -> Option<usize> {
        let n = self.first[pair];
        (n != NO_ASSIGN).then_some(n as usize)
    }

    /// Takes up to `count` classes off assignment `id`; returns how many it took.
    pub fn remove(&mut self, id: usize, count: u64) -> u64 {
        let k = count.min(self.assigns[id].classes);
        let need = self.need(self.assigns[id].pair);
        self.assigns[id].classes -= k;
        self.net.apply(&self.assigns[id].path, need, k, false);
        k
    }

    /// Moves up to `count` classes of assignment `id` onto `to`; returns how many moved.
    pub fn shift(&mut self, id: usize, to: impl Into<Arc<Path>>, count: u64) -> u64 {
        let pair = self.assigns[id].pair;
        let k = self.remove(id, count);
        if k > 0 {
            self.add(pair, to, k);
        }
        k
    }

    /// Places up to `count` classes of `pair` on shortest paths with room under
    /// `tier` (within the pair's budget if `within_budget`), splitting across paths
    /// as links fill. Returns how many are left over; does not touch `unplaced`.
    pub fn fill(
        &mut self,
        pair: usize,
        count: u64,
        tier: Tier,
        within_budget: bool,
        cached: bool,
    ) -> u64 {
        let PairDemand {
            src, dst, service, ..
        } = self.pairs[pair];
        let need = self.need(pair);
        let max = if within_budget {
            self.budget(pair)
        } else {
            Cost::MAX
        };
        let mut left = count;
        while left > 0 {
            let found = if cached {
                self.cache
                    .path(&self.net, src, dst, service, need, tier, max)
            } else {
                let p = self.net.shortest(src, dst, need, tier, max, None);
                p.map(|p| {
                    let fit = self.net.fit(&p, need, tier);
                    (p, fit)
                })
            };
            let Some((path, fit)) = found else { break };
            let k = left.min(fit);
            if k == 0 {
                break; // a path with room takes at least one class; never spin
            }
            self.add(pair, path, k);
            left -= k;
        }
        left
    }

    /// [`Engine::fill`] for the pair's unplaced classes, updating `unplaced`.
    pub fn fill_unplaced(&mut self, pair: usize, tier: Tier, within_budget: bool, cached: bool) {
        let left = self.fill(pair, self.unplaced[pair], tier, within_budget, cached);
        self.unplaced[pair] = left;
    }

    /// The shortest delay of each of `pairs` ignoring capacity (`None`: unreachable),
    /// in the order given; one tree per destination.
    pub fn shortest_delays(&self, pairs: &[usize]) -> Vec<Option<Cost>> {
        let mut out = vec![None; pairs.len()];
        let mut by_dst: Vec<usize> = (0..pairs.len()).collect();
        by_dst.sort_by_key(|&i| (self.pairs[pairs[i]].dst, i));
        let zero = Need { fwd: 0, rev: 0 };
        let mut i = 0;
        while i < by_dst.len() {
            let dst = self.pairs[pairs[by_dst[i]]].dst;
            let tree = self
                .net
                .tree(dst, zero, Tier::Unlimited, Cost::MAX, None, None);
            while i < by_dst.len() && self.pairs[pairs[by_dst[i]]].dst == dst {
                out[by_dst[i]] = tree.dist(self.pairs[pairs[by_dst[i]]].src);
                i += 1;
            }
        }
        out
    }

    /// The placement as it stands.
    pub fn into_placement(self, headroom: Vec<[f64; 2]>) -> Placement {
        let Engine {
            pairs,
            services,
            assigns,
            first,
            unplaced,
            ..
        } = self;
        let pairs = pairs
            .iter()
            .zip(first)
            .zip(unplaced)
            .map(|((p, head), unplaced)| {
                let mut shares: Vec<PathShare> = Vec::new();
                let mut at = head;
                while at != NO_ASSIGN {
                    let a = &assigns[at as usize];
                    if a.classes > 0 {
                        shares.push(PathShare {
                            path: a.path.clone(),
                            classes: a.classes,
                        });
                    }
                    at = a.next;
                }
                shares.sort_by(|x, y| {
                    (x.path.cost, &x.path.links).cmp(&(y.path.cost, &y.path.links))
                });
                PairPlacement {
                    src: p.src,
                    dst: p.dst,
                    service: p.service,
                    shares,
                    unplaced,
                }
            })
            .collect();
        Placement {
            services,
            pairs,
            headroom,
        }
    }
}

/// For each pair of `demand`, the index of the same (src, dst, service name) in
/// `placement`, if it has one.
pub(crate) fn match_pairs(placement: &Placement, demand: &Demand) -> Vec<Option<usize>> {
    // The placement's service indices in the demand's numbering.
    let service: Vec<Option<usize>> = placement
        .services
        .iter()
        .map(|n| demand.service_idx(n))
        .collect();
    let mut index: Vec<((NodeIdx, NodeIdx, usize), usize)> = placement
        .pairs
        .iter()
        .enumerate()
        .filter_map(|(i, pp)| {
            let s = (*service.get(pp.service)?)?;
            Some(((pp.src, pp.dst, s), i))
        })
        .collect();
    // Already sorted when both number the services alike (the usual case).
    if !index.is_sorted_by_key(|x| x.0) {
        index.sort_by_key(|x| x.0);
    }
    demand
        .pairs
        .iter()
        .map(|p| {
            let key = (p.src, p.dst, p.service);
            index
                .binary_search_by_key(&key, |x| x.0)
                .ok()
                .map(|at| index[at].1)
        })
        .collect()
}

impl Engine<'_> {
    /// The delay of `path` for `pair` now: `None` if it is broken (a link down) or
    /// does not join the pair's ends.
    pub fn delay_for(&self, pair: usize, path: &Path) -> Option<Cost> {
        let pd = self.pairs[pair];
        if path.nodes.first() != Some(&pd.src) || path.nodes.last() != Some(&pd.dst) {
            return None;
        }
        self.net.delay_of(path)
    }
}
