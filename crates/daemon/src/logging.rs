//! Logging on stderr, human-readable or JSON, with the journal in mind.

use crate::cli::LogFormat;

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
