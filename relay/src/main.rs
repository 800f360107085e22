//! `relay`: the relay daemon's command line. `run` starts it; `check-config`
//! validates a config and everything it names. Exit codes: 0 ok, 64 bad usage or
//! configuration, 1 runtime failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use relay::RelayConfig;
use tracing_subscriber::EnvFilter;

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
    let cfg = match RelayConfig::load(path) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(64);
        }
    };
    match cli.command {
        Command::CheckConfig { .. } => {
            print!("{}", summary(&cfg));
            ExitCode::SUCCESS
        }
        Command::Run { .. } => match run(cfg) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("relay: {e:#}");
                ExitCode::from(1)
            }
        },
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
    let ingress: Vec<&str> = t
        .services
        .iter()
        .filter(|s| s.ingress_node == cfg.node)
        .map(|s| s.name.as_str())
        .collect();
    let egress: Vec<&str> = t
        .services
        .iter()
        .filter(|s| s.egress_node == cfg.node)
        .map(|s| s.name.as_str())
        .collect();
    format!(
        "relay config ok\n  node      {}\n  listen    {} (QUIC)\n  admin     {}\n  peers     {}\n  ingress   {}\n  egress    {}\n",
        cfg.node_id(),
        cfg.listen,
        cfg.admin.map_or_else(|| "off".to_string(), |a| a.to_string()),
        peers.join(", "),
        if ingress.is_empty() { "-".to_string() } else { ingress.join(", ") },
        if egress.is_empty() { "-".to_string() } else { egress.join(", ") },
    )
}

fn run(cfg: RelayConfig) -> anyhow::Result<()> {
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
    runtime.block_on(relay::run(cfg, socket, admin, shutdown_signal()))
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
