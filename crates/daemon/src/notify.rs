//! Telling systemd about readiness, status and liveness: `sd_notify` without
//! blocking, and a watchdog fed only while the async runtime makes progress.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use sd_notify::NotifyState;

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

#[cfg(test)]
mod tests {
    use super::*;

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
