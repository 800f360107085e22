//! The relay daemon's drivers: they own the sockets, tasks and timers, and
//! carry out what `relay_core` (the I/O-free logic) decides.
//!
//! - [`runtime`]: start-up and the [`RelayHandle`] that owns a running relay;
//!   [`run`]: the daemon's signal loop; [`reload`], [`drain`].
//! - [`context`]: handles to each part of the relay's state, one writer each:
//!   [`live`] (the config in force), [`admission`], [`metrics`].
//! - [`links`]: peer links (dialing, accepting, the per-connection actor).
//! - [`datapath`]: where a datagram is forwarded ([`datapath::forwarder`]) and
//!   the UDP ingress and egress, and the live links; [`flow_expiry`];
//!   [`tcp`]: TCP services over QUIC streams.
//! - [`control_session`]: where a route table from the controller arrives.
//! - [`admin`], [`status`], [`exposition`]: the admin API; [`config`],
//!   [`host_limits`].

pub mod admin;
pub mod admission;
pub mod config;
pub mod context;
pub mod control_session;
pub mod datapath;
pub mod drain;
pub mod exposition;
pub mod flow_expiry;
pub mod host_limits;
pub mod links;
pub mod live;
pub mod metrics;
pub mod reload;
pub mod run;
pub mod runtime;
pub mod socket_drops;
pub mod status;
pub mod tcp;

pub use config::RelayConfig;
pub use relay_core::reload_plan::ReloadSummary;
pub use run::run;
pub use runtime::{start, RelayHandle};
pub use status::Status;
