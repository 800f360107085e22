//! The records a TCP session's stream carries after its overlay header (sans-IO
//! codec). A session stream is framed both ways as a sequence of records, each
//! a tag byte and fixed big-endian fields:
//!
//! ```text
//! HELLO  1 | token u64 | attempt u32 | received u64        21 bytes
//! DATA   2 | offset u64 | len u16 | len bytes              11 + len (1 ≤ len ≤ 16 KiB)
//! ACK    3 | received u64                                   9 bytes
//! FIN    4 | offset u64                                     9 bytes
//! CLOSE  5 | reason u8                                      2 bytes
//! ```
//!
//! Offsets count one direction's bytes from 0; the FIN takes one offset after
//! the last byte (as in TCP), so `received` and acknowledgements cover it.
//! See [`crate::session`] for what each record means.

use thiserror::Error;

/// Most bytes one DATA record carries.
pub const MAX_DATA: usize = 16 * 1024;
/// The longest record: a full DATA record.
pub const MAX_RECORD: usize = DATA_HEAD + MAX_DATA;
pub const HELLO_LEN: usize = 21;
const DATA_HEAD: usize = 11;

const HELLO: u8 = 1;
const DATA: u8 = 2;
const ACK: u8 = 3;
const FIN: u8 = 4;
const CLOSE: u8 = 5;

/// The opening record of each stream of a session, both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Chosen at random by the ingress for the session; a resume must repeat it.
    pub token: u64,
    /// Which stream of the session this is: 1 for the first, one more for each
    /// stream the ingress opens after a path broke.
    pub attempt: u32,
    /// Everything the sender of the HELLO has received from the other end,
    /// as an offset: the other end resumes sending from there.
    pub received: u64,
}

/// Why a session ended abnormally: the receiver of a CLOSE resets its local
/// TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The local TCP peer reset its connection, or it failed.
    Reset,
    /// The egress could not connect to the service's target.
    Refused,
    /// A resume named a session the egress does not hold (it expired, or the
    /// egress restarted).
    UnknownSession,
    /// No byte either way for the idle timeout.
    Idle,
    /// The relay at that end is shutting down.
    Shutdown,
    /// The other end broke the protocol.
    Protocol,
}

impl CloseReason {
    pub const ALL: [CloseReason; 6] = [
        CloseReason::Reset,
        CloseReason::Refused,
        CloseReason::UnknownSession,
        CloseReason::Idle,
        CloseReason::Shutdown,
        CloseReason::Protocol,
    ];

    fn to_byte(self) -> u8 {
        match self {
            CloseReason::Reset => 1,
            CloseReason::Refused => 2,
            CloseReason::UnknownSession => 3,
            CloseReason::Idle => 4,
            CloseReason::Shutdown => 5,
            CloseReason::Protocol => 6,
        }
    }

    /// Unknown reasons (from a newer relay) read as a reset: every CLOSE ends
    /// the session the same way.
    fn from_byte(b: u8) -> CloseReason {
        match b {
            2 => CloseReason::Refused,
            3 => CloseReason::UnknownSession,
            4 => CloseReason::Idle,
            5 => CloseReason::Shutdown,
            6 => CloseReason::Protocol,
            _ => CloseReason::Reset,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Reset => "reset",
            CloseReason::Refused => "refused",
            CloseReason::UnknownSession => "unknown_session",
            CloseReason::Idle => "idle",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Protocol => "protocol",
        }
    }
}

/// One record, borrowing its data from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Hello(Hello),
    /// Bytes of the sender's direction, starting at `offset`.
    Data {
        offset: u64,
        bytes: &'a [u8],
    },
    /// The sender has every offset below `received` of the other direction.
    Ack {
        received: u64,
    },
    /// The sender's local side ended its direction after `offset` bytes.
    Fin {
        offset: u64,
    },
    Close(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("unknown session record type {0}")]
    Tag(u8),
    #[error("data record of {0} bytes (1 to {MAX_DATA} allowed)")]
    DataLength(usize),
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_be_bytes(a)
}

/// Reads one record from the front of `buf`: the record and its length, or
/// `None` if `buf` holds only part of one.
pub fn decode(buf: &[u8]) -> Result<Option<(Record<'_>, usize)>, RecordError> {
    let Some(&tag) = buf.first() else {
        return Ok(None);
    };
    let need = match tag {
        HELLO => HELLO_LEN,
        DATA => DATA_HEAD,
        ACK | FIN => 9,
        CLOSE => 2,
        t => return Err(RecordError::Tag(t)),
    };
    if buf.len() < need {
        return Ok(None);
    }
    Ok(Some(match tag {
        HELLO => {
            let attempt = u32::from_be_bytes([buf[9], buf[10], buf[11], buf[12]]);
            let hello = Hello {
                token: u64_at(buf, 1),
                attempt,
                received: u64_at(buf, 13),
            };
            (Record::Hello(hello), HELLO_LEN)
        }
        DATA => {
            let len = u16::from_be_bytes([buf[9], buf[10]]) as usize;
            if len == 0 || len > MAX_DATA {
                return Err(RecordError::DataLength(len));
            }
            if buf.len() < DATA_HEAD + len {
                return Ok(None);
            }
            let record = Record::Data {
                offset: u64_at(buf, 1),
                bytes: &buf[DATA_HEAD..DATA_HEAD + len],
            };
            (record, DATA_HEAD + len)
        }
        ACK => (
            Record::Ack {
                received: u64_at(buf, 1),
            },
            9,
        ),
        FIN => (
            Record::Fin {
                offset: u64_at(buf, 1),
            },
            9,
        ),
        _ => (Record::Close(CloseReason::from_byte(buf[1])), 2),
    }))
}

/// Appends `record` to `out`. A DATA record must hold 1 to [`MAX_DATA`] bytes.
pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
    match record {
        Record::Hello(h) => {
            out.push(HELLO);
            out.extend_from_slice(&h.token.to_be_bytes());
            out.extend_from_slice(&h.attempt.to_be_bytes());
            out.extend_from_slice(&h.received.to_be_bytes());
        }
        Record::Data { offset, bytes } => {
            debug_assert!(!bytes.is_empty() && bytes.len() <= MAX_DATA);
            data_head(*offset, bytes.len(), out);
            out.extend_from_slice(bytes);
        }
        Record::Ack { received } => {
            out.push(ACK);
            out.extend_from_slice(&received.to_be_bytes());
        }
        Record::Fin { offset } => {
            out.push(FIN);
            out.extend_from_slice(&offset.to_be_bytes());
        }
        Record::Close(reason) => {
            out.push(CLOSE);
            out.push(reason.to_byte());
        }
    }
}

/// The head of a DATA record of `len` bytes at `offset`; the caller appends
/// the bytes (so they can come from a ring buffer in two pieces).
pub fn data_head(offset: u64, len: usize, out: &mut Vec<u8>) {
    out.push(DATA);
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reason() -> impl Strategy<Value = CloseReason> {
        proptest::sample::select(CloseReason::ALL.to_vec())
    }

    #[derive(Debug, Clone)]
    enum Owned {
        Hello(Hello),
        Data(u64, Vec<u8>),
        Ack(u64),
        Fin(u64),
        Close(CloseReason),
    }

    impl Owned {
        fn record(&self) -> Record<'_> {
            match self {
                Owned::Hello(h) => Record::Hello(*h),
                Owned::Data(o, b) => Record::Data {
                    offset: *o,
                    bytes: b,
                },
                Owned::Ack(r) => Record::Ack { received: *r },
                Owned::Fin(o) => Record::Fin { offset: *o },
                Owned::Close(r) => Record::Close(*r),
            }
        }
    }

    fn record() -> impl Strategy<Value = Owned> {
        prop_oneof![
            (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(token, attempt, received)| {
                Owned::Hello(Hello {
                    token,
                    attempt,
                    received,
                })
            }),
            (any::<u64>(), prop::collection::vec(any::<u8>(), 1..2048))
                .prop_map(|(o, b)| Owned::Data(o, b)),
            any::<u64>().prop_map(Owned::Ack),
            any::<u64>().prop_map(Owned::Fin),
            reason().prop_map(Owned::Close),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip_whole_and_in_pieces(records in prop::collection::vec(record(), 1..8), cut in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            for r in &records {
                encode(&r.record(), &mut buf);
            }
            // Any prefix decodes to whole records, then "need more".
            let prefix = &buf[..cut.index(buf.len() + 1)];
            let mut at = 0;
            let mut seen = 0;
            while let Some((rec, n)) = decode(&prefix[at..]).expect("valid") {
                prop_assert_eq!(rec, records[seen].record());
                at += n;
                seen += 1;
            }
            // The whole buffer decodes to exactly the records.
            let mut at = 0;
            for r in &records {
                let (rec, n) = decode(&buf[at..]).expect("valid").expect("whole");
                prop_assert_eq!(rec, r.record());
                at += n;
            }
            prop_assert_eq!(at, buf.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Some((_, n))) = decode(&bytes) {
                prop_assert!(n <= bytes.len());
            }
        }
    }

    #[test]
    fn layout_is_as_documented() {
        let mut b = Vec::new();
        encode(
            &Record::Hello(Hello {
                token: 0x0102_0304_0506_0708,
                attempt: 9,
                received: 10,
            }),
            &mut b,
        );
        assert_eq!(b.len(), HELLO_LEN);
        assert_eq!(&b[..10], &[1, 1, 2, 3, 4, 5, 6, 7, 8, 0]);
        b.clear();
        encode(
            &Record::Data {
                offset: 5,
                bytes: b"ab",
            },
            &mut b,
        );
        assert_eq!(b, [2, 0, 0, 0, 0, 0, 0, 0, 5, 0, 2, b'a', b'b']);
        assert_eq!(decode(&[9]), Err(RecordError::Tag(9)));
        assert_eq!(
            decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RecordError::DataLength(0))
        );
        assert_eq!(
            decode(&[5, 77]),
            Ok(Some((Record::Close(CloseReason::Reset), 2)))
        );
    }
}
