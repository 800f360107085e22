//! Placed paths: how the controller splits this relay's traffic to one
//! destination over up to [`MAX_SPLIT`] paths, each with a weight (its share
//! of the traffic). Each flow keeps one path, picked from its flow id, for as
//! long as the split stands; its datagrams carry the path as a segment that is
//! not marked repaired, so a relay on the path whose next hop fails still
//! repairs around the failure (see [`crate::datagram`]).

use crate::segment::Segment;

/// The most paths one destination's traffic is split over.
pub const MAX_SPLIT: usize = 4;

/// Flows are spread over this many buckets, each bucket on one path: the
/// split's grain (under 1% of a pair's flows).
const BUCKETS: usize = 128;

/// Paths to one destination and their weights; at least one, none of weight 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    paths: [Segment; MAX_SPLIT],
    weights: [u32; MAX_SPLIT],
    len: u8,
    /// The path (an index into `paths`) of each bucket's flows.
    buckets: [u8; BUCKETS],
}

impl Placed {
    /// The split of `paths` (each the node keys after this relay, the last the
    /// destination): paths of weight 0 are left out, and so is any after the
    /// first [`MAX_SPLIT`]. `None` when no path is left. Each path takes a
    /// run of buckets in proportion to its weight.
    pub fn new(paths: &[(Segment, u32)]) -> Option<Placed> {
        let mut kept = paths.iter().filter(|(_, w)| *w > 0).take(MAX_SPLIT);
        let &(first, w) = kept.next()?;
        let mut p = Placed {
            paths: [first; MAX_SPLIT],
            weights: [0; MAX_SPLIT],
            len: 1,
            buckets: [0; BUCKETS],
        };
        p.weights[0] = w;
        for &(seg, w) in kept {
            p.paths[usize::from(p.len)] = seg;
            p.weights[usize::from(p.len)] = w;
            p.len += 1;
        }
        let quotas = p.quotas();
        p.fill(&[true; BUCKETS], [0; MAX_SPLIT], quotas);
        Some(p)
    }

    /// This split laid over `before` (the split it replaces) so that as few
    /// flows as its weights allow change path: a bucket stays on its path if
    /// that path is still in the split and has not had its share; only the
    /// rest move.
    pub fn keeping(mut self, before: &Placed) -> Placed {
        let quotas = self.quotas();
        let mut filled = [0u16; MAX_SPLIT];
        let mut open = [false; BUCKETS];
        for (b, open) in open.iter_mut().enumerate() {
            let was = &before.paths[usize::from(before.buckets[b])];
            match self.index_of(was) {
                Some(j) if filled[j] < quotas[j] => {
                    self.buckets[b] = j as u8;
                    filled[j] += 1;
                }
                _ => *open = true,
            }
        }
        self.fill(&open, filled, quotas);
        self
    }

    /// Gives the `open` buckets, in order, to the paths short of their share
    /// (`quotas`; `filled` buckets each so far), first path first.
    fn fill(
        &mut self,
        open: &[bool; BUCKETS],
        mut filled: [u16; MAX_SPLIT],
        quotas: [u16; MAX_SPLIT],
    ) {
        let last = usize::from(self.len) - 1;
        let mut j = 0;
        for b in (0..BUCKETS).filter(|&b| open[b]) {
            while j < last && filled[j] >= quotas[j] {
                j += 1;
            }
            self.buckets[b] = j as u8;
            filled[j] += 1;
        }
    }

    /// Each path's share of the buckets: its weight's, rounded so that they
    /// add up (largest remainders first).
    fn quotas(&self) -> [u16; MAX_SPLIT] {
        let n = usize::from(self.len);
        let total: u64 = self.weights[..n].iter().map(|&w| u64::from(w)).sum();
        let mut quotas = [0u16; MAX_SPLIT];
        let mut rest = [0u64; MAX_SPLIT];
        for j in 0..n {
            let share = u64::from(self.weights[j]) * BUCKETS as u64;
            quotas[j] = (share / total) as u16;
            rest[j] = share % total;
        }
        let given: u16 = quotas.iter().sum();
        let mut order: [usize; MAX_SPLIT] = std::array::from_fn(|j| j);
        let order = &mut order[..n];
        order.sort_by_key(|&j| std::cmp::Reverse(rest[j]));
        for &j in order.iter().take(BUCKETS - usize::from(given)) {
            quotas[j] += 1;
        }
        quotas
    }

    fn index_of(&self, path: &Segment) -> Option<usize> {
        self.paths[..usize::from(self.len)]
            .iter()
            .position(|p| p == path)
    }

    /// (path, weight) of each path, in the order given.
    pub fn paths(&self) -> impl Iterator<Item = (&Segment, u32)> {
        let n = usize::from(self.len);
        self.paths[..n]
            .iter()
            .zip(self.weights[..n].iter().copied())
    }

    /// The path of flow `flow` of service `service` from node `src`: each
    /// path takes a share of flows in proportion to its weight; a flow's path
    /// changes only when the split does, and then only if its path left the
    /// split or had more than its new share (see [`Placed::keeping`]).
    ///
    /// Flow ids are handed out one after another, so a flow's bucket comes
    /// from its id times the golden ratio (mod 1, a Weyl sequence, offset per
    /// service): any run of consecutive flows spreads evenly over the
    /// buckets, within a flow or two of the weights, where a hash would leave
    /// binomial spread.
    pub fn pick(&self, src: u32, service: u32, flow: u32) -> &Segment {
        let offset = spread((u64::from(src) << 32) | u64::from(service));
        let place = u64::from(flow)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(offset);
        let bucket = ((place >> 32) * BUCKETS as u64) >> 32;
        &self.paths[usize::from(self.buckets[bucket as usize])]
    }
}

/// splitmix64's finaliser: a well-mixed offset per (node, service).
fn spread(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(hops: &[u32]) -> Segment {
        Segment::new(hops).expect("a segment")
    }

    #[test]
    fn flows_split_in_proportion_to_the_weights_and_keep_their_path() {
        let (a, b) = (seg(&[2, 9]), seg(&[3, 9]));
        let p = Placed::new(&[(a, 16), (b, 10)]).expect("two paths");
        for service in [1, 2, 99] {
            for start in [0, 5, 1_000] {
                let on_a = (start..start + 28)
                    .filter(|&f| *p.pick(7, service, f) == a)
                    .count();
                // 28 × 16 / 26 = 17.2
                assert!((16..=19).contains(&on_a), "{on_a} of 28 on a 16:10 split");
            }
        }
        let on_a = (0..10_000).filter(|&f| *p.pick(7, 1, f) == a).count();
        assert!(
            (6_100..=6_210).contains(&on_a),
            "{on_a} of 10,000 on a 16:10 split"
        );
        for f in 0..100 {
            assert_eq!(p.pick(7, 1, f), p.pick(7, 1, f), "a flow keeps its path");
        }
    }

    /// The defect: a flow moved whenever its pair's weights changed (each
    /// path's share was laid out from the first path on, so every boundary
    /// moved), though its own path stayed in the split: on a cut, flows left
    /// a line that was not cut.
    #[test]
    fn when_the_split_changes_only_the_flows_it_must_move_move() {
        let (a, b, c) = (seg(&[2, 9]), seg(&[3, 9]), seg(&[4, 9]));
        let flows = 0..10_000u32;
        // a is cut: its share goes to c, and b grows a little.
        let before = Placed::new(&[(a, 13), (b, 15)]).expect("split");
        let after = Placed::new(&[(c, 10), (b, 16)])
            .expect("split")
            .keeping(&before);
        for f in flows.clone() {
            if *before.pick(7, 1, f) == b {
                assert_eq!(*after.pick(7, 1, f), b, "flow {f} stays on b, which grew");
            }
        }
        let on_c = flows.clone().filter(|&f| *after.pick(7, 1, f) == c).count();
        // 10,000 × 10 / 26 = 3,846
        assert!((3_700..=4_000).contains(&on_c), "{on_c} of 10,000 on c");
        // b shrinks from half to a quarter: only flows from b move, about a
        // quarter of all, and a keeps all of its own.
        let before = Placed::new(&[(a, 10), (b, 10)]).expect("split");
        let after = Placed::new(&[(a, 15), (b, 5)])
            .expect("split")
            .keeping(&before);
        let moved = flows
            .clone()
            .filter(|&f| before.pick(7, 1, f) != after.pick(7, 1, f));
        let moved: Vec<u32> = moved.collect();
        assert!(
            moved.iter().all(|&f| *before.pick(7, 1, f) == b),
            "only b's flows move"
        );
        assert!(
            (2_300..=2_700).contains(&moved.len()),
            "{} of 10,000 moved",
            moved.len()
        );
        // A few consecutive flows still split close to the weights.
        for start in [0, 5, 1_000] {
            let on_a = (start..start + 28)
                .filter(|&f| *after.pick(7, 1, f) == a)
                .count();
            // 28 × 15 / 20 = 21
            assert!((19..=23).contains(&on_a), "{on_a} of 28 on a 15:5 split");
        }
    }

    #[test]
    fn weightless_and_surplus_paths_are_left_out() {
        assert_eq!(Placed::new(&[]), None);
        assert_eq!(Placed::new(&[(seg(&[2]), 0)]), None);
        let many: Vec<(Segment, u32)> = (1..=6).map(|i| (seg(&[i]), i)).collect();
        let p = Placed::new(&many).expect("paths");
        assert_eq!(p.paths().count(), MAX_SPLIT);
        let only = Placed::new(&[(seg(&[2]), 0), (seg(&[3]), 5)]).expect("one path");
        assert!((0..50).all(|f| only.pick(1, 1, f).first() == 3));
    }
}
