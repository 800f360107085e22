//! The controller: link-state database from relay reports, route computation
//! with stability, route push to relays, and the admin API.
//!
//! Sans-IO cores: [`linkstate`] (merging reports) and [`routing`] (metric
//! damping, tables, diffs) and [`placing`] (the relays' measured demand placed
//! on paths under capacity and budget). Drivers: [`compute`] (the one owner of both, on its
//! own task), [`session`] (one per relay: where a relay's report arrives and its
//! route table leaves), [`runtime`] (start, shutdown, the daemon's signal loop,
//! reload), [`api`] and [`exposition`] (the admin API), reading [`view`];
//! [`shared`] holds the handles they share. The live map: [`map`] (the page),
//! [`stream`] (its server-sent events) fed by [`hub`] through [`live`], paced
//! by [`coalesce`] (sans-IO). [`election`]: which of several controllers leads
//! (pushes tables) and with which term, through etcd (a sans-IO core and its
//! driver); without etcd a controller leads alone.

pub mod api;
pub mod coalesce;
pub mod compute;
pub mod config;
pub mod election;
pub mod exposition;
pub mod hub;
pub mod linkstate;
pub mod live;
pub mod map;
pub mod metrics;
pub mod placing;
pub mod quality;
pub mod routing;
pub mod runtime;
pub mod session;
pub mod shared;
pub mod stream;
pub mod view;

pub use config::ControllerConfig;
pub use runtime::{run, start, ControllerHandle};
