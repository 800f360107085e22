//! The live map's stream through the router, without a socket: framing, the
//! snapshot, the cap, a slow client, keep-alive, shutdown, and the hub's
//! events and pace driven by published views.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::{Request, StatusCode};
use axum::Extension;
use futures_util::StreamExt as _;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::*;
use crate::api::tests::{all_reported_up, publish, shared, shared_with, DIAMOND};
use crate::live::{EventKind, LiveLimits};

async fn open(shared: &Arc<Shared>) -> axum::response::Response {
    crate::api::router(shared.clone())
        .oneshot(
            Request::get("/api/v1/stream")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer")
}

/// The next frame, within `within`.
async fn next(body: &mut BodyDataStream, within: Duration) -> Option<String> {
    tokio::time::timeout(within, body.next())
        .await
        .expect("a frame or the end in time")
        .map(|r| String::from_utf8(r.expect("data").to_vec()).expect("UTF-8"))
}

/// (event, data) of a frame.
fn parse(frame: &str) -> (&str, Value) {
    let event = frame
        .lines()
        .find_map(|l| l.strip_prefix("event: "))
        .expect("an event line");
    let data = frame
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    (event, serde_json::from_str(data).expect("JSON data"))
}

const SOON: Duration = Duration::from_secs(5);

#[test]
fn a_frame_is_one_event_line_one_compact_data_line_and_a_blank_line() {
    let f = frame(
        "links",
        &serde_json::json!([{"name": "two\nlines", "x": 1}]),
    );
    assert_eq!(
        f.as_ref(),
        b"event: links\ndata: [{\"name\":\"two\\nlines\",\"x\":1}]\n\n"
    );
}

#[tokio::test]
async fn a_stream_starts_with_retry_and_a_snapshot_then_carries_events() {
    let s = shared();
    for i in 0..60 {
        s.live
            .event(EventKind::Cut, format!("event {i}"), Some(("aaa", "bbb")));
    }
    let r = open(&s).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(r.headers().get("content-length").is_none());
    let mut body = r.into_body().into_data_stream();
    let first = next(&mut body, SOON).await.expect("the snapshot");
    let rest = first.strip_prefix("retry: 2000\n\n").expect("retry first");
    let (event, snap) = parse(rest);
    assert_eq!(event, "snapshot");
    assert!(
        rest.ends_with("\n\n") && rest.trim_end().lines().count() == 2,
        "{rest}"
    );
    let (_, nodes) = crate::api::tests::get(&s, "/api/v1/nodes").await;
    assert_eq!(snap["nodes"], nodes, "nodes as GET /api/v1/nodes");
    assert_eq!(snap["links"].as_array().map(Vec::len), Some(4));
    let timeline = snap["timeline"].as_array().expect("timeline");
    assert_eq!(timeline.len(), 50, "the last 50");
    assert_eq!(timeline[0]["text"], "event 10", "oldest first");
    assert_eq!(timeline[49]["text"], "event 59");

    s.live
        .event(EventKind::Restore, "restore aaa–bbb", Some(("aaa", "bbb")));
    let f = next(&mut body, SOON).await.expect("a frame");
    let (event, ev) = parse(&f);
    assert_eq!(event, "timeline");
    assert_eq!(ev["kind"], "restore");
    assert_eq!(
        (&ev["a"], &ev["b"]),
        (&Value::from("aaa"), &Value::from("bbb"))
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!(
        ev["at_s"].as_f64().is_some_and(|t| (t - now).abs() < 60.0),
        "{ev}"
    );
}

#[tokio::test]
async fn past_the_cap_a_stream_is_refused_with_503_until_one_closes() {
    let limits = LiveLimits {
        max_streams: 2,
        ..LiveLimits::default()
    };
    let s = shared_with(DIAMOND, limits);
    let one = open(&s).await;
    let two = open(&s).await;
    assert_eq!(
        (one.status(), two.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(s.live.streams_open(), 2);
    let three = open(&s).await;
    assert_eq!(three.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(three.headers()["content-type"], "application/json");
    assert!(three.headers().contains_key("retry-after"));
    let body = axum::body::to_bytes(three.into_body(), 1 << 16)
        .await
        .expect("body");
    let e: Value = serde_json::from_slice(&body).expect("JSON");
    assert!(e["error"].as_str().is_some_and(|m| m.contains('2')), "{e}");
    drop(one);
    assert_eq!(s.live.streams_open(), 1);
    assert_eq!(open(&s).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_falls_a_queue_behind_is_ended_not_buffered() {
    let limits = LiveLimits {
        queue: 4,
        ..LiveLimits::default()
    };
    let s = shared_with(DIAMOND, limits);
    let mut body = open(&s).await.into_body().into_data_stream();
    next(&mut body, SOON).await.expect("the snapshot");
    for i in 0..3 {
        s.live.event(EventKind::Cut, format!("kept {i}"), None);
    }
    assert!(next(&mut body, SOON)
        .await
        .is_some_and(|f| f.contains("kept 0")));
    for i in 0..10 {
        s.live.event(EventKind::Cut, format!("flood {i}"), None);
    }
    assert_eq!(
        next(&mut body, SOON).await,
        None,
        "ended: its page reconnects"
    );
    assert_eq!(s.live.streams_open(), 0, "its slot is free");
}

#[tokio::test(start_paused = true)]
async fn a_quiet_stream_gets_a_keep_alive_comment_every_15_s() {
    let s = shared();
    let mut body = open(&s).await.into_body().into_data_stream();
    next(&mut body, SOON).await.expect("the snapshot");
    let t0 = Instant::now();
    let f = next(&mut body, Duration::from_secs(60))
        .await
        .expect("a frame");
    assert_eq!(f, ": keep-alive\n\n");
    assert_eq!(t0.elapsed().as_secs(), 15);
}

#[tokio::test]
async fn a_stream_ends_when_the_server_or_the_controller_stops() {
    let s = shared();
    let server = CancellationToken::new();
    let router =
        crate::api::router(s.clone()).layer(Extension(daemon::admin::Shutdown(server.clone())));
    let r = router
        .oneshot(
            Request::get("/api/v1/stream")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    let mut by_server = r.into_body().into_data_stream();
    let mut by_controller = open(&s).await.into_body().into_data_stream();
    next(&mut by_server, SOON).await.expect("the snapshot");
    next(&mut by_controller, SOON).await.expect("the snapshot");
    server.cancel();
    assert_eq!(next(&mut by_server, Duration::from_millis(100)).await, None);
    s.cancel.cancel();
    assert_eq!(
        next(&mut by_controller, Duration::from_millis(100)).await,
        None
    );
}

/// A stream with the hub running, its snapshot read.
async fn watch(s: &Arc<Shared>) -> (BodyDataStream, tokio::task::JoinHandle<()>) {
    let hub = tokio::spawn(crate::hub::run(s.clone()));
    // Let it subscribe (as a controller's hub has long done when a page connects).
    tokio::task::yield_now().await;
    let mut body = open(s).await.into_body().into_data_stream();
    next(&mut body, SOON).await.expect("the snapshot");
    (body, hub)
}

/// Frames until `pred` holds for one (which is returned), within `within`.
async fn until(
    body: &mut BodyDataStream,
    within: Duration,
    pred: impl Fn(&str, &Value) -> bool,
) -> (String, Value) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let f = next(body, left).await.expect("the stream goes on");
        let (event, data) = parse(&f);
        if pred(event, &data) {
            return (event.to_string(), data);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_hub_sends_a_cut_link_within_250_ms_with_its_timeline_events() {
    let s = shared();
    let (mut body, hub) = watch(&s).await;
    publish(&s, all_reported_up);
    let (_, links) = until(&mut body, SOON, |e, _| e == "links").await;
    assert_eq!(
        links.as_array().map(Vec::len),
        Some(4),
        "all four were stale, now fresh"
    );
    // Let the pace's gap pass, then the link goes down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t0 = Instant::now();
    publish(&s, |v| {
        v.links[0].view.up = false;
        v.links[0].view.since = Some(std::time::Instant::now());
        v.links[0].view.rtt = None;
    });
    let (_, down) = until(&mut body, SOON, |e, d| {
        e == "timeline" && d["kind"] == "link-down"
    })
    .await;
    assert_eq!(down["text"], "aaa–bbb down");
    assert_eq!(
        (&down["a"], &down["b"]),
        (&Value::from("aaa"), &Value::from("bbb"))
    );
    let (_, links) = until(&mut body, SOON, |e, _| e == "links").await;
    assert!(
        t0.elapsed() <= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    let links = links.as_array().expect("a list");
    assert_eq!(links.len(), 1, "only what changed: {links:?}");
    assert_eq!(
        (&links[0]["a"], &links[0]["state"]),
        (&Value::from("aaa"), &Value::from("down"))
    );
    assert_eq!(
        s.live.recent().len(),
        1,
        "bring-up was not news; the cut is"
    );
    hub.abort();
}

#[tokio::test(start_paused = true)]
async fn measurements_alone_go_out_at_most_once_a_second_per_link() {
    let s = shared();
    let (mut body, hub) = watch(&s).await;
    publish(&s, all_reported_up);
    until(&mut body, SOON, |e, _| e == "links").await;
    let reader = tokio::spawn(async move {
        let mut sends = Vec::new();
        while let Some(Some(f)) = tokio::time::timeout(Duration::from_secs(3), body.next())
            .await
            .ok()
            .map(|r| r.map(|b| String::from_utf8_lossy(&b.expect("data")).into_owned()))
        {
            let (event, data) = parse(&f);
            if event == "links" {
                sends.push((Instant::now(), data));
            }
        }
        sends
    });
    // RTT of aaa–bbb moves every 100 ms for 3 s.
    let t0 = Instant::now();
    for i in 0..30u64 {
        publish(&s, |v| {
            v.links[0].view.rtt = Some(Duration::from_micros(20_000 + i))
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sends = reader.await.expect("reader");
    assert!(
        (3..=4).contains(&sends.len()),
        "{} sends in 3 s",
        sends.len()
    );
    for w in sends.windows(2) {
        assert!(w[1].0 - w[0].0 >= Duration::from_secs(1), "a second apart");
    }
    assert!(sends
        .iter()
        .all(|(_, d)| d.as_array().map(Vec::len) == Some(1)));
    let last = &sends[sends.len() - 1];
    assert!(last.0 - t0 <= Duration::from_secs(3) + Duration::from_millis(1));
    hub.abort();
}

#[tokio::test]
async fn the_hub_tells_of_sessions_and_the_lab_of_its_actions() {
    let s = shared();
    let (mut body, hub) = watch(&s).await;
    s.add_session(
        "ccc",
        crate::shared::Session {
            remote: "127.0.0.1:5".parse().expect("addr"),
            since: Instant::now(),
            applied: 1,
            conn_id: 7,
        },
    );
    let (_, nodes) = until(&mut body, SOON, |e, _| e == "nodes").await;
    assert_eq!(nodes[0]["id"], "ccc");
    assert_eq!(nodes[0]["connected"], true);
    assert_eq!(nodes.as_array().map(Vec::len), Some(1));
    s.live
        .event(EventKind::Impair, "impair aaa–ccc", Some(("aaa", "ccc")));
    let (_, ev) = until(&mut body, SOON, |e, _| e == "timeline").await;
    assert_eq!(ev["kind"], "impair");
    hub.abort();
}
