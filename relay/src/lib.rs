//! The relay daemon: QUIC peer links with mutual TLS, the forwarding plane, and the
//! ingress and egress of classroom services.
//!
//! Sans-IO cores: [`wire`] (header codec), [`fwd`] (forwarding table and decision).
//! Drivers: [`node`] (start/run/shutdown), [`peers`], [`dispatch`], [`udp`],
//! [`streams`], [`splice`], [`http`]. Also here: [`pki`], [`tls`], [`emulator`].

pub mod config;
pub mod control;
pub mod controller_link;
pub mod daemon;
pub mod dispatch;
pub mod drain;
pub mod emulator;
pub mod fwd;
pub mod http;
pub mod metrics;
pub mod node;
pub mod peers;
pub mod pki;
pub mod probe;
pub mod prom;
pub mod reload;
pub mod sockbuf;
pub mod splice;
pub mod streams;
pub mod tls;
pub mod udp;
pub mod wire;

pub use config::RelayConfig;
pub use node::{run, start, RelayHandle, Status};
pub use reload::ReloadSummary;
