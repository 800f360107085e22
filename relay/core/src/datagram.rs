//! What a relay does with a datagram from a peer link: the header is decoded
//! once, and the answer is an [`Action`] that the driver carries out. Nothing
//! here sends, delivers or counts; the driver does all three.

use crate::drop_reason::DropReason;
use crate::segment::{self, Segment, FLAG_REPAIRED};
use crate::table::{Decision, ForwardingTable};
use crate::wire::{Header, Kind, HEADER_LEN};

/// How a forwarded datagram goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The table's primary next hop.
    Primary,
    /// The table's loop-free backup (the primary is down, no repair segment).
    Backup,
    /// The next hop on the repair segment it carries (`next` moves on by one).
    Segment,
}

/// What to do with one received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pass it to neighbour `peer` with its TTL rewritten to `ttl`.
    Forward {
        peer: u32,
        ttl: u8,
        via: Via,
    },
    /// The primary next hop is down: mark it repaired, write `segment` into it
    /// and pass it to the segment's first node, with TTL `ttl`.
    Repair {
        segment: Segment,
        ttl: u8,
    },
    /// Its service ends here: the payload goes to the service's target.
    DeliverToTarget,
    /// A reply for a flow whose ingress is here: the payload goes to the
    /// flow's client.
    DeliverReply,
    /// The neighbour probes the link: echo `seq` back.
    AnswerProbe {
        seq: u32,
    },
    /// The neighbour answered our probe `seq`.
    ProbeAnswered {
        seq: u32,
    },
    Drop(DropReason),
}

/// A datagram decided: its header (when it had one), where its payload starts,
/// and what to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub header: Option<Header>,
    pub payload_at: usize,
    pub action: Action,
    /// The datagram leaves the placed path it carried (its next hop there is
    /// down) and goes on by the table: a `Forward` must strip the segment.
    pub off_segment: bool,
}

fn malformed() -> Received {
    Received {
        header: None,
        payload_at: HEADER_LEN,
        action: Action::Drop(DropReason::Malformed),
        off_segment: false,
    }
}

/// Decides the fate of `packet`, received from a neighbour, against `table`;
/// `peer_up(key)` tells whether the link to neighbour `key` carries traffic now.
pub fn decide(
    table: &ForwardingTable,
    packet: &[u8],
    mut peer_up: impl FnMut(u32) -> bool,
) -> Received {
    let Ok((header, _)) = Header::decode(packet) else {
        return malformed();
    };
    let (Ok(payload_at), Ok(on_segment)) = (
        segment::payload_offset(packet, &header),
        segment::read(packet, &header),
    ) else {
        return Received {
            header: Some(header),
            ..malformed()
        };
    };
    let mut off_segment = false;
    let action = match header.kind {
        Kind::Probe => Action::AnswerProbe { seq: header.seq },
        Kind::ProbeReply => Action::ProbeAnswered { seq: header.seq },
        // Streams open on QUIC streams, never as datagrams.
        Kind::StreamOpen | Kind::SessionOpen | Kind::SessionResume => {
            Action::Drop(DropReason::Malformed)
        }
        Kind::Media => match on_segment.and_then(|s| s.next_hop) {
            // On a repair segment: the next listed node, over the direct link.
            Some(next) => match header.ttl.checked_sub(1) {
                None | Some(0) => Action::Drop(DropReason::TtlExpired),
                Some(_) if header.dst == table.me() => Action::Drop(DropReason::Malformed),
                Some(ttl) if peer_up(next) => Action::Forward {
                    peer: next,
                    ttl,
                    via: Via::Segment,
                },
                // A placed path (never repaired yet): around the failure by
                // the table, which may repair it, once.
                Some(_) if header.flags & FLAG_REPAIRED == 0 => {
                    off_segment = true;
                    from_table(table.decide(&header, &mut peer_up), &header)
                }
                Some(_) => Action::Drop(DropReason::PeerDown),
            },
            None => from_table(table.decide(&header, peer_up), &header),
        },
    };
    Received {
        header: Some(header),
        payload_at,
        action,
        off_segment,
    }
}

fn from_table(decision: Decision, header: &Header) -> Action {
    match decision {
        Decision::Deliver if header.is_reply() => Action::DeliverReply,
        Decision::Deliver => Action::DeliverToTarget,
        Decision::Forward {
            next_hop,
            ttl,
            via_backup,
        } => Action::Forward {
            peer: next_hop,
            ttl,
            via: if via_backup {
                Via::Backup
            } else {
                Via::Primary
            },
        },
        Decision::Repair { segment, ttl } => {
            debug_assert!(header.flags & FLAG_REPAIRED == 0, "repaired twice");
            Action::Repair { segment, ttl }
        }
        Decision::Drop(reason) => Action::Drop(reason),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::table::Route;
    use crate::wire::{FLAG_REPLY, INITIAL_TTL};

    fn table() -> ForwardingTable {
        let mut routes = BTreeMap::new();
        routes.insert(
            20,
            Route {
                primary: 2,
                backup: Some(3),
                repair: None,
                second: None,
                placed: None,
            },
        );
        ForwardingTable::new(1, routes)
    }

    fn packet(kind: Kind, dst: u32, flags: u8) -> Vec<u8> {
        Header {
            kind,
            ttl: INITIAL_TTL,
            flags,
            dst,
            src: 9,
            service: 5,
            flow: 1,
            seq: 42,
            timestamp_us: 0,
        }
        .encode_with(b"payload")
    }

    #[test]
    fn each_kind_of_datagram_gets_its_action() {
        let t = table();
        let up = |_| true;
        assert_eq!(
            decide(&t, &packet(Kind::Media, 20, 0), up).action,
            Action::Forward {
                peer: 2,
                ttl: INITIAL_TTL - 1,
                via: Via::Primary
            }
        );
        assert_eq!(
            decide(&t, &packet(Kind::Media, 20, 0), |p| p == 3).action,
            Action::Forward {
                peer: 3,
                ttl: INITIAL_TTL - 1,
                via: Via::Backup
            }
        );
        assert_eq!(
            decide(&t, &packet(Kind::Media, 1, 0), up).action,
            Action::DeliverToTarget
        );
        assert_eq!(
            decide(&t, &packet(Kind::Media, 1, FLAG_REPLY), up).action,
            Action::DeliverReply
        );
        assert_eq!(
            decide(&t, &packet(Kind::Probe, 1, 0), up).action,
            Action::AnswerProbe { seq: 42 }
        );
        assert_eq!(
            decide(&t, &packet(Kind::ProbeReply, 1, 0), up).action,
            Action::ProbeAnswered { seq: 42 }
        );
        assert_eq!(
            decide(&t, &packet(Kind::StreamOpen, 1, 0), up).action,
            Action::Drop(DropReason::Malformed)
        );
        assert_eq!(
            decide(&t, &packet(Kind::Media, 99, 0), up).action,
            Action::Drop(DropReason::NoRoute)
        );
        let short = decide(&t, &[1, 1, 1], up);
        assert_eq!(short.header, None);
        assert_eq!(short.action, Action::Drop(DropReason::Malformed));
    }

    #[test]
    fn a_placed_datagram_whose_next_hop_is_down_goes_on_by_the_table() {
        let t = table();
        let placed = segment::Segment::new(&[4, 20]).expect("segment");
        let p = segment::insert_placed(&packet(Kind::Media, 20, 0), HEADER_LEN, &placed, 9);
        // Received at node 4's predecessor (us, node 1) with `next` at 4.
        let mut at_us = p.clone();
        at_us[HEADER_LEN] = 0;
        let on = decide(&t, &at_us, |_| true);
        assert_eq!(
            (on.action, on.off_segment),
            (
                Action::Forward {
                    peer: 4,
                    ttl: 8,
                    via: Via::Segment
                },
                false
            )
        );
        let off = decide(&t, &at_us, |peer| peer != 4);
        assert_eq!(
            (off.action, off.off_segment),
            (
                Action::Forward {
                    peer: 2,
                    ttl: 8,
                    via: Via::Primary
                },
                true
            ),
            "leaves the placed path for the table's primary"
        );
        // A repaired datagram on its repair segment is never repaired again.
        let mut repaired = segment::insert(&packet(Kind::Media, 20, 0), HEADER_LEN, &placed, 9);
        repaired[HEADER_LEN] = 0;
        let r = decide(&t, &repaired, |peer| peer != 4);
        assert_eq!(r.action, Action::Drop(DropReason::PeerDown));
    }

    proptest::proptest! {
        /// Whatever arrives, the decision is total: no panic, and every datagram
        /// that is not delivered, answered or forwarded has a drop reason.
        #[test]
        fn arbitrary_datagrams_are_decided(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let r = decide(&table(), &bytes, |_| true);
            if r.header.is_none() {
                proptest::prop_assert_eq!(r.action, Action::Drop(DropReason::Malformed));
            }
        }
    }
}
