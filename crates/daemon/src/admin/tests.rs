use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Query;
use axum::http::Request;
use axum::routing::{get, post};
use tokio::io::AsyncReadExt as _;
use tower::ServiceExt as _;

use super::*;
use crate::tasks::Supervisor;

fn router() -> Router {
    Router::new()
        .route("/healthz", get(|| async { ok_text() }))
        .route(
            "/echo",
            get(|Query(q): Query<std::collections::BTreeMap<String, String>>| async move {
                json(&q)
            })
            .post(|body: String| async move { format!("got {} bytes", body.len()) }),
        )
        .route("/slow", post(|| async { "" }))
        .fallback(not_found)
}

async fn body_of(r: Response) -> String {
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20)
        .await
        .expect("body");
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn the_router_answers_without_a_socket() {
    let r = router()
        .oneshot(
            Request::get("/healthz")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body_of(r).await, "ok\n");
    let r = router()
        .oneshot(Request::get("/nope").body(Body::empty()).expect("request"))
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        body_of(r).await,
        "{\"error\":\"no such endpoint: /nope\"}\n"
    );
    // Query values are percent-decoded.
    let r = router()
        .oneshot(
            Request::get("/echo?from=s%C3%A3o&to=a+b")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("answer");
    let v: serde_json::Value = serde_json::from_str(&body_of(r).await).expect("json");
    assert_eq!(v["from"], "são");
    assert_eq!(v["to"], "a b");
}

struct Running {
    addr: SocketAddr,
    counters: Arc<AdminCounters>,
    _tasks: Supervisor,
}

async fn start(limits: AdminLimits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let tasks = Supervisor::new(CancellationToken::new());
    let counters = Arc::new(AdminCounters::default());
    tasks.spawn(
        "admin",
        OnFailure::StopDaemon,
        serve(
            listener,
            router(),
            limits,
            counters.clone(),
            tasks.cancel_token().clone(),
            tasks.spawner(),
        ),
    );
    Running {
        addr,
        counters,
        _tasks: tasks,
    }
}

async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await;
    out
}

#[tokio::test]
async fn a_chunked_body_is_read_and_an_oversized_one_refused() {
    let server = start(AdminLimits::default()).await;
    let chunked = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let out = raw(server.addr, chunked).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("got 11 bytes"), "{out}");
    let big = "x".repeat(100 * 1024);
    let (status, _) = client::request(server.addr, "POST", "/echo", &big)
        .await
        .expect("answered");
    assert_eq!(status, 413, "a body over 64 KiB is refused");
}

#[tokio::test]
async fn a_partial_request_loses_its_slot_at_the_header_deadline() {
    let limits = AdminLimits {
        header_timeout: Duration::from_millis(300),
        ..AdminLimits::default()
    };
    let server = start(limits).await;
    let mut s = TcpStream::connect(server.addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = tokio::time::Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the server closed the held connection");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "closed after {took:?}, deadline 300 ms"
    );
}

#[tokio::test]
async fn connections_over_the_cap_are_told_to_retry_and_slots_come_back() {
    let limits = AdminLimits {
        max_connections: 4,
        header_timeout: Duration::from_millis(500),
        ..AdminLimits::default()
    };
    let server = start(limits).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .expect("write");
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let out = raw(server.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(out.starts_with("HTTP/1.1 503"), "over the cap: {out}");
    assert_eq!(server.counters.over_capacity.load(Ordering::Relaxed), 1);
    // The held requests time out at their header deadline; slots free again.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, body) = client::get(server.addr, "/healthz").await.expect("get");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    drop(held);
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let server = start(AdminLimits::default()).await;
    let out = raw(
        server.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 200").count(), 2, "{out}");
}

/// The defect: 64 held partial requests took every slot, and Prometheus got
/// one scrape in twenty. Now 200 held partial requests leave room for scrapes.
#[tokio::test]
async fn scrapes_are_answered_while_200_partial_requests_are_held() {
    let server = start(AdminLimits::default()).await;
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(server.addr).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut answered = 0;
    for _ in 0..20 {
        if let Ok((200, _)) = client::get(server.addr, "/healthz").await {
            answered += 1;
        }
    }
    assert_eq!(answered, 20, "{answered} of 20 scrapes answered");
    drop(held);
}
