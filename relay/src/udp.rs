//! UDP services: the ingress (a listening socket; each source address is a flow)
//! and the egress (one socket per flow toward the target, so replies find their
//! way back to the right sender). Flows expire when idle. Each service's
//! datagrams and bytes each way are counted in `Shared::services`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use topology::{Protocol, Service};

use crate::fwd::DropReason;
use crate::metrics::ServiceCounters;
use crate::node::Shared;
use crate::wire::{Header, Kind, FLAG_REPLY, INITIAL_TTL};

/// Microseconds since the Unix epoch, for the header's send timestamp.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a few map operations that cannot leave the
    // map half-updated, so a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Aborts the task when dropped, so a forgotten flow takes its reader with it.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------- ingress

#[derive(Debug)]
struct IngressFlow {
    client: SocketAddr,
    last_seen: Instant,
    seq: u32,
}

#[derive(Debug, Default)]
struct IngressFlows {
    by_client: HashMap<SocketAddr, u32>,
    by_id: HashMap<u32, IngressFlow>,
    next_id: u32,
}

/// A non-blocking UDP socket received from through tokio and sent on directly.
/// Sending through tokio's `try_send` fails with WouldBlock until the reactor
/// has reported the socket writable once, which drops the first packet of
/// every new flow; a direct send's WouldBlock means a really full buffer. The
/// direct send borrows the same descriptor (no duplicate: an egress flow costs
/// one open file, not two).
#[derive(Debug)]
pub struct SplitSocket {
    pub recv: UdpSocket,
}

impl SplitSocket {
    pub fn new(socket: std::net::UdpSocket) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(SplitSocket {
            recv: UdpSocket::from_std(socket)?,
        })
    }

    /// Sends now, or fails with WouldBlock if the send buffer is full.
    pub fn send_to(&self, payload: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        socket2::SockRef::from(&self.recv).send_to(payload, &to.into())
    }

    /// [`SplitSocket::send_to`] on a connected socket.
    pub fn send(&self, payload: &[u8]) -> std::io::Result<usize> {
        socket2::SockRef::from(&self.recv).send(payload)
    }
}

/// A UDP service whose ingress is this node.
#[derive(Debug)]
pub struct UdpIngress {
    service: Service,
    dst: u32,
    socket: SplitSocket,
    flows: Mutex<IngressFlows>,
    /// The service's counters, looked up once rather than per datagram.
    counters: Option<Arc<ServiceCounters>>,
}

impl UdpIngress {
    pub fn new(
        service: Service,
        dst: u32,
        socket: SplitSocket,
        counters: Option<Arc<ServiceCounters>>,
    ) -> Self {
        UdpIngress {
            service,
            dst,
            socket,
            flows: Mutex::new(IngressFlows::default()),
            counters,
        }
    }

    pub fn flow_count(&self) -> usize {
        lock(&self.flows).by_id.len()
    }

    pub fn service_key(&self) -> u32 {
        self.service.key
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.recv.local_addr()
    }

    fn allowed(&self, src: IpAddr) -> bool {
        self.service.allow.is_empty() || self.service.allow.iter().any(|net| net.contains(&src))
    }

    /// The flow id and next sequence number for a datagram from `client`.
    fn flow_for(
        &self,
        client: SocketAddr,
        max: impl FnOnce() -> usize,
        draining: bool,
    ) -> Result<(u32, u32), DropReason> {
        let mut flows = lock(&self.flows);
        let id = match flows.by_client.get(&client) {
            Some(id) => *id,
            None => {
                if draining {
                    return Err(DropReason::Draining);
                }
                if flows.by_id.len() >= max() {
                    return Err(DropReason::FlowLimit);
                }
                let mut id = flows.next_id;
                while flows.by_id.contains_key(&id) {
                    id = id.wrapping_add(1);
                }
                flows.next_id = id.wrapping_add(1);
                flows.by_client.insert(client, id);
                flows.by_id.insert(
                    id,
                    IngressFlow {
                        client,
                        last_seen: Instant::now(),
                        seq: 0,
                    },
                );
                debug!(service = %self.service.name, %client, flow = id, "new udp flow");
                id
            }
        };
        let flow = flows.by_id.get_mut(&id).ok_or(DropReason::UnknownFlow)?;
        flow.last_seen = Instant::now();
        let seq = flow.seq;
        flow.seq = flow.seq.wrapping_add(1);
        Ok((id, seq))
    }

    /// Forgets flows idle since before `cutoff`; returns how many.
    fn expire(&self, cutoff: Instant) -> usize {
        let mut flows = lock(&self.flows);
        let stale: Vec<u32> = flows
            .by_id
            .iter()
            .filter(|(_, f)| f.last_seen < cutoff)
            .map(|(id, _)| *id)
            .collect();
        for id in &stale {
            if let Some(f) = flows.by_id.remove(id) {
                flows.by_client.remove(&f.client);
            }
        }
        stale.len()
    }
}

/// Reads the ingress socket until shutdown, sending each datagram into the overlay.
pub async fn run_ingress(shared: Arc<Shared>, ingress: Arc<UdpIngress>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        let received = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            r = ingress.socket.recv.recv_from(&mut buf) => r,
        };
        let (n, client) = match received {
            Ok(r) => r,
            Err(e) => {
                // e.g. an ICMP error from an earlier reply; the socket is still fine.
                debug!(service = %ingress.service.name, "udp ingress receive error: {e}");
                continue;
            }
        };
        if !ingress.allowed(client.ip()) {
            shared.metrics.drop(DropReason::NotAllowed);
            continue;
        }
        // Read for each new flow, so a reload's new limit applies at once.
        let max = || shared.cfg().tuning.max_flows_per_service;
        let (flow, seq) = match ingress.flow_for(client, max, shared.is_draining()) {
            Ok(f) => f,
            Err(reason) => {
                shared.metrics.drop(reason);
                continue;
            }
        };
        let header = Header {
            kind: Kind::Media,
            ttl: INITIAL_TTL,
            flags: 0,
            dst: ingress.dst,
            src: shared.me,
            service: ingress.service.key,
            flow,
            seq,
            timestamp_us: now_us(),
        };
        if let Some(c) = &ingress.counters {
            c.received(1, n as u64);
        }
        shared.originate(header, &buf[..n]);
    }
}

/// Delivers a reply that came back through the overlay to the flow's client.
pub fn deliver_reply(shared: &Arc<Shared>, header: &Header, payload: &[u8]) {
    let Some(ingress) = shared.udp_ingress().get(&header.service).cloned() else {
        return shared.metrics.drop(DropReason::UnknownFlow);
    };
    let client = {
        let mut flows = lock(&ingress.flows);
        match flows.by_id.get_mut(&header.flow) {
            Some(f) => {
                f.last_seen = Instant::now();
                f.client
            }
            None => return shared.metrics.drop(DropReason::UnknownFlow),
        }
    };
    match ingress.socket.send_to(payload, client) {
        Ok(_) => {
            shared.count_delivered(payload.len());
            if let Some(c) = &ingress.counters {
                c.delivered(1, payload.len() as u64);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            shared.metrics.drop(DropReason::QueueFull)
        }
        Err(_) => shared.metrics.drop(DropReason::SendFailed),
    }
}

// ---------------------------------------------------------------- egress

#[derive(Debug)]
struct EgressFlow {
    socket: Arc<SplitSocket>,
    last_seen: Arc<Mutex<Instant>>,
    counters: Option<Arc<ServiceCounters>>,
    _reader: AbortOnDrop,
}

/// Flows whose egress is this node, keyed by (ingress node, service, flow id):
/// flow ids are numbered per service at the ingress, so all three are needed.
#[derive(Debug, Default)]
pub struct EgressFlows {
    flows: Mutex<HashMap<(u32, u32, u32), EgressFlow>>,
    per_service: Mutex<HashMap<u32, usize>>,
}

impl EgressFlows {
    pub fn flow_count(&self) -> usize {
        lock(&self.flows).len()
    }

    /// Flows of one service (by wire key) whose egress is this node.
    pub fn flow_count_of(&self, service: u32) -> usize {
        lock(&self.per_service).get(&service).copied().unwrap_or(0)
    }

    /// Forgets every flow of a service (a reload removed or changed it): their
    /// sockets close and their reader tasks end.
    pub fn forget_service(&self, service: u32) {
        lock(&self.flows).retain(|(_, s, _), _| *s != service);
        lock(&self.per_service).remove(&service);
    }

    fn expire(&self, cutoff: Instant) -> usize {
        let mut flows = lock(&self.flows);
        let stale: Vec<(u32, u32, u32)> = flows
            .iter()
            .filter(|(_, f)| *lock(&f.last_seen) < cutoff)
            .map(|(k, _)| *k)
            .collect();
        let mut per_service = lock(&self.per_service);
        for key in &stale {
            // Dropping the flow aborts its reader task and closes its socket.
            flows.remove(key);
        }
        per_service.clear();
        for (_, service, _) in flows.keys() {
            *per_service.entry(*service).or_default() += 1;
        }
        stale.len()
    }
}

/// What sending on an egress flow needs: its socket and its service's counters.
type FlowSend = (Arc<SplitSocket>, Option<Arc<ServiceCounters>>);

/// Sends a datagram that reached its egress to the service target, from the
/// flow's own socket (created on the flow's first datagram).
pub fn deliver_to_target(shared: &Arc<Shared>, header: &Header, payload: &[u8]) {
    let key = (header.src, header.service, header.flow);
    let existing = lock(&shared.udp_egress.flows).get(&key).map(|f| {
        *lock(&f.last_seen) = Instant::now();
        (f.socket.clone(), f.counters.clone())
    });
    let Some((socket, counters)) = existing.or_else(|| open_egress_flow(shared, header, key))
    else {
        return;
    };
    match socket.send(payload) {
        Ok(_) => {
            shared.count_delivered(payload.len());
            if let Some(c) = &counters {
                c.delivered(1, payload.len() as u64);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            shared.metrics.drop(DropReason::QueueFull)
        }
        Err(_) => shared.metrics.drop(DropReason::SendFailed),
    }
}

/// Opens the egress flow `key` for its first datagram: checks the service
/// ends here (the config is read only for new flows) and the flow limit, opens
/// the flow's socket and starts its reply reader. `None` if it cannot, counted.
fn open_egress_flow(
    shared: &Arc<Shared>,
    header: &Header,
    key: (u32, u32, u32),
) -> Option<FlowSend> {
    let cfg = shared.cfg();
    let service = match cfg.topology.service_by_key(header.service) {
        Some(s) if s.protocol == Protocol::Udp && s.egress_node == cfg.node => s,
        _ => {
            shared.metrics.drop(DropReason::UnknownFlow);
            return None;
        }
    };
    let mut flows = lock(&shared.udp_egress.flows);
    if let Some(f) = flows.get(&key) {
        // Another thread opened it meanwhile.
        return Some((f.socket.clone(), f.counters.clone()));
    }
    let mut per_service = lock(&shared.udp_egress.per_service);
    let count = per_service.entry(service.key).or_default();
    if *count >= cfg.tuning.max_flows_per_service {
        shared.metrics.drop(DropReason::FlowLimit);
        return None;
    }
    let socket = match connected_socket(service.target) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            warn!(service = %service.name, target = %service.target, "cannot open flow socket: {e}");
            shared.metrics.drop(DropReason::SendFailed);
            return None;
        }
    };
    *count += 1;
    let counters = shared.services().get(service.key);
    let last_seen = Arc::new(Mutex::new(Instant::now()));
    let reply = Header {
        kind: Kind::Media,
        ttl: INITIAL_TTL,
        flags: FLAG_REPLY,
        dst: header.src,
        src: shared.me,
        service: header.service,
        flow: header.flow,
        seq: 0,
        timestamp_us: 0,
    };
    let reader = tokio::spawn(read_replies(
        shared.clone(),
        socket.clone(),
        reply,
        last_seen.clone(),
        counters.clone(),
    ));
    flows.insert(
        key,
        EgressFlow {
            socket: socket.clone(),
            last_seen,
            counters: counters.clone(),
            _reader: AbortOnDrop(reader),
        },
    );
    debug!(service = %service.name, flow = header.flow, "new egress flow");
    Some((socket, counters))
}

/// A UDP socket on an ephemeral port, connected to `target`.
fn connected_socket(target: SocketAddr) -> std::io::Result<SplitSocket> {
    let local: SocketAddr = match target {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = std::net::UdpSocket::bind(local)?;
    socket.connect(target)?;
    SplitSocket::new(socket)
}

/// Carries the target's replies for one flow back toward its ingress.
async fn read_replies(
    shared: Arc<Shared>,
    socket: Arc<SplitSocket>,
    mut reply: Header,
    last_seen: Arc<Mutex<Instant>>,
    counters: Option<Arc<ServiceCounters>>,
) {
    loop {
        let readable = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            r = socket.recv.readable() => r,
        };
        if let Err(e) = readable {
            debug!("flow socket error: {e}");
            return;
        }
        // Drain what is queued into this thread's buffer: a flow owns no
        // buffer of its own while it waits (35,000 idle flows, not 35,000 x 64 KiB).
        loop {
            let received = REPLY_BUFFER.with(|buf| {
                let mut buf = buf.borrow_mut();
                let n = socket.recv.try_recv(&mut buf)?;
                *lock(&last_seen) = Instant::now();
                if let Some(c) = &counters {
                    c.received(1, n as u64);
                }
                reply.timestamp_us = now_us();
                shared.originate(reply, &buf[..n]);
                reply.seq = reply.seq.wrapping_add(1);
                Ok::<_, std::io::Error>(())
            });
            match received {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // The target is not listening (ICMP port unreachable): keep the flow.
                Err(e) => debug!("flow socket receive error: {e}"),
            }
        }
    }
}

thread_local! {
    /// Where egress flows read replies into: one per runtime thread, sized for
    /// the largest UDP datagram.
    static REPLY_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 65_535]);
}

/// Expires idle flows until shutdown.
pub async fn expire_loop(shared: Arc<Shared>) {
    loop {
        // Read each round, so a reload's new timeout applies.
        let idle = shared.cfg().tuning.flow_idle_timeout;
        let every = (idle / 4).clamp(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_secs(1),
        );
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(cutoff) = Instant::now().checked_sub(idle) else {
            continue;
        };
        let mut expired = shared.udp_egress.expire(cutoff);
        for ingress in shared.udp_ingress().values() {
            expired += ingress.expire(cutoff);
        }
        if expired > 0 {
            debug!(expired, "idle udp flows expired");
        }
    }
}
