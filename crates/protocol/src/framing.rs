//! Framing of control messages: a 4-byte big-endian length, then that many bytes
//! of JSON. [`ControlCodec`] is a `tokio_util` codec, so a session reads through
//! `FramedRead` (or `Framed`) and a message that has only partly arrived waits in
//! the reader's buffer: polling the next message inside `select!` is
//! cancellation-safe.
//!
//! Each direction has its own size limit. A relay's messages are small (its own
//! links); the controller's full tables grow with the fleet.

use std::marker::PhantomData;

use bytes::{Buf as _, BufMut as _, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

/// Largest relay → controller message: a report of 1,000 links is about 120 KB.
pub const MAX_RELAY_MESSAGE: usize = 256 * 1024;
/// Largest controller → relay message: a full table for 2,000 destinations is
/// about 200 KB; this leaves room for fleets ten times larger.
pub const MAX_CONTROLLER_MESSAGE: usize = 8 * 1024 * 1024;

/// Why a control stream could not be read or written.
#[derive(Debug, Error)]
pub enum ControlError {
    #[error("control message larger than the {limit}-byte limit")]
    TooLarge { limit: usize },
    #[error("malformed control message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("control stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes `In` messages and encodes `Out` messages. A relay uses
/// `ControlCodec<ControllerMessage, RelayMessage>`, the controller the reverse.
///
/// Nothing is taken from the read buffer until a whole message is there, so a
/// stream that ends inside a message is an error, not a clean end.
#[derive(Debug)]
pub struct ControlCodec<In, Out> {
    max_incoming: usize,
    max_outgoing: usize,
    _messages: PhantomData<fn(Out) -> In>,
}

/// Bytes of the length prefix.
const LENGTH: usize = 4;

impl<In, Out> ControlCodec<In, Out> {
    /// A codec refusing incoming messages over `max_incoming` bytes and never
    /// sending one over `max_outgoing` bytes.
    pub fn new(max_incoming: usize, max_outgoing: usize) -> Self {
        ControlCodec {
            max_incoming,
            max_outgoing,
            _messages: PhantomData,
        }
    }

    /// Bytes of a message that has begun to arrive are held here at most.
    pub fn max_incoming(&self) -> usize {
        self.max_incoming
    }
}

impl<In: DeserializeOwned, Out> Decoder for ControlCodec<In, Out> {
    type Item = In;
    type Error = ControlError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<In>, ControlError> {
        let Some(prefix) = src.get(..LENGTH) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > self.max_incoming {
            return Err(ControlError::TooLarge {
                limit: self.max_incoming,
            });
        }
        if src.len() < LENGTH + len {
            src.reserve(LENGTH + len - src.len());
            return Ok(None);
        }
        src.advance(LENGTH);
        let body = src.split_to(len);
        Ok(Some(serde_json::from_slice(&body)?))
    }
}

impl<In, Out: Serialize> Encoder<Out> for ControlCodec<In, Out> {
    type Error = ControlError;

    fn encode(&mut self, message: Out, dst: &mut BytesMut) -> Result<(), ControlError> {
        let json = serde_json::to_vec(&message)?;
        if json.len() > self.max_outgoing {
            return Err(ControlError::TooLarge {
                limit: self.max_outgoing,
            });
        }
        dst.reserve(LENGTH + json.len());
        dst.put_u32(json.len() as u32);
        dst.extend_from_slice(&json);
        Ok(())
    }
}

/// One message encoded as it travels (length + JSON), for tests and tools.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, ControlError> {
    let mut codec = ControlCodec::<(), &T>::new(0, MAX_CONTROLLER_MESSAGE);
    let mut out = BytesMut::new();
    codec.encode(message, &mut out)?;
    Ok(out.to_vec())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt as _;
    use tokio::io::AsyncWriteExt as _;
    use tokio_util::codec::FramedRead;

    use super::*;
    use crate::messages::{ControllerMessage, LinkReport, RelayMessage, RouteEntry, TableUpdate};

    type RelaySide = ControlCodec<ControllerMessage, RelayMessage>;
    type ControllerSide = ControlCodec<RelayMessage, ControllerMessage>;

    fn relay_codec() -> RelaySide {
        ControlCodec::new(MAX_CONTROLLER_MESSAGE, MAX_RELAY_MESSAGE)
    }

    fn big_table(entries: usize) -> ControllerMessage {
        ControllerMessage::Table(TableUpdate {
            version: 9,
            term: 3,
            full: true,
            set: (0..entries)
                .map(|i| RouteEntry {
                    dst: format!("node-{i:05}"),
                    primary: "pdx".into(),
                    backup: Some("sea".into()),
                    repair: None,
                    second: None,
                    placed: Vec::new(),
                })
                .collect(),
            remove: Vec::new(),
        })
    }

    #[tokio::test]
    async fn messages_round_trip_through_the_framing() {
        let msgs = vec![
            RelayMessage::Hello {
                node: "sha".into(),
                table_version: 0,
                protocol: 1,
            },
            RelayMessage::Links {
                links: vec![LinkReport {
                    peer: "pdx".into(),
                    up: true,
                    rtt_ms: Some(121.5),
                    min_rtt_ms: Some(120.0),
                    jitter_ms: Some(0.4),
                    loss: 0.0,
                    tx_mbps: None,
                    up_for_s: None,
                }],
                draining: true,
                services: vec![],
                demand: vec![crate::DemandReport {
                    dst: "lax".into(),
                    mbps: 1.5,
                }],
            },
            RelayMessage::Applied { version: 7 },
        ];
        let mut bytes = Vec::new();
        for m in &msgs {
            bytes.extend(encode(m).expect("encode"));
        }
        let codec: ControllerSide = ControlCodec::new(MAX_RELAY_MESSAGE, MAX_CONTROLLER_MESSAGE);
        let mut reader = FramedRead::new(&bytes[..], codec);
        for m in &msgs {
            let back = reader.next().await.expect("a message").expect("decodes");
            assert_eq!(&back, m);
        }
        assert!(reader.next().await.is_none(), "clean end of stream");
    }

    /// The defect this framing fixes: a read future dropped by `select!` after
    /// part of a message had arrived lost those bytes, and the next read took
    /// the middle of the JSON for a length. Here the other branch wins many
    /// times while a large table trickles in, and the table still arrives whole.
    #[tokio::test]
    async fn a_message_arriving_in_pieces_survives_other_branches_winning() {
        let table = big_table(2_000);
        let wire = encode(&table).expect("encode");
        assert!(wire.len() > 100_000, "a table of {} bytes", wire.len());
        let (mut tx, rx) = tokio::io::duplex(1024);
        let writer = tokio::spawn(async move {
            for chunk in wire.chunks(997) {
                tx.write_all(chunk).await.expect("write");
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            tx
        });
        let mut reader = FramedRead::new(rx, relay_codec());
        let mut ticks = 0u32;
        let mut ticker = tokio::time::interval(Duration::from_micros(100));
        let got = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                tokio::select! {
                    m = reader.next() => break m,
                    _ = ticker.tick() => ticks += 1,
                }
            }
        })
        .await
        .expect("bounded");
        let got = got.expect("a message").expect("decodes");
        assert_eq!(got, table);
        assert!(ticks > 10, "the other branch won {ticks} times meanwhile");
        drop(writer.await.expect("writer"));
        assert!(reader.next().await.is_none());
    }

    #[tokio::test]
    async fn oversized_truncated_and_malformed_messages_are_errors() {
        let mut huge = ((MAX_CONTROLLER_MESSAGE + 1) as u32).to_be_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        let mut reader = FramedRead::new(&huge[..], relay_codec());
        assert!(matches!(
            reader.next().await,
            Some(Err(ControlError::TooLarge { .. }))
        ));

        let mut bad = 5u32.to_be_bytes().to_vec();
        bad.extend_from_slice(b"{oops");
        let mut reader = FramedRead::new(&bad[..], relay_codec());
        assert!(matches!(
            reader.next().await,
            Some(Err(ControlError::Malformed(_)))
        ));

        let truncated = 10u32.to_be_bytes().to_vec();
        let mut reader = FramedRead::new(&truncated[..], relay_codec());
        assert!(matches!(
            reader.next().await,
            Some(Err(ControlError::Io(_)))
        ));
    }

    #[test]
    fn a_relay_never_sends_a_message_over_its_limit() {
        let links = (0..5_000)
            .map(|i| LinkReport {
                peer: format!("peer-{i}"),
                up: true,
                rtt_ms: Some(1.0),
                min_rtt_ms: Some(1.0),
                jitter_ms: Some(0.1),
                loss: 0.0,
                tx_mbps: None,
                up_for_s: None,
            })
            .collect();
        let mut codec = relay_codec();
        let mut out = BytesMut::new();
        let sent = codec.encode(
            RelayMessage::Links {
                links,
                draining: false,
                services: vec![],
                demand: vec![],
            },
            &mut out,
        );
        assert!(
            matches!(sent, Err(ControlError::TooLarge { limit }) if limit == MAX_RELAY_MESSAGE)
        );
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic the decoder: each input ends in messages,
        /// a typed error, or a wait for more bytes, and the buffer never holds
        /// more than one frame's limit plus what was given.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut codec: ControllerSide = ControlCodec::new(256, 256);
            let mut buf = BytesMut::from(&bytes[..]);
            for _ in 0..64 {
                match codec.decode(&mut buf) {
                    Ok(Some(_)) => continue,
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
