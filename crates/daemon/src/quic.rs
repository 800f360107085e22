//! Sockets and the QUIC endpoint of a daemon: binding with errors that name the
//! address, the endpoint on an already bound socket, and a bounded stop.

use std::time::Duration;

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

/// Hands each incoming QUIC connection to `handle`, on a task of its own owned
/// by `tasks`, until `cancel` fires or the endpoint closes.
pub async fn accept_each<F>(
    endpoint: quinn::Endpoint,
    cancel: tokio_util::sync::CancellationToken,
    tasks: crate::tasks::Spawner,
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
        tasks.spawn(
            "incoming connection",
            crate::tasks::OnFailure::Log,
            handle(incoming),
        );
    }
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
