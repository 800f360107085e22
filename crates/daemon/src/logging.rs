//! Logging on stderr, human-readable or JSON, with the journal in mind.

use clap::ValueEnum;

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

/// Logs on stderr, human-readable or JSON; `RUST_LOG` filters (default `info`).
/// Human lines carry colours only on a terminal, and no timestamp when stderr
/// is the journal (journald stamps each line itself).
pub fn init_logging(format: LogFormat) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Json => fmt.json().with_ansi(false).boxed(),
        LogFormat::Human if stderr_is_journal() => fmt.without_time().with_ansi(false).boxed(),
        LogFormat::Human => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .try_init();
}

/// Whether stderr is the systemd journal: `JOURNAL_STREAM` names its device and
/// inode (checked, because a child of a service inherits the variable).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let Some(expected) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    expected.to_str() == Some(format!("{}:{}", meta.dev(), meta.ino()).as_str())
}

/// A duration as a log field: milliseconds to the microsecond, a number
/// (`rtt_ms=0.351`, not `0.35120100000000004` nor `Some(0.351201)`). For an
/// optional one, `rtt.map(log_ms)`: tracing records `None` as no field.
pub fn log_ms(d: std::time::Duration) -> f64 {
    rounded(d.as_secs_f64() * 1000.0, 3)
}

/// A duration as a log field: seconds to the millisecond (`took_s=1.022`).
pub fn log_secs(d: std::time::Duration) -> f64 {
    rounded(d.as_secs_f64(), 3)
}

/// `x` to `digits` decimals, for log fields that are measurements (a ratio,
/// milliseconds held as a float); prints as the shortest decimal that reads
/// back, so `0.046` rather than `0.046000000000000006`.
pub fn rounded(x: f64, digits: i32) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits);
    let r = (x * scale).round() / scale;
    // Past ~15 significant digits scaling loses more than it rounds.
    if r.is_finite() {
        r
    } else {
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::time::Duration;

    #[test]
    fn measurements_in_logs_print_as_short_numbers() {
        assert_eq!(
            log_secs(Duration::from_secs_f64(1.0217972849999999)).to_string(),
            "1.022"
        );
        assert_eq!(log_ms(Duration::from_nanos(351_201)).to_string(), "0.351");
        assert_eq!(log_ms(Duration::from_micros(253_870)).to_string(), "253.87");
        assert_eq!(rounded(0.046000000000000006, 4).to_string(), "0.046");
        assert!(rounded(f64::NAN, 3).is_nan());
        assert_eq!(log_secs(Duration::ZERO).to_string(), "0");
    }

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
