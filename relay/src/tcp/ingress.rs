//! A TCP service's ingress: accepts classroom connections and opens a stream
//! through the overlay for each, toward the service's egress relay.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use daemon::OnFailure;
use relay_core::wire::{Kind, INITIAL_TTL};
use relay_core::{DropReason, Header};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::context::Context;
use crate::datapath::socket::now_us;
use crate::metrics::Metrics;
use crate::tcp::splice::{reset_tcp, splice, End};

/// Stream flow ids, unique per ingress relay (apart from UDP flow ids).
static NEXT_TCP_FLOW: AtomicU32 = AtomicU32::new(1);

/// A TCP service whose ingress is this node, as it was when it was bound.
#[derive(Debug, Clone)]
pub struct TcpIngress {
    pub name: String,
    pub key: u32,
    pub allow: Vec<ipnet::IpNet>,
    /// The egress node's wire key. Node indexes shift when a reload reorders
    /// the topology, and a running listener must not follow a stale index.
    pub dst: u32,
    /// Sessions open at this ingress, held to the service's flow limit.
    pub open: Arc<AtomicUsize>,
}

/// Counts a session as open at its ingress until dropped.
struct OpenHere(Arc<AtomicUsize>);

impl Drop for OpenHere {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TcpIngress {
    pub fn new(service: &topology::Service, dst: u32) -> TcpIngress {
        TcpIngress {
            name: service.name.clone(),
            key: service.key,
            allow: service.allow.clone(),
            dst,
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn allowed(&self, client: &SocketAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&client.ip()))
    }
}

/// Accepts connections for one service until `stop`.
pub async fn run(
    ctx: Arc<Context>,
    service: TcpIngress,
    listener: TcpListener,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, client)) => ctx.tasks.spawn(
                "tcp session",
                OnFailure::Log,
                session(ctx.clone(), service.clone(), stream, client),
            ),
            Err(e) => {
                // Out of file descriptors and the like: back off a little, keep serving.
                warn!(service = %service.name, "accept failed: {e}");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
                }
            }
        }
    }
}

async fn session(ctx: Arc<Context>, service: TcpIngress, stream: TcpStream, client: SocketAddr) {
    if !service.allowed(&client) {
        ctx.metrics.count_drop(DropReason::NotAllowed);
        return reset_tcp(stream);
    }
    // Each session is a flow of its service: beyond the limit it is refused.
    let open = service.open.fetch_add(1, Ordering::Relaxed);
    let _here = OpenHere(service.open.clone());
    if open >= ctx.admission.max_flows() {
        ctx.metrics.count_drop(DropReason::FlowLimit);
        return reset_tcp(stream);
    }
    let _ = stream.set_nodelay(true);
    Metrics::add(&ctx.metrics.tcp_sessions, 1);
    let header = Header {
        kind: Kind::StreamOpen,
        ttl: INITIAL_TTL,
        flags: 0,
        dst: service.dst,
        src: ctx.me,
        service: service.key,
        flow: NEXT_TCP_FLOW.fetch_add(1, Ordering::Relaxed),
        seq: 0,
        timestamp_us: now_us(),
    };
    let (send, recv) = match super::open_next_hop(&ctx, header).await {
        Ok(s) => s,
        Err(reason) => {
            ctx.metrics.count_drop(reason);
            debug!(service = %service.name, %client, ?reason, "cannot open a path for tcp session");
            return reset_tcp(stream);
        }
    };
    let live = ctx.live();
    let counters = live.services.get(service.key);
    let idle = live.cfg.tuning.tcp_idle_timeout;
    let _open = counters.as_deref().map(|c| c.open_session());
    tokio::select! {
        _ = ctx.cancel.cancelled() => {}
        r = splice(End::Tcp(stream), End::Quic(send, recv), idle) => {
            debug!(service = %service.name, %client, "tcp session ended: {r:?}");
            if r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::TimedOut) {
                Metrics::add(&ctx.metrics.tcp_idle_closed, 1);
            }
            if let (Ok(carried), Some(c)) = (r, counters.as_deref()) {
                c.received(0, carried.a_to_b);
                c.delivered(0, carried.b_to_a);
            }
        }
    }
}
