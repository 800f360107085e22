//! The async driver of the emulator: a loopback UDP proxy that runs both directions of a
//! link through two [`Shaper`]s, and the [`EmulatedLink`] that owns its single task.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::handle::{DirectionStats, LinkHandle, LinkStats};
use crate::params::LinkParams;
use crate::shaper::{Shaper, Verdict};

/// Most distinct client addresses one front serves; datagrams from more are dropped.
pub const MAX_CLIENTS_PER_FRONT: usize = 64;

/// Most datagrams read in one wake-up of the task before it looks at its timer.
const READ_BATCH: usize = 64;

/// Receive buffer: the largest UDP payload, so no datagram is ever truncated.
const RECV_BUF: usize = 65_535;

/// Mixed into the seed of the B→A shaper so the two directions draw different numbers.
const REVERSE_SEED_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// A running emulated link between the UDP endpoints `a` and `b`.
///
/// Dropping it (or [`EmulatedLink::shutdown`]) stops its task and closes every socket.
#[derive(Debug)]
pub struct EmulatedLink {
    handle: LinkHandle,
    front_for_a: SocketAddr,
    front_for_b: SocketAddr,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl EmulatedLink {
    /// Binds the two fronts on 127.0.0.1 and starts forwarding. `a` and `b` must be
    /// loopback addresses with a port. Directions draw from RNGs seeded from `seed`.
    pub async fn start(
        a: SocketAddr,
        b: SocketAddr,
        params: LinkParams,
        seed: u64,
    ) -> io::Result<EmulatedLink> {
        params
            .validate()
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))?;
        for target in [a, b] {
            if !target.ip().is_loopback() || target.port() == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "emulated link endpoint {target} must be a loopback address with a port"
                    ),
                ));
            }
        }
        let front_a = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let front_b = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let front_for_a = front_a.local_addr()?;
        let front_for_b = front_b.local_addr()?;
        let handle = LinkHandle::new(params);
        let cancel = CancellationToken::new();
        let driver = Driver {
            cut_epoch: handle.control().cut_epoch,
            handle: handle.clone(),
            fronts: [Front::new(front_a, b), Front::new(front_b, a)],
            shapers: [Shaper::new(seed), Shaper::new(seed ^ REVERSE_SEED_MIX)],
            extra: [Extra::default(); 2],
            cursor: 0,
            buf: vec![0; RECV_BUF],
        };
        let span = tracing::info_span!("emulated_link", %a, %b, %front_for_a, %front_for_b);
        let task = tokio::spawn(driver.run(cancel.clone()).instrument(span));
        Ok(EmulatedLink {
            handle,
            front_for_a,
            front_for_b,
            cancel,
            task: Some(task),
        })
    }

    /// Where node A sends to reach B.
    pub fn front_for_a(&self) -> SocketAddr {
        self.front_for_a
    }

    /// Where node B sends to reach A.
    pub fn front_for_b(&self) -> SocketAddr {
        self.front_for_b
    }

    /// A handle to cut, restore, impair and observe the link.
    pub fn handle(&self) -> LinkHandle {
        self.handle.clone()
    }

    /// Stops the task and waits until it and its sockets are gone.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            if let Err(err) = task.await {
                tracing::error!(%err, "emulated link task failed");
            }
        }
    }
}

impl Drop for EmulatedLink {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Which front: the one node A sends to, or the one node B sends to.
#[derive(Debug, Clone, Copy)]
enum Side {
    A,
    B,
}

/// Direction of a datagram on the link.
#[derive(Debug, Clone, Copy)]
enum Dir {
    AToB,
    BToA,
}

impl Side {
    fn index(self) -> usize {
        self as usize
    }

    /// From this front's clients to its target.
    fn outbound(self) -> Dir {
        match self {
            Side::A => Dir::AToB,
            Side::B => Dir::BToA,
        }
    }

    /// From this front's target back to its clients.
    fn inbound(self) -> Dir {
        match self {
            Side::A => Dir::BToA,
            Side::B => Dir::AToB,
        }
    }
}

impl Dir {
    fn index(self) -> usize {
        self as usize
    }
}

/// One front socket, the endpoint it forwards to, and a back socket per client.
struct Front {
    socket: UdpSocket,
    target: SocketAddr,
    /// Never shrinks, so indices stay valid for packets in flight.
    clients: Vec<Client>,
    by_addr: HashMap<SocketAddr, usize>,
    warned_full: bool,
}

struct Client {
    addr: SocketAddr,
    /// Connected to the front's target, so only its datagrams are received here.
    socket: UdpSocket,
}

impl Front {
    fn new(socket: UdpSocket, target: SocketAddr) -> Self {
        Front {
            socket,
            target,
            clients: Vec::new(),
            by_addr: HashMap::new(),
            warned_full: false,
        }
    }
}

/// Where a received datagram came from.
#[derive(Debug, Clone, Copy)]
enum Source {
    Front(Side),
    Back(Side, usize),
}

/// Where a shaped datagram goes: from a client's back socket to the target, or from the
/// front socket to a client.
#[derive(Debug, Clone, Copy)]
enum Route {
    ToTarget(Side, usize),
    ToClient(Side, usize),
}

struct Packet {
    bytes: Bytes,
    route: Route,
}

/// Counters of one direction kept outside its shaper.
#[derive(Debug, Clone, Copy, Default)]
struct Extra {
    forwarded: u64,
    forwarded_bytes: u64,
    dropped_client_limit: u64,
    send_errors: u64,
    /// Received but never handed to the shaper (client limit, no back socket).
    unshaped: u64,
}

enum Event {
    Due,
    Received(Source, io::Result<(usize, SocketAddr)>),
}

/// The link's task: owns every socket and both shapers.
struct Driver {
    handle: LinkHandle,
    fronts: [Front; 2],
    shapers: [Shaper<Packet>; 2],
    extra: [Extra; 2],
    cut_epoch: u64,
    cursor: usize,
    buf: Vec<u8>,
}

impl Driver {
    async fn run(mut self, cancel: CancellationToken) {
        tracing::info!("emulated link started");
        // One timer for the task's life, moved only when the earliest delivery
        // changes, rather than a new timer registered for every event.
        let sleep = sleep_until(Instant::now());
        tokio::pin!(sleep);
        let mut armed = None;
        loop {
            let deadline = self.shapers.iter().filter_map(Shaper::poll_timeout).min();
            if let Some(at) = deadline.filter(|&at| armed != Some(at)) {
                sleep.as_mut().reset(Instant::from_std(at));
            }
            armed = deadline;
            let event = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = &mut sleep, if deadline.is_some() => Event::Due,
                (source, result) = poll_fn(|cx| {
                    poll_recv(&self.fronts, &mut self.cursor, &mut self.buf, cx)
                }) => Event::Received(source, result),
            };
            let params = self.sync_control();
            match event {
                Event::Due => {
                    self.deliver(&params);
                    armed = None;
                }
                Event::Received(source, result) => {
                    self.on_received(source, result, &params);
                    // Whatever else is already waiting, in the same wake-up.
                    for _ in 1..READ_BATCH {
                        match try_recv(&self.fronts, &mut self.cursor, &mut self.buf) {
                            Some((source, result)) => self.on_received(source, result, &params),
                            None => break,
                        }
                    }
                }
            }
            self.publish();
        }
        tracing::info!("emulated link stopped");
    }

    fn on_received(
        &mut self,
        source: Source,
        result: io::Result<(usize, SocketAddr)>,
        params: &LinkParams,
    ) {
        match (source, result) {
            (Source::Front(side), Ok((len, from))) => {
                self.on_client_datagram(side, from, len, params);
            }
            (Source::Back(side, client), Ok((len, _))) => {
                self.shape(side.inbound(), params, len, Route::ToClient(side, client));
            }
            (source, Err(err)) => {
                // E.g. ICMP port unreachable from a target that is not listening yet.
                tracing::debug!(?source, %err, "receive error");
            }
        }
    }

    /// Reads the parameters in force, and dooms packets in flight if the link was cut
    /// since the last event, even if it was restored since.
    fn sync_control(&mut self) -> LinkParams {
        let control = self.handle.control();
        if control.cut_epoch != self.cut_epoch {
            self.cut_epoch = control.cut_epoch;
            for shaper in &mut self.shapers {
                shaper.handle_cut();
            }
            tracing::info!("link cut: packets in flight will vanish");
        }
        control.params
    }

    fn on_client_datagram(&mut self, side: Side, from: SocketAddr, len: usize, p: &LinkParams) {
        let dir = side.outbound();
        match self.client_index(side, from) {
            Some(client) => self.shape(dir, p, len, Route::ToTarget(side, client)),
            None => self.extra[dir.index()].unshaped += 1,
        }
    }

    /// The client's index, opening its back socket on first sight; `None` (counted) if
    /// the front is full or the socket cannot be opened.
    fn client_index(&mut self, side: Side, from: SocketAddr) -> Option<usize> {
        let front = &mut self.fronts[side.index()];
        if let Some(&index) = front.by_addr.get(&from) {
            return Some(index);
        }
        let extra = &mut self.extra[side.outbound().index()];
        if front.clients.len() >= MAX_CLIENTS_PER_FRONT {
            extra.dropped_client_limit += 1;
            if !front.warned_full {
                front.warned_full = true;
                tracing::warn!(?side, client = %from, max = MAX_CLIENTS_PER_FRONT,
                    "front has its maximum of clients; dropping datagrams of new ones");
            }
            return None;
        }
        match back_socket(front.target) {
            Ok(socket) => {
                tracing::debug!(?side, client = %from, back = ?socket.local_addr().ok(), "new client");
                let index = front.clients.len();
                front.clients.push(Client { addr: from, socket });
                front.by_addr.insert(from, index);
                Some(index)
            }
            Err(err) => {
                extra.send_errors += 1;
                tracing::warn!(?side, client = %from, %err, "cannot open a back socket");
                None
            }
        }
    }

    fn shape(&mut self, dir: Dir, params: &LinkParams, len: usize, route: Route) {
        let bytes = Bytes::copy_from_slice(self.buf.get(..len).unwrap_or_default());
        let now = Instant::now().into_std();
        let packet = Packet { bytes, route };
        if let Verdict::Drop(reason) =
            self.shapers[dir.index()].handle_packet(now, params, len, packet)
        {
            tracing::trace!(?dir, ?reason, "datagram dropped");
        }
    }

    fn deliver(&mut self, params: &LinkParams) {
        let now = Instant::now().into_std();
        for dir in [Dir::AToB, Dir::BToA] {
            while let Some(packet) = self.shapers[dir.index()].poll_transmit(now, params) {
                // `try_send`: the forwarding path never waits on a socket buffer.
                match self.send(&packet) {
                    Ok(_) => {
                        let extra = &mut self.extra[dir.index()];
                        extra.forwarded += 1;
                        extra.forwarded_bytes += packet.bytes.len() as u64;
                    }
                    Err(err) => {
                        self.extra[dir.index()].send_errors += 1;
                        tracing::debug!(?dir, route = ?packet.route, %err, "send failed");
                    }
                }
            }
        }
    }

    fn send(&self, packet: &Packet) -> io::Result<usize> {
        match packet.route {
            Route::ToTarget(side, client) => self.fronts[side.index()].clients[client]
                .socket
                .try_send(&packet.bytes),
            Route::ToClient(side, client) => {
                let front = &self.fronts[side.index()];
                front
                    .socket
                    .try_send_to(&packet.bytes, front.clients[client].addr)
            }
        }
    }

    fn publish(&self) {
        let direction = |dir: Dir| {
            let shaper = &self.shapers[dir.index()];
            let s = shaper.stats();
            let e = self.extra[dir.index()];
            DirectionStats {
                received: s.received + e.unshaped,
                forwarded: e.forwarded,
                forwarded_bytes: e.forwarded_bytes,
                dropped_loss: s.dropped_loss,
                dropped_cut: s.dropped_cut,
                dropped_queue_full: s.dropped_queue_full,
                dropped_congestion: s.dropped_congestion,
                dropped_client_limit: e.dropped_client_limit,
                send_errors: e.send_errors,
                in_flight: shaper.in_flight().0 as u64,
            }
        };
        self.handle.publish(LinkStats {
            a_to_b: direction(Dir::AToB),
            b_to_a: direction(Dir::BToA),
        });
    }
}

/// Offers every socket of the link to `read` once, starting after the one
/// served last so that a busy socket cannot starve the others; the first
/// socket `read` gets something from, and that.
fn round_robin<T>(
    fronts: &[Front; 2],
    cursor: &mut usize,
    mut read: impl FnMut(Source) -> Option<T>,
) -> Option<(Source, T)> {
    let count = 2 + fronts[0].clients.len() + fronts[1].clients.len();
    for step in 0..count {
        let index = (*cursor + step) % count;
        let source = source_at(fronts, index);
        if let Some(got) = read(source) {
            *cursor = (index + 1) % count;
            return Some((source, got));
        }
    }
    None
}

/// Waits for a datagram on any socket of the link (see [`round_robin`]).
fn poll_recv(
    fronts: &[Front; 2],
    cursor: &mut usize,
    buf: &mut [u8],
    cx: &mut Context<'_>,
) -> Poll<(Source, io::Result<(usize, SocketAddr)>)> {
    let got = round_robin(fronts, cursor, |source| {
        let mut read = ReadBuf::new(&mut *buf);
        let polled = match source {
            Source::Front(side) => fronts[side.index()].socket.poll_recv_from(cx, &mut read),
            Source::Back(side, client) => {
                let front = &fronts[side.index()];
                front.clients[client]
                    .socket
                    .poll_recv(cx, &mut read)
                    .map_ok(|()| front.target)
            }
        };
        let len = read.filled().len();
        match polled {
            Poll::Ready(result) => Some(result.map(|from| (len, from))),
            Poll::Pending => None,
        }
    });
    got.map_or(Poll::Pending, Poll::Ready)
}

/// A datagram already waiting on any socket of the link, without waiting
/// (see [`round_robin`]); `None` when there is none.
fn try_recv(
    fronts: &[Front; 2],
    cursor: &mut usize,
    buf: &mut [u8],
) -> Option<(Source, io::Result<(usize, SocketAddr)>)> {
    round_robin(fronts, cursor, |source| {
        let read = match source {
            Source::Front(side) => fronts[side.index()].socket.try_recv_from(buf),
            Source::Back(side, client) => {
                let front = &fronts[side.index()];
                front.clients[client]
                    .socket
                    .try_recv(buf)
                    .map(|len| (len, front.target))
            }
        };
        match read {
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => None,
            result => Some(result),
        }
    })
}

/// Socket number `index`: the two fronts, then A's clients, then B's.
fn source_at(fronts: &[Front; 2], index: usize) -> Source {
    let clients_a = fronts[0].clients.len();
    match index {
        0 => Source::Front(Side::A),
        1 => Source::Front(Side::B),
        i if i - 2 < clients_a => Source::Back(Side::A, i - 2),
        i => Source::Back(Side::B, i - 2 - clients_a),
    }
}

/// A loopback socket connected to `target`, for one client.
fn back_socket(target: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::LOCALHOST, 0).into()
    } else {
        (Ipv6Addr::LOCALHOST, 0).into()
    };
    let socket = std::net::UdpSocket::bind(local)?;
    socket.connect(target)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}
