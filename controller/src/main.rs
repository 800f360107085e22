//! `controller`: the controller daemon's command line. `run` starts it;
//! `check-config` validates a config. Exit codes: 0 ok, 64 bad usage or
//! configuration, 1 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use controller::ControllerConfig;
use relay::daemon::{self, EXIT_USAGE};

/// Controller of the classroom overlay.
#[derive(Debug, Parser)]
#[command(name = "controller", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller until SIGTERM or Ctrl-C.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Check controller.yaml and everything it names; bind nothing.
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
    let cfg = match ControllerConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match cli.command {
        Command::CheckConfig { .. } => {
            println!(
                "controller config ok\n  id        {}\n  listen    {} (QUIC)\n  admin     {}\n  relays    {}\n",
                cfg.id,
                cfg.listen,
                cfg.admin.map_or_else(|| "off".to_string(), |a| a.to_string()),
                cfg.topology.nodes.len()
            );
            ExitCode::SUCCESS
        }
        Command::Run { .. } => daemon::run_until_signal("controller", || async move {
            let socket = std::net::UdpSocket::bind(cfg.listen)
                .with_context(|| format!("binding QUIC {}", cfg.listen))?;
            let admin = match cfg.admin {
                Some(addr) => Some(
                    std::net::TcpListener::bind(addr)
                        .with_context(|| format!("binding admin {addr}"))?,
                ),
                None => None,
            };
            controller::run(cfg, socket, admin, daemon::shutdown_signal()).await
        }),
    }
}
