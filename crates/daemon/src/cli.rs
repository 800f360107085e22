//! A daemon's command line and `main`: `run|check-config --config FILE`,
//! `--log-format`, exit codes, and the async runtime it runs on.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use topology::ConfigErrors;

use crate::logging::init_logging;
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

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event (no colours or timestamps under journald).
    #[default]
    Human,
    /// One JSON object per event, with the spans it happened in.
    Json,
}

/// The environment variable that sets the log format when `--log-format` is absent.
pub const LOG_FORMAT_ENV: &str = "OVERLAY_LOG_FORMAT";

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

/// The log format `OVERLAY_LOG_FORMAT` asks for (human when unset or empty).
pub fn log_format_from_env() -> Result<LogFormat, String> {
    parse_log_format(std::env::var_os(LOG_FORMAT_ENV).as_deref())
}

fn parse_log_format(value: Option<&std::ffi::OsStr>) -> Result<LogFormat, String> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(LogFormat::default());
    };
    value
        .to_str()
        .and_then(|v| LogFormat::from_str(v, true).ok())
        .ok_or_else(|| {
            format!(
                "{LOG_FORMAT_ENV}: `{}` is not a log format; expected `human` or `json`",
                value.to_string_lossy()
            )
        })
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn log_format_comes_from_the_environment_variable_when_set() {
        assert_eq!(parse_log_format(None), Ok(LogFormat::Human));
        assert_eq!(parse_log_format(Some(OsStr::new(""))), Ok(LogFormat::Human));
        assert_eq!(
            parse_log_format(Some(OsStr::new("json"))),
            Ok(LogFormat::Json)
        );
        assert_eq!(
            parse_log_format(Some(OsStr::new("JSON"))),
            Ok(LogFormat::Json)
        );
        let err = parse_log_format(Some(OsStr::new("xml"))).expect_err("not a format");
        assert!(err.contains("OVERLAY_LOG_FORMAT: `xml`"), "{err}");
    }
}
