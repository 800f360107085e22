//! What the overlay must carry: the class profile (kbit/s each way), services with
//! their latency budgets, and how many classes run between which pair of nodes.
//!
//! Pure data and arithmetic. [`Demand::generate`] is the deterministic default
//! (N classes spread evenly over every Asian × North American city pair);
//! [`Demand::parse`] reads a demand file that replaces it (see `file.rs`).

mod file;

pub use file::DEMAND_VERSION;

use std::collections::BTreeMap;

use crate::model::{NodeIdx, Topology};

/// Bytes the overlay adds to every packet it carries between two relays:
/// outer IPv4 (20) + UDP (8) + QUIC short header (1 flags + 8 connection id +
/// 2 packet number) + AEAD tag (16) + DATAGRAM frame (1 type + 2 length) +
/// the overlay header (32, `relay::wire::HEADER_LEN`) = 90. The classroom
/// server's own IP/UDP header (28) is not carried: the relay forwards the payload.
pub const OVERLAY_OVERHEAD_BYTES: u32 = 90;

/// kbit/s on an overlay link of a stream of `payload_kbps` (what the classroom
/// server hands to the relay: RTP packets or TCP bytes) sent as `packets_per_s`
/// packets: the payload plus [`OVERLAY_OVERHEAD_BYTES`] per packet, rounded up.
pub const fn on_link_kbps(payload_kbps: u32, packets_per_s: u32) -> u32 {
    payload_kbps + (packets_per_s * OVERLAY_OVERHEAD_BYTES * 8).div_ceil(1000)
}

/// What one class sends in one direction, each figure in kbit/s on an overlay
/// link (overlay overhead included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Direction {
    pub audio_kbps: u32,
    pub video_kbps: u32,
    /// Class control, chat and whiteboard events (the TCP service).
    pub signalling_kbps: u32,
}

impl Direction {
    pub fn total_kbps(&self) -> u64 {
        u64::from(self.audio_kbps) + u64::from(self.video_kbps) + u64::from(self.signalling_kbps)
    }
}

/// One class's traffic both ways. `forward` flows from the demand's `from` node to
/// its `to` node (student to teacher in the default demand), `reverse` back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClassProfile {
    pub forward: Direction,
    pub reverse: Direction,
}

impl ClassProfile {
    /// A 1-on-1 HD class: both ends send camera video and voice, and signalling.
    ///
    /// - **Audio: 73 kbit/s.** Opus at 32 kbit/s, WebRTC's default for full-band
    ///   speech (the Opus RTP payload draft / RFC 7587 §3.1.1 recommends 28–40 kbit/s
    ///   for full-band speech), 20 ms frames = 50 packets/s, + 12-byte RTP header
    ///   (4.8 kbit/s) = 37 kbit/s payload; + 50 × 90 bytes of overlay = 36 kbit/s.
    /// - **Video: 1,616 kbit/s.** 720p30 at 1,500 kbit/s: Microsoft publishes
    ///   1.2 Mbit/s minimum and 1.5 Mbit/s recommended for peer-to-peer 720p
    ///   video in Teams, Zoom 1.2 Mbit/s for 1:1 720p; we plan at the recommended
    ///   figure. Packets of ≤ 1,200 bytes (WebRTC's usual payload cap) → 160 per
    ///   second; + 160 × 90 bytes of overlay = 115.2, rounded up to 116 kbit/s.
    /// - **Signalling: 18 kbit/s.** Class control, chat and whiteboard strokes over
    ///   the TCP service: about 10 kbit/s averaged over a class, ~10 segments/s;
    ///   + 10 × 90 bytes of overlay = 8 kbit/s.
    ///
    /// Total: 1,707 kbit/s each way, so 35,000 classes carry ≈ 59.7 Gbit/s each way
    /// across the Pacific at peak.
    pub const HD: ClassProfile = {
        let d = Direction {
            audio_kbps: on_link_kbps(37, 50),
            video_kbps: on_link_kbps(1500, 160),
            signalling_kbps: on_link_kbps(10, 10),
        };
        ClassProfile {
            forward: d,
            reverse: d,
        }
    };

    /// kbit/s per class: (forward, reverse).
    pub fn kbps(&self) -> (u64, u64) {
        (self.forward.total_kbps(), self.reverse.total_kbps())
    }
}

impl Default for ClassProfile {
    fn default() -> Self {
        ClassProfile::HD
    }
}

/// The default one-way latency budget of a class: 200 ms.
pub const DEFAULT_BUDGET_US: u64 = 200_000;

/// The default peak: 35,000 concurrent classes.
pub const DEFAULT_CLASSES: u64 = 35_000;

/// A kind of class with its own latency budget and traffic profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: String,
    /// One-way latency budget over the overlay, µs.
    pub budget_us: u64,
    pub profile: ClassProfile,
}

impl Default for ServiceSpec {
    /// `class`: 200 ms, the HD profile.
    fn default() -> Self {
        ServiceSpec {
            name: "class".to_string(),
            budget_us: DEFAULT_BUDGET_US,
            profile: ClassProfile::HD,
        }
    }
}

/// How many classes of one service run between two nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PairDemand {
    pub src: NodeIdx,
    pub dst: NodeIdx,
    /// Index into [`Demand::services`].
    pub service: usize,
    pub classes: u64,
}

/// Every class the overlay must place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    pub services: Vec<ServiceSpec>,
    /// Sorted by (src, dst, service), one entry per triple, none with 0 classes.
    pub pairs: Vec<PairDemand>,
}

impl Demand {
    /// A demand from unordered parts: entries for the same (src, dst, service) are
    /// added up, empty ones and self-pairs dropped, the rest sorted. An entry naming
    /// a service or node that does not exist is kept: placement refuses it with an
    /// error that says which.
    pub fn new(services: Vec<ServiceSpec>, pairs: impl IntoIterator<Item = PairDemand>) -> Demand {
        let mut merged: BTreeMap<(NodeIdx, NodeIdx, usize), u64> = BTreeMap::new();
        for p in pairs {
            if p.classes > 0 && p.src != p.dst {
                let n = merged.entry((p.src, p.dst, p.service)).or_default();
                *n = n.saturating_add(p.classes);
            }
        }
        let pairs = merged
            .into_iter()
            .map(|((src, dst, service), classes)| PairDemand {
                src,
                dst,
                service,
                classes,
            })
            .collect();
        Demand { services, pairs }
    }

    /// The default demand: `classes` classes of `service`, spread as evenly as
    /// possible over every (Asian city, North American city) pair of the topology
    /// (regions starting `asia` and `north-america`), students in Asia as `src`.
    ///
    /// Every pair gets ⌊classes / pairs⌋; the remainder goes one each to the first
    /// pairs in (src id, dst id) order. Even, because the operator's per-city mix
    /// changes by term and is not ours to guess: a demand file states a real one.
    pub fn generate(t: &Topology, classes: u64, service: ServiceSpec) -> Demand {
        let in_region = |prefix: &str| -> Vec<NodeIdx> {
            (0..t.nodes.len())
                .map(|i| NodeIdx(i as u32))
                .filter(|&n| t.node(n).region.starts_with(prefix))
                .collect()
        };
        let (asia, america) = (in_region("asia"), in_region("north-america"));
        let count = (asia.len() * america.len()) as u64;
        let mut pairs = Vec::new();
        if let (Some(each), Some(extra)) = (classes.checked_div(count), classes.checked_rem(count))
        {
            let mut i = 0u64;
            for &s in &asia {
                for &d in &america {
                    pairs.push(PairDemand {
                        src: s,
                        dst: d,
                        service: 0,
                        classes: each + u64::from(i < extra),
                    });
                    i += 1;
                }
            }
        }
        Demand::new(vec![service], pairs)
    }

    /// [`Demand::generate`] with the defaults: 35,000 HD classes, 200 ms budget.
    pub fn default_peak(t: &Topology) -> Demand {
        Demand::generate(t, DEFAULT_CLASSES, ServiceSpec::default())
    }

    pub fn total_classes(&self) -> u64 {
        self.pairs.iter().map(|p| p.classes).sum()
    }

    /// Looks a service up by name.
    pub fn service_idx(&self, name: &str) -> Option<usize> {
        self.services.iter().position(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hd_profile_adds_up() {
        let (f, r) = ClassProfile::HD.kbps();
        assert_eq!((f, r), (1707, 1707));
        assert_eq!(ClassProfile::HD.forward.audio_kbps, 73);
        assert_eq!(ClassProfile::HD.forward.video_kbps, 1616);
        assert_eq!(ClassProfile::HD.forward.signalling_kbps, 18);
    }

    #[test]
    fn the_default_spreads_every_class_over_asia_to_north_america() {
        let t = crate::world().expect("the shipped world is valid");
        let d = Demand::default_peak(&t);
        assert_eq!(d.total_classes(), DEFAULT_CLASSES);
        // 30 Asian cities × 20 North American ones.
        assert_eq!(d.pairs.len(), 600);
        let (lo, hi) = d.pairs.iter().fold((u64::MAX, 0), |(lo, hi), p| {
            (lo.min(p.classes), hi.max(p.classes))
        });
        assert!(hi - lo <= 1, "{lo}..{hi}");
        for p in &d.pairs {
            assert!(t.node(p.src).region.starts_with("asia"));
            assert!(t.node(p.dst).region.starts_with("north-america"));
        }
        assert_eq!(d, Demand::default_peak(&t), "deterministic");
    }

    #[test]
    fn new_merges_and_sorts() {
        let p = |s, d, c| PairDemand {
            src: NodeIdx(s),
            dst: NodeIdx(d),
            service: 0,
            classes: c,
        };
        let d = Demand::new(
            vec![ServiceSpec::default()],
            [p(2, 1, 3), p(0, 1, 1), p(2, 1, 4), p(1, 1, 9), p(3, 0, 0)],
        );
        assert_eq!(d.pairs, vec![p(0, 1, 1), p(2, 1, 7)]);
    }
}
