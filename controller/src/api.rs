//! The controller's admin HTTP API: nodes, links, routes, health (JSON),
//! Prometheus metrics (`/metrics`, see [`crate::exposition`]) and the live
//! map's page ([`crate::map`]). GET only. Every
//! handler reads the compute task's latest snapshot and never waits on a
//! computation.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use daemon::admin;
use serde::Serialize;
use topology::LinkIdx;

use crate::shared::Shared;

#[derive(Debug, Serialize)]
pub struct NodeInfo {
    pub id: String,
    pub city: String,
    pub country: String,
    pub region: String,
    pub connected: bool,
    pub connected_for_s: Option<f64>,
    pub table_version_applied: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct LinkInfo {
    pub a: String,
    pub b: String,
    pub kind: String,
    pub name: Option<String>,
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
}

#[derive(Debug, Serialize)]
pub struct RouteInfo {
    pub from: String,
    pub to: String,
    pub version: u64,
    /// The path in force, hop by hop (following each node's primary).
    pub path: Vec<String>,
    pub cost_ms: Option<f64>,
    /// The first hop's loop-free backup, if any.
    pub backup_next_hop: Option<String>,
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
    topo.links
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let idx = LinkIdx(i as u32);
            let status = view.link(idx).copied().unwrap_or(crate::view::LinkStatus {
                view: crate::linkstate::LinkView::UNKNOWN,
                in_force: None,
                cost: None,
            });
            let (v, in_force) = (status.view, status.in_force);
            LinkInfo {
                a: topo.node(l.a).id.clone(),
                b: topo.node(l.b).id.clone(),
                kind: l.kind.to_string(),
                name: l.name.clone(),
                state: status.state(),
                since_s: v
                    .since
                    .map(|t| now.saturating_duration_since(t).as_secs_f64()),
                rtt_ms: v.rtt.map(ms),
                min_rtt_ms: v.min_rtt.map(ms),
                jitter_ms: v.jitter.map(ms),
                loss: v.loss,
                stale: v.stale,
                expected_ms: l.delay_us as f64 / 1000.0,
                cost_in_force_ms: in_force.map(|c| c as f64 / 1000.0),
            }
        })
        .collect()
}

/// The route in force from `from` to `to`, or an error message.
pub fn route(shared: &Shared, from: &str, to: &str) -> Result<RouteInfo, String> {
    let topo = shared.topology();
    let src = topo.require_node(from).map_err(|e| e.to_string())?;
    let dst = topo.require_node(to).map_err(|e| e.to_string())?;
    let view = shared.view();
    let tables = &view.tables;
    let mut path = vec![topo.node(src).id.clone()];
    let mut at = src;
    let mut cost: u64 = 0;
    while at != dst {
        let Some(e) = tables.node(at).entries.get(&dst) else {
            return Ok(RouteInfo {
                from: from.into(),
                to: to.into(),
                version: tables.version,
                path,
                cost_ms: None,
                backup_next_hop: None,
            });
        };
        // What routes pay: a held-down link used as a last resort shows its penalty.
        cost += view.link(e.primary.link).and_then(|l| l.cost).unwrap_or(0);
        at = e.primary.node;
        path.push(topo.node(at).id.clone());
        if path.len() > topo.nodes.len() + 1 {
            return Err("the tables in force loop; this is a bug".into());
        }
    }
    let backup = if src == dst {
        None
    } else {
        tables.node(src).entries.get(&dst).and_then(|e| e.backup)
    };
    Ok(RouteInfo {
        from: from.into(),
        to: to.into(),
        version: tables.version,
        path,
        cost_ms: Some(cost as f64 / 1000.0),
        backup_next_hop: backup.map(|b| topo.node(b.node).id.clone()),
    })
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
        .route("/healthz", get(|| async { admin::ok_text() }))
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
        .merge(crate::map::routes())
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    crate::exposition::scrape(&s).response()
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
