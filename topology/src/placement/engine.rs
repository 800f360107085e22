//! The state one placement run works on: the network with its loads, each pair's
//! need and budget, and the classes placed so far as (pair, path, count).

use std::collections::BTreeMap;

use super::net::{limit_kbps, Need, Net, Tier, TreeCache};
use super::{Dir, Inputs, PairPlacement, PathShare, Placement};
use crate::demand::{Demand, PairDemand};
use crate::model::{LinkIdx, NodeIdx};
use crate::paths::{Cost, Graph, Path};

/// Some classes of one pair on one path.
#[derive(Debug, Clone)]
pub(crate) struct Assign {
    pub pair: usize,
    pub path: Path,
    pub classes: u64,
}

#[derive(Debug)]
pub(crate) struct Engine<'a> {
    pub net: Net,
    pub pairs: &'a [PairDemand],
    needs: Vec<Need>,
    budgets: Vec<Cost>,
    pub services: Vec<String>,
    /// Never shrinks: an emptied assignment keeps its id with 0 classes.
    pub assigns: Vec<Assign>,
    pub by_pair: Vec<Vec<usize>>,
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
            by_pair: vec![Vec::new(); d.pairs.len()],
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
    pub fn add(&mut self, pair: usize, path: Path, count: u64) -> usize {
        let need = self.need(pair);
        self.net.apply(&path, need, count, true);
        let same = self.by_pair[pair]
            .iter()
            .copied()
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
        });
        self.by_pair[pair].push(id);
        id
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
    pub fn shift(&mut self, id: usize, to: Path, count: u64) -> u64 {
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
            let path = if cached {
                self.cache
                    .path(&self.net, src, dst, service, need, tier, max)
            } else {
                self.net.shortest(src, dst, need, tier, max, None)
            };
            let Some(path) = path else { break };
            let k = left.min(self.net.fit(&path, need, tier));
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

    /// The shortest delay of every pair ignoring capacity (`None`: unreachable), one
    /// tree per destination.
    pub fn shortest_delays(&self) -> Vec<Option<Cost>> {
        let mut out = vec![None; self.pairs.len()];
        let mut by_dst: Vec<usize> = (0..self.pairs.len()).collect();
        by_dst.sort_by_key(|&p| (self.pairs[p].dst, p));
        let mut i = 0;
        while i < by_dst.len() {
            let dst = self.pairs[by_dst[i]].dst;
            let zero = Need { fwd: 0, rev: 0 };
            let tree = self
                .net
                .tree(dst, zero, Tier::Unlimited, Cost::MAX, None, None);
            while i < by_dst.len() && self.pairs[by_dst[i]].dst == dst {
                let p = by_dst[i];
                out[p] = self.net.walk(&tree, self.pairs[p].src, dst).map(|x| x.cost);
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
            mut assigns,
            by_pair,
            unplaced,
            ..
        } = self;
        let pairs = pairs
            .iter()
            .zip(by_pair)
            .zip(unplaced)
            .map(|((p, ids), unplaced)| {
                let mut shares: Vec<PathShare> = Vec::with_capacity(ids.len());
                for id in ids {
                    let a = &mut assigns[id];
                    if a.classes > 0 {
                        shares.push(PathShare {
                            path: std::mem::replace(&mut a.path, empty_path()),
                            classes: a.classes,
                        });
                    }
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

fn empty_path() -> Path {
    Path {
        nodes: Vec::new(),
        links: Vec::new(),
        cost: 0,
    }
}

/// For each pair of `demand`, the index of the same (src, dst, service name) in
/// `placement`, if it has one.
pub(crate) fn match_pairs(placement: &Placement, demand: &Demand) -> Vec<Option<usize>> {
    let mut index: BTreeMap<(NodeIdx, NodeIdx, &str), usize> = BTreeMap::new();
    for (i, pp) in placement.pairs.iter().enumerate() {
        if let Some(name) = placement.services.get(pp.service) {
            index.entry((pp.src, pp.dst, name.as_str())).or_insert(i);
        }
    }
    demand
        .pairs
        .iter()
        .map(|p| {
            let name = demand.services[p.service].name.as_str();
            index.get(&(p.src, p.dst, name)).copied()
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
