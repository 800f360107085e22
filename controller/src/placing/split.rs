//! A pair's split: the placed paths its source sends flows on, and their weights.

use topology::NodeIdx;

/// The most paths one pair's traffic is split over (as the relays keep it).
pub const MAX_SPLIT: usize = 4;
/// The longest placed path, in hops after the source (a relay's segment cap).
pub const MAX_PLACED_HOPS: usize = 16;

/// One pair's split: up to [`MAX_SPLIT`] paths (the nodes after the source,
/// the last the destination) and the units placed on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    hops: [[NodeIdx; MAX_PLACED_HOPS]; MAX_SPLIT],
    lens: [u8; MAX_SPLIT],
    weights: [u32; MAX_SPLIT],
    count: u8,
}

impl Split {
    /// From `paths` (full paths, source first, and their units), heaviest
    /// first; paths longer than [`MAX_PLACED_HOPS`] are left out.
    pub fn new(paths: &[(&[NodeIdx], u64)]) -> Option<Split> {
        let mut sorted: Vec<&(&[NodeIdx], u64)> = paths
            .iter()
            .filter(|(p, w)| *w > 0 && p.len() >= 2 && p.len() - 1 <= MAX_PLACED_HOPS)
            .collect();
        sorted.sort_by_key(|p| std::cmp::Reverse(p.1));
        let mut s = Split {
            hops: [[NodeIdx(0); MAX_PLACED_HOPS]; MAX_SPLIT],
            lens: [0; MAX_SPLIT],
            weights: [0; MAX_SPLIT],
            count: 0,
        };
        for (path, w) in sorted.into_iter().take(MAX_SPLIT) {
            let i = usize::from(s.count);
            let after = &path[1..];
            s.hops[i][..after.len()].copy_from_slice(after);
            s.lens[i] = after.len() as u8;
            s.weights[i] = u32::try_from(*w).unwrap_or(u32::MAX);
            s.count += 1;
        }
        (s.count > 0).then_some(s)
    }

    /// (nodes after the source, units) of each path, heaviest first.
    pub fn paths(&self) -> impl Iterator<Item = (&[NodeIdx], u32)> {
        (0..usize::from(self.count))
            .map(|i| (&self.hops[i][..usize::from(self.lens[i])], self.weights[i]))
    }
}
