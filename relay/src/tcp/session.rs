//! Drives one end of a TCP session, ingress or egress: the local TCP socket,
//! the session core (`relay_core::session`) and the stream of its current
//! attempt. The core decides; this task moves bytes between the sockets and
//! the core, watches the link under the stream, and gets a new stream when
//! the old one breaks: the ingress opens one toward the egress on the next hop
//! the forwarder picks now, the egress waits for the one the ingress opens.
//!
//! All reads and writes below are cancel-safe (quinn's and tokio's `read` and
//! `write`), and the buffers live in this task, so no byte is lost when another
//! branch of the loop wins. Memory per session is bounded: the core's send
//! buffer grows to `tcp_session_buffer_bytes` at most (and is freed once
//! acknowledged), the stream's unread part of a record to one record, bytes
//! waiting for the local socket to [`DELIVER_MAX`] plus one chunk, records
//! waiting for the stream to [`TRANSMIT_BATCH`] plus one. Those last three
//! keep their capacity (about 250 KiB at most) once a burst used it; a session
//! that never moved much holds little more than its [`LOCAL_READ`] buffer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use relay_core::backoff::Backoff;
use relay_core::session::{Attempt, CloseReason, End, Hello, Role, Session};
use relay_core::session_wire::MAX_RECORD;
use relay_core::wire::Kind;
use relay_core::{DropReason, Header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::debug;

use crate::context::Context;
use crate::datapath::socket::now_us;
use crate::metrics::{Metrics, ResumeFailure};
use crate::tcp::link_watch::{self, Watched};
use crate::tcp::splice::{reset_tcp, STREAM_ABORTED};

/// The most one read from the stream takes (quinn hands over its own buffer).
const READ_CHUNK: usize = 64 * 1024;
/// Bytes for the local socket held before the stream is read further.
const DELIVER_MAX: usize = 64 * 1024;
/// Records encoded at once for the stream.
const TRANSMIT_BATCH: usize = 64 * 1024;
/// One read from the local socket (as `tokio::io::copy`'s buffer).
const LOCAL_READ: usize = 8 * 1024;
/// How often a session without a path looks whether its far end is still routable.
const REACHABLE_EVERY: Duration = Duration::from_millis(200);
/// How long an ending session tries to get its CLOSE (or last ACK) to the far end.
pub(crate) const CLOSE_FLUSH: Duration = Duration::from_millis(500);
/// Waits between the ingress's attempts to open a new stream.
const REOPEN_MIN: Duration = Duration::from_millis(20);
const REOPEN_MAX: Duration = Duration::from_secs(1);

/// The stream of one attempt, and the link it leaves this relay on.
#[derive(Debug)]
pub(crate) struct PathStream {
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub link: Watched,
}

impl PathStream {
    /// Sends `last` (the records still queued: a CLOSE, the last ACK),
    /// finishes the stream, and keeps the receive side until the far end has
    /// acknowledged all of it, within `within`. Dropping the receive side
    /// sooner would send STOP_SENDING, which can reach the far end before the
    /// last records and look to it like a broken path (it would resume instead
    /// of ending).
    pub async fn finish_with(mut self, last: &[u8], within: Duration) {
        let send = &mut self.send;
        let _ = tokio::time::timeout(within, async {
            if send.write_all(last).await.is_ok() && send.finish().is_ok() {
                let _ = send.stopped().await;
            }
        })
        .await;
        let _ = self.send.finish();
    }

    /// Gives the stream up: every hop along it sees a reset.
    pub fn abandon(mut self) {
        let _ = self.send.reset(STREAM_ABORTED.into());
        let _ = self.recv.stop(STREAM_ABORTED.into());
    }
}

/// A stream the ingress opened, handed to the egress's session task.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub hello: Hello,
    pub stream: PathStream,
}

/// Where an end gets its next stream.
#[derive(Debug)]
pub(crate) enum Paths {
    /// The ingress opens it toward the egress, with this header.
    Open(Header),
    /// The egress waits for the ingress's; a closed channel means a newer
    /// session took this one's id (its ingress restarted).
    Accept(mpsc::Receiver<Incoming>),
}

/// The session of one end, and what it needs around it.
#[derive(Debug)]
pub(crate) struct SessionEnd {
    pub core: Session,
    pub tcp: TcpStream,
    pub paths: Paths,
    /// The node key of the other end (reachability checks).
    pub far: u32,
    pub idle: Duration,
}

/// How a session went, for the counters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    pub end: End,
    /// Bytes from the local socket into the session, and out of it.
    pub carried: (u64, u64),
}

type Opening = Pin<Box<dyn Future<Output = Result<PathStream, DropReason>> + Send>>;

/// Opens the next stream of a session on the next hop the forwarder picks now.
pub(crate) async fn open(ctx: Arc<Context>, header: Header) -> Result<PathStream, DropReason> {
    let (peer, send, recv) = super::open_next_hop(&ctx, header).await?;
    Ok(PathStream {
        send,
        recv,
        link: Watched::now(&ctx.link_downs, peer),
    })
}

/// The header of the stream that carries `attempt`.
pub(crate) fn header_for(template: &Header, attempt: Attempt) -> Header {
    Header {
        kind: if attempt.opens {
            Kind::SessionOpen
        } else {
            Kind::SessionResume
        },
        seq: attempt.attempt,
        timestamp_us: now_us(),
        ..*template
    }
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

async fn read_stream(
    recv: Option<&mut quinn::RecvStream>,
) -> Result<Option<quinn::Chunk>, quinn::ReadError> {
    match recv {
        Some(r) => r.read_chunk(READ_CHUNK, true).await,
        None => std::future::pending().await,
    }
}

async fn write_stream(
    send: Option<&mut quinn::SendStream>,
    buf: &[u8],
) -> Result<usize, quinn::WriteError> {
    match send {
        Some(s) => s.write(buf).await,
        None => std::future::pending().await,
    }
}

async fn accept_next(paths: &mut Paths) -> Option<Incoming> {
    match paths {
        Paths::Accept(rx) => rx.recv().await,
        Paths::Open(_) => std::future::pending().await,
    }
}

async fn opened(opening: &mut Option<Opening>) -> Result<PathStream, DropReason> {
    match opening {
        Some(o) => o.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Runs the session until it ends, with `first` as its first stream, and
/// closes the local socket as the end says: normally when done, with a reset
/// otherwise.
pub(crate) async fn drive(
    ctx: Arc<Context>,
    end: SessionEnd,
    first: Option<PathStream>,
) -> Outcome {
    let SessionEnd {
        mut core,
        mut tcp,
        mut paths,
        far,
        idle,
    } = end;
    let role = if matches!(paths, Paths::Open(_)) {
        Role::Ingress
    } else {
        Role::Egress
    };
    let metrics = &ctx.metrics;
    let mut downs = ctx.link_downs.subscribe();
    let mut cur: Option<PathStream> = first;
    let mut finished = false;
    // The start of a record the stream has not finished yet.
    let mut partial: Vec<u8> = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut sent = 0;
    let mut deliver: Vec<u8> = Vec::new();
    let mut written = 0;
    let mut local = vec![0u8; LOCAL_READ];
    let mut shut = false;
    let mut opening: Option<Opening> = None;
    let mut backoff = Backoff::new(REOPEN_MIN, REOPEN_MAX);
    let mut reopen_at: Option<Instant> = None;
    let mut broke_at: Option<Instant> = None;
    // The attempt last seen greeted: a newer one greeted is a resume.
    let mut greeted_attempt = 0;
    let mut failure: Option<ResumeFailure> = None;
    let mut last_local = Instant::now();
    let mut reach_at: Option<Instant> = None;
    let (mut tr, mut tw) = tcp.split();

    loop {
        // Records for the stream, once the last batch is written.
        if let Some(stream) = cur.as_mut() {
            if sent == pending.len() {
                pending.clear();
                sent = 0;
                let before = core.retransmitted();
                core.poll_transmit(&mut pending, TRANSMIT_BATCH);
                Metrics::add(
                    &metrics.tcp_retransmitted_bytes,
                    core.retransmitted() - before,
                );
                if pending.is_empty() && core.wants_finish() && !finished {
                    let _ = stream.send.finish();
                    finished = true;
                }
            }
        }
        if core.is_greeted() && core.attempt() != greeted_attempt {
            if greeted_attempt != 0 {
                Metrics::add(&metrics.tcp_resumed, 1);
                let stall = broke_at.map(|t| t.elapsed()).unwrap_or_default();
                debug!(
                    ?role,
                    attempt = core.attempt(),
                    stall_ms = daemon::logging::log_ms(stall),
                    "tcp session resumed"
                );
            }
            greeted_attempt = core.attempt();
            broke_at = None;
            backoff.reset();
        }
        match core.ended() {
            // A finished session still hands the local socket what it got.
            Some(End::Done) if written < deliver.len() || !shut => {}
            Some(_) => break,
            None => {}
        }
        let running = core.ended().is_none();
        // The ingress opens a new stream when it has none.
        if let (Paths::Open(template), None, None, true) = (&paths, &cur, &opening, running) {
            if reopen_at.is_none_or(|at| at <= Instant::now()) {
                let attempt = core_next_attempt(&core);
                opening = Some(Box::pin(open(ctx.clone(), header_for(template, attempt))));
                reopen_at = None;
            }
        }
        let room = core.local_room().min(LOCAL_READ);
        let reading = cur.is_some() && running && deliver.len() - written < DELIVER_MAX;
        let writing = cur.is_some() && sent < pending.len();
        let watched: Vec<Watched> = cur.iter().map(|s| s.link).collect();
        let deadline = core.poll_timeout().map(Instant::from_std);
        let detached = cur.is_none() && running;
        if !detached {
            reach_at = None;
        } else if reach_at.is_none() {
            reach_at = Some(Instant::now() + REACHABLE_EVERY);
        }
        let (send, recv) = match cur.as_mut() {
            Some(s) => (Some(&mut s.send), Some(&mut s.recv)),
            None => (None, None),
        };
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled(), if running => close(&mut core, &mut pending, CloseReason::Shutdown),
            r = read_stream(recv), if reading => match r {
                Ok(Some(chunk)) => {
                    let taken = if partial.is_empty() {
                        core.handle_input(&chunk.bytes, &mut deliver).map(|used| {
                            partial.extend_from_slice(&chunk.bytes[used..]);
                        })
                    } else {
                        partial.extend_from_slice(&chunk.bytes);
                        core.handle_input(&partial, &mut deliver).map(|used| {
                            partial.drain(..used);
                        })
                    };
                    match taken {
                        Ok(()) => debug_assert!(partial.len() < MAX_RECORD),
                        Err(e) => {
                            debug!(?role, "tcp session: the far end broke the protocol: {e}");
                            close(&mut core, &mut pending, CloseReason::Protocol);
                        }
                    }
                }
                Ok(None) => {
                    core.handle_peer_finished(now());
                    if !core.is_attached() {
                        broken(&mut cur, &mut broke_at, &mut partial, &mut pending, &mut sent, &mut finished);
                    }
                }
                Err(e) => {
                    debug!(?role, "tcp session: stream broke: {e}");
                    core.detach(now());
                    broken(&mut cur, &mut broke_at, &mut partial, &mut pending, &mut sent, &mut finished);
                }
            },
            w = write_stream(send, &pending[sent..]), if writing => match w {
                Ok(n) => sent += n,
                Err(e) => {
                    debug!(?role, "tcp session: stream broke: {e}");
                    core.detach(now());
                    broken(&mut cur, &mut broke_at, &mut partial, &mut pending, &mut sent, &mut finished);
                }
            },
            r = tr.read(&mut local[..room]), if room > 0 => match r {
                Ok(0) => core.local_eof(),
                Ok(n) => {
                    last_local = Instant::now();
                    core.push_local(&local[..n]);
                }
                Err(_) => close(&mut core, &mut pending, CloseReason::Reset),
            },
            w = tw.write(&deliver[written..]), if written < deliver.len() => match w {
                Ok(n) => {
                    last_local = Instant::now();
                    written += n;
                    if written == deliver.len() {
                        deliver.clear();
                        written = 0;
                    } else if written > DELIVER_MAX {
                        deliver.drain(..written);
                        written = 0;
                    }
                }
                Err(_) => {
                    close(&mut core, &mut pending, CloseReason::Reset);
                    deliver.clear();
                    written = 0;
                }
            },
            peer = link_watch::lost(&mut downs, &watched), if !watched.is_empty() => {
                debug!(?role, peer, "tcp session: the link under its stream went down");
                core.detach(now());
                broken(&mut cur, &mut broke_at, &mut partial, &mut pending, &mut sent, &mut finished);
            },
            incoming = accept_next(&mut paths), if running => match incoming {
                Some(Incoming { hello, stream }) => match core.accept(&hello) {
                    Ok(()) => {
                        if let Some(old) = cur.replace(stream) {
                            old.abandon();
                        }
                        partial.clear();
                        pending.clear();
                        sent = 0;
                        finished = false;
                    }
                    Err(e) => {
                        debug!("tcp session: stream refused: {e}");
                        stream.abandon();
                    }
                },
                // A newer session took this one's id: its ingress restarted.
                None => {
                    failure = Some(ResumeFailure::UnknownSession);
                    core.give_up();
                }
            },
            o = opened(&mut opening), if opening.is_some() => {
                opening = None;
                match o {
                    Ok(stream) => {
                        core.begin_attempt();
                        cur = Some(stream);
                        partial.clear();
                        pending.clear();
                        sent = 0;
                        finished = false;
                    }
                    Err(DropReason::NoRoute) => {
                        failure = Some(ResumeFailure::Unreachable);
                        core.give_up();
                    }
                    Err(reason) => {
                        debug!(?reason, "tcp session: no new stream yet");
                        let wait = backoff.next_wait(rand::rng().random::<f64>());
                        reopen_at = Some(Instant::now() + wait);
                    }
                }
            },
            _ = sleep_until(reopen_at), if reopen_at.is_some() && opening.is_none() && detached => {},
            _ = sleep_until(deadline), if deadline.is_some() => {
                core.handle_timeout(now());
                if core.ended() == Some(End::GaveUp) {
                    failure = Some(ResumeFailure::Timeout);
                }
            },
            _ = sleep_until(reach_at), if detached => {
                reach_at = None;
                if ctx.forwarder.routes().table.route(far).is_none() {
                    failure = Some(ResumeFailure::Unreachable);
                    core.give_up();
                }
            },
            _ = tokio::time::sleep_until(last_local + idle), if running => {
                if last_local.elapsed() >= idle {
                    close(&mut core, &mut pending, CloseReason::Idle);
                }
            },
        }
        // The far end's FIN, once every byte before it is on the local socket.
        if core.peer_finished() && written == deliver.len() && !shut {
            shut = true;
            let _ = tw.shutdown().await;
        }
    }

    let end = core.ended().unwrap_or(End::GaveUp);
    match end {
        End::GaveUp => metrics.count_resume_failure(failure.unwrap_or(ResumeFailure::Timeout)),
        End::PeerClosed(CloseReason::UnknownSession) => {
            metrics.count_resume_failure(ResumeFailure::UnknownSession)
        }
        _ => {}
    }
    if let Some(o) = opening.take() {
        drop(o);
    }
    let carried = core.carried();
    debug!(?role, ?end, "tcp session ended");
    // The local socket first: its peer hears at once, whatever the stream does.
    match end {
        End::Done => drop(tcp),
        _ => reset_tcp(tcp),
    }
    if let Some(stream) = cur.take() {
        match end {
            // The CLOSE (if any) goes out before the stream's FIN.
            End::Done | End::Closed(_) | End::PeerClosed(_) => {
                stream.finish_with(&pending[sent..], CLOSE_FLUSH).await
            }
            End::GaveUp => stream.abandon(),
        }
    }
    Outcome { end, carried }
}

/// Ends the session from this side: with a stream, its CLOSE is queued at
/// once after the records already queued (so it goes out even while the
/// stream is backed up, within [`CLOSE_FLUSH`]).
fn close(core: &mut Session, pending: &mut Vec<u8>, reason: CloseReason) {
    core.close(reason);
    core.poll_transmit(pending, 0);
}

/// The attempt the ingress's next stream will carry.
fn core_next_attempt(core: &Session) -> Attempt {
    Attempt {
        attempt: core.attempt().saturating_add(1),
        opens: !core.ever_greeted(),
    }
}

/// The current stream broke: give it up (every hop sees a reset) and forget
/// what was read from or queued for it; the core resends from offsets.
fn broken(
    cur: &mut Option<PathStream>,
    broke_at: &mut Option<Instant>,
    partial: &mut Vec<u8>,
    pending: &mut Vec<u8>,
    sent: &mut usize,
    finished: &mut bool,
) {
    if let Some(old) = cur.take() {
        old.abandon();
    }
    broke_at.get_or_insert_with(Instant::now);
    partial.clear();
    pending.clear();
    *sent = 0;
    *finished = false;
}
