//! The relay↔controller protocol: what the two daemons say to each other
//! ([`messages`]) and how it is framed on the wire ([`framing`]).
//!
//! One QUIC bidirectional stream per session, opened by the relay over a
//! mutual-TLS connection. Each message is a 4-byte big-endian length followed
//! by that many bytes of JSON (one object with a `type` field). JSON keeps the
//! control plane easy to inspect; it carries a few messages per second, not
//! media.
//!
//! The framing is a `tokio_util` codec: the bytes of a message that has only
//! partly arrived stay in the reader's buffer, so a session may wait for the
//! next message inside `select!` next to other branches and never lose or
//! misalign a message when another branch wins.
//!
//! Sans-IO apart from the codec traits: nothing here opens a socket or reads a
//! clock.

pub mod framing;
pub mod messages;

pub use framing::{ControlCodec, ControlError, MAX_CONTROLLER_MESSAGE, MAX_RELAY_MESSAGE};
pub use messages::{
    delay_quantile_ms, ControllerMessage, DemandReport, LinkReport, PlacedPath, RelayMessage,
    RouteEntry, ServiceReport, TableUpdate, DELAY_BUCKETS_MS, PROTOCOL_VERSION,
};
