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
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = conn.closed() => {}
            }
            backoff.reset();
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
                failures = 0;
                backoff.reset();
                if let Some(health) = ctx.links.register(peer, &peer_id, conn.clone(), true) {
                    info!(peer = %peer_id, %addr, "connected (dialed)");
                    ctx.tasks.spawn(
                        "peer link",
                        OnFailure::Log,
                        run_link(ctx.clone(), peer, peer_id.clone(), conn, health),
                    );
                }
                continue;
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

fn log_dial_failure(peer: &str, addr: std::net::SocketAddr, error: &str, failures: &mut u32) {
    *failures += 1;
    // The first failure is news; a peer that stays down is logged again every 10 tries.
    if *failures == 1 || *failures % 10 == 0 {
        warn!(peer, %addr, failures = *failures, "cannot reach peer: {error}");
    } else {
        debug!(peer, %addr, "cannot reach peer: {error}");
    }
}
