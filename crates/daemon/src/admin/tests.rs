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

/// Counts the streaming bodies alive (a guard in each).
#[derive(Clone, Default)]
struct Alive(Arc<std::sync::atomic::AtomicUsize>);

struct Guard(Alive);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Alive {
    fn now(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// `GET /ticks`: `tick` every 50 ms until the server's [`Shutdown`];
/// `GET /flood`: 64 KiB chunks as fast as the client takes them.
fn streaming_router(alive: Alive) -> Router {
    let ticks = {
        let alive = alive.clone();
        move |Extension(Shutdown(stop)): Extension<Shutdown>| {
            let alive = alive.clone();
            async move {
                alive.0.fetch_add(1, Ordering::SeqCst);
                let guard = Guard(alive);
                let ticks =
                    futures_util::stream::unfold((stop, guard), |(stop, guard)| async move {
                        tokio::select! {
                            _ = stop.cancelled() => None,
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                                Some((Ok::<_, std::convert::Infallible>("tick\n"), (stop, guard)))
                            }
                        }
                    });
                Body::from_stream(ticks)
            }
        }
    };
    let flood = move || {
        let alive = alive.clone();
        async move {
            alive.0.fetch_add(1, Ordering::SeqCst);
            let guard = Guard(alive);
            let chunk = axum::body::Bytes::from(vec![b'x'; 64 * 1024]);
            Body::from_stream(futures_util::stream::unfold(guard, move |g| {
                let chunk = chunk.clone();
                async move { Some((Ok::<_, std::convert::Infallible>(chunk), g)) }
            }))
        }
    };
    Router::new()
        .route("/ticks", get(ticks))
        .route("/flood", get(flood))
}

async fn start_streaming(limits: AdminLimits, alive: Alive) -> (SocketAddr, Supervisor) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let tasks = Supervisor::new(CancellationToken::new());
    tasks.spawn(
        "admin",
        OnFailure::StopDaemon,
        serve(
            listener,
            streaming_router(alive),
            limits,
            Arc::default(),
            tasks.cancel_token().clone(),
            tasks.spawner(),
        ),
    );
    (addr, tasks)
}

#[tokio::test]
async fn a_streaming_response_outlives_the_header_deadline_and_ends_at_shutdown() {
    let limits = AdminLimits {
        header_timeout: Duration::from_millis(200),
        ..AdminLimits::default()
    };
    let alive = Alive::default();
    let (addr, tasks) = start_streaming(limits, alive.clone()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /ticks HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    // Ten times the header deadline: the response goes on.
    let mut got = Vec::new();
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!(
                "the stream stopped after {:?}: {other:?}",
                started.elapsed()
            ),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.matches("tick").count() >= 20, "{text}");
    // Shutdown ends it at once (it would never end by itself).
    let stopping = tokio::time::Instant::now();
    tasks.cancel_token().cancel();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection closed");
    assert!(
        stopping.elapsed() < Duration::from_millis(500),
        "{:?}",
        stopping.elapsed()
    );
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.ends_with("0\r\n\r\n"),
        "the chunked body ended cleanly: {text:?}"
    );
    assert_eq!(alive.now(), 0);
}

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_connection_at_the_write_deadline() {
    let limits = AdminLimits {
        write_timeout: Duration::from_millis(300),
        ..AdminLimits::default()
    };
    let alive = Alive::default();
    let (addr, _tasks) = start_streaming(limits, alive.clone()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    // The client reads nothing: the socket's buffers fill, writes stall.
    let started = tokio::time::Instant::now();
    while alive.now() == 0 && started.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(alive.now(), 1, "the response started");
    while alive.now() == 1 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(alive.now(), 0, "the response was dropped");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    drop(s);
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
