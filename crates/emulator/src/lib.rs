//! User-space link emulator: one-way delay, jitter, loss, and cut/restore for UDP links.
//!
//! The kernel has no netem, so tests and the lab run relay-to-relay QUIC links through
//! this emulator. An [`EmulatedLink`] is a loopback UDP proxy between endpoints `a` and
//! `b`: node A sends to [`EmulatedLink::front_for_a`] to reach `b`, node B sends to
//! [`EmulatedLink::front_for_b`] to reach `a`. Each client address of a front gets its
//! own back socket towards the target, so the target sees one stable source per client
//! and its replies travel back through the reverse direction. A cloneable [`LinkHandle`]
//! cuts, restores and impairs the link at any time and reads its [`LinkStats`].
//!
//! What it models, per direction (A→B and B→A, shared by both fronts):
//! - a one-way delay plus uniform jitter in `[-jitter, +jitter]`, clamped at zero;
//! - random loss with a probability, from a seeded RNG, so runs are reproducible given
//!   the same arrival order;
//! - a cut: a blackhole both ways. Datagrams vanish silently, nothing is closed, no ICMP
//!   is sent; a datagram in flight when the link is cut vanishes at its delivery time,
//!   even if the link is restored before then;
//! - a bandwidth (`LinkParams::rate_kbps`): datagrams leave one after another at the
//!   link's rate, wait in a queue of at most 50 ms, and are dropped (and counted as
//!   congestion) at its tail;
//! - a bounded in-flight queue (4096 datagrams or 8 MiB); beyond it datagrams are dropped
//!   and counted.
//!
//! What it does not model: reordering (a
//! direction is a FIFO: a datagram never overtakes an earlier one, so jitter larger than
//! the gap between datagrams bunches them instead), duplication, corruption, MTU limits,
//! or correlated (bursty) loss. Parameter changes apply to datagrams arriving after them.
//! Endpoints must be loopback addresses; fronts and back sockets bind loopback port 0.
//!
//! The decisions live in the sans-IO [`Shaper`] (no sockets, no clock reads); the driver
//! in `link.rs` is one tokio task per link that owns every socket and reads time through
//! `tokio::time`, and stops when the [`EmulatedLink`] is shut down or dropped.

mod handle;
mod link;
mod params;
mod shaper;

pub use handle::{DirectionStats, LinkHandle, LinkStats};
pub use link::{EmulatedLink, MAX_CLIENTS_PER_FRONT};
pub use params::{LinkParams, ParamsError, MAX_DELAY, MAX_JITTER};
pub use shaper::{DropReason, QueueLimits, Shaper, ShaperStats, Verdict};
