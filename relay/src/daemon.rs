//! What the `relay` and `controller` binaries share: argument errors as exit
//! codes, logging (human or JSON), the shutdown signal, and telling systemd
//! about readiness, status and liveness (`sd_notify`, the watchdog).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use sd_notify::NotifyState;
use topology::ConfigErrors;

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
    let started = tokio::time::Instant::now();
    let tasks_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(2), tasks_done)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    // The close frames went out with `close`; waiting for idle only resends
    // them if lost, and a connection still in its handshake (a peer that is
    // down) would hold us for 3 PTOs of a second each. Peers' probes notice
    // anyway, so this wait is short.
    let _ = tokio::time::timeout(Duration::from_millis(300), endpoint.wait_idle()).await;
    tracing::debug!(
        took_ms = started.elapsed().as_millis() as u64,
        "tasks and endpoint stopped"
    );
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

/// Tells the service manager how the daemon is doing, through `NOTIFY_SOCKET`
/// (`sd_notify`): ready, a one-line status, stopping. Without `NOTIFY_SOCKET`
/// (not started by systemd with `Type=notify`) every call does nothing.
#[derive(Debug, Default)]
pub struct Notifier {
    active: bool,
    /// The last status sent, so an unchanged status is not sent again.
    status: Mutex<String>,
}

impl Notifier {
    /// Active when `NOTIFY_SOCKET` is set.
    pub fn from_env() -> Self {
        Notifier {
            active: std::env::var_os("NOTIFY_SOCKET").is_some(),
            status: Mutex::new(String::new()),
        }
    }

    /// A notifier that never sends (tests, the lab).
    pub fn disabled() -> Self {
        Notifier::default()
    }

    /// Whether anything is listening; callers can skip building a status line.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// `READY=1`: the daemon listens and has its routes.
    pub fn ready(&self, status: &str) {
        self.remember(status);
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `STATUS=...`, shown by `systemctl status`; sent only when it changed.
    pub fn status(&self, status: &str) {
        if self.remember(status) {
            self.send(&[NotifyState::Status(status)]);
        }
    }

    /// `RELOADING=1`: a reload has begun; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        self.remember("reloading");
        self.send(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        self.remember("stopping");
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Records `status` as the last one sent; returns whether it is new.
    fn remember(&self, status: &str) -> bool {
        let mut last = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if *last == status {
            return false;
        }
        status.clone_into(&mut last);
        true
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if self.active {
            if let Err(e) = notify(states) {
                tracing::warn!("cannot notify the service manager: {e}");
            }
        }
    }
}

/// Sends one notification datagram to `NOTIFY_SOCKET` (a path, or `@name` for
/// an abstract socket) without ever blocking: `sd_notify::notify` blocks while
/// the manager's queue is full, which would stall the caller (the watchdog
/// thread, a runtime worker) and shutdown with it. A full queue is an error here.
fn notify(states: &[NotifyState<'_>]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    let socket = std::os::unix::net::UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    match path.as_bytes().strip_prefix(b"@") {
        Some(name) => send_abstract(&socket, name, message.as_bytes())?,
        None => socket.send_to(message.as_bytes(), &path)?,
    };
    Ok(())
}

#[cfg(target_os = "linux")]
fn send_abstract(
    socket: &std::os::unix::net::UnixDatagram,
    name: &[u8],
    message: &[u8],
) -> std::io::Result<usize> {
    use std::os::linux::net::SocketAddrExt as _;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &addr)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(
    _: &std::os::unix::net::UnixDatagram,
    _: &[u8],
    _: &[u8],
) -> std::io::Result<usize> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract NOTIFY_SOCKET outside Linux",
    ))
}

/// Feeds systemd's watchdog (`WATCHDOG=1`) while the async runtime makes
/// progress. A task on the runtime bumps a counter every quarter of the
/// watchdog timeout; a plain thread checks it every half timeout and feeds only
/// if it moved. So a runtime that is stuck (every worker blocked, the timer not
/// firing) stops the feeding, and systemd restarts the daemon. Dropping the
/// `Watchdog` stops the thread.
#[derive(Debug)]
pub struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Watchdog {
    /// Starts feeding systemd if it asked for a watchdog (`WATCHDOG_USEC` and
    /// `WATCHDOG_PID` naming this process); `None` otherwise.
    pub fn from_env(runtime: &tokio::runtime::Handle) -> Option<Watchdog> {
        let mut usec = 0;
        if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
            return None;
        }
        let timeout = Duration::from_micros(usec);
        tracing::debug!(?timeout, "feeding the systemd watchdog");
        Some(Watchdog::start(runtime, timeout, || {
            if let Err(e) = notify(&[NotifyState::Watchdog]) {
                tracing::warn!("cannot feed the watchdog: {e}");
            }
        }))
    }

    /// Calls `feed` every `timeout / 2` while a task on `runtime` keeps ticking.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        timeout: Duration,
        mut feed: impl FnMut() + Send + 'static,
    ) -> Watchdog {
        let beats = Arc::new(AtomicU64::new(0));
        let tick = (timeout / 4).max(Duration::from_millis(1));
        let check = (timeout / 2).max(Duration::from_millis(1));
        let counter = beats.clone();
        let heartbeat = runtime.spawn(async move {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("watchdog".into())
            .spawn(move || {
                let mut seen = beats.load(Ordering::Relaxed);
                let mut stalled = false;
                // Sleeps `check` at a time until the `Watchdog` is dropped.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(check) {
                    let now = beats.load(Ordering::Relaxed);
                    if now != seen {
                        seen = now;
                        stalled = false;
                        feed();
                    } else if !stalled {
                        stalled = true;
                        tracing::error!(
                            ?check,
                            "the async runtime made no progress; not feeding the watchdog"
                        );
                    }
                }
            })
            .ok();
        if thread.is_none() {
            tracing::warn!("cannot start the watchdog thread; systemd will restart this daemon");
        }
        Watchdog {
            stop: Some(stop),
            thread,
            heartbeat,
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.heartbeat.abort();
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a signal asks of a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: re-read the config and apply what changed.
    Reload,
    /// SIGTERM or SIGINT: drain and stop.
    Stop,
}

/// The process's signals as a channel: SIGHUP is [`Signal::Reload`], SIGTERM
/// and SIGINT are [`Signal::Stop`]. Handling SIGHUP here also keeps it from
/// killing the process. Tests feed a channel of their own instead. Call it
/// inside the runtime.
pub fn os_signals() -> std::io::Result<tokio::sync::mpsc::Receiver<Signal>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let signal = tokio::select! {
                Some(()) = hup.recv() => Signal::Reload,
                Some(()) = term.recv() => Signal::Stop,
                Some(()) = int.recv() => Signal::Stop,
                else => return,
            };
            if tx.send(signal).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
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

/// A QUIC endpoint serving `server` on an already bound socket, with the
/// socket's buffers enlarged to `buffer` bytes (see [`crate::sockbuf`]).
/// Returns the endpoint and its address.
pub fn quic_endpoint(
    socket: std::net::UdpSocket,
    server: quinn::ServerConfig,
    buffer: usize,
) -> anyhow::Result<(quinn::Endpoint, std::net::SocketAddr)> {
    use anyhow::Context as _;
    socket.set_nonblocking(true)?;
    crate::sockbuf::enlarge(&socket, buffer, "quic");
    let addr = socket.local_addr()?;
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        std::sync::Arc::new(quinn::TokioRuntime),
    )
    .context("starting the QUIC endpoint")?;
    Ok((endpoint, addr))
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

    /// Feeds counted while `during` runs on a current-thread runtime.
    fn feeds_during(
        runtime: &tokio::runtime::Runtime,
        feeds: &AtomicU64,
        during: impl std::future::Future<Output = ()>,
    ) -> u64 {
        let before = feeds.load(Ordering::Relaxed);
        runtime.block_on(during);
        feeds.load(Ordering::Relaxed) - before
    }

    #[test]
    fn the_watchdog_is_fed_while_the_runtime_runs_and_not_while_it_is_stuck() {
        // A current-thread runtime runs its tasks only inside `block_on`, so a
        // `block_on` that blocks the thread is a stuck runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let feeds = Arc::new(AtomicU64::new(0));
        let counter = feeds.clone();
        // Timeout 200 ms: heartbeat every 50 ms, checked (and fed) every 100 ms.
        let watchdog = Watchdog::start(runtime.handle(), Duration::from_millis(200), move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let period = Duration::from_millis(600);

        let running = feeds_during(&runtime, &feeds, async { tokio::time::sleep(period).await });
        assert!(
            running >= 3,
            "fed {running} times in 600 ms of a live runtime"
        );

        let stuck = feeds_during(&runtime, &feeds, async { std::thread::sleep(period) });
        // At most the check right after the runtime stopped sees its last beats.
        assert!(stuck <= 1, "fed {stuck} times in 600 ms of a stuck runtime");

        let again = feeds_during(&runtime, &feeds, async { tokio::time::sleep(period).await });
        assert!(again >= 3, "fed {again} times once the runtime ran again");

        drop(watchdog);
        let after = feeds.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            feeds.load(Ordering::Relaxed),
            after,
            "dropped: no more feeds"
        );
    }
}
