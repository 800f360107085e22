//! What a daemon is asked to do from outside: reload or stop. The process's
//! signals ([`OsSignals`]) and a test's channel both deliver [`Signal`]s.

use tokio::signal::unix::{signal, SignalKind};

/// What a signal asks of a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: re-read the config and apply what changed.
    Reload,
    /// SIGTERM or SIGINT: drain and stop.
    Stop,
}

/// Where a daemon's [`Signal`]s come from.
pub trait Signals {
    /// The next signal; `None` once no more can come.
    fn recv(&mut self) -> impl std::future::Future<Output = Option<Signal>> + Send;
}

/// A test's (or an embedding program's) channel of signals.
impl Signals for tokio::sync::mpsc::Receiver<Signal> {
    async fn recv(&mut self) -> Option<Signal> {
        tokio::sync::mpsc::Receiver::recv(self).await
    }
}

/// The process's signals: SIGHUP is [`Signal::Reload`], SIGTERM and SIGINT are
/// [`Signal::Stop`]. Listening for SIGHUP also keeps it from killing the process.
#[derive(Debug)]
pub struct OsSignals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl OsSignals {
    /// Starts listening. Call inside the runtime.
    pub fn new() -> std::io::Result<OsSignals> {
        Ok(OsSignals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

impl Signals for OsSignals {
    async fn recv(&mut self) -> Option<Signal> {
        tokio::select! {
            Some(()) = self.hup.recv() => Some(Signal::Reload),
            Some(()) = self.term.recv() => Some(Signal::Stop),
            Some(()) = self.int.recv() => Some(Signal::Stop),
            else => None,
        }
    }
}
