//! A stream a peer opened: read its overlay header, then deliver it to the
//! service's target here or pass it on to the next hop.

use std::sync::Arc;

use relay_core::wire::{Kind, HEADER_LEN};
use relay_core::{Decision, DropReason, Header};
use tokio::net::TcpStream;
use topology::Protocol;
use tracing::debug;

use crate::context::Context;
use crate::metrics::Metrics;
use crate::tcp::splice::{refuse, splice, End, STREAM_ABORTED, STREAM_REFUSED};

/// Handles a stream a peer opened until it ends.
pub async fn relay_stream(ctx: Arc<Context>, send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let setup = ctx.live.load().cfg.tuning.setup_timeout;
    let mut head = [0u8; HEADER_LEN];
    match tokio::time::timeout(setup, recv.read_exact(&mut head)).await {
        Ok(Ok(_)) => {}
        _ => {
            ctx.metrics.count_drop(DropReason::Malformed);
            return refuse(send, recv, STREAM_ABORTED);
        }
    }
    let header = match Header::decode(&head) {
        Ok((h, _)) if h.kind == Kind::StreamOpen => h,
        _ => {
            ctx.metrics.count_drop(DropReason::Malformed);
            return refuse(send, recv, STREAM_ABORTED);
        }
    };
    Metrics::add(&ctx.metrics.streams_relayed, 1);
    let decision = ctx.forwarder.routes().table.decide(&header, |_| true);
    match decision {
        Decision::Deliver => deliver(&ctx, header, send, recv).await,
        Decision::Forward { .. } => match super::open_next_hop(&ctx, header).await {
            Ok((next_send, next_recv)) => {
                let idle = ctx.live.load().cfg.tuning.tcp_idle_timeout;
                tokio::select! {
                    _ = ctx.cancel.cancelled() => {}
                    r = splice(End::Quic(send, recv), End::Quic(next_send, next_recv), idle) => {
                        debug!("transit stream ended: {r:?}");
                    }
                }
            }
            Err(reason) => {
                ctx.metrics.count_drop(reason);
                refuse(send, recv, STREAM_ABORTED);
            }
        },
        Decision::Drop(reason) => {
            ctx.metrics.count_drop(reason);
            refuse(send, recv, STREAM_ABORTED);
        }
    }
}

/// The stream's service ends here: connect to its target and join the two.
async fn deliver(ctx: &Context, header: Header, send: quinn::SendStream, recv: quinn::RecvStream) {
    let live = ctx.live();
    let setup = live.cfg.tuning.setup_timeout;
    let target = match live.cfg.topology.service_by_key(header.service) {
        Some(s) if s.protocol == Protocol::Tcp && s.egress_node == live.cfg.node => s.target,
        _ => {
            ctx.metrics.count_drop(DropReason::UnknownFlow);
            return refuse(send, recv, STREAM_REFUSED);
        }
    };
    let tcp = match tokio::time::timeout(setup, TcpStream::connect(target)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            debug!(%target, "target refused: {e}");
            return refuse(send, recv, STREAM_REFUSED);
        }
        Err(_) => {
            debug!(%target, "target connect timed out");
            return refuse(send, recv, STREAM_REFUSED);
        }
    };
    let _ = tcp.set_nodelay(true);
    let counters = live.services.get(header.service);
    let _open = counters.as_deref().map(|c| c.open_session());
    tokio::select! {
        _ = ctx.cancel.cancelled() => {}
        r = splice(End::Quic(send, recv), End::Tcp(tcp), live.cfg.tuning.tcp_idle_timeout) => {
            debug!(%target, "egress stream ended: {r:?}");
            if let (Ok(carried), Some(c)) = (r, counters.as_deref()) {
                c.delivered(0, carried.a_to_b);
                c.received(0, carried.b_to_a);
            }
        }
    }
}
