//! A stream a peer opened: read its overlay header, then pass it on to the
//! next hop (transit), or hand it to the egress: a session stream to
//! [`super::egress`], the raw stream of an older ingress (`StreamOpen`) to
//! its target directly.
//!
//! A transit relay keeps no session state. It splices the stream to the next
//! hop, and resets both when either link under them goes down (its probes
//! failed, its connection closed) or the relay stops, so that both ends learn
//! at once that their path broke and resume over another.

use std::sync::Arc;

use relay_core::session_wire::{self, Record, HELLO_LEN};
use relay_core::wire::{Kind, HEADER_LEN};
use relay_core::{Decision, DropReason, Header};
use tokio::net::TcpStream;
use topology::Protocol;
use tracing::debug;

use crate::context::Context;
use crate::metrics::Metrics;
use crate::tcp::link_watch::{self, Watched};
use crate::tcp::session::PathStream;
use crate::tcp::splice::{refuse, splice, splice_until, End, STREAM_ABORTED, STREAM_REFUSED};

/// Handles a stream the neighbour `from` opened, until it ends.
pub async fn relay_stream(
    ctx: Arc<Context>,
    from: u32,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let upstream = Watched::now(&ctx.link_downs, from);
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
        Ok((h, _)) if h.kind.is_stream() => h,
        _ => {
            ctx.metrics.count_drop(DropReason::Malformed);
            return refuse(send, recv, STREAM_ABORTED);
        }
    };
    Metrics::add(&ctx.metrics.streams_relayed, 1);
    let decision = ctx.forwarder.routes().table.decide(&header, |_| true);
    match decision {
        Decision::Deliver if header.kind == Kind::StreamOpen => {
            deliver_raw(&ctx, header, send, recv).await
        }
        Decision::Deliver => {
            let stream = PathStream {
                send,
                recv,
                link: upstream,
            };
            deliver_session(&ctx, header, stream).await
        }
        Decision::Forward { .. } | Decision::Repair { .. } => {
            transit(&ctx, header, upstream, send, recv).await
        }
        Decision::Drop(reason) => {
            ctx.metrics.count_drop(reason);
            refuse(send, recv, STREAM_ABORTED);
        }
    }
}

/// Passes the stream on to the next hop and splices the two.
async fn transit(
    ctx: &Arc<Context>,
    header: Header,
    upstream: Watched,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    match super::open_next_hop(ctx, header).await {
        Ok((peer, next_send, next_recv)) => {
            let links = [upstream, Watched::now(&ctx.link_downs, peer)];
            let mut downs = ctx.link_downs.subscribe();
            let stop = async {
                tokio::select! {
                    _ = ctx.cancel.cancelled() => {}
                    peer = link_watch::lost(&mut downs, &links) => {
                        debug!(peer, "transit stream: a link under it went down");
                    }
                }
            };
            let idle = ctx.live.load().cfg.tuning.tcp_idle_timeout;
            let r = splice_until(
                End::Quic(send, recv),
                End::Quic(next_send, next_recv),
                idle,
                stop,
            )
            .await;
            debug!("transit stream ended: {r:?}");
        }
        Err(reason) => {
            ctx.metrics.count_drop(reason);
            refuse(send, recv, STREAM_ABORTED);
        }
    }
}

/// A session stream whose egress is here: read its HELLO and hand it over.
async fn deliver_session(ctx: &Arc<Context>, header: Header, mut stream: PathStream) {
    let setup = ctx.live.load().cfg.tuning.setup_timeout;
    let mut first = [0u8; HELLO_LEN];
    let read = tokio::time::timeout(setup, stream.recv.read_exact(&mut first)).await;
    let hello = match (read, session_wire::decode(&first)) {
        (Ok(Ok(())), Ok(Some((Record::Hello(hello), _)))) => hello,
        _ => {
            ctx.metrics.count_drop(DropReason::Malformed);
            return stream.abandon();
        }
    };
    super::egress::take(ctx, header, hello, stream).await;
}

/// The raw stream of an older ingress (`StreamOpen`, no session records):
/// connect to its target and join the two, as before sessions existed.
async fn deliver_raw(
    ctx: &Context,
    header: Header,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
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
