//! Admits inbound peer connections: the TLS verifier has already refused
//! certificates that do not chain to the fleet CA or name no neighbour; this
//! finds which neighbour it is and registers the link.

use std::sync::Arc;

use quinn::Incoming;
use tracing::{info, warn};

use crate::context::Context;
use crate::datapath::link_registry::CLOSE_NOT_A_PEER;
use crate::links::actor::run_link;
use crate::metrics::Metrics;

/// Accepts peer connections until shutdown, each on a task of its own.
pub async fn accept_loop(ctx: Arc<Context>, endpoint: quinn::Endpoint) {
    let (cancel, tasks) = (ctx.cancel.clone(), ctx.tasks.clone());
    daemon::quic::accept_each(endpoint, cancel, tasks, |incoming| {
        accept_one(ctx.clone(), incoming)
    })
    .await;
}

async fn accept_one(ctx: Arc<Context>, incoming: Incoming) {
    let remote = incoming.remote_address();
    let setup = ctx.live.load().cfg.tuning.setup_timeout;
    let conn = match tokio::time::timeout(setup, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            Metrics::add(&ctx.metrics.peers_refused, 1);
            warn!(%remote, "refused peer connection: {e}");
            return;
        }
        Err(_) => {
            Metrics::add(&ctx.metrics.peers_refused, 1);
            warn!(%remote, "refused peer connection: handshake timed out");
            return;
        }
    };
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
