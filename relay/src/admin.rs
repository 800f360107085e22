//! The relay's admin API: `/healthz` (readiness, see
//! [`crate::status::readiness`]), `/api/v1/status` and `/metrics`, GET only,
//! as an axum router (tests call it without a socket).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use daemon::admin;

use crate::context::Context;

#[derive(Debug, Clone)]
struct Admin {
    ctx: Arc<Context>,
    quic_addr: SocketAddr,
}

/// The router of a relay's admin API.
pub fn router(ctx: Arc<Context>, quic_addr: SocketAddr) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/status", get(status))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(admin::get_only)
        .fallback(admin::not_found)
        .with_state(Admin { ctx, quic_addr })
}

async fn healthz(State(a): State<Admin>) -> Response {
    admin::readiness(crate::status::readiness(&a.ctx))
}

async fn status(State(a): State<Admin>) -> Response {
    admin::json(&crate::status::status(&a.ctx, a.quic_addr))
}

async fn metrics(State(a): State<Admin>) -> Response {
    crate::exposition::scrape(&a.ctx).response()
}
