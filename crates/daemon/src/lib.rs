//! What the fleet's daemons (relay and controller) share, and nothing that is
//! either one's logic:
//!
//! - [`cli`]: the command line, `main`, exit codes; [`logging`]; [`signals`];
//!   [`notify`] (systemd readiness, status, watchdog);
//! - [`tls`]: node identity and the mutual-TLS configs that admit only fleet
//!   nodes; [`config_file`]: reading a config file and what it names;
//! - [`quic`]: binding, the QUIC endpoint, admitting handshakes
//!   ([`handshake_gate`]), a bounded stop; [`sockbuf`]; [`sock_drops`] (what
//!   the kernel dropped on a socket);
//! - [`tasks`]: the supervisor that owns every task;
//! - [`admin`]: the admin HTTP server (and its client); [`exposition`]: the
//!   Prometheus toolkit, with what every daemon exports about itself
//!   ([`process_stats`], [`cert_expiry`]); [`throttle`]: rate-limited warnings.

pub mod admin;
pub mod cert_expiry;
pub mod cli;
pub mod config_file;
pub mod exposition;
pub mod handshake_gate;
pub mod logging;
pub mod notify;
pub mod process_stats;
pub mod quic;
pub mod signals;
pub mod sock_drops;
pub mod sockbuf;
pub mod tasks;
pub mod throttle;
pub mod tls;

pub use cli::{main, EXIT_RUNTIME, EXIT_USAGE};
pub use notify::Notifier;
pub use signals::{OsSignals, Signal, Signals};
pub use tasks::{OnFailure, OwnedTask, Spawner, Supervisor};
