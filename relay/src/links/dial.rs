//! Keeps the link to one neighbour up: waits while it is up, dials when it is
//! not (backoff with jitter), and hands each new connection to its actor.

use std::sync::Arc;
use std::time::Duration;

use daemon::OnFailure;
use quinn::Endpoint;
use rand::Rng;
use relay_core::backoff::Backoff;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::context::Context;
use crate::links::actor::run_link;

/// Dials `peer` whenever its link is down, until `stop` (the relay's shutdown,
/// or a reload that removed the link).
pub async fn dial_loop(
    ctx: Arc<Context>,
    endpoint: Endpoint,
    peer: u32,
    peer_id: String,
    stop: CancellationToken,
) {
    let tuning = ctx.live.load().cfg.tuning.clone();
    let mut backoff = Backoff::new(tuning.reconnect_min, tuning.reconnect_max);
    let mut failures = 0u32;
    let jitter = || rand::rng().random::<f64>();
    // The node with the larger id lets the other dial first, so both rarely dial
    // at once; it still dials (after a pause) when the other does not.
    let defer = if ctx.links.i_dial_first(&peer_id) {
        Duration::ZERO
    } else {
        tuning.setup_timeout / 5
    };
    loop {
        if let Some(conn) = ctx.links.connected(peer) {
            match held_until_closed(&ctx, peer, &conn, &stop).await {
                Held::Stopped => return,
                Held::Worked => {
                    failures = 0;
                    backoff.reset();
                }
                Held::ClosedAtOnce(reason) => {
                    // The peer closed it at once (it refused our certificate
                    // after the handshake, say): a failed dial, and the
                    // backoff keeps growing.
                    let what = format!("the peer closed the link at once: {reason}");
                    log_dial_failure(&peer_id, conn.remote_address(), &what, &mut failures);
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_wait(jitter())) => {}
                    }
                }
            }
            continue;
        }
        if !defer.is_zero() {
            let pause = defer.mul_f64(0.75 + 0.5 * jitter());
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            if ctx.links.connected(peer).is_some() {
                continue;
            }
        }
        let Some(addr) = ctx.dial_addr(peer) else {
            return;
        };
        let client = ctx.live.load().client.clone();
        let attempt = async {
            let connecting = endpoint
                .connect_with(client, addr, &peer_id)
                .map_err(|e| e.to_string())?;
            connecting.await.map_err(|e| e.to_string())
        };
        let result = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(tuning.setup_timeout, attempt) => r,
        };
        match result {
            Ok(Ok(conn)) => {
                if let Some(health) = ctx.links.register(peer, &peer_id, conn.clone(), true) {
                    info!(peer = %peer_id, %addr, "connected (dialed)");
                    ctx.tasks.spawn(
                        "peer link",
                        OnFailure::Log,
                        run_link(ctx.clone(), peer, peer_id.clone(), conn.clone(), health),
                    );
                    // Wait on this very connection: it may be closed before the
                    // loop would look it up again.
                    match held_until_closed(&ctx, peer, &conn, &stop).await {
                        Held::Stopped => return,
                        Held::Worked => {
                            failures = 0;
                            backoff.reset();
                            continue;
                        }
                        Held::ClosedAtOnce(reason) => log_dial_failure(
                            &peer_id,
                            addr,
                            &format!("the peer closed the link at once: {reason}"),
                            &mut failures,
                        ),
                    }
                } else {
                    continue;
                }
            }
            Ok(Err(e)) => log_dial_failure(&peer_id, addr, &e, &mut failures),
            Err(_) => log_dial_failure(&peer_id, addr, "handshake timed out", &mut failures),
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_wait(jitter())) => {}
        }
    }
}

/// How a link's connection ended, for the dial loop.
enum Held {
    Stopped,
    /// Its probes passed, or it lasted: the next dial starts from the floor.
    Worked,
    ClosedAtOnce(String),
}

/// Waits until `conn` closes (or `stop`), and says whether it had worked.
async fn held_until_closed(
    ctx: &Context,
    peer: u32,
    conn: &quinn::Connection,
    stop: &CancellationToken,
) -> Held {
    let since = tokio::time::Instant::now();
    let health = ctx.links.health(peer);
    tokio::select! {
        biased;
        _ = stop.cancelled() => return Held::Stopped,
        _ = conn.closed() => {}
    }
    let was_up = health.is_some_and(|h| h.ever_up.load(std::sync::atomic::Ordering::Relaxed));
    if was_up || since.elapsed() >= Duration::from_secs(10) {
        Held::Worked
    } else {
        Held::ClosedAtOnce(
            conn.close_reason()
                .map_or_else(|| "closed".to_string(), |r| r.to_string()),
        )
    }
}

fn log_dial_failure(peer: &str, addr: std::net::SocketAddr, error: &str, failures: &mut u32) {
    *failures += 1;
    // The first failure is news; a peer that stays down is logged again every 10 tries.
    if *failures == 1 || *failures % 10 == 0 {
        warn!(peer, %addr, failures = *failures, "cannot reach peer: {error}");
    } else {
        debug!(peer, %addr, "cannot reach peer: {error}");
    }
}
