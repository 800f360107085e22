//! The command-line grammar of `overlay` (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Operator CLI for the classroom overlay: topology, certificates, lab, status.
#[derive(Debug, Parser)]
#[command(name = "overlay", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate, show and query a topology file (default: the shipped 55-city world).
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
    /// Create the fleet's private CA and issue node certificates for mutual TLS.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// Summary of a running controller: relays connected, links up, tables.
    Status {
        /// The controller's admin API (or the lab's).
        #[arg(long, default_value = "127.0.0.1:9000")]
        api: std::net::SocketAddr,
    },
    /// Every link with its live RTT, loss, jitter, state and cost in force.
    Links {
        #[arg(long, default_value = "127.0.0.1:9000")]
        api: std::net::SocketAddr,
    },
    /// The route in force from one node to another, hop by hop, and its backup.
    Routes {
        from: String,
        to: String,
        #[arg(long, default_value = "127.0.0.1:9000")]
        api: std::net::SocketAddr,
    },
    /// One service: its path with each hop's RTT, the path around a failure,
    /// and the delay, loss and reordering its relays measured each way.
    Trace {
        service: String,
        #[arg(long, default_value = "127.0.0.1:9000")]
        api: std::net::SocketAddr,
    },
    /// Place a demand with the controller's own placement, without sending a
    /// packet, beside delay-only routing: line loads, class latency, and what
    /// each undersea cut does.
    Plan {
        /// Topology file; the embedded 55-city world when left out.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// Classes spread evenly over every (Asian, North American) city pair.
        #[arg(long, default_value_t = topology::demand::DEFAULT_CLASSES)]
        classes: u64,
        /// A demand file (classes per city pair) instead of --classes.
        #[arg(long)]
        demand: Option<PathBuf>,
        /// Show only this undersea line's cut (its name, e.g. `unity`).
        #[arg(long)]
        cut: Option<String>,
        /// The same figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the whole overlay on this machine: a relay per node, emulated links,
    /// synthetic classes, and a latency and loss report at the end.
    Lab {
        /// Topology file; the embedded 55-city world when left out.
        #[arg(long)]
        topology: Option<PathBuf>,
        /// How long classes stream, e.g. 30s, 2m.
        #[arg(long, default_value = "30s", value_parser = crate::lab::parse_duration)]
        duration: std::time::Duration,
        /// How many 1-on-1 classes to run. Each is audio (50 packets/s of 200 B) and
        /// video (25/s of 1,200 B) both ways plus a TCP signalling session; the
        /// default is sized so a 2-core machine keeps up (20 does not, quite).
        #[arg(long, default_value_t = 12)]
        classes: usize,
        /// Random packet loss on every link, 0.0 to 1.0.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Seed for choosing class cities (same seed, same classes).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Timed link events (YAML). Default: cut the busiest undersea line at a
        /// third of the run and restore it at two thirds; `none` for no events.
        #[arg(long)]
        scenario: Option<String>,
        /// Where the lab serves the controller's API and its own link controls.
        #[arg(long, default_value = "127.0.0.1:9000")]
        api: std::net::SocketAddr,
    },
}

#[derive(Debug, Subcommand)]
pub enum TopologyCommand {
    /// Validate a topology file and print a summary; every error is listed (exit 64).
    Check {
        /// Topology file; the embedded default when left out.
        file: Option<PathBuf>,
    },
    /// Print the nodes, links, services and controllers as tables.
    Show {
        /// Topology file; the embedded default when left out.
        file: Option<PathBuf>,
    },
    /// Print the best path(s) between two nodes, hop by hop, with delays.
    #[command(override_usage = "overlay topology path [FILE] FROM TO [--k N]")]
    Path {
        /// A topology file, or FROM when the file is left out.
        #[arg(value_name = "FILE|FROM")]
        first: String,
        /// FROM, or TO when the file is left out.
        #[arg(value_name = "FROM|TO")]
        second: String,
        /// TO, when a file is given.
        #[arg(value_name = "TO")]
        third: Option<String>,
        /// How many loop-free paths to list, best first.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=100))]
        k: u16,
    },
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create a new fleet CA: ca.pem and ca.key (mode 0600) in DIR.
    Init {
        /// Directory to write into; created (mode 0700) if missing.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace existing ca.pem and ca.key (every issued certificate stops verifying).
        #[arg(long)]
        force: bool,
    },
    /// Issue a certificate for a node or the controller: ID.pem (leaf only) and ID.key (mode 0600).
    Issue {
        /// The CA directory made by `overlay pki init`.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// Node id the certificate names (subject CN and DNS name), e.g. `sha` or `controller`.
        #[arg(long, value_name = "ID")]
        node: String,
        /// Directory to write into; created (mode 0700) if missing.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Replace existing ID.pem and ID.key.
        #[arg(long)]
        force: bool,
    },
}
