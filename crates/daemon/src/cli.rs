//! A daemon's command line and `main`: `run|check-config --config FILE`,
//! `--log-format`, exit codes, and the async runtime it runs on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use topology::ConfigErrors;

use crate::logging::{init_logging, log_format_from_env, LogFormat};
use crate::notify::{Notifier, Watchdog};

/// The command line every daemon takes.
#[derive(Debug, Parser)]
#[command(version)]
pub struct DaemonCli {
    /// Log format on stderr: `human` (default) or `json` (one object per line).
    /// Default from the environment variable OVERLAY_LOG_FORMAT.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
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
/// signal (exit 1 on a runtime failure). `run` gets the [`Notifier`] through
/// which it tells systemd when it is ready; the watchdog runs on its own.
pub fn main<C, F>(
    name: &'static str,
    about: &'static str,
    load: impl FnOnce(&Path) -> Result<C, ConfigErrors>,
    summary: impl FnOnce(&C) -> String,
    run: impl FnOnce(C, Notifier, PathBuf) -> F,
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
    let format = match cli.log_format {
        Some(f) => f,
        None => match log_format_from_env() {
            Ok(f) => f,
            Err(e) => {
                eprintln!("{name}: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    init_logging(format);
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
        DaemonCommand::Run { config } => {
            run_until_signal(name, || run(cfg, Notifier::from_env(), config))
        }
    }
}

/// Exit code for bad usage or bad configuration (sysexits `EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// Exit code for a runtime failure.
pub const EXIT_RUNTIME: u8 = 1;

/// Runs `main` on a multi-threaded runtime and maps its outcome to an exit code.
/// Feeds systemd's watchdog meanwhile, if systemd asked for one.
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
    let watchdog = Watchdog::from_env(runtime.handle());
    let result = runtime.block_on(main());
    drop(watchdog);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
