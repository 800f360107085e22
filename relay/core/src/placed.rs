//! Placed paths: how the controller splits this relay's traffic to one
//! destination over up to [`MAX_SPLIT`] paths, each with a weight (its share
//! of the traffic). Each flow keeps one path, picked from its flow id, for as
//! long as the split stands; its datagrams carry the path as a segment that is
//! not marked repaired, so a relay on the path whose next hop fails still
//! repairs around the failure (see [`crate::datagram`]).

use crate::segment::Segment;

/// The most paths one destination's traffic is split over.
pub const MAX_SPLIT: usize = 4;

/// Paths to one destination and their weights; at least one, none of weight 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    paths: [Segment; MAX_SPLIT],
    weights: [u32; MAX_SPLIT],
    len: u8,
}

impl Placed {
    /// The split of `paths` (each the node keys after this relay, the last the
    /// destination): paths of weight 0 are left out, and so is any after the
    /// first [`MAX_SPLIT`]. `None` when no path is left.
    pub fn new(paths: &[(Segment, u32)]) -> Option<Placed> {
        let mut kept = paths.iter().filter(|(_, w)| *w > 0).take(MAX_SPLIT);
        let &(first, w) = kept.next()?;
        let mut p = Placed {
            paths: [first; MAX_SPLIT],
            weights: [0; MAX_SPLIT],
            len: 1,
        };
        p.weights[0] = w;
        for &(seg, w) in kept {
            p.paths[usize::from(p.len)] = seg;
            p.weights[usize::from(p.len)] = w;
            p.len += 1;
        }
        Some(p)
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
    /// changes only when the split does.
    ///
    /// Flow ids are handed out one after another, so a flow's place on the
    /// split is its id times the golden ratio (mod 1, a Weyl sequence, offset
    /// per service): any run of consecutive flows splits within a flow or two
    /// of the weights, where a hash would leave binomial spread.
    pub fn pick(&self, src: u32, service: u32, flow: u32) -> &Segment {
        let total: u64 = self.paths().map(|(_, w)| u64::from(w)).sum();
        let offset = spread((u64::from(src) << 32) | u64::from(service));
        let place = u64::from(flow)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(offset);
        let mut at = ((place >> 32) * total) >> 32;
        for (seg, w) in self.paths() {
            if at < u64::from(w) {
                return seg;
            }
            at -= u64::from(w);
        }
        &self.paths[0]
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
