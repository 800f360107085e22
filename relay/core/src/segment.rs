//! The repair segment a datagram may carry right after its header, and the
//! flags that go with it (see `topology::repair` for the scheme).
//!
//! A relay whose next hop toward a destination is down (the point of local
//! repair) marks the datagram repaired ([`FLAG_REPAIRED`]), writes the repair
//! segment into it ([`FLAG_SEGMENT`]) and sends it to the segment's first node.
//! Each node on the segment forwards over the direct link to the next listed
//! node; after the last one (the release node) the datagram goes back to table
//! forwarding, still marked, and a marked datagram is never repaired again.
//!
//! A placed path ([`crate::placed`]) rides the same extension without the
//! repaired mark: when its next hop is down, the datagram leaves it for table
//! forwarding (the segment stripped), which may repair it once.
//!
//! ```text
//!  32      33      34
//! +-------+-------+---------------+---------------+----
//! | next  |  len  | hop 0 key     | hop 1 key     | ... (len × u32), then the payload
//! +-------+-------+---------------+---------------+----
//! ```
//!
//! `next` is the index of the hop the node that receives the datagram sends it
//! to; `len` (1..=[`MAX_HOPS`]) the segment's length. `next == len`: consumed.
//! Forwarding along the segment rewrites `next` in place, like the TTL.

use crate::wire::{DecodeError, Header, HEADER_LEN};

/// The datagram was repaired once: it is never repaired again.
pub const FLAG_REPAIRED: u8 = 0b0000_0010;
/// A repair segment follows the header.
pub const FLAG_SEGMENT: u8 = 0b0000_0100;
/// The longest segment: a repair segment's or a second path's, whichever cap is higher.
pub const MAX_HOPS: usize = {
    let (repair, second) = (
        topology::repair::MAX_REPAIR_HOPS,
        topology::disjoint::MAX_SECOND_PATH_HOPS,
    );
    if repair > second {
        repair
    } else {
        second
    }
};
/// Bytes a segment of `len` hops adds to a datagram.
pub const fn extension_len(len: usize) -> usize {
    2 + 4 * len
}
/// The most a repair adds to a datagram: senders leave this much room.
pub const MAX_EXTENSION: usize = extension_len(MAX_HOPS);

/// A repair segment: the node keys after the repairing node, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    hops: [u32; MAX_HOPS],
    len: u8,
}

impl Segment {
    /// A segment of `hops` (1..=[`MAX_HOPS`] node keys); `None` otherwise.
    pub fn new(hops: &[u32]) -> Option<Segment> {
        if hops.is_empty() || hops.len() > MAX_HOPS {
            return None;
        }
        let mut s = Segment {
            hops: [0; MAX_HOPS],
            len: hops.len() as u8,
        };
        s.hops[..hops.len()].copy_from_slice(hops);
        Some(s)
    }

    pub fn hops(&self) -> &[u32] {
        &self.hops[..usize::from(self.len)]
    }

    /// The first node, where the repairing node sends the datagram.
    pub fn first(&self) -> u32 {
        self.hops[0]
    }
}

/// A datagram's segment as it arrived: where it is on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnSegment {
    /// The hop to send to now, if the segment is not consumed.
    pub next_hop: Option<u32>,
}

/// Where a datagram's payload starts, given its decoded header: after the
/// segment extension when there is one.
pub fn payload_offset(packet: &[u8], header: &Header) -> Result<usize, DecodeError> {
    if header.flags & FLAG_SEGMENT == 0 {
        return Ok(HEADER_LEN);
    }
    let len = usize::from(
        *packet
            .get(HEADER_LEN + 1)
            .ok_or(DecodeError::Truncated(packet.len()))?,
    );
    let end = HEADER_LEN + extension_len(len);
    if len == 0 || len > MAX_HOPS || packet.len() < end {
        return Err(DecodeError::Segment);
    }
    Ok(end)
}

/// Reads a datagram's segment, if it carries one.
pub fn read(packet: &[u8], header: &Header) -> Result<Option<OnSegment>, DecodeError> {
    if header.flags & FLAG_SEGMENT == 0 {
        return Ok(None);
    }
    payload_offset(packet, header)?;
    let next = usize::from(packet[HEADER_LEN]);
    let len = usize::from(packet[HEADER_LEN + 1]);
    if next > len {
        return Err(DecodeError::Segment);
    }
    let next_hop = (next < len).then(|| {
        let at = HEADER_LEN + 2 + 4 * next;
        u32::from_be_bytes([packet[at], packet[at + 1], packet[at + 2], packet[at + 3]])
    });
    Ok(Some(OnSegment { next_hop }))
}

/// Moves an encoded datagram one hop along its segment (rewrites `next`).
pub fn advance_in_place(packet: &mut [u8]) {
    if let Some(next) = packet.get_mut(HEADER_LEN) {
        *next = next.saturating_add(1);
    }
}

/// A copy of `packet` (header, then payload from `payload_at`) marked repaired
/// and carrying `segment`, its first hop consumed, with TTL `ttl`.
pub fn insert(packet: &[u8], payload_at: usize, segment: &Segment, ttl: u8) -> Vec<u8> {
    insert_flagged(
        packet,
        payload_at,
        segment,
        ttl,
        FLAG_REPAIRED | FLAG_SEGMENT,
    )
}

/// [`insert`] for a placed path (see [`crate::placed`]): not marked repaired,
/// so a relay on it may still repair around a failed next hop once.
pub fn insert_placed(packet: &[u8], payload_at: usize, segment: &Segment, ttl: u8) -> Vec<u8> {
    insert_flagged(packet, payload_at, segment, ttl, FLAG_SEGMENT)
}

/// A copy of `packet` without its segment (payload from `payload_at`), with
/// TTL `ttl`: a placed datagram whose next hop is down goes on by the table.
pub fn strip(packet: &[u8], payload_at: usize, ttl: u8) -> Vec<u8> {
    let payload = packet.get(payload_at..).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&packet[..HEADER_LEN.min(packet.len())]);
    if let Some(t) = out.get_mut(2) {
        *t = ttl;
    }
    if let Some(flags) = out.get_mut(3) {
        *flags &= !FLAG_SEGMENT;
    }
    out.extend_from_slice(payload);
    out
}

fn insert_flagged(
    packet: &[u8],
    payload_at: usize,
    segment: &Segment,
    ttl: u8,
    flags: u8,
) -> Vec<u8> {
    let hops = segment.hops();
    let payload = packet.get(payload_at..).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + extension_len(hops.len()) + payload.len());
    out.extend_from_slice(&packet[..HEADER_LEN.min(packet.len())]);
    out[2] = ttl;
    out[3] |= flags;
    // The first node receives it with `next` pointing past itself.
    out.push(1);
    out.push(hops.len() as u8);
    for h in hops {
        out.extend_from_slice(&h.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Kind;

    fn packet(flags: u8) -> Vec<u8> {
        Header {
            kind: Kind::Media,
            ttl: 9,
            flags,
            dst: 4,
            src: 1,
            service: 7,
            flow: 2,
            seq: 3,
            timestamp_us: 5,
        }
        .encode_with(b"payload")
    }

    #[test]
    fn a_segment_is_inserted_walked_and_consumed() {
        let seg = Segment::new(&[10, 20, 30]).expect("segment");
        let plain = packet(0);
        let mut p = insert(&plain, HEADER_LEN, &seg, 7);
        let (h, _) = Header::decode(&p).expect("decodes");
        assert_eq!(h.ttl, 7);
        assert_eq!(
            h.flags & (FLAG_REPAIRED | FLAG_SEGMENT),
            FLAG_REPAIRED | FLAG_SEGMENT
        );
        assert_eq!(&p[payload_offset(&p, &h).expect("offset")..], b"payload");
        // At hop 0 (node 10): send to 20.
        assert_eq!(
            read(&p, &h).expect("reads").expect("on a segment").next_hop,
            Some(20)
        );
        advance_in_place(&mut p);
        assert_eq!(read(&p, &h).expect("reads").expect("on").next_hop, Some(30));
        advance_in_place(&mut p);
        // At node 30, the release node: the segment is consumed.
        assert_eq!(read(&p, &h).expect("reads").expect("on").next_hop, None);
        assert_eq!(&p[payload_offset(&p, &h).expect("offset")..], b"payload");
    }

    #[test]
    fn a_placed_segment_is_not_marked_repaired_and_strips_off() {
        let seg = Segment::new(&[10, 20]).expect("segment");
        let p = insert_placed(&packet(0), HEADER_LEN, &seg, 8);
        let (h, _) = Header::decode(&p).expect("decodes");
        assert_eq!(h.flags & (FLAG_REPAIRED | FLAG_SEGMENT), FLAG_SEGMENT);
        let at = payload_offset(&p, &h).expect("offset");
        let plain = strip(&p, at, 6);
        let (h, rest) = Header::decode(&plain).expect("decodes");
        assert_eq!((h.flags & FLAG_SEGMENT, h.ttl), (0, 6));
        assert_eq!(rest, b"payload");
        assert_eq!(read(&plain, &h), Ok(None));
    }

    #[test]
    fn a_bad_segment_is_an_error_not_a_panic() {
        let mut p = packet(FLAG_SEGMENT);
        let (h, _) = Header::decode(&p).expect("decodes");
        // No extension bytes at all (the payload is too short to hold one).
        p.truncate(HEADER_LEN + 1);
        assert!(payload_offset(&p, &h).is_err());
        let mut q = packet(0);
        q.truncate(HEADER_LEN);
        q.extend_from_slice(&[5, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        q[3] = FLAG_SEGMENT;
        let (h, _) = Header::decode(&q).expect("decodes");
        assert!(read(&q, &h).is_err(), "next beyond len");
        assert!(Segment::new(&[]).is_none());
        assert!(Segment::new(&[1; MAX_HOPS + 1]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_extensions_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96)) {
            let mut p = packet(FLAG_SEGMENT);
            p.truncate(HEADER_LEN);
            p.extend_from_slice(&bytes);
            let (h, _) = Header::decode(&p).expect("decodes");
            let _ = read(&p, &h);
            let _ = payload_offset(&p, &h);
        }
    }
}
