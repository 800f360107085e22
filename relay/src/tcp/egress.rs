//! A TCP service's egress: the sessions whose egress is this relay, by the
//! ingress node's key and the session id it chose, and what becomes of each
//! stream the ingress opens for them.
//!
//! - A `SessionOpen` stream for a session not held here starts one: a task of
//!   the relay's (not of the link the stream came on, so it outlives that
//!   link) connects to the target and runs the session's egress end.
//! - A `SessionOpen` or `SessionResume` stream for a session held here, with
//!   its token, is handed to that session's task, which takes it if its
//!   attempt is newer than the one it has. (An open repeated because the
//!   egress's first HELLO was lost is a resume too.)
//! - A `SessionResume` for a session not held here (it gave up, or this relay
//!   restarted) is answered with a CLOSE (`unknown session`): the ingress
//!   resets its client.
//! - A `SessionOpen` naming a session held here with another token means its
//!   ingress restarted and reused the id: the old session is let go.
//!
//! The table is written when a session starts and ends, and read when a stream
//! arrives; it is never on a per-byte path, so a mutex is enough.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use daemon::OnFailure;
use relay_core::session::{CloseReason, Hello, Role, Session};
use relay_core::session_wire::{self, Record};
use relay_core::wire::Kind;
use relay_core::{DropReason, Header};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use topology::Protocol;
use tracing::debug;

use crate::context::Context;
use crate::tcp::session::{drive, Incoming, PathStream, Paths, SessionEnd, CLOSE_FLUSH};

/// Streams waiting for a session's task to take them.
const INCOMING_QUEUE: usize = 4;

/// A session held here.
#[derive(Debug)]
struct Held {
    token: u64,
    /// Tells this entry from a later one with the same key.
    serial: u64,
    streams: mpsc::Sender<Incoming>,
}

/// The sessions whose egress is this relay (see the module docs).
#[derive(Debug, Default)]
pub struct EgressSessions {
    held: Mutex<HashMap<(u32, u32), Held>>,
    serials: AtomicU64,
}

impl EgressSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(u32, u32), Held>> {
        // Each change is one insert or remove; a poisoned lock is consistent.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Forgets a session when its task ends, unless a newer one took the key.
struct Release<'a> {
    sessions: &'a EgressSessions,
    key: (u32, u32),
    serial: u64,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        let mut held = self.sessions.lock();
        if held.get(&self.key).is_some_and(|h| h.serial == self.serial) {
            held.remove(&self.key);
        }
    }
}

/// Ends a session's stream with a CLOSE record (in band, so it crosses any
/// transit relay as bytes) and the stream's FIN, kept open until the ingress
/// has them (see [`PathStream::finish_with`]).
pub(crate) async fn close_stream(stream: PathStream, reason: CloseReason) {
    let mut record = Vec::new();
    session_wire::encode(&Record::Close(reason), &mut record);
    stream.finish_with(&record, CLOSE_FLUSH).await;
}

/// Takes a session stream whose egress is here, its HELLO already read.
pub(crate) async fn take(ctx: &Arc<Context>, header: Header, hello: Hello, stream: PathStream) {
    let key = (header.src, header.flow);
    let incoming = Incoming { hello, stream };
    let sessions = &ctx.sessions;
    let refused = {
        let mut held = sessions.lock();
        match held.get(&key) {
            Some(h) if h.token == hello.token => match h.streams.try_send(incoming) {
                Ok(()) => None,
                // Its task is behind: the ingress tries again.
                Err(mpsc::error::TrySendError::Full(incoming)) => {
                    incoming.stream.abandon();
                    None
                }
                Err(mpsc::error::TrySendError::Closed(incoming)) => {
                    Some((incoming, CloseReason::UnknownSession))
                }
            },
            Some(_) | None if header.kind == Kind::SessionResume => {
                Some((incoming, CloseReason::UnknownSession))
            }
            _ => {
                // A new session (any older holder of the key is let go: its
                // channel closes when its entry is replaced).
                let (tx, rx) = mpsc::channel(INCOMING_QUEUE);
                let serial = sessions.serials.fetch_add(1, Ordering::Relaxed);
                held.insert(
                    key,
                    Held {
                        token: hello.token,
                        serial,
                        streams: tx,
                    },
                );
                let ctx2 = ctx.clone();
                ctx.tasks
                    .spawn("tcp session egress", OnFailure::Log, async move {
                        run(ctx2, header, incoming, rx, serial).await
                    });
                None
            }
        }
    };
    if let Some((incoming, reason)) = refused {
        debug!(
            src = header.src,
            flow = header.flow,
            ?reason,
            "session stream refused"
        );
        close_stream(incoming.stream, reason).await;
    }
}

/// The service's target, if `service` is a TCP service whose egress is here.
fn target_of(ctx: &Context, service: u32) -> Option<SocketAddr> {
    let live = ctx.live();
    match live.cfg.topology.service_by_key(service) {
        Some(s) if s.protocol == Protocol::Tcp && s.egress_node == live.cfg.node => Some(s.target),
        _ => None,
    }
}

/// One session's egress end: connect to the target, then run the session.
async fn run(
    ctx: Arc<Context>,
    header: Header,
    first: Incoming,
    streams: mpsc::Receiver<Incoming>,
    serial: u64,
) {
    let _release = Release {
        sessions: &ctx.sessions,
        key: (header.src, header.flow),
        serial,
    };
    let live = ctx.live();
    let Some(target) = target_of(&ctx, header.service) else {
        ctx.metrics.count_drop(DropReason::UnknownFlow);
        return close_stream(first.stream, CloseReason::Refused).await;
    };
    let tcp = tokio::select! {
        _ = ctx.cancel.cancelled() => return first.stream.abandon(),
        c = tokio::time::timeout(live.cfg.tuning.setup_timeout, TcpStream::connect(target)) => c,
    };
    let tcp = match tcp {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            debug!(%target, "target refused: {e}");
            return close_stream(first.stream, CloseReason::Refused).await;
        }
        Err(_) => {
            debug!(%target, "target connect timed out");
            return close_stream(first.stream, CloseReason::Refused).await;
        }
    };
    let _ = tcp.set_nodelay(true);
    let mut core = Session::new(
        Role::Egress,
        first.hello.token,
        live.cfg.tuning.tcp_session.clone(),
    );
    if let Err(e) = core.accept(&first.hello) {
        debug!("first session stream refused: {e}");
        return close_stream(first.stream, CloseReason::Protocol).await;
    }
    let counters = live.services.get(header.service);
    let _open = counters.as_deref().map(|c| c.open_session());
    let end = SessionEnd {
        core,
        tcp,
        paths: Paths::Accept(streams),
        far: header.src,
        idle: live.cfg.tuning.tcp_idle_timeout,
    };
    let outcome = drive(ctx.clone(), end, Some(first.stream)).await;
    debug!(%target, end = ?outcome.end, "egress session ended");
    if let Some(c) = counters.as_deref() {
        let (from_target, to_target) = outcome.carried;
        c.received(0, from_target);
        c.delivered(0, to_target);
    }
}
