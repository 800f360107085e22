//! Admits inbound peer connections: the TLS verifier has already refused
//! certificates that do not chain to the fleet CA or name no neighbour; this
//! finds which neighbour it is and registers the link.

use std::sync::Arc;

use daemon::handshake_gate::GateLimits;
use daemon::quic::{AcceptOptions, Pending};
use tracing::{debug, info, warn};

use crate::context::Context;
use crate::datapath::link_registry::CLOSE_NOT_A_PEER;
use crate::links::actor::run_link;
use crate::metrics::Metrics;

/// Accepts peer connections until shutdown, each on a task of its own. An
/// unauthenticated flood is bounded by the handshake gate (see
/// `daemon::handshake_gate`): Retry under load, a rate, a cap in progress.
pub async fn accept_loop(ctx: Arc<Context>, endpoint: quinn::Endpoint) {
    let (cancel, tasks) = (ctx.cancel.clone(), ctx.tasks.clone());
    let neighbours = ctx.clone();
    let options = AcceptOptions {
        limits: GateLimits::RELAY,
        handshake_timeout: ctx.live.load().cfg.tuning.setup_timeout,
        counters: ctx.handshakes.clone(),
        known: Arc::new(move |addr| neighbours.is_neighbour_addr(addr)),
    };
    daemon::quic::accept_each(endpoint, cancel, tasks, options, |pending| {
        accept_one(ctx.clone(), pending)
    })
    .await;
}

static REFUSAL_WARNING: daemon::throttle::Throttle =
    daemon::throttle::Throttle::new(std::time::Duration::from_secs(10));

async fn accept_one(ctx: Arc<Context>, pending: Pending) {
    let conn = match pending.wait().await {
        Ok(conn) => conn,
        // A routine restart makes both ends dial at once, and each closes the
        // connection the duplicate rule does not keep, sometimes before its
        // handshake ends here: that is no refusal (nor is a peer that went
        // away mid-handshake). Counted apart, so an alert on refusals holds.
        Err(failed) if !failed.is_refusal() => {
            Metrics::add(&ctx.metrics.peer_handshakes_abandoned, 1);
            debug!(remote = %failed.remote, "peer handshake abandoned: {}", failed.reason);
            return;
        }
        Err(failed) => {
            Metrics::add(&ctx.metrics.peers_refused, 1);
            if let Some(held) = REFUSAL_WARNING.allow() {
                warn!(remote = %failed.remote, repeats = held, "refused peer connection: {}", failed.reason);
            }
            return;
        }
    };
    let remote = conn.remote_address();
    let neighbors = ctx.live.load().neighbors.clone();
    let candidates = neighbors.iter().map(|(_, id)| id.as_str());
    let Some(id) = daemon::tls::peer_node_id(&conn, candidates) else {
        Metrics::add(&ctx.metrics.peers_refused, 1);
        warn!(%remote, "refused peer connection: certificate names no neighbor of this node");
        conn.close(CLOSE_NOT_A_PEER.into(), b"not a peer of this node");
        return;
    };
    let key = topology::wire_key(&id);
    if let Some(health) = ctx.links.register(key, &id, conn.clone(), false) {
        info!(peer = %id, %remote, "connected (accepted)");
        run_link(ctx, key, id, conn, health).await;
    }
}
