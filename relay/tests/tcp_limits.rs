//! TCP sessions are flows too: a service's sessions at its ingress are held to
//! `max_flows_per_service` (beyond it refused with a reset and counted as
//! `flow_limit`), and a session with no byte either way for the idle timeout
//! is closed, while one that talks lives on.
//!
//! The defect this guards against: 300 sessions on a service limited to 100
//! flows were all carried, and idle ones lived forever, so classroom clients
//! could hold a relay's descriptors without any credential.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use relay_core::DropReason;
use support::{bounded, Fleet, FleetSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP target echoing whatever it gets, line by line, forever.
async fn echo_target() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

async fn fleet(target: SocketAddr) -> Fleet {
    Fleet::start(FleetSpec {
        nodes: &["aaa", "bbb"],
        links: &[("aaa", "bbb")],
        services: format!(
            "  - {{ name: signal, protocol: tcp, ingress: {{ node: aaa, listen: \"127.0.0.1:0\" }}, egress: {{ node: bbb, target: \"{target}\" }} }}\n"
        ),
        tune: |c| {
            c.tuning.max_flows_per_service = 3;
            c.tuning.tcp_idle_timeout = Duration::from_millis(1500);
        },
        ..Default::default()
    })
    .await
}

/// Whether a round trip of `ping` through `s` works.
async fn ping(s: &mut TcpStream) -> bool {
    if s.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut got = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut got)).await,
        Ok(Ok(_))
    ) && &got == b"ping"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_beyond_the_flow_limit_are_refused_and_counted() {
    bounded(60, async {
        let (target, echo) = echo_target().await;
        let fleet = fleet(target).await;
        let ingress = fleet.ingress("aaa", "signal");
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = TcpStream::connect(ingress).await.expect("connect");
            assert!(ping(&mut s).await, "a session within the limit works");
            held.push(s);
        }
        for _ in 0..2 {
            // The ingress resets at once: on a loaded machine the reset can
            // arrive before `connect` returns.
            match TcpStream::connect(ingress).await {
                Ok(mut s) => assert!(!ping(&mut s).await, "a session beyond the limit is refused"),
                Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
            }
        }
        let drops = fleet
            .relay("aaa")
            .status()
            .counters
            .drop_count(DropReason::FlowLimit);
        assert_eq!(drops, 2);
        // A session ending frees its slot.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut s = TcpStream::connect(ingress).await.expect("connect");
        assert!(ping(&mut s).await, "a freed slot is taken again");
        echo.abort();
        fleet.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_closed_and_a_talking_one_lives_on() {
    bounded(60, async {
        let (target, echo) = echo_target().await;
        let fleet = fleet(target).await;
        let ingress = fleet.ingress("aaa", "signal");
        let mut idle = TcpStream::connect(ingress).await.expect("connect");
        let mut talking = TcpStream::connect(ingress).await.expect("connect");
        assert!(ping(&mut idle).await && ping(&mut talking).await);
        let started = Instant::now();
        // The talking session pings every 500 ms for 4 s, past three idle timeouts.
        while started.elapsed() < Duration::from_secs(4) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(ping(&mut talking).await, "a talking session stays up");
        }
        // The idle one was closed (its read ends at once, with EOF or a reset).
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(Duration::from_millis(500), idle.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "the idle session was closed: {read:?}"
        );
        assert!(fleet.relay("aaa").status().counters.tcp_idle_closed >= 1);
        echo.abort();
        fleet.shutdown().await;
    })
    .await;
}
