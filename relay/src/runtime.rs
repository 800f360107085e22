//! A running relay: start-up (endpoint, peer links, services, controller
//! session, admin API), the handle that owns it, and shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use daemon::tls::{self, PeerPolicy};
use daemon::{OnFailure, Supervisor};
use quinn::{Endpoint, TransportConfig};
use relay_core::reload_plan::Side;
use relay_core::{ForwardingTable, RoutesInForce};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::info;

use topology::Protocol;

use crate::admission::Admission;
use crate::config::RelayConfig;
use crate::context::{Context, Stops};
use crate::datapath::forwarder::Forwarder;
use crate::datapath::link_registry::LinkRegistry;
use crate::datapath::send_queue;
use crate::datapath::socket::SplitSocket;
use crate::datapath::udp_egress::EgressTable;
use crate::datapath::udp_ingress::UdpIngress;
use crate::links::congestion::DedicatedLineConfig;
use crate::live::LiveConfig;
use crate::metrics::{LinkTotals, Metrics, ServiceMetrics};
use crate::status::Status;
use crate::tcp::ingress::TcpIngress;

/// How a peer's certificate refusal reads in the log: "names no {this}".
const ADMITS: &str = "node this relay links to";

/// A started relay. Dropping it stops it (every task is aborted); call
/// [`RelayHandle::shutdown`] to stop it in order.
#[derive(Debug)]
pub struct RelayHandle {
    pub(crate) ctx: Arc<Context>,
    pub(crate) endpoint: Endpoint,
    pub(crate) tasks: Supervisor,
    pub quic_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    /// Where each UDP/TCP service with its ingress here listens, by service name.
    pub ingress_addrs: HashMap<String, SocketAddr>,
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.ctx.cancel.cancel();
        self.endpoint.close(0u32.into(), b"relay stopped");
    }
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
    // Media: a little buffering absorbs bursts; stale media is worth less than
    // none. The forwarder lets media fill the send queue only as far as the
    // link drains in 10 ms, and never the last 16 KiB, kept for probes (see
    // `datapath::send_queue`).
    tc.datagram_receive_buffer_size(Some(4 * 1024 * 1024));
    tc.datagram_send_buffer_size(send_queue::SEND_BUFFER);
    // No streams before the peer is authenticated: quinn allocates state for
    // every stream a connection allows, up front, so a large limit here made
    // each unauthenticated Initial cost megabytes. A link raises it to
    // `max_streams_per_link` once the peer is known (`links::actor`).
    tc.max_concurrent_bidi_streams(0u32.into());
    tc.max_concurrent_uni_streams(0u32.into());
    // Peer links are dedicated circuits carrying live media from the moment
    // classes start: a 14 KB initial window (RFC 9002's Internet default)
    // makes a new link queue and drop datagrams, probes among them, for its
    // first round trips, and the link looks down. Start at 1 MiB; congestion
    // control still backs off on loss, but a blackhole does not cost the
    // window (`links::congestion`).
    let mut cubic = quinn::congestion::CubicConfig::default();
    cubic.initial_window(INITIAL_WINDOW);
    tc.congestion_controller_factory(Arc::new(DedicatedLineConfig::new(cubic)));
    Arc::new(tc)
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

/// Ingress sockets bound for some services, not yet serving.
#[derive(Debug, Default)]
pub(crate) struct BoundServices {
    pub udp: HashMap<u32, Arc<UdpIngress>>,
    pub tcp: Vec<(TcpIngress, tokio::net::TcpListener)>,
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
                daemon::sockbuf::enlarge(&sock, cfg.tuning.socket_buffer, &service.name);
                let sock = SplitSocket::new(sock)?;
                bound.udp.insert(
                    service.key,
                    Arc::new(UdpIngress::new(
                        service,
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
                bound.tcp.push((TcpIngress::new(service, dst), listener));
            }
        }
    }
    Ok(bound)
}

/// Starts serving bound ingress sockets, each stoppable on its own.
pub(crate) fn serve_services(
    ctx: &Arc<Context>,
    tasks: &Supervisor,
    udp: impl IntoIterator<Item = Arc<UdpIngress>>,
    tcp: Vec<(TcpIngress, tokio::net::TcpListener)>,
) {
    let mut stops = ctx.stops();
    for ingress in udp {
        let stop = ctx.cancel.child_token();
        stops.services.insert(ingress.service_key(), stop.clone());
        let run = ingress.run(
            ctx.forwarder.clone(),
            ctx.admission.clone(),
            ctx.metrics.clone(),
            stop,
        );
        tasks.spawn("udp ingress", OnFailure::StopDaemon, run);
    }
    for (service, listener) in tcp {
        let stop = ctx.cancel.child_token();
        stops.services.insert(service.key, stop.clone());
        let run = crate::tcp::ingress::run(ctx.clone(), service, listener, stop);
        tasks.spawn("tcp ingress", OnFailure::StopDaemon, run);
    }
}

/// Starts keeping the link to a neighbor up, stoppable on its own.
pub(crate) fn dial_neighbor(
    ctx: &Arc<Context>,
    tasks: &Supervisor,
    endpoint: &Endpoint,
    (key, id): (u32, String),
) {
    let stop = ctx.cancel.child_token();
    ctx.stops().links.insert(key, stop.clone());
    tasks.spawn(
        "dial loop",
        OnFailure::StopDaemon,
        crate::links::dial::dial_loop(ctx.clone(), endpoint.clone(), key, id, stop),
    );
}

/// Starts a relay on an already bound UDP socket (QUIC) and, optionally, an
/// already bound admin listener. Service ingress sockets are bound here, from the
/// topology. Returns once everything listens; links come up in the background.
pub async fn start(
    cfg: RelayConfig,
    socket: std::net::UdpSocket,
    admin: Option<std::net::TcpListener>,
) -> anyhow::Result<RelayHandle> {
    let topo = cfg.topology.clone();
    let me_idx = cfg.node;
    let me_id = topo.node(me_idx).id.clone();
    let me = topo.node_key(me_idx);
    let neighbors = Side {
        topology: &topo,
        node: me_idx,
    }
    .neighbors();

    let policy = PeerPolicy::new(neighbors.iter().map(|(_, id)| id.clone())).admitting(ADMITS);
    let (server, client) = tls_configs(&cfg, &policy)?;
    let quic_inode = daemon::sock_drops::socket_inode(&socket);
    let (endpoint, quic_addr) =
        daemon::quic::quic_endpoint(socket, server, cfg.tuning.socket_buffer)?;

    let service_metrics = ServiceMetrics::new(&topo, me_idx);
    let bound = bind_services(
        &cfg,
        &service_metrics,
        topo.services.iter().filter(|s| s.ingress_node == me_idx),
    )
    .await?;

    let tasks = Supervisor::new(tokio_util::sync::CancellationToken::new());
    let cancel = tasks.cancel_token().clone();
    let metrics = Arc::new(Metrics::default());
    let admission = Arc::new(Admission::new(cfg.tuning.max_flows_per_service));
    let links = Arc::new(LinkRegistry::new(&me_id, tasks.spawner()));
    let forwarder = Arc::new(Forwarder::new(
        me,
        RoutesInForce::from_topology(ForwardingTable::from_topology(&topo, me_idx)),
        links.clone(),
        metrics.clone(),
    ));
    let egress = Arc::new(EgressTable::new(
        forwarder.clone(),
        metrics.clone(),
        admission.clone(),
        tasks.spawner(),
        cancel.clone(),
    ));
    let live = LiveConfig {
        cfg: Arc::new(cfg),
        neighbors,
        udp_ingress: bound.udp.clone(),
        services: service_metrics,
        client,
    };
    let ctx = Arc::new(Context {
        me,
        me_id: me_id.clone(),
        live: Arc::new(ArcSwap::from_pointee(live)),
        forwarder,
        links,
        metrics,
        egress,
        admission,
        handshakes: Arc::default(),
        link_totals: LinkTotals::default(),
        links_changed: Notify::new(),
        link_downs: Default::default(),
        sessions: Default::default(),
        policy,
        stops: Mutex::new(Stops::default()),
        tasks: tasks.spawner(),
        cancel,
        started: Instant::now(),
        quic_inode,
        egress_drops: Mutex::default(),
    });

    tasks.spawn(
        "peer accept loop",
        OnFailure::StopDaemon,
        crate::links::accept::accept_loop(ctx.clone(), endpoint.clone()),
    );
    for neighbor in ctx.live().neighbors.iter().cloned() {
        dial_neighbor(&ctx, &tasks, &endpoint, neighbor);
    }
    serve_services(&ctx, &tasks, bound.udp.into_values(), bound.tcp);
    tasks.spawn(
        "flow expiry",
        OnFailure::StopDaemon,
        crate::flow_expiry::expire_loop(ctx.clone()),
    );
    tasks.spawn(
        "controller session",
        OnFailure::StopDaemon,
        crate::control_session::controller_loop(ctx.clone(), endpoint.clone()),
    );

    let admin_addr = match admin {
        Some(listener) => {
            listener.set_nonblocking(true)?;
            let addr = listener.local_addr()?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            tasks.spawn(
                "admin API",
                OnFailure::StopDaemon,
                daemon::admin::serve(
                    listener,
                    crate::admin::router(ctx.clone(), quic_addr),
                    daemon::admin::AdminLimits::default(),
                    Arc::default(),
                    ctx.cancel.clone(),
                    tasks.spawner(),
                ),
            );
            Some(addr)
        }
        None => None,
    };
    info!(node = %me_id, %quic_addr, ?admin_addr, "relay started");
    Ok(RelayHandle {
        ctx,
        endpoint,
        tasks,
        quic_addr,
        admin_addr,
        ingress_addrs: bound.addrs,
    })
}

impl RelayHandle {
    pub fn status(&self) -> Status {
        crate::status::status(&self.ctx, self.quic_addr)
    }

    /// What `/metrics` would serve now (OpenMetrics text), without HTTP.
    pub fn metrics_text(&self) -> String {
        crate::exposition::scrape(&self.ctx)
            .encode()
            .unwrap_or_else(|e| format!("# cannot encode: {e}"))
    }

    /// The kernel's drops on this relay's UDP sockets, by socket (`quic`,
    /// `ingress/<service>`, `egress/<service>`), as `/metrics` reports them;
    /// empty where `/proc` cannot say.
    pub fn socket_drops(&self) -> Vec<(String, u64)> {
        crate::exposition::socket_drop_series(&self.ctx).unwrap_or_default()
    }

    pub fn node_id(&self) -> &str {
        &self.ctx.me_id
    }

    /// Whether the link to `peer` (a node id) carries traffic: connected, probes passing.
    pub fn peer_up(&self, peer: &str) -> bool {
        self.ctx.links.is_up(topology::wire_key(peer))
    }

    /// How many times the link to `peer` (a node id) has gone down since the
    /// relay started (probes lost, connection closed, replacement never passed).
    pub fn link_downs(&self, peer: &str) -> u64 {
        self.ctx.link_downs.epoch(topology::wire_key(peer))
    }

    /// Replaces the forwarding table, keeping the version and term in force
    /// (tests use it).
    pub fn set_table(&self, table: ForwardingTable) {
        let routes = self.ctx.forwarder.routes();
        self.ctx.forwarder.install(RoutesInForce {
            version: routes.version,
            term: routes.term,
            table,
        });
    }

    /// The routes in force: table and version.
    pub fn routes(&self) -> Arc<RoutesInForce> {
        self.ctx.forwarder.routes()
    }

    /// The placed path that the flow of `client` at this relay's ingress of
    /// UDP service `service` takes: the wire keys of the nodes after this
    /// relay, the last its egress. `None` when `client` has no flow here or the
    /// controller has not split the traffic to that egress (the flow follows
    /// the table's route).
    pub fn placed_path(&self, service: &str, client: SocketAddr) -> Option<Vec<u32>> {
        let live = self.ctx.live();
        let ingress = live.udp_ingress.values().find(|i| i.name() == service)?;
        let flow = ingress.flow_of(client)?;
        let routes = self.ctx.forwarder.routes();
        let placed = routes.table.route(ingress.egress_key())?.placed.as_ref()?;
        let path = placed.pick(self.ctx.me, ingress.service_key(), flow);
        Some(path.hops().to_vec())
    }

    /// The forwarding table in force.
    pub fn table(&self) -> ForwardingTable {
        self.ctx.forwarder.routes().table.clone()
    }

    /// Reads the config in force (for callers comparing before a reload).
    pub fn config(&self) -> Arc<RelayConfig> {
        self.ctx.live().cfg.clone()
    }

    /// Why the relay stopped on its own (a task it cannot run without failed).
    pub fn failure(&self) -> Option<String> {
        self.tasks.fatal()
    }

    /// Resolves when the relay stops on its own (a failed task) or is shut down.
    pub async fn stopped(&self) {
        self.ctx.cancel.cancelled().await
    }

    /// Stops every task, closes every link, and waits (bounded) for the endpoint.
    pub async fn shutdown(self) {
        daemon::quic::stop(&self.tasks, &self.endpoint, b"relay shutting down").await;
        info!(node = %self.ctx.me_id, "relay stopped");
    }
}
