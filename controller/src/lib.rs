//! The controller: link-state database from relay reports, route computation
//! with stability, route push to relays, and the admin API.
//!
//! Sans-IO cores: [`linkstate`] (merging reports) and [`routing`] (metric damping,
//! tables, diffs). Drivers: [`server`] (QUIC sessions, recomputation) and [`api`].

pub mod api;
pub mod config;
pub mod linkstate;
pub mod prom;
pub mod routing;
pub mod server;

pub use config::ControllerConfig;
pub use server::{run, start, ControllerHandle};
