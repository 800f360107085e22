//! The controller's admin HTTP API: nodes, links, routes, services, health
//! (JSON), Prometheus metrics (`/metrics`, see [`crate::exposition`]), the live
//! map's page ([`crate::map`]) and its event stream ([`crate::stream`]). GET
//! only. Every handler reads the compute task's latest snapshot and never
//! waits on a computation. `docs/map.md` is the contract of these shapes.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use daemon::admin;
use serde::Serialize;
use topology::{LinkIdx, NodeIdx, Topology};

use crate::quality::Quality;
use crate::routing::WalkEnd;
use crate::shared::Shared;
use crate::view::{FleetView, LinkStatus};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    pub id: String,
    pub city: String,
    pub country: String,
    pub region: String,
    /// Degrees north, from the topology.
    pub lat: f64,
    /// Degrees east, from the topology.
    pub lon: f64,
    pub connected: bool,
    pub connected_for_s: Option<f64>,
    pub table_version_applied: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkInfo {
    pub a: String,
    pub b: String,
    pub kind: String,
    pub name: Option<String>,
    /// `up`, `degraded`, `down` or `held-down` ([`LinkStatus::shown_state`]).
    pub state: &'static str,
    /// Seconds since the state last changed (None: unchanged since the controller started).
    pub since_s: Option<f64>,
    pub rtt_ms: Option<f64>,
    pub min_rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss: f64,
    /// No fresh report from either end.
    pub stale: bool,
    pub expected_ms: f64,
    /// The cost routes use now (None: down or held down).
    pub cost_in_force_ms: Option<f64>,
    /// Each way, from the topology (None: the topology does not say).
    pub capacity_mbps: Option<u64>,
    /// Traffic a → b, Mbit/s (None until relays report load).
    pub load_ab_mbps: Option<f64>,
    pub load_ba_mbps: Option<f64>,
    /// `load_ab_mbps / capacity_mbps` (None when either is unknown).
    pub utilisation_ab: Option<f64>,
    pub utilisation_ba: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteInfo {
    pub from: String,
    pub to: String,
    pub version: u64,
    /// The path in force, hop by hop (following each node's primary).
    pub path: Vec<String>,
    pub cost_ms: Option<f64>,
    /// The first hop's loop-free backup, if any.
    pub backup_next_hop: Option<String>,
    /// Where a packet goes when `from` repairs around the failure of the
    /// path's first hop: along its repair segment, then as the tables carry it
    /// (or, without a segment, to the backup, then as the tables carry it).
    pub repair_path: Option<Vec<String>>,
    /// Sum of the links' expected one-way delays along `path`.
    pub expected_ms: Option<f64>,
    /// Sum of half the links' measured RTTs along `path`.
    pub measured_ms: Option<f64>,
    /// Where placement split the traffic from `from` to `to` over paths of
    /// its own: each path (from `from`) and its share of the flows. Empty:
    /// the traffic follows `path`.
    pub placed: Vec<PlacedShare>,
}

/// One placed path of a pair and its share of the pair's flows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlacedShare {
    pub path: Vec<String>,
    /// 0 to 1; the shares of a pair add up to 1.
    pub share: f64,
}

/// A service of the topology and the path it takes now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceInfo {
    pub name: String,
    pub protocol: String,
    pub ingress: String,
    pub egress: String,
    /// Hop by hop, ingress to egress; empty while no route reaches the egress.
    pub path: Vec<String>,
    /// End-to-end figures of the clients' datagrams, measured at the egress
    /// over the last 10 s (see [`crate::quality`]); None while it reported
    /// none (no traffic, or a TCP service).
    pub one_way_ms_p50: Option<f64>,
    pub one_way_ms_p99: Option<f64>,
    pub loss: Option<f64>,
    pub reordered: Option<f64>,
    /// Both directions in full: the clients' datagrams at the egress, the
    /// target's replies at the ingress.
    pub forward: Option<Quality>,
    pub replies: Option<Quality>,
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn nodes(shared: &Shared) -> Vec<NodeInfo> {
    let sessions = shared.sessions();
    shared
        .topology()
        .nodes
        .iter()
        .map(|n| {
            let s = sessions.get(&n.id);
            NodeInfo {
                id: n.id.clone(),
                city: n.city.clone(),
                country: n.country.clone(),
                region: n.region.clone(),
                lat: n.lat,
                lon: n.lon,
                connected: s.is_some(),
                connected_for_s: s.map(|s| s.since.elapsed().as_secs_f64()),
                table_version_applied: s.map(|s| s.applied),
            }
        })
        .collect()
}

pub fn links(shared: &Shared) -> Vec<LinkInfo> {
    let topo = shared.topology();
    let view = shared.view();
    let now = std::time::Instant::now();
    (0..topo.links.len() as u32)
        .map(|i| {
            link_info(
                topo,
                view.link(LinkIdx(i)).unwrap_or(&LinkStatus::UNKNOWN),
                LinkIdx(i),
                now,
            )
        })
        .collect()
}

/// `load / capacity`, when both are known.
pub fn utilisation(load_mbps: Option<f64>, capacity_mbps: Option<u64>) -> Option<f64> {
    Some(load_mbps? / capacity_mbps.filter(|&c| c > 0)? as f64)
}

fn link_info(
    topo: &Topology,
    status: &LinkStatus,
    idx: LinkIdx,
    now: std::time::Instant,
) -> LinkInfo {
    let l = topo.link(idx);
    let v = status.view;
    let [load_ab, load_ba] = status.load_mbps;
    LinkInfo {
        a: topo.node(l.a).id.clone(),
        b: topo.node(l.b).id.clone(),
        kind: l.kind.to_string(),
        name: l.name.clone(),
        state: status.shown_state(),
        since_s: status
            .state_since
            .map(|t| now.saturating_duration_since(t).as_secs_f64()),
        rtt_ms: v.rtt.map(ms),
        min_rtt_ms: v.min_rtt.map(ms),
        jitter_ms: v.jitter.map(ms),
        loss: v.loss,
        stale: v.stale,
        expected_ms: l.delay_us as f64 / 1000.0,
        cost_in_force_ms: status.in_force.map(|c| c as f64 / 1000.0),
        capacity_mbps: l.capacity_mbps,
        load_ab_mbps: load_ab,
        load_ba_mbps: load_ba,
        utilisation_ab: utilisation(load_ab, l.capacity_mbps),
        utilisation_ba: utilisation(load_ba, l.capacity_mbps),
    }
}

/// The route in force from `from` to `to`, or an error message.
pub fn route(shared: &Shared, from: &str, to: &str) -> Result<RouteInfo, String> {
    let topo = shared.topology();
    let src = topo.require_node(from).map_err(|e| e.to_string())?;
    let dst = topo.require_node(to).map_err(|e| e.to_string())?;
    let mut info = route_in(topo, &shared.view(), src, dst)?;
    (info.from, info.to) = (from.into(), to.into());
    Ok(info)
}

/// `GET /api/v1/placement`: how placement runs, every pair it split and the
/// shares, and where it falls short.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlacementInfo {
    pub enabled: bool,
    pub runs: u64,
    pub unit_kbps: u64,
    pub ceiling: f64,
    /// Pairs whose traffic placement split over paths of its own; the rest
    /// follow their routes.
    pub pairs: Vec<PairSplit>,
    /// Link directions planned past the ceiling (no placement fits), worst first.
    pub over_ceiling: Vec<OverCeilingInfo>,
    /// Demand on paths over its latency budget, and with no path, Mbit/s.
    pub over_budget_mbps: f64,
    pub unplaced_mbps: f64,
    /// N−1: undersea lines whose loss the headroom cannot absorb, with the
    /// demand at risk if each were cut.
    pub at_risk: Vec<AtRiskInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtRiskInfo {
    /// The line's name, or `a–b`.
    pub line: String,
    pub mbps: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairSplit {
    pub from: String,
    pub to: String,
    pub placed: Vec<PlacedShare>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverCeilingInfo {
    /// The direction: from `from` to `to`.
    pub from: String,
    pub to: String,
    pub utilisation: f64,
}

pub fn placement(shared: &Shared) -> PlacementInfo {
    let topo = shared.topology();
    let view = shared.view();
    let id = |n: NodeIdx| topo.node(n).id.clone();
    let pairs = view
        .tables
        .tables
        .iter()
        .enumerate()
        .flat_map(|(src, t)| {
            let src = NodeIdx(src as u32);
            t.placed.keys().map(move |&dst| (src, dst))
        })
        .map(|(src, dst)| PairSplit {
            from: id(src),
            to: id(dst),
            placed: placed_shares(topo, &view.tables, src, dst),
        })
        .collect();
    let p = &view.placement;
    PlacementInfo {
        enabled: p.enabled,
        runs: p.runs,
        unit_kbps: p.unit_kbps,
        ceiling: p.ceiling,
        pairs,
        over_ceiling: p
            .shortfalls
            .over_ceiling
            .iter()
            .map(|o| {
                let (from, to) = o.ends(topo);
                OverCeilingInfo {
                    from: id(from),
                    to: id(to),
                    utilisation: o.utilisation,
                }
            })
            .collect(),
        over_budget_mbps: p.shortfalls.over_budget_kbps as f64 / 1000.0,
        unplaced_mbps: p.shortfalls.unplaced_kbps as f64 / 1000.0,
        at_risk: p
            .shortfalls
            .at_risk
            .iter()
            .map(|&(l, kbps)| AtRiskInfo {
                line: crate::placing::line_name(topo, l),
                mbps: kbps as f64 / 1000.0,
            })
            .collect(),
    }
}

/// The split placement gave the traffic from `src` to `dst`, if any.
fn placed_shares(
    topo: &Topology,
    tables: &crate::routing::RouteTables,
    src: NodeIdx,
    dst: NodeIdx,
) -> Vec<PlacedShare> {
    let Some(split) = tables
        .tables
        .get(src.get())
        .and_then(|t| t.placed.get(&dst))
    else {
        return Vec::new();
    };
    let total: f64 = split.paths().map(|(_, w)| f64::from(w)).sum();
    split
        .paths()
        .map(|(hops, w)| PlacedShare {
            path: std::iter::once(src)
                .chain(hops.iter().copied())
                .map(|n| topo.node(n).id.clone())
                .collect(),
            share: f64::from(w) / total.max(1.0),
        })
        .collect()
}

/// The route in force from `src` to `dst` in `view`.
pub fn route_in(
    topo: &Topology,
    view: &FleetView,
    src: NodeIdx,
    dst: NodeIdx,
) -> Result<RouteInfo, String> {
    let tables = &view.tables;
    let id = |n: NodeIdx| topo.node(n).id.clone();
    let walk = tables.walk(src, dst);
    let path: Vec<String> = std::iter::once(id(src))
        .chain(walk.hops.iter().map(|h| id(h.node)))
        .collect();
    let mut info = RouteInfo {
        from: id(src),
        to: id(dst),
        version: tables.version,
        path,
        cost_ms: None,
        backup_next_hop: None,
        repair_path: None,
        expected_ms: None,
        measured_ms: None,
        placed: placed_shares(topo, tables, src, dst),
    };
    match walk.end {
        WalkEnd::Reached => {}
        WalkEnd::NoRoute => return Ok(info),
        WalkEnd::Loop => return Err("the tables in force loop; this is a bug".into()),
    }
    let status = |l: LinkIdx| view.link(l).unwrap_or(&LinkStatus::UNKNOWN);
    // What routes pay: a held-down link used as a last resort shows its penalty.
    let cost: u64 = walk
        .hops
        .iter()
        .map(|h| status(h.link).cost.unwrap_or(0))
        .sum();
    info.cost_ms = Some(cost as f64 / 1000.0);
    info.expected_ms = Some(
        walk.hops
            .iter()
            .map(|h| topo.link(h.link).delay_us as f64 / 1000.0)
            .sum(),
    );
    info.measured_ms = walk
        .hops
        .iter()
        .map(|h| status(h.link).view.rtt.map(|r| ms(r) / 2.0))
        .sum();
    let backup = if src == dst {
        None
    } else {
        tables.node(src).entries.get(&dst).and_then(|e| e.backup)
    };
    info.backup_next_hop = backup.map(|b| id(b.node));
    let segment = (src != dst)
        .then(|| tables.node(src).entries.get(&dst).and_then(|e| e.repair))
        .flatten();
    // A repair segment, then the tables from its release node (checked sound
    // when the tables were computed).
    let repaired = segment.and_then(|p| {
        let rest = tables.walk(p.release(), dst);
        (rest.end == WalkEnd::Reached).then(|| {
            std::iter::once(id(src))
                .chain(p.hops().iter().map(|n| id(*n)))
                .chain(rest.hops.iter().map(|h| id(h.node)))
                .collect()
        })
    });
    // The backup is loop-free: from it, the tables never lead back through `src`.
    info.repair_path = repaired.or_else(|| {
        backup.and_then(|b| {
            let rest = tables.walk(b.node, dst);
            let ok = rest.end == WalkEnd::Reached && rest.hops.iter().all(|h| h.node != src);
            ok.then(|| {
                [id(src), id(b.node)]
                    .into_iter()
                    .chain(rest.hops.iter().map(|h| id(h.node)))
                    .collect()
            })
        })
    });
    Ok(info)
}

/// Every service of the topology with the path it takes now.
pub fn services(shared: &Shared) -> Vec<ServiceInfo> {
    let topo = shared.topology();
    let view = shared.view();
    let now = std::time::Instant::now();
    topo.services
        .iter()
        .map(|s| {
            let path = match route_in(topo, &view, s.ingress_node, s.egress_node) {
                Ok(r) if r.cost_ms.is_some() => r.path,
                _ => Vec::new(),
            };
            let forward = shared.quality.quality(s.egress_node, &s.name, now);
            ServiceInfo {
                name: s.name.clone(),
                protocol: s.protocol.to_string(),
                ingress: topo.node(s.ingress_node).id.clone(),
                egress: topo.node(s.egress_node).id.clone(),
                path,
                one_way_ms_p50: forward.as_ref().and_then(|q| q.one_way_ms_p50),
                one_way_ms_p99: forward.as_ref().and_then(|q| q.one_way_ms_p99),
                loss: forward.as_ref().map(|q| q.loss),
                reordered: forward.as_ref().map(|q| q.reordered),
                forward,
                replies: shared.quality.quality(s.ingress_node, &s.name, now),
            }
        })
        .collect()
}

/// Whether the controller is ready (`GET /healthz`): at least one relay of
/// the topology has a session with it, so it hears the fleet (and, leading,
/// reaches it with tables). Not ready says why. How much of the fleet is
/// connected is `overlay status`'s business, not readiness.
pub fn readiness(shared: &Shared) -> Result<(), String> {
    let nodes = shared.topology().nodes.len();
    if nodes > 0 && shared.sessions().is_empty() {
        return Err(format!("no relay connected (0 of {nodes})"));
    }
    Ok(())
}

/// The router of the controller's admin API.
pub fn router(shared: Arc<Shared>) -> Router {
    routes()
        .method_not_allowed_fallback(admin::get_only)
        .fallback(admin::not_found)
        .with_state(shared)
}

/// The API's routes, for a server that adds its own (the lab).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/healthz",
            get(|State(s): State<Arc<Shared>>| async move { admin::readiness(readiness(&s)) }),
        )
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/nodes",
            get(|State(s): State<Arc<Shared>>| async move { admin::json(&nodes(&s)) }),
        )
        .route(
            "/api/v1/links",
            get(|State(s): State<Arc<Shared>>| async move { admin::json(&links(&s)) }),
        )
        .route("/api/v1/routes", get(route_query))
        .route("/api/v1/placement", get(placement_query))
        .route(
            "/api/v1/services",
            get(|State(s): State<Arc<Shared>>| async move { admin::json(&services(&s)) }),
        )
        .route("/api/v1/stream", get(crate::stream::handler))
        .merge(crate::map::routes())
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    crate::exposition::scrape(&s).response()
}

async fn placement_query(State(s): State<Arc<Shared>>) -> Response {
    admin::json(&placement(&s))
}

async fn route_query(
    State(s): State<Arc<Shared>>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    match (q.get("from"), q.get("to")) {
        (Some(f), Some(t)) => match route(&s, f, t) {
            Ok(info) => admin::json(&info),
            Err(e) => admin::error(StatusCode::BAD_REQUEST, &e),
        },
        _ => admin::error(
            StatusCode::BAD_REQUEST,
            "give both `from` and `to`, e.g. /api/v1/routes?from=sha&to=lax",
        ),
    }
}

#[cfg(test)]
#[path = "api_tests.rs"]
pub(crate) mod tests;
