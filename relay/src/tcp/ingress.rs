//! A TCP service's ingress: accepts classroom connections and starts a
//! session for each toward the service's egress relay (its first stream
//! opened here; the session driver opens the next ones if its path breaks).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use daemon::OnFailure;
use relay_core::session::{Attempt, CloseReason, End, Role, Session};
use relay_core::wire::{Kind, INITIAL_TTL};
use relay_core::{DropReason, Header};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::context::Context;
use crate::metrics::Metrics;
use crate::tcp::session::{drive, header_for, open, Paths, SessionEnd};
use crate::tcp::splice::reset_tcp;

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
    let open_here = service.open.fetch_add(1, Ordering::Relaxed);
    let _here = OpenHere(service.open.clone());
    if open_here >= ctx.admission.max_flows() {
        ctx.metrics.count_drop(DropReason::FlowLimit);
        return reset_tcp(stream);
    }
    let _ = stream.set_nodelay(true);
    Metrics::add(&ctx.metrics.tcp_sessions, 1);
    let live = ctx.live();
    // The session id, with this node's key, names the session fleet-wide; the
    // random token keeps a restarted ingress that reuses an id from taking
    // over a session the egress still holds.
    let template = Header {
        kind: Kind::SessionOpen,
        ttl: INITIAL_TTL,
        flags: 0,
        dst: service.dst,
        src: ctx.me,
        service: service.key,
        flow: NEXT_TCP_FLOW.fetch_add(1, Ordering::Relaxed),
        seq: 0,
        timestamp_us: 0,
    };
    let mut core = Session::new(
        Role::Ingress,
        rand::random::<u64>(),
        live.cfg.tuning.tcp_session.clone(),
    );
    let first = Attempt {
        attempt: 1,
        opens: true,
    };
    let path = match open(ctx.clone(), header_for(&template, first)).await {
        Ok(path) => path,
        Err(reason) => {
            ctx.metrics.count_drop(reason);
            debug!(service = %service.name, %client, ?reason, "cannot open a path for tcp session");
            return reset_tcp(stream);
        }
    };
    core.begin_attempt();
    let counters = live.services.get(service.key);
    let _open = counters.as_deref().map(|c| c.open_session());
    let end = SessionEnd {
        core,
        tcp: stream,
        paths: Paths::Open(template),
        far: service.dst,
        idle: live.cfg.tuning.tcp_idle_timeout,
    };
    let outcome = drive(ctx.clone(), end, Some(path)).await;
    debug!(service = %service.name, %client, end = ?outcome.end, "tcp session ended");
    if matches!(
        outcome.end,
        End::Closed(CloseReason::Idle) | End::PeerClosed(CloseReason::Idle)
    ) {
        Metrics::add(&ctx.metrics.tcp_idle_closed, 1);
    }
    if let Some(c) = counters.as_deref() {
        let (from_client, to_client) = outcome.carried;
        c.received(0, from_client);
        c.delivered(0, to_client);
    }
}
