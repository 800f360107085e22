//! `relay`: the relay daemon's command line. `run` starts it; `check-config`
//! validates a config and everything it names. Exit codes: 0 ok, 64 bad usage or
//! configuration, 1 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use relay::daemon::{self, EXIT_USAGE};
use relay::RelayConfig;

/// Relay daemon of the classroom overlay.
#[derive(Debug, Parser)]
#[command(name = "relay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay until SIGTERM or Ctrl-C.
    Run {
        /// Path of relay.yaml.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check relay.yaml, the topology, certificate, key and CA it names; bind nothing.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli: Cli = match daemon::parse_args() {
        Ok(c) => c,
        Err(code) => return code,
    };
    daemon::init_logging();
    let (Command::Run { config } | Command::CheckConfig { config }) = &cli.command;
    let cfg = match RelayConfig::load(config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match cli.command {
        Command::CheckConfig { .. } => {
            print!("{}", summary(&cfg));
            ExitCode::SUCCESS
        }
        Command::Run { .. } => daemon::run_until_signal("relay", || async move {
            let socket = std::net::UdpSocket::bind(cfg.listen)
                .with_context(|| format!("binding QUIC {}", cfg.listen))?;
            let admin = match cfg.admin {
                Some(addr) => Some(
                    std::net::TcpListener::bind(addr)
                        .with_context(|| format!("binding admin {addr}"))?,
                ),
                None => None,
            };
            relay::run(cfg, socket, admin, daemon::shutdown_signal()).await
        }),
    }
}

fn summary(cfg: &RelayConfig) -> String {
    let t = &cfg.topology;
    let peers: Vec<&str> = t
        .links
        .iter()
        .filter_map(|l| l.other(cfg.node))
        .map(|n| t.node(n).id.as_str())
        .collect();
    let names = |f: &dyn Fn(&topology::Service) -> bool| -> String {
        let v: Vec<&str> = t
            .services
            .iter()
            .filter(|s| f(s))
            .map(|s| s.name.as_str())
            .collect();
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    format!(
        "relay config ok\n  node      {}\n  listen    {} (QUIC)\n  admin     {}\n  peers     {}\n  ingress   {}\n  egress    {}\n",
        cfg.node_id(),
        cfg.listen,
        cfg.admin.map_or_else(|| "off".to_string(), |a| a.to_string()),
        peers.join(", "),
        names(&|s| s.ingress_node == cfg.node),
        names(&|s| s.egress_node == cfg.node),
    )
}
