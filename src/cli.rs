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
        /// The controller's admin API (or the lab's): HOST:PORT, HOST a name
        /// (e.g. `localhost`) or an address; HOST alone means port 9000.
        #[arg(long, default_value = "127.0.0.1:9000", value_parser = parse_api)]
        api: Api,
    },
    /// Every link with its live RTT, loss, jitter, state and cost in force.
    Links {
        #[arg(long, default_value = "127.0.0.1:9000", value_parser = parse_api)]
        api: Api,
    },
    /// The route in force from one node to another, hop by hop, and its backup.
    Routes {
        from: String,
        to: String,
        #[arg(long, default_value = "127.0.0.1:9000", value_parser = parse_api)]
        api: Api,
    },
    /// One service: its path with each hop's RTT, the path around a failure,
    /// and the delay, loss and reordering its relays measured each way.
    Trace {
        service: String,
        #[arg(long, default_value = "127.0.0.1:9000", value_parser = parse_api)]
        api: Api,
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
        #[arg(long, default_value = "127.0.0.1:9000", value_parser = parse_api)]
        api: Api,
        /// Emulate every link's bandwidth at its `capacity_mbps` times this
        /// (0.0001 makes a 20 Gbit/s line 2 Mbit/s, about 5 lab classes each way); left
        /// out, links have no bandwidth limit.
        #[arg(long, value_parser = parse_capacity_scale)]
        capacity_scale: Option<f64>,
        /// With --capacity-scale: only the undersea lines get a bandwidth (the
        /// scarce capacity placement is about); every other link stays unlimited.
        #[arg(long, requires = "capacity_scale")]
        undersea_only: bool,
        /// Turn the controller's placement off: traffic follows the routes
        /// alone (delay-only), to compare with placement.
        #[arg(long)]
        no_placement: bool,
        /// Relays probe every 50 ms and need 3 lost probes (about 150 ms of
        /// silence) before a link is down, instead of every 20 ms and 2 (about
        /// 50 ms): for a machine so busy that the emulator delivers late.
        #[arg(long)]
        tolerant_probes: bool,
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

/// The port of `--api` when only a host is given (the controller's default).
pub const DEFAULT_API_PORT: u16 = 9000;

/// An `--api` address as given, and what it resolves to (tried in order).
#[derive(Debug, Clone)]
pub struct Api {
    pub given: String,
    pub addrs: Vec<std::net::SocketAddr>,
}

impl std::fmt::Display for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.given)
    }
}

/// `--api HOST:PORT` or `--api HOST`: an IP address, `[v6]:port`, or a name
/// the resolver knows (`localhost`, a controller's host name).
/// `--capacity-scale`: a share of each link's capacity, above 0 and at most 1.
pub fn parse_capacity_scale(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s <= 1.0 => Ok(s),
        _ => Err(format!(
            "`{text}` is not a share of capacity; give a number above 0 and at most 1, such as 0.0001"
        )),
    }
}

pub fn parse_api(text: &str) -> Result<Api, String> {
    use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Api {
            given: text.into(),
            addrs: vec![addr],
        });
    }
    if let Ok(ip) = text.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(Api {
            given: text.into(),
            addrs: vec![SocketAddr::new(ip, DEFAULT_API_PORT)],
        });
    }
    let with_port = if text.contains(':') {
        text.to_string()
    } else {
        format!("{text}:{DEFAULT_API_PORT}")
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| {
            format!("`{text}`: give HOST:PORT (e.g. localhost:9000 or 127.0.0.1:9000): {e}")
        })?
        .collect();
    if addrs.is_empty() {
        return Err(format!("`{text}` resolves to no address"));
    }
    Ok(Api {
        given: with_port,
        addrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_scale_is_a_share_above_zero() {
        assert_eq!(parse_capacity_scale("0.0001"), Ok(0.0001));
        assert_eq!(parse_capacity_scale("1"), Ok(1.0));
        for bad in ["0", "-0.5", "1.5", "NaN", "inf", "half"] {
            let e = parse_capacity_scale(bad).expect_err(bad);
            assert!(e.contains("above 0 and at most 1"), "{bad}: {e}");
        }
    }

    #[test]
    fn api_takes_names_addresses_and_bare_hosts() {
        let local = parse_api("localhost:9100").expect("localhost resolves");
        assert!(!local.addrs.is_empty());
        assert!(local
            .addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 9100));
        let bare = parse_api("localhost").expect("a bare host");
        assert!(bare.addrs.iter().all(|a| a.port() == DEFAULT_API_PORT));
        assert_eq!(bare.to_string(), "localhost:9000");
        let ip = parse_api("127.0.0.1:9000").expect("an address");
        assert_eq!(ip.addrs, ["127.0.0.1:9000".parse().expect("addr")]);
        let v6 = parse_api("[::1]:9001").expect("v6");
        assert_eq!(v6.addrs, ["[::1]:9001".parse().expect("addr")]);
        let v6_bare = parse_api("::1").expect("bare v6");
        assert_eq!(v6_bare.addrs, ["[::1]:9000".parse().expect("addr")]);
        assert!(parse_api("localhost:notaport").is_err());
        assert!(parse_api("").is_err());
    }
}
