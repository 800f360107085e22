//! TCP services over QUIC streams: the ingress listener, the transit hop and the
//! egress connect. Each TCP connection is one QUIC stream per hop, opened with a
//! `StreamOpen` overlay header and then carrying raw bytes both ways.
//! Sessions open now and the bytes of finished ones are counted per service
//! where the session meets TCP (ingress and egress).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use topology::{Protocol, Service};

use crate::fwd::{Decision, DropReason};
use crate::metrics::Metrics;
use crate::node::Shared;
use crate::splice::{refuse, reset_tcp, splice, End, STREAM_ABORTED, STREAM_REFUSED};
use crate::udp::now_us;
use crate::wire::{Header, Kind, HEADER_LEN, INITIAL_TTL};

/// Stream flow ids, unique per ingress relay (distinct from UDP flow ids' table).
static NEXT_TCP_FLOW: AtomicU32 = AtomicU32::new(1);

/// Accepts classroom TCP connections for one service until shutdown.
pub async fn run_ingress(shared: Arc<Shared>, service: Service, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, client)) => {
                tokio::spawn(ingress_session(
                    shared.clone(),
                    service.clone(),
                    stream,
                    client,
                ));
            }
            Err(e) => {
                // Out of file descriptors and the like: back off a little, keep serving.
                warn!(service = %service.name, "accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn ingress_session(
    shared: Arc<Shared>,
    service: Service,
    stream: TcpStream,
    client: SocketAddr,
) {
    if !service.allow.is_empty() && !service.allow.iter().any(|n| n.contains(&client.ip())) {
        shared.metrics.drop(DropReason::NotAllowed);
        return reset_tcp(stream);
    }
    let _ = stream.set_nodelay(true);
    Metrics::add(&shared.metrics.tcp_sessions, 1);
    let header = Header {
        kind: Kind::StreamOpen,
        ttl: INITIAL_TTL,
        flags: 0,
        dst: shared.cfg().topology.node_key(service.egress_node),
        src: shared.me,
        service: service.key,
        flow: NEXT_TCP_FLOW.fetch_add(1, Ordering::Relaxed),
        seq: 0,
        timestamp_us: now_us(),
    };
    let table = shared.table();
    let opened = match shared.decide_with(|up| table.next_hop(header.dst, header.ttl, up)) {
        (Decision::Forward { ttl, .. }, Some(conn)) => open_on(&shared, conn, header, ttl).await,
        (Decision::Drop(reason), _) => Err(reason),
        (Decision::Forward { .. }, None) => Err(DropReason::PeerDown),
        (Decision::Deliver, _) => Err(DropReason::NoRoute),
    };
    let (send, recv) = match opened {
        Ok(s) => s,
        Err(reason) => {
            shared.metrics.drop(reason);
            debug!(service = %service.name, %client, ?reason, "cannot open a path for tcp session");
            return reset_tcp(stream);
        }
    };
    let cancel = shared.cancel.clone();
    let counters = shared.services().get(service.key);
    let _open = counters.as_deref().map(|c| c.open_session());
    tokio::select! {
        _ = cancel.cancelled() => {}
        r = splice(End::Tcp(stream), End::Quic(send, recv)) => {
            debug!(service = %service.name, %client, "tcp session ended: {r:?}");
            if let (Ok(carried), Some(c)) = (r, counters.as_deref()) {
                c.received(0, carried.a_to_b);
                c.delivered(0, carried.b_to_a);
            }
        }
    }
}

/// Opens a stream on `conn` (the next hop a forwarding decision picked) and sends
/// the header with the decided TTL.
async fn open_on(
    shared: &Arc<Shared>,
    conn: quinn::Connection,
    mut header: Header,
    ttl: u8,
) -> Result<(quinn::SendStream, quinn::RecvStream), DropReason> {
    header.ttl = ttl;
    let setup = shared.cfg().tuning.setup_timeout;
    let open = async {
        let (mut send, recv) = conn.open_bi().await.map_err(|_| DropReason::PeerDown)?;
        send.write_all(&header.encode())
            .await
            .map_err(|_| DropReason::SendFailed)?;
        Ok((send, recv))
    };
    tokio::time::timeout(setup, open)
        .await
        .map_err(|_| DropReason::PeerDown)?
}

/// Handles a stream a peer opened: deliver to the local target, or pass it on.
pub async fn relay_stream(
    shared: Arc<Shared>,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let setup = shared.cfg().tuning.setup_timeout;
    let mut head = [0u8; HEADER_LEN];
    match tokio::time::timeout(setup, recv.read_exact(&mut head)).await {
        Ok(Ok(_)) => {}
        _ => {
            shared.metrics.drop(DropReason::Malformed);
            return refuse(send, recv, STREAM_ABORTED);
        }
    }
    let header = match Header::decode(&head) {
        Ok((h, _)) if h.kind == Kind::StreamOpen => h,
        _ => {
            shared.metrics.drop(DropReason::Malformed);
            return refuse(send, recv, STREAM_ABORTED);
        }
    };
    Metrics::add(&shared.metrics.streams_relayed, 1);
    let table = shared.table();
    let cancel = shared.cancel.clone();
    match shared.decide_with(|up| table.decide(&header, up)) {
        (Decision::Deliver, _) => {
            let target = match shared.cfg().topology.service_by_key(header.service) {
                Some(s) if s.protocol == Protocol::Tcp && s.egress_node == shared.cfg().node => {
                    s.target
                }
                _ => {
                    shared.metrics.drop(DropReason::UnknownFlow);
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
            let counters = shared.services().get(header.service);
            let _open = counters.as_deref().map(|c| c.open_session());
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = splice(End::Quic(send, recv), End::Tcp(tcp)) => {
                    debug!(%target, "egress stream ended: {r:?}");
                    if let (Ok(carried), Some(c)) = (r, counters.as_deref()) {
                        c.delivered(0, carried.a_to_b);
                        c.received(0, carried.b_to_a);
                    }
                }
            }
        }
        (Decision::Forward { ttl, .. }, Some(conn)) => {
            match open_on(&shared, conn, header, ttl).await {
                Ok((next_send, next_recv)) => {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        r = splice(End::Quic(send, recv), End::Quic(next_send, next_recv)) => {
                            debug!("transit stream ended: {r:?}");
                        }
                    }
                }
                Err(reason) => {
                    shared.metrics.drop(reason);
                    refuse(send, recv, STREAM_ABORTED);
                }
            }
        }
        (Decision::Forward { .. }, None) => {
            shared.metrics.drop(DropReason::PeerDown);
            refuse(send, recv, STREAM_ABORTED);
        }
        (Decision::Drop(reason), _) => {
            shared.metrics.drop(reason);
            refuse(send, recv, STREAM_ABORTED);
        }
    }
}
