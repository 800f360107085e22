//! The relay's logic, apart from any I/O: no sockets, no tokio, no quinn, no
//! clock reads (time comes in as `now`, randomness as an argument). The relay
//! crate's drivers own the sockets and timers and carry out what this decides.
//!
//! - [`wire`]: the overlay header and its codec; [`segment`]: the repair
//!   segment a datagram may carry;
//! - [`table`]: the forwarding table and the next-hop decision; [`placed`]:
//!   the controller's split of a destination's traffic over paths;
//!   [`datagram`]: what to do with a datagram from a peer, as an [`Action`];
//! - [`routes`]: the table in force and its version as one value, and how a
//!   controller update changes it;
//! - [`probe`]: per-link probe bookkeeping (RTT, jitter, loss, up/down);
//!   [`link_loss`]: loss on the wire as QUIC measures it;
//! - [`flows`]: UDP flow tables and their limits;
//! - [`reload_plan`]: what a reload changes, as a diff;
//! - [`backoff`]: reconnect waits with jitter;
//! - [`session`]: a TCP session end to end between its ingress and egress
//!   (offsets, acknowledgements, the bounded send buffer, resume);
//!   [`session_wire`]: the records its streams carry;
//! - [`drop_reason`]: why a packet was dropped.

pub mod backoff;
pub mod datagram;
pub mod drop_reason;
pub mod flows;
pub mod link_loss;
pub mod placed;
pub mod probe;
pub mod reload_plan;
pub mod routes;
pub mod segment;
pub mod sequence;
pub mod session;
pub mod session_wire;
pub mod table;
pub mod wire;

pub use datagram::Action;
pub use drop_reason::DropReason;
pub use routes::RoutesInForce;
pub use table::{Decision, ForwardingTable, Route};
pub use wire::Header;
