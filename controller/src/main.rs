//! `controller`: the controller daemon's command line. `run` starts it;
//! `check-config` validates a config. Exit codes: 0 ok, 64 bad usage or
//! configuration, 1 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use controller::ControllerConfig;
use tracing_subscriber::EnvFilter;

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
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let path = match &cli.command {
        Command::Run { config } | Command::CheckConfig { config } => config,
    };
    let cfg = match ControllerConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(64);
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
        Command::Run { .. } => match run(cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("controller: {e:#}");
                ExitCode::from(1)
            }
        },
    }
}

fn run(cfg: ControllerConfig) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let socket = std::net::UdpSocket::bind(cfg.listen)
        .with_context(|| format!("binding QUIC {}", cfg.listen))?;
    let admin = match cfg.admin {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr).with_context(|| format!("binding admin {addr}"))?,
        ),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(controller::run(cfg, socket, admin, shutdown_signal()))
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = ctrl_c.await;
        return;
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
