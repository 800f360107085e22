//! `GET /api/v1/stream`: the live map's server-sent events (docs/map.md).
//!
//! On connect: `retry: 2000`, then a `snapshot` (nodes, links, the recent
//! timeline); after it every frame of [`crate::live::Live`] (`links`, `nodes`,
//! `timeline`), and a `: keep-alive` comment after a quiet spell. The response
//! never waits on a computation: the snapshot reads the published view, and
//! later frames were built once by the hub for every stream. A stream ends
//! when its client falls too far behind, when the controller stops, and when
//! the admin server shuts down ([`daemon::admin::Shutdown`]). Past the cap on
//! open streams the answer is 503.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use daemon::admin;
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use crate::api::{LinkInfo, NodeInfo};
use crate::live::TimelineEvent;
use crate::shared::Shared;

/// How long a browser waits before it reconnects, ms.
pub const RETRY_MS: u64 = 2000;

static AT_CAP_WARNING: daemon::throttle::Throttle =
    daemon::throttle::Throttle::new(Duration::from_secs(10));

/// One event frame: `event: NAME`, one `data:` line of compact JSON, a blank
/// line. Compact JSON has no raw newline (inside strings they are escaped), so
/// one `data:` line always holds it.
pub fn frame(event: &str, data: &impl Serialize) -> Bytes {
    match serde_json::to_string(data) {
        Ok(json) => Bytes::from(format!("event: {event}\ndata: {json}\n\n")),
        Err(e) => {
            tracing::warn!(event, "cannot encode a stream event: {e}");
            Bytes::from_static(b": an event could not be encoded\n\n")
        }
    }
}

/// The comment sent when nothing else was for a while.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

#[derive(Debug, Serialize)]
struct Snapshot {
    nodes: Vec<NodeInfo>,
    links: Vec<LinkInfo>,
    timeline: Vec<TimelineEvent>,
}

/// `GET /api/v1/stream`.
pub async fn handler(
    State(shared): State<Arc<Shared>>,
    server: Option<Extension<admin::Shutdown>>,
) -> Response {
    let live = &shared.live;
    let Some((permit, recent, frames)) = live.open() else {
        if let Some(held) = AT_CAP_WARNING.allow() {
            tracing::warn!(
                limit = live.limits.max_streams,
                repeats = held,
                "live map: stream refused, every slot taken"
            );
        }
        let mut r = admin::error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "{} live map streams are open, the most this controller serves; close a map tab or retry later",
                live.limits.max_streams
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    };
    let snapshot = Snapshot {
        nodes: crate::api::nodes(&shared),
        links: crate::api::links(&shared),
        timeline: recent,
    };
    let mut first = format!("retry: {RETRY_MS}\n\n").into_bytes();
    first.extend_from_slice(&frame("snapshot", &snapshot));
    let client = Client {
        first: Some(Bytes::from(first)),
        frames,
        controller: shared.cancel.clone(),
        server: server.map(|Extension(s)| s.0).unwrap_or_default(),
        keep_alive: live.limits.keep_alive,
        _slot: permit,
    };
    let body = Body::from_stream(futures_util::stream::unfold(client, Client::next));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
            // Proxies (nginx) must pass each frame on at once.
            (header::HeaderName::from_static("x-accel-buffering"), "no"),
        ],
        body,
    )
        .into_response()
}

/// One open stream, as the response body's state.
struct Client {
    first: Option<Bytes>,
    frames: broadcast::Receiver<Bytes>,
    controller: CancellationToken,
    server: CancellationToken,
    keep_alive: Duration,
    /// Holds a slot of the cap until the body is dropped.
    _slot: OwnedSemaphorePermit,
}

enum Next {
    Frame(Bytes),
    End,
}

impl Client {
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, Client)> {
        if let Some(first) = self.first.take() {
            return Some((Ok(first), self));
        }
        let next = tokio::select! {
            biased;
            _ = self.controller.cancelled() => Next::End,
            _ = self.server.cancelled() => Next::End,
            r = tokio::time::timeout(self.keep_alive, self.frames.recv()) => match r {
                Err(_) => Next::Frame(Bytes::from_static(KEEP_ALIVE)),
                Ok(Ok(frame)) => Next::Frame(frame),
                Ok(Err(RecvError::Lagged(missed))) => {
                    tracing::debug!(missed, "live map: a stream fell behind; ended, its page reconnects");
                    Next::End
                }
                Ok(Err(RecvError::Closed)) => Next::End,
            },
        };
        match next {
            Next::Frame(frame) => Some((Ok(frame), self)),
            Next::End => None,
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
