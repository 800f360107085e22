//! The admin HTTP server both daemons (and the lab) use: an axum router served
//! over hyper's HTTP/1.1 with the limits a hostile client must not get past.
//!
//! - a cap on concurrent connections; a connection over the cap gets a short
//!   `503` and is closed (counted, the warning rate-limited);
//! - a deadline for each request's head, so a client that sends a partial
//!   request (slowloris) loses its slot, and a bound on the head's size;
//! - a bound on request bodies (chunked ones too);
//! - a deadline on each write, so a client that stops reading loses its
//!   connection;
//! - accept errors (out of file descriptors) back off instead of spinning, and
//!   are counted and logged at most once per interval;
//! - a few descriptors are held in reserve: when the process runs out (flows
//!   and sessions took them all), one is given up to accept a waiting admin
//!   connection, so `/metrics` and `/healthz` keep answering.
//!
//! Handlers are plain axum handlers: tests call a router with
//! `tower::ServiceExt::oneshot`, no socket needed. Shutdown stops accepting and
//! lets open requests finish (the supervisor bounds the wait); responses that
//! would never finish on their own (server-sent events) watch [`Shutdown`],
//! which every request carries, and end when it fires. The head deadline
//! applies to heads only: a response may stream for as long as it likes.

pub mod client;
mod stall;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::tasks::{OnFailure, Spawner};
use crate::throttle::Throttle;

/// The bounds of an admin server.
#[derive(Debug, Clone)]
pub struct AdminLimits {
    /// Connections served at once. Default 256.
    pub max_connections: usize,
    /// A request's head must arrive within this. Default 5 s.
    pub header_timeout: Duration,
    /// Largest request head, bytes. Default 16 KiB (hyper's floor is 8 KiB).
    pub max_head: usize,
    /// Largest request body, bytes. Default 64 KiB.
    pub max_body: usize,
    /// A write that makes no progress for this long (the client stopped
    /// reading) ends the connection. Default 20 s.
    pub write_timeout: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(5),
            max_head: 16 * 1024,
            max_body: 64 * 1024,
            write_timeout: Duration::from_secs(20),
        }
    }
}

/// What an admin server counts, for the daemon's `/metrics`.
#[derive(Debug, Default)]
pub struct AdminCounters {
    pub connections: AtomicU64,
    /// Connections turned away because every slot was taken.
    pub over_capacity: AtomicU64,
    /// Failed accepts (e.g. out of file descriptors).
    pub accept_errors: AtomicU64,
}

/// The server's shutdown, in every request's extensions: a handler whose
/// response never ends by itself (a stream) ends it when this fires, so that
/// shutdown does not wait on it. Absent when a router is called without a
/// server (tests with `oneshot`).
#[derive(Debug, Clone, Default)]
pub struct Shutdown(pub CancellationToken);

static OVER_CAPACITY_WARNING: Throttle = Throttle::new(Duration::from_secs(10));
static ACCEPT_WARNING: Throttle = Throttle::new(Duration::from_secs(10));

/// Descriptors held back for the admin API when the process runs out.
const RESERVE: usize = 4;

/// Descriptors kept open (on `/dev/null`) to be given up when accepting fails
/// for want of one.
#[derive(Debug)]
struct Reserve(Vec<std::fs::File>);

impl Reserve {
    fn fill() -> Reserve {
        let mut r = Reserve(Vec::with_capacity(RESERVE));
        r.top_up();
        r
    }

    fn top_up(&mut self) {
        while self.0.len() < RESERVE {
            match std::fs::File::open("/dev/null") {
                Ok(f) => self.0.push(f),
                Err(_) => return,
            }
        }
    }

    /// Gives up one descriptor; false if none is left.
    fn release(&mut self) -> bool {
        self.0.pop().is_some()
    }
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    // EMFILE (24): this process; ENFILE (23): the whole system.
    matches!(e.raw_os_error(), Some(24) | Some(23))
}

/// Serves `router` on `listener` until `cancel` fires; each connection is a
/// task of `tasks`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: AdminLimits,
    counters: Arc<AdminCounters>,
    cancel: CancellationToken,
    tasks: Spawner,
) {
    let router = router
        .layer(DefaultBodyLimit::max(limits.max_body))
        .layer(Extension(Shutdown(cancel.clone())));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff = Duration::ZERO;
    let mut reserve = Reserve::fill();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let accepted = match accepted {
            // Out of descriptors: give one from the reserve and take the
            // waiting connection with it.
            Err(e) if out_of_descriptors(&e) && reserve.release() => listener.accept().await,
            other => other,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = Duration::ZERO;
                reserve.top_up();
                a
            }
            Err(e) => {
                counters.accept_errors.fetch_add(1, Ordering::Relaxed);
                // EMFILE and the like: the pending connection stays queued, so
                // an immediate retry would spin. Back off, up to a second.
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                if let Some(held) = ACCEPT_WARNING.allow() {
                    tracing::warn!(
                        error = %e,
                        repeats = held,
                        retry_ms = backoff.as_millis() as u64,
                        "admin API cannot accept a connection"
                    );
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            counters.over_capacity.fetch_add(1, Ordering::Relaxed);
            if let Some(held) = OVER_CAPACITY_WARNING.allow() {
                tracing::warn!(
                    %peer,
                    repeats = held,
                    limit = limits.max_connections,
                    "admin API busy: connection turned away"
                );
            }
            tasks.spawn("admin: turn away", OnFailure::Log, turn_away(stream));
            continue;
        };
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let (router, limits, cancel) = (router.clone(), limits.clone(), cancel.clone());
        tasks.spawn("admin connection", OnFailure::Log, async move {
            let _permit = permit;
            serve_connection(stream, router, &limits, cancel).await;
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: &AdminLimits,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head.max(8192));
    let io = stall::WriteDeadline::new(TokioIo::new(stream), limits.write_timeout);
    let conn = http.serve_connection(io, TowerToHyperService::new(router));
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!("admin connection ended: {e}");
            }
        }
        _ = cancel.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Tells a client over the connection cap to come back, spending at most a
/// quarter of a second on it. What the client sent is read and dropped before
/// the socket closes: closing with unread bytes would reset the connection and
/// the client could lose the answer.
async fn turn_away(mut stream: TcpStream) {
    let reply = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let _ = tokio::time::timeout(Duration::from_millis(250), async {
        stream.write_all(reply).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// A JSON body (pretty, with a final newline), status 200.
pub fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string_pretty(value) {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body + "\n",
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode response: {e}"),
        ),
    }
}

/// `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string() + "\n";
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The fallback for paths no route serves.
pub async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        &format!("no such endpoint: {}", uri.path()),
    )
}

/// The fallback for a known path asked with a method it does not serve.
pub async fn get_only() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "only GET is served here")
}

/// `GET /healthz` as a readiness check: `200 ok` when ready, else `503` with
/// the reason on one line (`not ready: ...`), plain text either way.
pub fn readiness(ready: Result<(), String>) -> Response {
    match ready {
        Ok(()) => ok_text(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            format!("not ready: {}\n", why.trim_end()),
        )
            .into_response(),
    }
}

/// `GET /healthz`'s plain `ok`.
pub fn ok_text() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        "ok\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests;
