//! A running relay: its shared state, start-up (endpoint, peer links, services,
//! admin API), status, and shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use bytes::Bytes;
use quinn::{Endpoint, TransportConfig};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use topology::{NodeIdx, Protocol};

use crate::config::RelayConfig;
use crate::fwd::{Decision, DropReason, ForwardingTable};
use crate::http::{self, Request, Response};
use crate::metrics::{Counters, LinkTotals, Metrics, ServiceMetrics};
use crate::peers::{self, Peers};
use crate::streams;
use crate::tls::{self, PeerPolicy};
use crate::udp::{self, EgressFlows, UdpIngress};
use crate::wire::Header;

/// State shared by every task of one relay.
#[derive(Debug)]
pub struct Shared {
    /// The config in force; a reload replaces it (see [`crate::reload`]).
    config: RwLock<Arc<RelayConfig>>,
    pub me: u32,
    /// This node's id (a reload cannot change it).
    me_id: String,
    /// Neighbors: (node key, node id).
    neighbors: RwLock<Arc<Vec<(u32, String)>>>,
    table: RwLock<Arc<ForwardingTable>>,
    pub peers: Peers,
    pub metrics: Metrics,
    /// Per-service traffic for the services whose ingress or egress is here.
    services: RwLock<Arc<ServiceMetrics>>,
    /// TLS for dialing peers and the controller (a reload may rotate certificates).
    client: RwLock<quinn::ClientConfig>,
    /// The neighbors whose certificates the TLS server accepts.
    pub(crate) policy: PeerPolicy,
    /// What stops each dial loop and each service's ingress task on its own
    /// (children of `cancel`), so a reload can remove one.
    pub(crate) stops: std::sync::Mutex<Stops>,
    /// Per-link traffic totals across reconnects, read at scrape time.
    pub link_totals: LinkTotals,
    udp_ingress: RwLock<Arc<HashMap<u32, Arc<UdpIngress>>>>,
    pub udp_egress: EgressFlows,
    pub cancel: CancellationToken,
    /// Version of the table in force: 0 for the topology's own, then the controller's.
    pub table_version: AtomicU64,
    /// Woken when a link's state changes, so the controller hears at once.
    pub links_changed: Notify,
    /// Set when the relay starts draining: new flows are refused, and the
    /// controller is told so routes move off this node.
    draining: std::sync::atomic::AtomicBool,
    started: Instant,
}

/// Reads a lock whose holders never leave the value half-updated (every write
/// is a single assignment), so a poisoned lock is still consistent.
fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(|p| p.into_inner()) = value;
}

impl Shared {
    /// The config in force (a cheap clone of an `Arc`).
    pub fn cfg(&self) -> Arc<RelayConfig> {
        read(&self.config)
    }

    pub fn node_id(&self) -> &str {
        &self.me_id
    }

    /// This node's neighbors in the topology in force: (node key, node id).
    pub fn neighbors(&self) -> Arc<Vec<(u32, String)>> {
        read(&self.neighbors)
    }

    /// The UDP services whose ingress is this node, by service key.
    pub fn udp_ingress(&self) -> Arc<HashMap<u32, Arc<UdpIngress>>> {
        read(&self.udp_ingress)
    }

    /// Per-service counters of the services that end here.
    pub fn services(&self) -> Arc<ServiceMetrics> {
        read(&self.services)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts draining (see [`crate::drain`]); false if it already was.
    pub(crate) fn start_draining(&self) -> bool {
        !self
            .draining
            .swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn client_config(&self) -> quinn::ClientConfig {
        read(&self.client)
    }

    /// Puts a reloaded config in force, with what follows from it.
    pub(crate) fn set_config(&self, cfg: RelayConfig, live: Live) {
        write(&self.udp_ingress, Arc::new(live.udp_ingress));
        write(&self.neighbors, Arc::new(live.neighbors));
        write(&self.services, Arc::new(live.services));
        write(&self.client, live.client);
        write(&self.config, Arc::new(cfg));
    }

    /// The forwarding table in force (a cheap clone of an `Arc`).
    pub fn table(&self) -> Arc<ForwardingTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the forwarding table at once: packets see the old or the new, never a mix.
    /// Destinations whose primary next hop moved are counted as reroutes (after
    /// the swap, so the forwarding path never waits on the comparison).
    pub fn set_table(&self, table: ForwardingTable) {
        let new = Arc::new(table);
        let old = std::mem::replace(
            &mut *self.table.write().unwrap_or_else(|p| p.into_inner()),
            new.clone(),
        );
        Metrics::add(&self.metrics.reroutes, crate::metrics::reroutes(&old, &new));
    }

    /// What this relay tells the controller about each of its links.
    pub fn link_reports(&self) -> Vec<crate::control::LinkReport> {
        self.neighbors()
            .iter()
            .map(|(key, id)| {
                let measured = self
                    .peers
                    .health(*key)
                    .map(|h| h.measured())
                    .unwrap_or_default();
                crate::control::LinkReport {
                    peer: id.clone(),
                    up: self.peers.is_up(*key),
                    rtt_ms: measured.rtt_ms,
                    min_rtt_ms: measured.min_rtt_ms,
                    jitter_ms: measured.jitter_ms,
                    loss: measured.loss,
                }
            })
            .collect()
    }

    pub fn dial_addr(&self, peer: u32) -> Option<SocketAddr> {
        let cfg = self.cfg();
        cfg.topology.node_by_key(peer).map(|idx| cfg.dial_addr(idx))
    }

    pub fn count_delivered(&self, bytes: usize) {
        Metrics::add(&self.metrics.datagrams_delivered, 1);
        Metrics::add(&self.metrics.bytes_delivered, bytes as u64);
    }

    /// Runs a forwarding decision against the live links and keeps the connection
    /// of the neighbor it picked, so the per-packet path looks a peer up once.
    pub fn decide_with(
        &self,
        decide: impl FnOnce(&mut dyn FnMut(u32) -> bool) -> Decision,
    ) -> (Decision, Option<quinn::Connection>) {
        let mut picked = None;
        let decision = decide(&mut |peer| match self.peers.get(peer) {
            Some(conn) => {
                picked = Some(conn);
                true
            }
            None => false,
        });
        (decision, picked)
    }

    /// Sends a packet this node originates (UDP ingress, egress replies).
    pub fn originate(&self, mut header: Header, payload: &[u8]) {
        let table = self.table();
        let (decision, conn) = self.decide_with(|up| table.next_hop(header.dst, header.ttl, up));
        match (decision, conn) {
            (
                Decision::Forward {
                    ttl, via_backup, ..
                },
                Some(conn),
            ) => {
                header.ttl = ttl;
                self.send_on(&conn, Bytes::from(header.encode_with(payload)), via_backup);
            }
            (Decision::Drop(reason), _) => self.metrics.drop(reason),
            (Decision::Forward { .. }, None) => self.metrics.drop(DropReason::PeerDown),
            (Decision::Deliver, _) => self.metrics.drop(DropReason::NoRoute),
        }
    }

    /// Hands an encoded packet to a neighbor's link without waiting: quinn queues
    /// it (bounded, oldest dropped first) or it is dropped and counted here.
    pub fn send_on(&self, conn: &quinn::Connection, packet: Bytes, via_backup: bool) {
        if conn
            .max_datagram_size()
            .is_none_or(|max| packet.len() > max)
        {
            return self.metrics.drop(DropReason::TooBig);
        }
        let len = packet.len() as u64;
        match conn.send_datagram(packet) {
            Ok(()) => {
                Metrics::add(&self.metrics.datagrams_sent, 1);
                Metrics::add(&self.metrics.bytes_sent, len);
                if via_backup {
                    Metrics::add(&self.metrics.sent_via_backup, 1);
                }
            }
            Err(quinn::SendDatagramError::TooLarge) => self.metrics.drop(DropReason::TooBig),
            Err(quinn::SendDatagramError::ConnectionLost(_)) => {
                self.metrics.drop(DropReason::PeerDown)
            }
            Err(_) => self.metrics.drop(DropReason::SendFailed),
        }
    }
}

/// Stop tokens of the tasks a reload can end one by one.
#[derive(Debug, Default)]
pub(crate) struct Stops {
    /// Dial loops, by peer node key.
    pub links: HashMap<u32, CancellationToken>,
    /// Ingress tasks (UDP reader or TCP listener), by service key.
    pub services: HashMap<u32, CancellationToken>,
}

/// What a config puts in force besides itself: derived once, swapped together.
#[derive(Debug)]
pub(crate) struct Live {
    pub neighbors: Vec<(u32, String)>,
    pub udp_ingress: HashMap<u32, Arc<UdpIngress>>,
    pub services: ServiceMetrics,
    pub client: quinn::ClientConfig,
}

/// A node's neighbors in a topology: (node key, node id).
pub(crate) fn neighbors_of(cfg: &RelayConfig) -> Vec<(u32, String)> {
    let topo = &cfg.topology;
    topo.links
        .iter()
        .filter_map(|l| l.other(cfg.node))
        .map(|n| (topo.node_key(n), topo.node(n).id.clone()))
        .collect()
}

/// Ingress sockets bound for some services, not yet serving.
#[derive(Debug, Default)]
pub(crate) struct BoundServices {
    pub udp: HashMap<u32, Arc<UdpIngress>>,
    pub tcp: Vec<(topology::Service, tokio::net::TcpListener)>,
    /// Where each listens, by service name.
    pub addrs: HashMap<String, SocketAddr>,
}

/// Binds the ingress socket of each of `services` (whose ingress must be this
/// node). Fails on the first that cannot bind, naming it; nothing is served yet.
pub(crate) async fn bind_services<'a>(
    cfg: &RelayConfig,
    counters: &ServiceMetrics,
    services: impl IntoIterator<Item = &'a topology::Service>,
) -> anyhow::Result<BoundServices> {
    let topo = &cfg.topology;
    let mut bound = BoundServices::default();
    for service in services {
        let dst = topo.node_key(service.egress_node);
        match service.protocol {
            Protocol::Udp => {
                let sock = std::net::UdpSocket::bind(service.listen).with_context(|| {
                    format!(
                        "binding UDP {} for service {}",
                        service.listen, service.name
                    )
                })?;
                bound.addrs.insert(service.name.clone(), sock.local_addr()?);
                crate::sockbuf::enlarge(&sock, cfg.tuning.socket_buffer, &service.name);
                let sock = udp::SplitSocket::new(sock)?;
                bound.udp.insert(
                    service.key,
                    Arc::new(UdpIngress::new(
                        service.clone(),
                        dst,
                        sock,
                        counters.get(service.key),
                    )),
                );
            }
            Protocol::Tcp => {
                let listener = tokio::net::TcpListener::bind(service.listen)
                    .await
                    .with_context(|| {
                        format!(
                            "binding TCP {} for service {}",
                            service.listen, service.name
                        )
                    })?;
                bound
                    .addrs
                    .insert(service.name.clone(), listener.local_addr()?);
                bound.tcp.push((service.clone(), listener));
            }
        }
    }
    Ok(bound)
}

/// Starts serving bound ingress sockets, each stoppable on its own.
pub(crate) fn serve_services(
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
    udp: impl IntoIterator<Item = Arc<UdpIngress>>,
    tcp: Vec<(topology::Service, tokio::net::TcpListener)>,
) {
    let mut stops = shared.stops.lock().unwrap_or_else(|p| p.into_inner());
    for ingress in udp {
        let stop = shared.cancel.child_token();
        stops.services.insert(ingress.service_key(), stop.clone());
        let run = udp::run_ingress(shared.clone(), ingress);
        tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = run => {}
            }
        });
    }
    for (service, listener) in tcp {
        let stop = shared.cancel.child_token();
        stops.services.insert(service.key, stop.clone());
        let run = streams::run_ingress(shared.clone(), service, listener);
        tasks.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = run => {}
            }
        });
    }
}

/// Starts keeping the link to a neighbor up, stoppable on its own.
pub(crate) fn dial_neighbor(
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<()>,
    endpoint: &Endpoint,
    (key, id): (u32, String),
) {
    let stop = shared.cancel.child_token();
    shared
        .stops
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .links
        .insert(key, stop.clone());
    tasks.spawn(peers::dial_loop(
        shared.clone(),
        endpoint.clone(),
        key,
        id,
        stop,
    ));
}

/// What `GET /api/v1/status` returns.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub node: String,
    /// 0: the topology's own routes; else the controller's table version.
    pub table_version: u64,
    /// Draining before a stop: routes move off this relay, no new flows.
    pub draining: bool,
    pub uptime_s: f64,
    pub quic_addr: SocketAddr,
    pub peers: Vec<PeerStatus>,
    pub flows: FlowStatus,
    pub routes: Vec<RouteStatus>,
    pub counters: Counters,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub id: String,
    /// `up` (probes pass), `probing` (connected, probes not passing), or `down`.
    pub state: &'static str,
    /// The probes' RTT, min RTT, jitter and loss.
    pub measured: Option<crate::peers::Measured>,
    pub connected_for_s: Option<f64>,
    pub dialed_by: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FlowStatus {
    pub udp_ingress: usize,
    pub udp_egress: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    pub to: String,
    pub next_hop: String,
    pub backup: Option<String>,
}

/// A started relay. Dropping it does not stop it; call [`RelayHandle::shutdown`].
#[derive(Debug)]
pub struct RelayHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) endpoint: Endpoint,
    pub(crate) tasks: JoinSet<()>,
    pub quic_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// Where each UDP/TCP service with its ingress here listens, by service name.
    pub ingress_addrs: HashMap<String, SocketAddr>,
}

/// Initial congestion window of peer links, in bytes.
const INITIAL_WINDOW: u64 = 1 << 20;

fn transport(cfg: &RelayConfig) -> Arc<TransportConfig> {
    let t = &cfg.tuning;
    let mut tc = TransportConfig::default();
    tc.keep_alive_interval(Some(t.keep_alive));
    if let Ok(idle) = t.link_idle_timeout.try_into() {
        tc.max_idle_timeout(Some(idle));
    }
    tc.initial_mtu(t.initial_mtu);
    // Media: a little buffering absorbs bursts; stale media is worth less than none.
    tc.datagram_receive_buffer_size(Some(4 * 1024 * 1024));
    tc.datagram_send_buffer_size(1024 * 1024);
    tc.max_concurrent_bidi_streams(100_000u32.into());
    // Peer links are dedicated circuits carrying live media from the moment
    // classes start: a 14 KB initial window (RFC 9002's Internet default)
    // makes a new link queue and drop datagrams, probes among them, for its
    // first round trips, and the link looks down. Start at 1 MiB; congestion
    // control still backs off on loss.
    let mut cubic = quinn::congestion::CubicConfig::default();
    cubic.initial_window(INITIAL_WINDOW);
    tc.congestion_controller_factory(Arc::new(cubic));
    Arc::new(tc)
}

/// Starts a relay on an already bound UDP socket (QUIC) and, optionally, an
/// already bound admin listener. Service ingress sockets are bound here, from the
/// topology. Returns once everything listens; links come up in the background.
pub async fn start(
    cfg: RelayConfig,
    socket: std::net::UdpSocket,
    admin: Option<std::net::TcpListener>,
) -> anyhow::Result<RelayHandle> {
    let me_idx = cfg.node;
    let topo = cfg.topology.clone();
    let me_id = topo.node(me_idx).id.clone();
    let neighbors = neighbors_of(&cfg);

    let policy = PeerPolicy::new(neighbors.iter().map(|(_, id)| id.clone()));
    let (server, client) = tls_configs(&cfg, &policy)?;

    let (endpoint, quic_addr) =
        crate::daemon::quic_endpoint(socket, server, cfg.tuning.socket_buffer)?;

    let service_metrics = ServiceMetrics::new(&topo, me_idx);
    let bound = bind_services(
        &cfg,
        &service_metrics,
        topo.services.iter().filter(|s| s.ingress_node == me_idx),
    )
    .await?;

    let shared = Arc::new(Shared {
        me: topo.node_key(me_idx),
        table: RwLock::new(Arc::new(ForwardingTable::from_topology(&topo, me_idx))),
        peers: Peers::new(&me_id),
        metrics: Metrics::default(),
        services: RwLock::new(Arc::new(service_metrics)),
        client: RwLock::new(client),
        policy,
        stops: Default::default(),
        link_totals: LinkTotals::default(),
        udp_egress: EgressFlows::default(),
        cancel: CancellationToken::new(),
        table_version: AtomicU64::new(0),
        links_changed: Notify::new(),
        draining: Default::default(),
        started: Instant::now(),
        me_id: me_id.clone(),
        neighbors: RwLock::new(Arc::new(neighbors)),
        udp_ingress: RwLock::new(Arc::new(bound.udp.clone())),
        config: RwLock::new(Arc::new(cfg)),
    });

    let mut tasks = JoinSet::new();
    tasks.spawn(peers::accept_loop(shared.clone(), endpoint.clone()));
    for neighbor in shared.neighbors().iter().cloned() {
        dial_neighbor(&shared, &mut tasks, &endpoint, neighbor);
    }
    serve_services(&shared, &mut tasks, bound.udp.into_values(), bound.tcp);
    tasks.spawn(udp::expire_loop(shared.clone()));
    tasks.spawn(crate::controller_link::controller_loop(
        shared.clone(),
        endpoint.clone(),
    ));

    let admin_addr = match admin {
        Some(listener) => {
            listener.set_nonblocking(true)?;
            let addr = listener.local_addr()?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let s = shared.clone();
            let handler: http::Handler = Arc::new(move |r: &Request| admin_response(&s, r));
            tasks.spawn(http::serve(listener, handler, shared.cancel.clone()));
            Some(addr)
        }
        None => None,
    };
    info!(node = %me_id, %quic_addr, ?admin_addr, "relay started");
    Ok(RelayHandle {
        shared,
        endpoint,
        tasks,
        quic_addr,
        admin_addr,
        ingress_addrs: bound.addrs,
    })
}

/// The TLS server config (peers allowed by `policy`) and client config of a
/// relay config's identity and CA.
pub(crate) fn tls_configs(
    cfg: &RelayConfig,
    policy: &PeerPolicy,
) -> anyhow::Result<(quinn::ServerConfig, quinn::ClientConfig)> {
    let mut server = tls::server_config(cfg.identity.clone(), (*cfg.roots).clone(), policy.clone())
        .context("building the TLS server config")?;
    server.transport_config(transport(cfg));
    let mut client = tls::client_config(cfg.identity.clone(), (*cfg.roots).clone())
        .context("building the TLS client config")?;
    client.transport_config(transport(cfg));
    Ok((server, client))
}

fn admin_response(shared: &Arc<Shared>, r: &Request) -> Response {
    if r.method != "GET" {
        return Response::error(405, "only GET is served here");
    }
    match r.path.as_str() {
        "/healthz" => Response::text(200, "ok\n"),
        "/api/v1/status" => Response::json(&status(shared)),
        "/metrics" => crate::prom::response(shared),
        other => Response::not_found(other),
    }
}

fn status(shared: &Arc<Shared>) -> Status {
    let topo = &shared.cfg().topology;
    let name = |key: u32| {
        topo.node_by_key(key)
            .map_or_else(|| format!("{key:#x}"), |i: NodeIdx| topo.node(i).id.clone())
    };
    let links: HashMap<u32, peers::Link> = shared.peers.snapshot().into_iter().collect();
    let mut peers: Vec<PeerStatus> = shared
        .neighbors()
        .iter()
        .map(
            |(key, id)| match links.get(key).filter(|l| l.conn.close_reason().is_none()) {
                Some(l) => PeerStatus {
                    id: id.clone(),
                    // Connected is not enough: traffic uses a link once its probes pass.
                    state: if l.health.is_up() { "up" } else { "probing" },
                    measured: Some(l.health.measured()),
                    connected_for_s: Some(l.since.elapsed().as_secs_f64()),
                    dialed_by: Some(if l.dialed_by_me {
                        shared.node_id().to_string()
                    } else {
                        id.clone()
                    }),
                },
                None => PeerStatus {
                    id: id.clone(),
                    state: "down",
                    measured: None,
                    connected_for_s: None,
                    dialed_by: None,
                },
            },
        )
        .collect();
    peers.sort_by(|a, b| a.id.cmp(&b.id));
    let mut routes: Vec<RouteStatus> = shared
        .table()
        .routes()
        .map(|(dst, r)| RouteStatus {
            to: name(dst),
            next_hop: name(r.primary),
            backup: r.backup.map(name),
        })
        .collect();
    routes.sort_by(|a, b| a.to.cmp(&b.to));
    Status {
        node: shared.node_id().to_string(),
        table_version: shared
            .table_version
            .load(std::sync::atomic::Ordering::Relaxed),
        draining: shared.is_draining(),
        uptime_s: shared.started.elapsed().as_secs_f64(),
        quic_addr: shared.cfg().listen,
        peers,
        flows: FlowStatus {
            udp_ingress: shared.udp_ingress().values().map(|i| i.flow_count()).sum(),
            udp_egress: shared.udp_egress.flow_count(),
        },
        routes,
        counters: shared.metrics.snapshot(),
    }
}

impl RelayHandle {
    pub fn status(&self) -> Status {
        let mut s = status(&self.shared);
        s.quic_addr = self.quic_addr;
        s
    }

    pub fn node_id(&self) -> &str {
        self.shared.node_id()
    }

    /// Whether the link to `peer` (a node id) carries traffic: connected, probes passing.
    pub fn peer_up(&self, peer: &str) -> bool {
        self.shared.peers.is_up(topology::wire_key(peer))
    }

    /// Replaces the forwarding table (the controller's job; tests use it too).
    pub fn set_table(&self, table: ForwardingTable) {
        self.shared.set_table(table);
    }

    pub fn table(&self) -> Arc<ForwardingTable> {
        self.shared.table()
    }

    /// Stops every task, closes every link, and waits (bounded) for the endpoint.
    pub async fn shutdown(mut self) {
        crate::daemon::stop(
            &self.shared.cancel,
            &self.endpoint,
            &mut self.tasks,
            b"relay shutting down",
        )
        .await;
        info!(node = %self.shared.node_id(), "relay stopped");
    }
}

/// Runs a relay until a stop signal, then drains it (see [`crate::drain`]).
/// A reload signal re-reads the config through `load` and applies what changed
/// (see [`crate::reload`]); a config with errors is refused, logged, and the
/// running one stays. Tells systemd through `notify` that it is ready once
/// [`start`] returned (it listens and forwards on the topology's routes), keeps
/// the status line `systemctl status` shows current ("forwarding, 3 of 4 links
/// up, routes v7"), and says when it reloads and stops. A second stop signal
/// cuts the drain short.
pub async fn run(
    cfg: RelayConfig,
    socket: std::net::UdpSocket,
    admin: Option<std::net::TcpListener>,
    mut signals: tokio::sync::mpsc::Receiver<crate::daemon::Signal>,
    notify: &crate::daemon::Notifier,
    load: impl Fn() -> Result<RelayConfig, topology::ConfigErrors>,
) -> anyhow::Result<()> {
    use crate::daemon::Signal;
    // A daemon's host is what these limits are about (the lab shares one host).
    crate::sockbuf::check_flow_capacity(&cfg);
    let mut relay = start(cfg, socket, admin).await?;
    let line = |relay: &RelayHandle| {
        let s = relay.status();
        let up = s.peers.iter().filter(|p| p.state == "up").count();
        let routes = match s.table_version {
            0 => "the topology's routes".to_string(),
            v => format!("routes v{v}"),
        };
        format!("forwarding, {up} of {} links up, {routes}", s.peers.len())
    };
    notify.ready(&line(&relay));
    let mut refresh = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            signal = signals.recv() => match signal {
                Some(Signal::Reload) => {
                    notify.reloading();
                    match load() {
                        Ok(cfg) => match relay.reload(cfg).await {
                            Ok(summary) => info!(%summary, "reload applied"),
                            Err(e) => tracing::error!("reload refused, the running config stays: {e:#}"),
                        },
                        Err(errors) => tracing::error!(
                            "reload refused, the running config stays:\n{}",
                            errors.to_string().trim_end()
                        ),
                    }
                    notify.ready(&line(&relay));
                }
                Some(Signal::Stop) | None => break,
            },
            _ = refresh.tick(), if notify.is_active() => notify.status(&line(&relay)),
        }
    }
    notify.stopping();
    let grace = relay.config().tuning.drain_grace;
    tokio::select! {
        _ = relay.drain(grace) => {}
        Some(Signal::Stop) = signals.recv() => info!("second stop signal: drain cut short"),
    }
    relay.shutdown().await;
    Ok(())
}
