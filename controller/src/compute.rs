//! The compute task: the one owner of the link-state database and the route
//! selector. Sessions send it their relays' reports; it merges them, recomputes
//! routes (on a blocking thread, so a large fleet's computation never holds up
//! the runtime), and publishes the tables (to sessions) and a [`FleetView`]
//! (to the API). Reports that arrive while it computes are taken together.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use topology::paths::Cost;
use topology::{LinkIdx, NodeIdx, Topology};

use crate::linkstate::{LinkReport, LinkStateDb};
use crate::metrics::ControllerMetrics;
use crate::placing::{LivePlacement, PlacementConfig};
use crate::routing::{RouteSelector, RouteTables};
use crate::view::{FleetView, LinkStatus, PlacementView};

/// Reports waiting for the compute task; beyond this a session's report is
/// dropped (the next one, a second later, says the same or newer).
pub const QUEUE: usize = 4096;

static IGNORED_WARNING: daemon::throttle::Throttle =
    daemon::throttle::Throttle::new(Duration::from_secs(10));
static PLACEMENT_WARNING: daemon::throttle::Throttle =
    daemon::throttle::Throttle::new(Duration::from_secs(10));
/// A shortfall that lasts is said again at most this often.
static SHORTFALL_WARNING: daemon::throttle::Throttle =
    daemon::throttle::Throttle::new(Duration::from_secs(60));

/// One relay's report of its links.
#[derive(Debug)]
pub struct Reports {
    pub from: NodeIdx,
    pub links: Vec<control_protocol::LinkReport>,
    pub draining: bool,
    /// What the relay sends toward each destination, for placement.
    pub demand: Vec<control_protocol::DemandReport>,
    /// Told once the report is taken into the tables published.
    pub done: Option<oneshot::Sender<()>>,
}

/// The database, selector and placement, moved to a blocking thread and back
/// for each computation.
#[derive(Debug)]
pub struct State {
    db: LinkStateDb,
    selector: RouteSelector,
    /// Per link, [a → b, b → a]: the sending end's last reported rate, Mbit/s,
    /// and when.
    loads: Vec<[Option<(f64, std::time::Instant)>; 2]>,
    /// Per (source, destination): what the source last reported sending, Mbit/s, and when.
    demand: BTreeMap<(NodeIdx, NodeIdx), (f64, std::time::Instant)>,
    placing: LivePlacement,
}

/// A reported load older than this is not shown (the relay went away).
const LOAD_FRESH: Duration = Duration::from_secs(5);

/// What the compute task publishes.
#[derive(Debug)]
pub struct Published {
    pub tables: watch::Sender<Arc<RouteTables>>,
    pub view: ArcSwap<FleetView>,
    /// Counts the views published, so that readers who follow changes (the
    /// live map's stream) wake on each one instead of polling.
    pub views: watch::Sender<u64>,
}

impl Published {
    pub fn new(topology: &Arc<Topology>, selector: &RouteSelector, db: &LinkStateDb) -> Self {
        let tables = Arc::new(selector.routes().clone());
        Published {
            tables: watch::channel(tables.clone()).0,
            view: ArcSwap::from_pointee(
                view_of(
                    topology,
                    selector,
                    db,
                    tables,
                    &[],
                    PlacementView::default(),
                    std::time::Instant::now(),
                )
                .since(None, std::time::Instant::now()),
            ),
            views: watch::channel(0).0,
        }
    }
}

fn view_of(
    topology: &Topology,
    selector: &RouteSelector,
    db: &LinkStateDb,
    tables: Arc<RouteTables>,
    loads: &[[Option<(f64, std::time::Instant)>; 2]],
    placement: PlacementView,
    now: std::time::Instant,
) -> FleetView {
    let fresh = |l: Option<(f64, std::time::Instant)>| {
        l.filter(|(_, at)| now.saturating_duration_since(*at) <= LOAD_FRESH)
            .map(|(mbps, _)| mbps)
    };
    let links = (0..topology.links.len() as u32)
        .map(LinkIdx)
        .map(|l| LinkStatus {
            view: db.view(l),
            in_force: selector.in_force(l),
            settle_until: selector.settle_until(l),
            cost: selector.metric().cost(l),
            state_since: None,
            load_mbps: loads
                .get(l.get())
                .map_or([None, None], |[ab, ba]| [fresh(*ab), fresh(*ba)]),
        })
        .collect();
    let draining = (0..topology.nodes.len() as u32)
        .map(NodeIdx)
        .filter(|&n| selector.is_draining(n))
        .collect();
    FleetView {
        links,
        draining,
        tables,
        placement,
    }
}

fn ms_to_duration(ms: Option<f64>) -> Option<Duration> {
    ms.filter(|v| v.is_finite() && *v >= 0.0 && *v < 3.6e6)
        .map(|v| Duration::from_secs_f64(v / 1000.0))
}

impl State {
    pub fn new(
        topology: &Topology,
        db: LinkStateDb,
        selector: RouteSelector,
        placement: PlacementConfig,
    ) -> State {
        State {
            db,
            selector,
            loads: vec![[None; 2]; topology.links.len()],
            demand: BTreeMap::new(),
            placing: LivePlacement::new(placement),
        }
    }

    /// Feeds a relay's link reports into the database.
    fn take(&mut self, topo: &Topology, r: &Reports, now: std::time::Instant) {
        if self.selector.is_draining(r.from) != r.draining {
            info!(
                node = %topo.node(r.from).id,
                draining = r.draining,
                "relay drain state changed: routes move accordingly"
            );
            self.selector.set_draining(r.from, r.draining);
        }
        self.demand.retain(|(src, _), _| *src != r.from);
        for d in &r.demand {
            if let Some(dst) = topo.node_idx(&d.dst).filter(|&dst| dst != r.from) {
                if d.mbps.is_finite() && d.mbps >= 0.0 {
                    self.demand.insert((r.from, dst), (d.mbps, now));
                }
            }
        }
        let (mut ignored, mut first_error) = (0usize, None::<String>);
        for l in &r.links {
            let Some(link) = topo
                .node_idx(&l.peer)
                .and_then(|peer| topo.link_between(r.from, peer))
            else {
                ignored += 1;
                first_error
                    .get_or_insert_with(|| format!("no link to `{}` in the topology", l.peer));
                continue;
            };
            if let Some(mbps) = l.tx_mbps.filter(|m| m.is_finite() && *m >= 0.0) {
                let dir = usize::from(topo.link(link).a != r.from);
                self.loads[link.get()][dir] = Some((mbps, now));
            }
            let report = LinkReport {
                from: r.from,
                link,
                up: l.up,
                rtt: ms_to_duration(l.rtt_ms),
                min_rtt: ms_to_duration(l.min_rtt_ms),
                jitter: ms_to_duration(l.jitter_ms),
                loss: l.loss,
                up_for: l
                    .up_for_s
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(Duration::from_secs_f64),
            };
            if let Err(e) = self.db.handle_report(report, now) {
                ignored += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
        // One line per report at most, and those rate-limited: a relay with a
        // stale topology reports the same unknown links every second.
        if let Some(first) = first_error {
            if let Some(held) = IGNORED_WARNING.allow() {
                warn!(
                    node = %topo.node(r.from).id,
                    ignored,
                    of = r.links.len(),
                    repeats = held,
                    "ignored link reports: {first}"
                );
            }
        }
    }

    /// Advances time and recomputes; the time it took, if it recomputed.
    fn compute(&mut self, topo: &Topology, now: std::time::Instant) -> Option<Duration> {
        self.db.handle_timeout(now);
        let links_in_force = |s: &Self| {
            (0..topo.links.len())
                .filter(|&l| s.selector.in_force(LinkIdx(l as u32)).is_some())
                .count()
        };
        let in_force_before = links_in_force(self);
        // Only when someone reads the debug log: each link's cost before.
        let before: Option<Vec<Option<Cost>>> =
            tracing::enabled!(tracing::Level::DEBUG).then(|| {
                (0..topo.links.len())
                    .map(|l| self.selector.in_force(LinkIdx(l as u32)))
                    .collect()
            });
        let started = std::time::Instant::now();
        let took = self
            .selector
            .update(&self.db, now)
            .then(|| started.elapsed());
        if let (Some(_), Some(before)) = (took, before) {
            for (l, was) in before.into_iter().enumerate() {
                let link = LinkIdx(l as u32);
                let now_in_force = self.selector.in_force(link);
                if was != now_in_force {
                    let (a, b) = (topo.link(link).a, topo.link(link).b);
                    tracing::debug!(
                        link = %format!("{}–{}", topo.node(a).id, topo.node(b).id),
                        was_us = was,
                        in_force_us = now_in_force,
                        measured_rtt_ms = self.db.view(link).min_rtt.map(|d| d.as_secs_f64() * 1e3),
                        "link cost in force changed"
                    );
                }
            }
        }
        // A link gone from the routes is news placement acts on at once: the
        // demand placed across it is falling back on the tables' path, which
        // may not hold it.
        let lost_a_link = links_in_force(self) < in_force_before;
        let demand_mbps: f64 = (self.demand.values())
            .filter(|(_, at)| now.saturating_duration_since(*at) <= LOAD_FRESH)
            .map(|(mbps, _)| mbps)
            .sum();
        if self.placing.due(now)
            || self.placing.new_demand_due(demand_mbps, now)
            || (lost_a_link && self.placing.config.enabled)
        {
            self.place(topo, now);
        }
        took
    }

    /// Places the demand reported lately (see [`crate::placing`]).
    fn place(&mut self, topo: &Topology, now: std::time::Instant) {
        let fresh = |at: &std::time::Instant| now.saturating_duration_since(*at) <= LOAD_FRESH;
        let demand: BTreeMap<(NodeIdx, NodeIdx), f64> = self
            .demand
            .iter()
            .filter(|(_, (_, at))| fresh(at))
            .map(|(pair, (mbps, _))| (*pair, *mbps))
            .collect();
        let loads: Vec<[Option<f64>; 2]> = self
            .loads
            .iter()
            .map(|dirs| dirs.map(|l| l.filter(|(_, at)| fresh(at)).map(|(m, _)| m)))
            .collect();
        let routes = self.selector.routes();
        let table_path = |src: NodeIdx, dst: NodeIdx| {
            let walk = routes.walk(src, dst);
            std::iter::once(src)
                .chain(walk.hops.iter().map(|h| h.node))
                .collect::<Vec<_>>()
        };
        let metric = self.selector.metric().clone();
        let before = self.placing.shortfalls.clone();
        match self
            .placing
            .run(topo, &metric, &demand, &loads, table_path, now)
        {
            Ok(changed) => {
                if changed {
                    info!(
                        version = self.placing.version,
                        split_pairs = self.placing.splits().len(),
                        "placement changed"
                    );
                }
                let short = &self.placing.shortfalls;
                let new_kind = short.kind() != before.kind();
                if !short.is_empty() && (new_kind || SHORTFALL_WARNING.allow().is_some()) {
                    warn!("placement falls short: {}", short.describe(topo));
                }
            }
            Err(e) => {
                if let Some(held) = PLACEMENT_WARNING.allow() {
                    warn!(
                        repeats = held,
                        "placement failed, the one in force stays: {e}"
                    );
                }
            }
        }
    }

    /// The tables to push: the selector's, with each node's placed splits;
    /// their version moves on when either changes.
    fn tables(&self) -> RouteTables {
        let mut tables = self.selector.routes().clone();
        tables.version += self.placing.version;
        for (&(src, dst), split) in self.placing.splits() {
            if let Some(t) = tables.tables.get_mut(src.get()) {
                if t.entries.contains_key(&dst) {
                    t.placed.insert(dst, *split);
                }
            }
        }
        tables
    }

    fn tables_version(&self) -> u64 {
        self.selector.routes().version + self.placing.version
    }
}

/// Runs the compute task until `cancel`.
pub async fn run(
    topology: Arc<Topology>,
    state: State,
    mut reports: mpsc::Receiver<Reports>,
    published: Arc<Published>,
    metrics: Arc<ControllerMetrics>,
    cancel: CancellationToken,
) {
    let mut state = Some(Box::new(state));
    loop {
        let Some(st) = state.as_ref() else { return };
        let next = st.selector.poll_timeout().map(Instant::from_std);
        let tick = Instant::now() + Duration::from_secs(1);
        let wake_at = next.map_or(tick, |n| n.min(tick));
        let mut batch = Vec::new();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            r = reports.recv() => match r {
                Some(r) => batch.push(r),
                None => return,
            },
            _ = tokio::time::sleep_until(wake_at) => {}
        }
        while let Ok(r) = reports.try_recv() {
            batch.push(r);
        }
        let Some(mut st) = state.take() else { return };
        let topo = topology.clone();
        let (done, took, st) = match tokio::task::spawn_blocking(move || {
            let now = std::time::Instant::now();
            let mut done = Vec::new();
            for r in &mut batch {
                st.take(&topo, r, now);
                done.extend(r.done.take());
            }
            let took = st.compute(&topo, now);
            (done, took, st)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                // The state went with the panic; the controller cannot route.
                tracing::error!("route computation failed: {e}");
                panic!("route computation failed: {e}");
            }
        };
        if let Some(took) = took {
            metrics.observe_computation(took);
        }
        publish(&topology, &st, &published, &metrics);
        state = Some(st);
        for d in done {
            let _ = d.send(());
        }
    }
}

/// Publishes the tables if their version moved on, and the view always (and
/// counts it in `views`).
fn publish(topology: &Topology, st: &State, published: &Published, metrics: &ControllerMetrics) {
    published.tables.send_if_modified(|current| {
        if st.tables_version() <= current.version {
            return false;
        }
        let routes = st.tables();
        info!(version = routes.version, "routes changed");
        metrics.count_route_changes(current, &routes);
        *current = Arc::new(routes);
        true
    });
    let tables = published.tables.borrow().clone();
    let prev = published.view.load();
    let now = std::time::Instant::now();
    let placing = &st.placing;
    let placement = PlacementView {
        enabled: placing.config.enabled,
        runs: placing.runs,
        unit_kbps: placing.config.unit_kbps,
        ceiling: placing.config.ceiling,
        shortfalls: placing.shortfalls.clone(),
    };
    let view = view_of(
        topology,
        &st.selector,
        &st.db,
        tables,
        &st.loads,
        placement,
        now,
    )
    .since(Some(&prev), now);
    published.view.store(Arc::new(view));
    published.views.send_modify(|n| *n += 1);
}
