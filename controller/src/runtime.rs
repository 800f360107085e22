//! A running controller: start-up, the handle that owns it, the daemon's
//! signal loop, and reload (a restart in place).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use daemon::tls::{self, PeerPolicy};
use daemon::{Notifier, OnFailure, Signal, Signals, Supervisor};
use quinn::{Endpoint, TransportConfig};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::compute::{self, Published};
use crate::config::ControllerConfig;
use crate::election::ElectionView;
use crate::linkstate::LinkStateDb;
use crate::metrics::ControllerMetrics;
use crate::routing::{RouteSelector, RouteTables};
use crate::shared::Shared;

/// Receive and send buffer asked for on the controller's QUIC socket.
const CONTROLLER_SOCKET_BUFFER: usize = 4 << 20;

/// A started controller. Dropping it stops it; [`ControllerHandle::shutdown`]
/// stops it in order.
pub struct ControllerHandle {
    pub shared: Arc<Shared>,
    endpoint: Endpoint,
    tasks: Supervisor,
    pub quic_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for ControllerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerHandle")
            .field("quic_addr", &self.quic_addr)
            .finish()
    }
}

impl Drop for ControllerHandle {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        self.endpoint.close(0u32.into(), b"controller stopped");
    }
}

/// Starts a controller on a bound UDP socket and an optional bound admin listener.
pub async fn start(
    cfg: ControllerConfig,
    socket: std::net::UdpSocket,
    admin: Option<std::net::TcpListener>,
) -> anyhow::Result<ControllerHandle> {
    let topo = cfg.topology.clone();
    let policy =
        PeerPolicy::new(topo.nodes.iter().map(|n| n.id.clone())).admitting("relay of this fleet");
    let mut server = tls::server_config(cfg.identity.clone(), (*cfg.roots).clone(), policy)
        .context("building the TLS server config")?;
    let mut transport = TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(1)));
    if let Ok(idle) = Duration::from_secs(10).try_into() {
        transport.max_idle_timeout(Some(idle));
    }
    server.transport_config(Arc::new(transport));
    // Every relay handshakes at once when a fleet (or the lab) starts: the
    // default 208 KiB receive buffer drops Initials and stalls handshakes
    // for seconds of retransmission.
    let (endpoint, quic_addr) =
        daemon::quic::quic_endpoint(socket, server, CONTROLLER_SOCKET_BUFFER)?;

    let tasks = Supervisor::new(CancellationToken::new());
    let selector = RouteSelector::new(topo.clone(), cfg.stability);
    let db = LinkStateDb::new(topo.clone());
    let published = Arc::new(Published::new(&topo, &selector, &db));
    let (reports, reports_rx) = mpsc::channel(compute::QUEUE);
    let metrics = Arc::new(ControllerMetrics::new(topo.nodes.len()));
    let election = Arc::new(
        tokio::sync::watch::channel(match &cfg.etcd {
            Some(_) => ElectionView::starting(),
            None => ElectionView::sole(&cfg.id),
        })
        .0,
    );
    let shared = Arc::new(Shared {
        published: published.clone(),
        reports,
        sessions: Mutex::new(BTreeMap::new()),
        reports_dropped: AtomicU64::new(0),
        quality: Default::default(),
        handshakes: Arc::default(),
        cancel: tasks.cancel_token().clone(),
        started: Instant::now(),
        metrics: metrics.clone(),
        live: crate::live::Live::default(),
        election: election.clone(),
        cfg,
    });

    if let Some(etcd) = shared.cfg.etcd.clone() {
        info!(endpoints = ?etcd.endpoints, prefix = %etcd.prefix, lease_ttl_s = etcd.lease_ttl.as_secs(), "high availability: campaigning for leadership through etcd");
        tasks.spawn(
            "leader election",
            OnFailure::StopDaemon,
            crate::election::etcd::run(
                etcd,
                shared.cfg.id.clone(),
                election,
                shared.cancel.clone(),
            ),
        );
    }

    tasks.spawn(
        "route computation",
        OnFailure::StopDaemon,
        compute::run(
            topo.clone(),
            compute::State::new(&topo, db, selector, shared.cfg.placement.clone()),
            reports_rx,
            published,
            metrics,
            shared.cancel.clone(),
        ),
    );
    // The live map's stream can go without: its failure is logged, routing goes on.
    tasks.spawn(
        "live map hub",
        OnFailure::Log,
        crate::hub::run(shared.clone()),
    );
    let s = shared.clone();
    tasks.spawn(
        "relay accept loop",
        OnFailure::StopDaemon,
        daemon::quic::accept_each(
            endpoint.clone(),
            shared.cancel.clone(),
            tasks.spawner(),
            daemon::quic::AcceptOptions {
                limits: daemon::handshake_gate::GateLimits::CONTROLLER,
                handshake_timeout: Duration::from_secs(5),
                counters: shared.handshakes.clone(),
                known: {
                    let relays: std::collections::HashSet<SocketAddr> =
                        topo.nodes.iter().map(|n| n.addr).collect();
                    Arc::new(move |addr| relays.contains(&addr))
                },
            },
            move |pending| crate::session::session(s.clone(), pending),
        ),
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
                    crate::api::router(shared.clone()),
                    daemon::admin::AdminLimits::default(),
                    Arc::default(),
                    shared.cancel.clone(),
                    tasks.spawner(),
                ),
            );
            Some(addr)
        }
        None => None,
    };
    info!(id = %shared.cfg.id, %quic_addr, ?admin_addr, "controller started");
    Ok(ControllerHandle {
        shared,
        endpoint,
        tasks,
        quic_addr,
        admin_addr,
    })
}

impl ControllerHandle {
    pub fn tables(&self) -> Arc<RouteTables> {
        self.shared.tables()
    }

    /// The term this controller pushes tables with, if it leads now.
    pub fn leads(&self) -> Option<u64> {
        self.shared.leads()
    }

    /// Relays with a live session, by node id.
    pub fn connected(&self) -> Vec<String> {
        self.shared.sessions().into_keys().collect()
    }

    /// Why the controller stopped on its own (a task it cannot run without failed).
    pub fn failure(&self) -> Option<String> {
        self.tasks.fatal()
    }

    /// Resolves when the controller stops on its own or is shut down.
    pub async fn stopped(&self) {
        self.shared.cancel.cancelled().await
    }

    pub async fn shutdown(self) {
        daemon::quic::stop(&self.tasks, &self.endpoint, b"controller shutting down").await;
        info!("controller stopped");
    }
}

/// Runs a controller until a stop signal. A reload signal re-reads the config
/// through `load`: a config with errors, or one that changes the id or the
/// addresses, is refused and logged, and the running one stays; an unchanged
/// one changes nothing; any other change (topology, certificates, stability
/// knobs) restarts the controller in place on the same addresses. Its state is
/// all soft: relays keep forwarding on their tables meanwhile, reconnect within
/// their backoff, and their next reports rebuild it. Tells systemd through
/// `notify` when it is ready, reloading and stopping, with a status line.
pub async fn run(
    cfg: ControllerConfig,
    socket: std::net::UdpSocket,
    admin: Option<std::net::TcpListener>,
    mut signals: impl Signals,
    notify: &Notifier,
    load: impl Fn() -> Result<ControllerConfig, topology::ConfigErrors>,
) -> anyhow::Result<()> {
    let mut handle = start(cfg, socket, admin).await?;
    let line = |h: &ControllerHandle| {
        let role = match h.shared.leads() {
            Some(term) if h.shared.cfg.etcd.is_some() => format!("leader (term {term})"),
            Some(_) => "routing".to_string(),
            None => "standby".to_string(),
        };
        format!(
            "{role}, {} of {} relays connected, routes v{}",
            h.connected().len(),
            h.shared.topology().nodes.len(),
            h.tables().version
        )
    };
    notify.ready(&line(&handle));
    let mut refresh = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            signal = signals.recv() => match signal {
                Some(Signal::Reload) => {
                    notify.reloading();
                    handle = reload(handle, load()).await?;
                    notify.ready(&line(&handle));
                }
                Some(Signal::Stop) | None => break,
            },
            _ = handle.stopped() => {
                let why = handle.failure().unwrap_or_else(|| "stopped".to_string());
                handle.shutdown().await;
                anyhow::bail!("controller failed: {why}");
            }
            _ = refresh.tick(), if notify.is_active() => notify.status(&line(&handle)),
        }
    }
    notify.stopping();
    handle.shutdown().await;
    Ok(())
}

/// Applies a re-read config (see [`run`]); fails only if the controller cannot
/// start again on its own addresses.
async fn reload(
    handle: ControllerHandle,
    loaded: Result<ControllerConfig, topology::ConfigErrors>,
) -> anyhow::Result<ControllerHandle> {
    let new = match loaded {
        Ok(new) => new,
        Err(errors) => {
            tracing::error!(
                "reload refused, the running config stays:\n{}",
                errors.to_string().trim_end()
            );
            return Ok(handle);
        }
    };
    let old = &handle.shared.cfg;
    if new.id != old.id || new.listen != old.listen || new.admin != old.admin {
        tracing::error!(
            "reload refused, the running config stays: the id, QUIC address or admin address changed; restart the controller to apply it"
        );
        return Ok(handle);
    }
    let unchanged = new.topology == old.topology
        && new.identity.cert_chain == old.identity.cert_chain
        && new.roots.roots == old.roots.roots
        && new.stability == old.stability
        && new.etcd == old.etcd;
    if unchanged {
        info!("reload applied: nothing changed");
        return Ok(handle);
    }
    let (nodes, links) = (new.topology.nodes.len(), new.topology.links.len());
    handle.shutdown().await;
    // The old endpoint lets go of its socket once its connections have drained
    // (a few PTOs): retry the bind until then.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (socket, admin) = loop {
        match daemon::quic::bind(new.listen, new.admin) {
            Ok(bound) => break bound,
            Err(e) if Instant::now() < deadline => {
                tracing::debug!("rebinding after reload: {e:#}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let handle = start(new, socket, admin).await?;
    info!(
        nodes,
        links, "reload applied: controller restarted in place with the new config"
    );
    Ok(handle)
}
