//! Sockets and the QUIC endpoint of a daemon: binding with errors that name the
//! address, the endpoint on an already bound socket, admitting incoming
//! handshakes, and a bounded stop.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::handshake_gate::{Admit, GateLimits, HandshakeGate};
use crate::tasks::OnFailure;
use crate::throttle::Throttle;

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
    mut server: quinn::ServerConfig,
    buffer: usize,
) -> anyhow::Result<(quinn::Endpoint, std::net::SocketAddr)> {
    bound_incoming(&mut server);
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

/// What the accept loop counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct HandshakeCounters {
    /// Handshakes taken on.
    pub accepted: AtomicU64,
    /// Clients sent a Retry to prove their address.
    pub retried: AtomicU64,
    /// Initials dropped: too many handshakes in progress, or over the rate.
    pub dropped: AtomicU64,
    /// Handshakes taken on that failed or timed out.
    pub failed: AtomicU64,
}

/// How incoming handshakes are admitted and bounded.
#[derive(Clone)]
pub struct AcceptOptions {
    pub limits: GateLimits,
    /// A handshake not done by then is abandoned.
    pub handshake_timeout: Duration,
    pub counters: Arc<HandshakeCounters>,
    /// Whether an address is a known peer's (not held to the rate).
    pub known: Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>,
}

impl std::fmt::Debug for AcceptOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptOptions")
            .field("limits", &self.limits)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// An incoming connection's handshake, done or failed.
pub type Handshake = Result<quinn::Connection, HandshakeFailed>;

/// A handshake that did not complete: who from, and why.
#[derive(Debug, Clone)]
pub struct HandshakeFailed {
    pub remote: SocketAddr,
    pub reason: String,
    /// What QUIC said; `None` when our own handshake timeout ran out.
    pub error: Option<quinn::ConnectionError>,
}

impl HandshakeFailed {
    /// Whether the handshake was refused (see [`is_refusal`]) rather than
    /// abandoned (the peer closed it, went away, or it timed out).
    pub fn is_refusal(&self) -> bool {
        self.error.as_ref().is_some_and(is_refusal)
    }
}

/// Whether a connection that failed in its handshake was refused: this end
/// refused the peer (its certificate, a protocol violation: a transport error
/// of our own), or the peer refused us (it closed with a transport error, e.g.
/// a TLS alert about our certificate). Not a refusal: the peer's application
/// closing it (the duplicate-dial race, where each end closes the connection
/// the rule does not keep, or the peer shutting down), a reset or a timeout
/// (the peer restarting, a lossy path), or our own close.
pub fn is_refusal(error: &quinn::ConnectionError) -> bool {
    use quinn::ConnectionError as E;
    match error {
        E::TransportError(_) => true,
        // An application's close during the handshake travels as a transport
        // close with APPLICATION_ERROR (RFC 9000 §10.2.3): the race again.
        E::ConnectionClosed(close) => {
            use quinn::TransportErrorCode as C;
            close.error_code != C::NO_ERROR && close.error_code != C::APPLICATION_ERROR
        }
        E::ApplicationClosed(_)
        | E::Reset
        | E::TimedOut
        | E::LocallyClosed
        | E::VersionMismatch
        | E::CidsExhausted => false,
    }
}

static DROP_WARNING: Throttle = Throttle::new(Duration::from_secs(10));

/// An incoming connection taken on, its handshake still running: `wait` for it.
pub struct Pending {
    handshake: Pin<Box<dyn Future<Output = Handshake> + Send>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

impl Pending {
    /// The handshake's outcome, within the accept loop's handshake timeout.
    pub async fn wait(self) -> Handshake {
        self.handshake.await
    }
}

/// Admits incoming QUIC handshakes through a [`HandshakeGate`] (Retry under
/// load, a rate and a bound on those in progress) until `cancel` fires or the
/// endpoint closes. Each handshake taken on goes to `handle` on a task of
/// `tasks`, which waits for it ([`Pending::wait`], bounded by the handshake
/// timeout) and then serves the connection.
pub async fn accept_each<F>(
    endpoint: quinn::Endpoint,
    cancel: tokio_util::sync::CancellationToken,
    tasks: crate::tasks::Spawner,
    options: AcceptOptions,
    handle: impl Fn(Pending) -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let gate = Arc::new(Mutex::new(HandshakeGate::new(options.limits)));
    loop {
        let incoming = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            i = endpoint.accept() => i,
        };
        let Some(incoming) = incoming else { return };
        let counters = options.counters.clone();
        let validated = incoming.remote_address_validated();
        let known = (options.known)(incoming.remote_address());
        let admit = lock(&gate).admit(std::time::Instant::now(), validated, known);
        match admit {
            Admit::Accept => {}
            Admit::Retry => {
                counters.retried.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = incoming.retry() {
                    // Only a validated client cannot be sent a Retry, and this
                    // one was not validated; drop it rather than guess.
                    e.into_incoming().ignore();
                }
                continue;
            }
            Admit::Busy | Admit::RateLimited => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                if let Some(held) = DROP_WARNING.allow() {
                    let why = if admit == Admit::Busy {
                        "too many handshakes in progress"
                    } else {
                        "over the handshake rate"
                    };
                    tracing::warn!(
                        remote = %incoming.remote_address(),
                        repeats = held,
                        "dropping incoming QUIC handshakes: {why}"
                    );
                }
                incoming.ignore();
                continue;
            }
        }
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let remote = incoming.remote_address();
        let timeout = options.handshake_timeout;
        let gate = gate.clone();
        let handshake = async move {
            let result = match tokio::time::timeout(timeout, incoming).await {
                Ok(Ok(conn)) => Ok(conn),
                Ok(Err(e)) => Err(HandshakeFailed {
                    remote,
                    reason: e.to_string(),
                    error: Some(e),
                }),
                Err(_) => Err(HandshakeFailed {
                    remote,
                    reason: "handshake timed out".to_string(),
                    error: None,
                }),
            };
            lock(&gate).finished();
            if result.is_err() {
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            result
        };
        let pending = Pending {
            handshake: Box::pin(handshake),
        };
        tasks.spawn("incoming connection", OnFailure::Log, handle(pending));
    }
}

fn lock(gate: &Mutex<HandshakeGate>) -> std::sync::MutexGuard<'_, HandshakeGate> {
    // Each critical section is one call on the gate; a poisoned lock is consistent.
    gate.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bounds what quinn holds for connections not yet accepted: how many, and the
/// bytes buffered for them (quinn's defaults allow 65,536 and 100 MiB). Apply to
/// every server config an endpoint is given, a reloaded one too.
pub fn bound_incoming(server: &mut quinn::ServerConfig) {
    server
        .max_incoming(1024)
        .incoming_buffer_size(64 * 1024)
        .incoming_buffer_size_total(16 * 1024 * 1024);
}

/// Stops a daemon: closes its QUIC endpoint (every connection gets a close
/// frame with `reason`), stops its tasks (bounded, see
/// [`Supervisor::shutdown`](crate::tasks::Supervisor::shutdown)), and waits
/// briefly for the endpoint.
pub async fn stop(
    tasks: &crate::tasks::Supervisor,
    endpoint: &quinn::Endpoint,
    reason: &'static [u8],
) {
    let started = tokio::time::Instant::now();
    tasks.cancel_token().cancel();
    endpoint.close(0u32.into(), reason);
    tasks.shutdown(Duration::from_secs(2)).await;
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

#[cfg(test)]
mod refusal_tests {
    use super::*;
    use quinn::{ApplicationClose, ConnectionClose, ConnectionError, TransportErrorCode, VarInt};

    #[test]
    fn refusals_are_certificates_and_protocol_errors_not_races_or_restarts() {
        let app = |code: u32| {
            ConnectionError::ApplicationClosed(ApplicationClose {
                error_code: VarInt::from_u32(code),
                reason: bytes::Bytes::from_static(b"duplicate connection"),
            })
        };
        let closed = |code: TransportErrorCode| {
            ConnectionError::ConnectionClosed(ConnectionClose {
                error_code: code,
                frame_type: None,
                reason: bytes::Bytes::new(),
            })
        };
        // A TLS alert from the peer (bad certificate, 42): it refused us.
        assert!(is_refusal(&closed(TransportErrorCode::crypto(42))));
        assert!(is_refusal(&closed(TransportErrorCode::PROTOCOL_VIOLATION)));
        assert!(!is_refusal(&closed(TransportErrorCode::NO_ERROR)));
        assert!(
            !is_refusal(&closed(TransportErrorCode::APPLICATION_ERROR)),
            "an application close sent during the handshake (the duplicate rule)"
        );
        // The duplicate-dial race and a peer shutting down close at the application level.
        assert!(!is_refusal(&app(1)), "duplicate");
        assert!(!is_refusal(&app(0)), "shutdown");
        for benign in [
            ConnectionError::TimedOut,
            ConnectionError::Reset,
            ConnectionError::LocallyClosed,
        ] {
            assert!(!is_refusal(&benign), "{benign}");
        }
        let ours = HandshakeFailed {
            remote: "127.0.0.1:1".parse().expect("addr"),
            reason: "handshake timed out".into(),
            error: None,
        };
        assert!(!ours.is_refusal(), "our own timeout");
    }
}
