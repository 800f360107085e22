//! The log line of a local failover: when a link goes up or down the table
//! stays, but each destination routed over it (as primary or backup) may now
//! leave by another neighbour, or not at all.

use relay_core::routes::{NextHopMove, NextHopMoves};
use relay_core::wire::INITIAL_TTL;
use relay_core::Decision;
use tracing::info;

use crate::context::Context;

/// Logs what the link to `peer` going up (or down) moves; silent when nothing.
pub fn log_failover(ctx: &Context, peer: u32, up: bool) {
    let routes = ctx.forwarder.routes();
    let table = &routes.table;
    let live = |peer_up: bool| {
        move |k: u32| {
            if k == peer {
                peer_up
            } else {
                ctx.links.is_up(k)
            }
        }
    };
    let hop = |dst: u32, peer_up: bool| match table.next_hop(dst, INITIAL_TTL, live(peer_up)) {
        Decision::Forward { next_hop, .. } => Some(next_hop),
        _ => None,
    };
    let moves: Vec<NextHopMove> = table
        .routes()
        .filter(|(_, r)| r.primary == peer || r.backup == Some(peer))
        .filter_map(|(dst, _)| {
            let (before, after) = (hop(dst, !up), hop(dst, up));
            (before != after).then_some((dst, before, after))
        })
        .collect();
    if !moves.is_empty() {
        let live = ctx.live.load();
        info!(
            cause = "local failover",
            moved = moves.len(),
            next_hops = %NextHopMoves::new(&live.cfg.topology, &moves),
            "reroute: link {}",
            if up { "up" } else { "down" }
        );
    }
}
