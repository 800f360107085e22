//! The running controller: accepts relay sessions over QUIC (mutual TLS), feeds
//! their link reports to the link-state database, recomputes routes with
//! stability, and pushes each relay its table (whole on connect, then diffs).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use quinn::{Endpoint, Incoming, TransportConfig};
use relay::control::{self, ControllerMessage, RelayMessage, RouteEntry, TableUpdate};
use relay::tls::{self, PeerPolicy};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use topology::{NodeIdx, Topology};

use crate::config::ControllerConfig;
use crate::linkstate::{LinkReport, LinkStateDb};
use crate::prom::ControllerMetrics;
use crate::routing::{diff, NodeTable, RouteSelector, RouteTables};

/// What the controller knows, behind one lock (updates are short and rare).
#[derive(Debug)]
pub struct State {
    pub db: LinkStateDb,
    pub selector: RouteSelector,
}

/// A connected relay.
#[derive(Debug, Clone)]
pub struct Session {
    pub remote: SocketAddr,
    pub since: Instant,
    pub applied: u64,
    conn_id: usize,
}

#[derive(Debug)]
pub struct Shared {
    pub cfg: ControllerConfig,
    state: Mutex<State>,
    tables: watch::Sender<Arc<RouteTables>>,
    sessions: Mutex<BTreeMap<String, Session>>,
    wake: Notify,
    pub cancel: CancellationToken,
    pub started: Instant,
    /// Route changes and computation times, for `GET /metrics`.
    pub metrics: ControllerMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is a few map updates; a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn topology(&self) -> &Arc<Topology> {
        &self.cfg.topology
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    pub fn sessions(&self) -> BTreeMap<String, Session> {
        lock(&self.sessions).clone()
    }

    pub fn tables(&self) -> Arc<RouteTables> {
        self.tables.borrow().clone()
    }

    /// Recomputes routes now; publishes the tables if their version moved on,
    /// counting the route changes they push and timing the computation.
    fn recompute(&self) {
        let now = std::time::Instant::now();
        let (routes, took) = {
            let mut st = self.state();
            let State { db, selector } = &mut *st;
            db.handle_timeout(now);
            let started = std::time::Instant::now();
            let computed = selector.update(db, now);
            (
                selector.routes().clone(),
                computed.then(|| started.elapsed()),
            )
        };
        if let Some(took) = took {
            self.metrics.observe_computation(took);
        }
        // Compared and replaced under the channel's lock: two recomputations at
        // once neither count one change twice nor publish an older version.
        self.tables.send_if_modified(|current| {
            if routes.version <= current.version {
                return false;
            }
            info!(version = routes.version, "routes changed");
            self.metrics.count_route_changes(current, &routes);
            *current = Arc::new(routes);
            true
        });
    }
}

/// Receive and send buffer asked for on the controller's QUIC socket.
const CONTROLLER_SOCKET_BUFFER: usize = 4 << 20;

/// A started controller.
pub struct ControllerHandle {
    pub shared: Arc<Shared>,
    endpoint: Endpoint,
    tasks: JoinSet<()>,
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

/// Starts a controller on a bound UDP socket and an optional bound admin listener.
pub async fn start(
    cfg: ControllerConfig,
    socket: std::net::UdpSocket,
    admin: Option<std::net::TcpListener>,
) -> anyhow::Result<ControllerHandle> {
    let topo = cfg.topology.clone();
    let policy = PeerPolicy::new(topo.nodes.iter().map(|n| n.id.clone()));
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
        relay::daemon::quic_endpoint(socket, server, CONTROLLER_SOCKET_BUFFER)?;

    let selector = RouteSelector::new(topo.clone(), cfg.stability);
    let (tables, _) = watch::channel(Arc::new(selector.routes().clone()));
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            db: LinkStateDb::new(topo.clone()),
            selector,
        }),
        tables,
        sessions: Mutex::new(BTreeMap::new()),
        wake: Notify::new(),
        cancel: CancellationToken::new(),
        started: Instant::now(),
        metrics: ControllerMetrics::new(topo.nodes.len()),
        cfg,
    });

    let mut tasks = JoinSet::new();
    tasks.spawn(accept_loop(shared.clone(), endpoint.clone()));
    tasks.spawn(compute_loop(shared.clone()));
    let admin_addr = match admin {
        Some(listener) => {
            listener.set_nonblocking(true)?;
            let addr = listener.local_addr()?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let s = shared.clone();
            let handler: relay::http::Handler =
                Arc::new(move |r: &relay::http::Request| crate::api::respond(&s, r));
            tasks.spawn(relay::http::serve(listener, handler, shared.cancel.clone()));
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

    /// Relays with a live session, by node id.
    pub fn connected(&self) -> Vec<String> {
        self.shared.sessions().into_keys().collect()
    }

    pub async fn shutdown(mut self) {
        relay::daemon::stop(
            &self.shared.cancel,
            &self.endpoint,
            &mut self.tasks,
            b"controller shutting down",
        )
        .await;
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
    mut signals: tokio::sync::mpsc::Receiver<relay::daemon::Signal>,
    notify: &relay::daemon::Notifier,
    load: impl Fn() -> Result<ControllerConfig, topology::ConfigErrors>,
) -> anyhow::Result<()> {
    use relay::daemon::Signal;
    let mut handle = start(cfg, socket, admin).await?;
    let line = |h: &ControllerHandle| {
        format!(
            "routing, {} of {} relays connected, routes v{}",
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
        && new.stability == old.stability;
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
        match relay::daemon::bind(new.listen, new.admin) {
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

/// Recomputes on every report and whenever a hold or hold-down expires.
async fn compute_loop(shared: Arc<Shared>) {
    loop {
        let next = shared
            .state()
            .selector
            .poll_timeout()
            .map(Instant::from_std);
        let tick = Instant::now() + Duration::from_secs(1);
        let wake_at = next.map_or(tick, |n| n.min(tick));
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            _ = shared.wake.notified() => {}
            _ = tokio::time::sleep_until(wake_at) => {}
        }
        shared.recompute();
    }
}

async fn accept_loop(shared: Arc<Shared>, endpoint: Endpoint) {
    let cancel = shared.cancel.clone();
    relay::daemon::accept_each(endpoint, cancel, |incoming| {
        session(shared.clone(), incoming)
    })
    .await;
}

fn ms_to_duration(ms: Option<f64>) -> Option<Duration> {
    ms.filter(|v| v.is_finite() && *v >= 0.0 && *v < 3.6e6)
        .map(|v| Duration::from_secs_f64(v / 1000.0))
}

/// One relay's session: identify, take its reports, push its table.
async fn session(shared: Arc<Shared>, incoming: Incoming) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(Duration::from_secs(5), incoming).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return warn!(%remote, "refused relay connection: {e}"),
        Err(_) => return warn!(%remote, "refused relay connection: handshake timed out"),
    };
    let topo = shared.topology().clone();
    let Some(node) = tls::peer_node_id(&conn, topo.nodes.iter().map(|n| n.id.as_str())) else {
        conn.close(2u32.into(), b"not a node of this fleet");
        return warn!(%remote, "refused relay connection: certificate names no node");
    };
    let Some(idx) = topo.node_idx(&node) else {
        return;
    };
    let span = tracing::info_span!("relay", node = %node);
    async {
        if let Err(e) = serve_relay(&shared, &conn, &node, idx, remote).await {
            info!("session ended: {e}");
        }
        let mut sessions = lock(&shared.sessions);
        if sessions
            .get(&node)
            .is_some_and(|s| s.conn_id == conn.stable_id())
        {
            sessions.remove(&node);
        }
    }
    .instrument(span)
    .await;
}

async fn serve_relay(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    node: &str,
    idx: NodeIdx,
    remote: SocketAddr,
) -> Result<(), String> {
    let (mut send, mut recv) = tokio::time::timeout(Duration::from_secs(5), conn.accept_bi())
        .await
        .map_err(|_| "no control stream within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    match control::read::<RelayMessage, _>(&mut recv)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(RelayMessage::Hello { node: claimed, .. }) if claimed == node => {}
        other => return Err(format!("expected hello from {node}, got {other:?}")),
    }
    lock(&shared.sessions).insert(
        node.to_string(),
        Session {
            remote,
            since: Instant::now(),
            applied: 0,
            conn_id: conn.stable_id(),
        },
    );
    info!(%remote, "relay connected");
    let mut rx = shared.tables.subscribe();
    // Wait for this relay's first report (bounded) so a freshly started
    // controller does not push routes over links it has not heard about.
    let mut held: Option<NodeTable> = None;
    let first_report = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(first_report);
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return Ok(()),
            m = control::read::<RelayMessage, _>(&mut recv) => {
                match m.map_err(|e| e.to_string())? {
                    Some(RelayMessage::Links { links, draining }) => {
                        take_reports(shared, idx, &links, draining);
                        if held.is_none() {
                            shared.recompute();
                            held = Some(send_table(&mut send, shared.topology(), &shared.tables(), idx, None).await?);
                        }
                    }
                    Some(RelayMessage::Applied { version }) => {
                        if let Some(s) = lock(&shared.sessions).get_mut(node) {
                            s.applied = version;
                        }
                    }
                    Some(RelayMessage::Hello { .. }) => return Err("a second hello".into()),
                    None => return Ok(()),
                }
            }
            _ = &mut first_report, if held.is_none() => {
                held = Some(send_table(&mut send, shared.topology(), &shared.tables(), idx, None).await?);
            }
            changed = rx.changed(), if held.is_some() => {
                if changed.is_err() {
                    return Ok(());
                }
                let tables = rx.borrow_and_update().clone();
                held = Some(send_table(&mut send, shared.topology(), &tables, idx, held.as_ref()).await?);
            }
        }
    }
}

/// Feeds a relay's link reports into the database and wakes the route computation.
fn take_reports(
    shared: &Shared,
    from: NodeIdx,
    links: &[relay::control::LinkReport],
    draining: bool,
) {
    let topo = shared.topology();
    let now = std::time::Instant::now();
    let mut st = shared.state();
    if st.selector.is_draining(from) != draining {
        info!(
            draining,
            "relay drain state changed: routes move accordingly"
        );
        st.selector.set_draining(from, draining);
    }
    for l in links {
        let Some(peer) = topo.node_idx(&l.peer) else {
            continue;
        };
        let Some(link) = topo.link_between(from, peer) else {
            continue;
        };
        let report = LinkReport {
            from,
            link,
            up: l.up,
            rtt: ms_to_duration(l.rtt_ms),
            min_rtt: ms_to_duration(l.min_rtt_ms),
            jitter: ms_to_duration(l.jitter_ms),
            loss: l.loss,
        };
        if let Err(e) = st.db.handle_report(report, now) {
            warn!("ignored a link report: {e}");
        }
    }
    drop(st);
    shared.wake.notify_one();
}

/// Sends the table for `idx`: whole if the relay holds nothing from us yet, else
/// the difference from what it holds. Returns the table it now holds.
async fn send_table(
    send: &mut quinn::SendStream,
    topo: &Topology,
    tables: &RouteTables,
    idx: NodeIdx,
    held: Option<&NodeTable>,
) -> Result<NodeTable, String> {
    let new = tables.node(idx).clone();
    let update = match held {
        None => TableUpdate {
            version: tables.version,
            full: true,
            set: new
                .entries
                .iter()
                .map(|(d, e)| entry(topo, *d, e))
                .collect(),
            remove: Vec::new(),
        },
        Some(old) => {
            // Sent even when empty: the relay then reports the version it holds,
            // so operators can see which relays are current.
            let d = diff(old, &new);
            TableUpdate {
                version: tables.version,
                full: false,
                set: d
                    .to_add
                    .iter()
                    .chain(&d.to_change)
                    .map(|(dst, e)| entry(topo, *dst, e))
                    .collect(),
                remove: d
                    .to_remove
                    .iter()
                    .map(|n| topo.node(*n).id.clone())
                    .collect(),
            }
        }
    };
    control::write(send, &ControllerMessage::Table(update))
        .await
        .map_err(|e| e.to_string())?;
    Ok(new)
}

fn entry(topo: &Topology, dst: NodeIdx, e: &crate::routing::TableEntry) -> RouteEntry {
    RouteEntry {
        dst: topo.node(dst).id.clone(),
        primary: topo.node(e.primary.node).id.clone(),
        backup: e.backup.map(|b| topo.node(b.node).id.clone()),
    }
}
