//! What the `relay` and `controller` binaries share: argument errors as exit
//! codes, logging, and the shutdown signal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use topology::ConfigErrors;

/// The command line every daemon takes.
#[derive(Debug, Parser)]
#[command(version)]
pub struct DaemonCli {
    #[command(subcommand)]
    pub command: DaemonCommand,
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Run until SIGTERM or Ctrl-C.
    Run {
        /// Path of the config file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Check the config and everything it names (topology, certificate, key, CA);
    /// bind nothing.
    CheckConfig {
        /// Path of the config file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// A daemon's whole `main`: parse `run|check-config --config FILE`, load the
/// config (exit 64 with every error), then print its summary or run it until a
/// signal (exit 1 on a runtime failure).
pub fn main<C, F>(
    name: &'static str,
    about: &'static str,
    load: impl FnOnce(&Path) -> Result<C, ConfigErrors>,
    summary: impl FnOnce(&C) -> String,
    run: impl FnOnce(C) -> F,
) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let matches = DaemonCli::command()
        .name(name)
        .about(about)
        .try_get_matches();
    let cli = match matches.and_then(|m| DaemonCli::from_arg_matches(&m)) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_logging();
    let (DaemonCommand::Run { config } | DaemonCommand::CheckConfig { config }) = &cli.command;
    let cfg = match load(config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match cli.command {
        DaemonCommand::CheckConfig { .. } => {
            print!("{}", summary(&cfg));
            ExitCode::SUCCESS
        }
        DaemonCommand::Run { .. } => run_until_signal(name, || run(cfg)),
    }
}

/// Stops a daemon's tasks: cancel, close the QUIC endpoint, then wait (bounded)
/// for the tasks and the endpoint to finish; stragglers are aborted.
pub async fn stop(
    cancel: &tokio_util::sync::CancellationToken,
    endpoint: &quinn::Endpoint,
    tasks: &mut tokio::task::JoinSet<()>,
    reason: &'static [u8],
) {
    cancel.cancel();
    endpoint.close(0u32.into(), reason);
    let wait = async {
        while tasks.join_next().await.is_some() {}
        endpoint.wait_idle().await;
    };
    if tokio::time::timeout(Duration::from_secs(3), wait)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
}

/// Exit code for bad usage or bad configuration (sysexits `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// Exit code for a runtime failure.
pub const EXIT_RUNTIME: u8 = 1;

/// Human-readable logs on stderr; `RUST_LOG` filters (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Completes on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
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

/// Runs `main` on a multi-threaded runtime and maps its outcome to an exit code.
pub fn run_until_signal<F>(what: &str, main: impl FnOnce() -> F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{what}: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match runtime.block_on(main()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Binds a daemon's QUIC socket and, if configured, its admin listener, with
/// errors that name the address.
pub fn bind(
    listen: std::net::SocketAddr,
    admin: Option<std::net::SocketAddr>,
) -> anyhow::Result<(std::net::UdpSocket, Option<std::net::TcpListener>)> {
    use anyhow::Context as _;
    let socket =
        std::net::UdpSocket::bind(listen).with_context(|| format!("binding QUIC {listen}"))?;
    let admin = match admin {
        Some(addr) => Some(
            std::net::TcpListener::bind(addr).with_context(|| format!("binding admin {addr}"))?,
        ),
        None => None,
    };
    Ok((socket, admin))
}

/// Hands each incoming QUIC connection to `handle` (on its own task) until
/// `cancel` fires or the endpoint closes.
pub async fn accept_each<F>(
    endpoint: quinn::Endpoint,
    cancel: tokio_util::sync::CancellationToken,
    handle: impl Fn(quinn::Incoming) -> F,
) where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        let incoming = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            i = endpoint.accept() => i,
        };
        let Some(incoming) = incoming else { return };
        tokio::spawn(handle(incoming));
    }
}
