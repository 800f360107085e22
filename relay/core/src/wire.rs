//! The overlay header: its layout, version and codec (sans-IO).
//!
//! Every media datagram and every reliable stream between relays starts with this
//! fixed 32-byte header, big-endian:
//!
//! ```text
//!  0       1       2       3       4               8              12
//! +-------+-------+-------+-------+---------------+---------------+
//! |version| kind  |  ttl  | flags |  dst node key |  src node key |
//! +-------+-------+-------+-------+---------------+---------------+
//! 12              16              20              24                              32
//! +---------------+---------------+---------------+-------------------------------+
//! |  service key  |    flow id    |   sequence    |  send timestamp, µs (u64)     |
//! +---------------+---------------+---------------+-------------------------------+
//! ```
//!
//! - `version` is 1. A relay drops (and counts) any other version, so a future
//!   version 2 can be rolled out by teaching relays both before senders switch.
//! - `kind`: 1 media datagram, 2 probe, 3 probe reply, 4 stream open (raw
//!   bytes follow: the stream of an older ingress), 5 session open and
//!   6 session resume (the records of [`crate::session_wire`] follow; `flow`
//!   is the session id, `seq` the attempt). Transit relays route every stream
//!   kind alike.
//! - `ttl` starts at [`INITIAL_TTL`] and is decremented by every relay that
//!   forwards; a packet that would leave with ttl 0, or arrives with 0, is dropped.
//! - `flags` bit 0 ([`FLAG_REPLY`]): the packet flows back from the egress to the
//!   ingress of its service. Bit 1 (`segment::FLAG_REPAIRED`): repaired once
//!   around a failure, never again. Bit 2 (`segment::FLAG_SEGMENT`): a
//!   segment follows the header (see [`crate::segment`]): a repair segment, a
//!   protected copy's second path (both marked repaired), or the path the
//!   controller placed the flow on (not marked: see [`crate::placed`]). Bit 3
//!   ([`FLAG_PROTECTED`]): a protected service's datagram, sent twice; the
//!   receiving end keeps the first copy of each sequence number. Bit 4
//!   ([`FLAG_SECOND_PATH`]): this is the copy on the second path. Other bits
//!   are reserved, sent as 0, ignored.
//! - node and service keys are `topology::wire_key` of the id or name.
//! - `flow id` is chosen by the ingress relay, unique there; with the ingress
//!   node's key it names a flow fleet-wide.
//! - `sequence` counts the flow's packets in one direction, from 0.
//! - `timestamp` is the sender's wall clock in µs since the Unix epoch, for
//!   one-way latency where clocks are synchronised (the lab, NTP/PTP fleets).
//!
//! The payload follows the header unchanged. A relay forwarding a datagram
//! decodes its header once and rewrites only the TTL byte, in place when it
//! holds the only reference to the buffer ([`Header::set_ttl_in_place`]).

use thiserror::Error;

pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 32;
/// TTL given to a packet at its ingress: more than any path a packet can take,
/// repair detours included (a U-turn back through the repairing node's
/// upstream and a 12-hop segment: the longest walk over any single failure of
/// the shipped world is 18 hops), small enough that a transient loop dies.
pub const INITIAL_TTL: u8 = 32;
pub const FLAG_REPLY: u8 = 0b0000_0001;
/// Sent twice, on two disjoint paths: the receiver drops the later copy.
pub const FLAG_PROTECTED: u8 = 0b0000_1000;
/// The copy on the second path (for counting which path delivered first).
pub const FLAG_SECOND_PATH: u8 = 0b0001_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Media,
    Probe,
    ProbeReply,
    StreamOpen,
    SessionOpen,
    SessionResume,
}

impl Kind {
    /// Whether this kind opens a QUIC stream (never a datagram).
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Kind::StreamOpen | Kind::SessionOpen | Kind::SessionResume
        )
    }

    fn to_byte(self) -> u8 {
        match self {
            Kind::Media => 1,
            Kind::Probe => 2,
            Kind::ProbeReply => 3,
            Kind::StreamOpen => 4,
            Kind::SessionOpen => 5,
            Kind::SessionResume => 6,
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Media,
            2 => Kind::Probe,
            3 => Kind::ProbeReply,
            4 => Kind::StreamOpen,
            5 => Kind::SessionOpen,
            6 => Kind::SessionResume,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    pub kind: Kind,
    pub ttl: u8,
    pub flags: u8,
    pub dst: u32,
    pub src: u32,
    pub service: u32,
    pub flow: u32,
    pub seq: u32,
    pub timestamp_us: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("truncated header: {0} bytes, need {HEADER_LEN}")]
    Truncated(usize),
    #[error("unsupported header version {0} (this relay speaks {VERSION})")]
    Version(u8),
    #[error("unknown packet kind {0}")]
    Kind(u8),
    #[error("malformed repair segment")]
    Segment,
}

impl Header {
    pub fn is_reply(&self) -> bool {
        self.flags & FLAG_REPLY != 0
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = VERSION;
        b[1] = self.kind.to_byte();
        b[2] = self.ttl;
        b[3] = self.flags;
        b[4..8].copy_from_slice(&self.dst.to_be_bytes());
        b[8..12].copy_from_slice(&self.src.to_be_bytes());
        b[12..16].copy_from_slice(&self.service.to_be_bytes());
        b[16..20].copy_from_slice(&self.flow.to_be_bytes());
        b[20..24].copy_from_slice(&self.seq.to_be_bytes());
        b[24..32].copy_from_slice(&self.timestamp_us.to_be_bytes());
        b
    }

    /// Header followed by `payload`, as one buffer ready to send.
    pub fn encode_with(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        out.extend_from_slice(&self.encode());
        out.extend_from_slice(payload);
        out
    }

    /// Reads a header from the front of `buf`; returns it and the payload after it.
    pub fn decode(buf: &[u8]) -> Result<(Header, &[u8]), DecodeError> {
        if buf.len() < HEADER_LEN {
            return Err(DecodeError::Truncated(buf.len()));
        }
        if buf[0] != VERSION {
            return Err(DecodeError::Version(buf[0]));
        }
        let kind = Kind::from_byte(buf[1]).ok_or(DecodeError::Kind(buf[1]))?;
        let u32_at = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&buf[24..32]);
        let header = Header {
            kind,
            ttl: buf[2],
            flags: buf[3],
            dst: u32_at(4),
            src: u32_at(8),
            service: u32_at(12),
            flow: u32_at(16),
            seq: u32_at(20),
            timestamp_us: u64::from_be_bytes(ts),
        };
        Ok((header, &buf[HEADER_LEN..]))
    }

    /// Rewrites the TTL byte of an encoded packet in place; forwarding changes
    /// nothing else in a packet.
    pub fn set_ttl_in_place(packet: &mut [u8], ttl: u8) {
        if let Some(b) = packet.get_mut(2) {
            *b = ttl;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            Just(Kind::Media),
            Just(Kind::Probe),
            Just(Kind::ProbeReply),
            Just(Kind::StreamOpen),
            Just(Kind::SessionOpen),
            Just(Kind::SessionResume)
        ]
    }

    prop_compose! {
        fn header()(kind in kind(), ttl in any::<u8>(), flags in any::<u8>(), dst in any::<u32>(),
                    src in any::<u32>(), service in any::<u32>(), flow in any::<u32>(),
                    seq in any::<u32>(), timestamp_us in any::<u64>()) -> Header {
            Header { kind, ttl, flags, dst, src, service, flow, seq, timestamp_us }
        }
    }

    proptest! {
        #[test]
        fn round_trip(h in header(), payload in prop::collection::vec(any::<u8>(), 0..1500)) {
            let packet = h.encode_with(&payload);
            prop_assert_eq!(packet.len(), HEADER_LEN + payload.len());
            let (back, rest) = Header::decode(&packet).expect("decodes");
            prop_assert_eq!(back, h);
            prop_assert_eq!(rest, &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            match Header::decode(&bytes) {
                Ok((_, rest)) => prop_assert_eq!(rest.len(), bytes.len() - HEADER_LEN),
                Err(DecodeError::Truncated(n)) => prop_assert!(n < HEADER_LEN),
                Err(DecodeError::Version(v)) => prop_assert_ne!(v, VERSION),
                Err(DecodeError::Kind(k)) => prop_assert!(Kind::from_byte(k).is_none()),
                Err(DecodeError::Segment) => prop_assert!(false, "the header alone has no segment"),
            }
        }

        #[test]
        fn ttl_rewrite_touches_only_the_ttl(h in header(), ttl in any::<u8>()) {
            let mut packet = h.encode_with(b"payload");
            Header::set_ttl_in_place(&mut packet, ttl);
            let (back, rest) = Header::decode(&packet).expect("decodes");
            prop_assert_eq!(back, Header { ttl, ..h });
            prop_assert_eq!(rest, b"payload");
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let h = Header {
            kind: Kind::Media,
            ttl: 16,
            flags: FLAG_REPLY,
            dst: 0x0102_0304,
            src: 0x0506_0708,
            service: 0x090a_0b0c,
            flow: 0x0d0e_0f10,
            seq: 0x1112_1314,
            timestamp_us: 0x1516_1718_191a_1b1c,
        };
        let b = h.encode();
        assert_eq!(&b[..4], &[1, 1, 16, 1]);
        assert_eq!(&b[4..8], &[1, 2, 3, 4]);
        assert_eq!(&b[28..32], &[0x19, 0x1a, 0x1b, 0x1c]);
        assert!(h.is_reply());
        assert_eq!(Header::decode(&b[..31]), Err(DecodeError::Truncated(31)));
        let mut v2 = b;
        v2[0] = 2;
        assert_eq!(Header::decode(&v2), Err(DecodeError::Version(2)));
        let mut k9 = b;
        k9[1] = 9;
        assert_eq!(Header::decode(&k9), Err(DecodeError::Kind(9)));
    }
}
