//! The egress of UDP services: one socket per flow toward the service's target,
//! so replies find their way back to the right sender, and a reader per flow
//! that carries the target's replies back to the flow's ingress. A flow's
//! reader is owned by its table entry and ends when the flow is forgotten.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use daemon::throttle::Throttle;
use daemon::{OwnedTask, Spawner};
use relay_core::flows::{EgressFlows, EgressKey};
use relay_core::sequence::{SeqWindow, Verdict};
use relay_core::wire::{Kind, FLAG_PROTECTED, FLAG_REPLY, INITIAL_TTL};
use relay_core::{DropReason, Header};
use tokio_util::sync::CancellationToken;
use topology::Protocol;
use tracing::{debug, warn};

use crate::admission::Admission;
use crate::config::RelayConfig;
use crate::datapath::forwarder::Forwarder;
use crate::datapath::socket::{core_now, now_us, SplitSocket};
use crate::metrics::{Metrics, ServiceCounters, ServiceMetrics};

/// One flow at its egress.
#[derive(Debug)]
struct Flow {
    socket: Arc<SplitSocket>,
    counters: Option<Arc<ServiceCounters>>,
    /// The flow's sequence numbers as they arrive.
    window: SeqWindow,
    _reader: OwnedTask,
}

static SOCKET_WARNING: Throttle = Throttle::new(Duration::from_secs(10));

/// Flows whose egress is this node.
#[derive(Debug)]
pub struct EgressTable {
    flows: Mutex<EgressFlows<Flow>>,
    forwarder: Arc<Forwarder>,
    metrics: Arc<Metrics>,
    admission: Arc<Admission>,
    tasks: Spawner,
    cancel: CancellationToken,
}

fn lock(m: &Mutex<EgressFlows<Flow>>) -> MutexGuard<'_, EgressFlows<Flow>> {
    // Every critical section is a few map operations; a poisoned lock is consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EgressTable {
    pub fn new(
        forwarder: Arc<Forwarder>,
        metrics: Arc<Metrics>,
        admission: Arc<Admission>,
        tasks: Spawner,
        cancel: CancellationToken,
    ) -> EgressTable {
        EgressTable {
            flows: Mutex::new(EgressFlows::default()),
            forwarder,
            metrics,
            admission,
            tasks,
            cancel,
        }
    }

    pub fn flow_count(&self) -> usize {
        lock(&self.flows).len()
    }

    /// The socket inode of each flow, with its service's wire key.
    pub fn socket_inodes(&self) -> Vec<(u32, u64)> {
        lock(&self.flows)
            .iter()
            .filter_map(|(&(_, service, _), f)| Some((service, f.socket.inode()?)))
            .collect()
    }

    /// Flows of one service (by wire key) whose egress is this node.
    pub fn flow_count_of(&self, service: u32) -> usize {
        lock(&self.flows).count_of(service)
    }

    /// Forgets every flow of a service (a reload removed or changed it): their
    /// sockets close and their readers end.
    pub fn forget_service(&self, service: u32) {
        let gone = lock(&self.flows).forget_service(service);
        drop(gone);
    }

    /// Forgets flows idle since before `cutoff`; returns how many. Datagrams
    /// they were still missing count as lost.
    pub fn expire(&self, cutoff: std::time::Instant) -> usize {
        let gone = lock(&self.flows).expire(cutoff);
        for f in &gone {
            if let Some(c) = &f.counters {
                c.seq_lost.fetch_add(f.window.unseen(), Ordering::Relaxed);
            }
        }
        gone.len()
    }

    fn touch(&self, key: EgressKey) {
        let _ = lock(&self.flows).get(key, core_now());
    }

    /// Sends a datagram that reached its egress to the service target, from the
    /// flow's own socket (opened on the flow's first datagram: only then are the
    /// config in force and its service counters looked at). Of a protected
    /// datagram's two copies, only the first goes on.
    pub fn deliver(
        self: &Arc<Self>,
        header: &Header,
        payload: &Bytes,
        live: (&RelayConfig, &ServiceMetrics),
    ) {
        let key = (header.src, header.service, header.flow);
        let existing = lock(&self.flows).get(key, core_now()).map(|f| {
            (
                f.socket.clone(),
                f.counters.clone(),
                f.window.arrive(header.seq),
            )
        });
        let Some((socket, counters, verdict)) = existing.or_else(|| self.open(header, key, live))
        else {
            return;
        };
        if let Some(c) = &counters {
            c.arrived(header, verdict, now_us());
        }
        if header.flags & FLAG_PROTECTED != 0 && !verdict.arrival.is_first() {
            return;
        }
        match socket.send(payload) {
            Ok(_) => {
                self.metrics.count_delivered(payload.len());
                if let Some(c) = &counters {
                    c.delivered(1, payload.len() as u64);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.metrics.count_drop(DropReason::QueueFull)
            }
            Err(_) => self.metrics.count_drop(DropReason::SendFailed),
        }
    }

    /// Opens flow `key` for its first datagram: checks the service ends here
    /// and the flow limit, opens the flow's socket and starts its reply reader.
    /// `None` if it cannot, counted.
    fn open(
        self: &Arc<Self>,
        header: &Header,
        key: EgressKey,
        (cfg, services): (&RelayConfig, &ServiceMetrics),
    ) -> Option<(Arc<SplitSocket>, Option<Arc<ServiceCounters>>, Verdict)> {
        let service = match cfg.topology.service_by_key(header.service) {
            Some(s) if s.protocol == Protocol::Udp && s.egress_node == cfg.node => s,
            _ => {
                self.metrics.count_drop(DropReason::UnknownFlow);
                return None;
            }
        };
        let counters = services.get(service.key);
        let mut flows = lock(&self.flows);
        if let Some(f) = flows.get(key, core_now()) {
            // Another link's actor opened it meanwhile.
            return Some((
                f.socket.clone(),
                f.counters.clone(),
                f.window.arrive(header.seq),
            ));
        }
        if !flows.has_room(service.key, self.admission.max_flows()) {
            self.metrics.count_drop(DropReason::FlowLimit);
            return None;
        }
        let socket = match connected_socket(service.target) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                if let Some(held) = SOCKET_WARNING.allow() {
                    warn!(target = %service.target, repeats = held, "cannot open flow socket: {e}");
                }
                self.metrics.count_drop(DropReason::SendFailed);
                return None;
            }
        };
        let reply = Header {
            kind: Kind::Media,
            ttl: INITIAL_TTL,
            flags: FLAG_REPLY,
            dst: header.src,
            src: self.forwarder.me,
            service: header.service,
            flow: header.flow,
            seq: 0,
            timestamp_us: 0,
        };
        let reader = self.tasks.spawn_owned(
            "egress flow reader",
            read_replies(
                Arc::downgrade(self),
                key,
                socket.clone(),
                reply,
                service.protect,
                counters.clone(),
                self.cancel.clone(),
            ),
        );
        let mut window = SeqWindow::default();
        let verdict = window.arrive(header.seq);
        flows.insert(
            key,
            Flow {
                socket: socket.clone(),
                counters: counters.clone(),
                window,
                _reader: reader,
            },
            core_now(),
        );
        debug!(service = %service.name, flow = header.flow, "new egress flow");
        Some((socket, counters, verdict))
    }
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

thread_local! {
    /// Where egress flows read replies into: one per runtime thread, sized for
    /// the largest UDP datagram.
    static REPLY_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0u8; 65_535]);
}

/// Carries the target's replies for one flow back toward its ingress.
async fn read_replies(
    table: Weak<EgressTable>,
    key: EgressKey,
    socket: Arc<SplitSocket>,
    mut reply: Header,
    protect: bool,
    counters: Option<Arc<ServiceCounters>>,
    cancel: CancellationToken,
) {
    loop {
        let readable = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = socket.recv.readable() => r,
        };
        if let Err(e) = readable {
            debug!("flow socket error: {e}");
            return;
        }
        let Some(table) = table.upgrade() else { return };
        // Drain what is queued into this thread's buffer: a flow owns no
        // buffer of its own while it waits (35,000 idle flows, not 35,000 x 64 KiB).
        let mut any = false;
        loop {
            let received = REPLY_BUFFER.with(|buf| {
                let mut buf = buf.borrow_mut();
                let n = socket.recv.try_recv(&mut buf)?;
                if let Some(c) = &counters {
                    c.received(1, n as u64);
                }
                reply.timestamp_us = now_us();
                if !protect {
                    table.forwarder.originate(reply, &buf[..n]);
                } else if !table.forwarder.originate_protected(reply, &buf[..n]) {
                    if let Some(c) = &counters {
                        c.single_path_sends.fetch_add(1, Ordering::Relaxed);
                    }
                }
                reply.seq = reply.seq.wrapping_add(1);
                Ok::<_, std::io::Error>(())
            });
            match received {
                Ok(()) => any = true,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // The target is not listening (ICMP port unreachable): keep the flow.
                Err(e) => debug!("flow socket receive error: {e}"),
            }
        }
        if any {
            table.touch(key);
        }
    }
}
