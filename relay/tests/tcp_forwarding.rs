//! TCP services end to end: bytes both ways through a chain of relays, with
//! backpressure, half-close, resets and refused targets.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::transfer::{self, pattern};
use support::{bounded, Fleet, FleetSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn tcp_service(name: &str, ingress: &str, egress: &str, target: SocketAddr) -> String {
    format!(
        "  - name: {name}\n    protocol: tcp\n    ingress: {{ node: {ingress}, listen: \"127.0.0.1:0\" }}\n    egress: {{ node: {egress}, target: \"{target}\" }}\n"
    )
}

async fn chain_with_target(target: SocketAddr) -> Fleet {
    Fleet::start(FleetSpec {
        nodes: &["aaa", "bbb", "ccc"],
        links: &[("aaa", "bbb"), ("bbb", "ccc")],
        services: tcp_service("signal", "aaa", "ccc", target),
        ..Default::default()
    })
    .await
}

/// Writes `data` and reads everything the other way (see
/// `support::transfer::exchange`); returns (bytes read, their SHA-256).
async fn exchange(stream: TcpStream, data: Vec<u8>) -> (usize, Vec<u8>) {
    transfer::exchange(stream, data, Default::default()).await
}

const TEN_MB: usize = 10 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_through_three_relays_carries_10_mb_each_way_intact() {
    bounded(120, async {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let fleet = chain_with_target(target.local_addr().expect("addr")).await;
        let server = tokio::spawn(async move {
            let (stream, _) = target.accept().await.expect("accept");
            exchange(stream, pattern(2, TEN_MB)).await
        });
        let client = TcpStream::connect(fleet.ingress("aaa", "signal"))
            .await
            .expect("connect");
        let client_got = exchange(client, pattern(1, TEN_MB)).await;
        let server_got = server.await.expect("server task");

        let sha = |d: Vec<u8>| Sha256::digest(d).to_vec();
        assert_eq!(
            server_got,
            (TEN_MB, sha(pattern(1, TEN_MB))),
            "client → target intact"
        );
        assert_eq!(
            client_got,
            (TEN_MB, sha(pattern(2, TEN_MB))),
            "target → client intact"
        );
        assert_eq!(fleet.relay("bbb").status().counters.streams_relayed, 1);
        fleet.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_reaches_the_far_side_and_the_reply_still_comes_back() {
    bounded(30, async {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let fleet = chain_with_target(target.local_addr().expect("addr")).await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = target.accept().await.expect("accept");
            let mut got = Vec::new();
            // read_to_end returns only once the client's FIN has crossed the overlay.
            stream.read_to_end(&mut got).await.expect("read to FIN");
            stream
                .write_all(b"bye after your FIN")
                .await
                .expect("write");
            stream.shutdown().await.expect("close");
            got
        });
        let mut client = TcpStream::connect(fleet.ingress("aaa", "signal"))
            .await
            .expect("connect");
        client.write_all(b"hello").await.expect("write");
        client.shutdown().await.expect("half-close");
        let mut reply = Vec::new();
        client.read_to_end(&mut reply).await.expect("read reply");
        assert_eq!(server.await.expect("server"), b"hello");
        assert_eq!(reply, b"bye after your FIN");
        fleet.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_target_closes_the_client_promptly() {
    bounded(30, async {
        // An address nobody listens on.
        let closed = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
            .local_addr()
            .expect("addr");
        let fleet = chain_with_target(closed).await;
        let started = Instant::now();
        // The reset can come back before `connect` returns on a loaded machine.
        match TcpStream::connect(fleet.ingress("aaa", "signal")).await {
            Ok(mut client) => {
                let _ = client.write_all(b"anyone there?").await;
                let mut buf = [0u8; 16];
                let outcome =
                    tokio::time::timeout(Duration::from_secs(3), client.read(&mut buf)).await;
                match outcome {
                    Ok(Ok(0)) | Ok(Err(_)) => {}
                    Ok(Ok(n)) => panic!("read {n} bytes from a refused target"),
                    Err(_) => panic!("client still open after 3 s"),
                }
            }
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(2), "closed after {elapsed:?}");
        fleet.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_at_the_target_resets_the_client() {
    bounded(30, async {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let fleet = chain_with_target(target.local_addr().expect("addr")).await;
        let server = tokio::spawn(async move {
            let (mut stream, _) = target.accept().await.expect("accept");
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).await.expect("read");
            relay::tcp::splice::reset_tcp(stream);
        });
        let mut client = TcpStream::connect(fleet.ingress("aaa", "signal"))
            .await
            .expect("connect");
        client.write_all(b"hello").await.expect("write");
        server.await.expect("server");
        let mut buf = [0u8; 16];
        let outcome = tokio::time::timeout(Duration::from_secs(3), client.read(&mut buf))
            .await
            .expect("not hung");
        let err = outcome.expect_err("a reset, not a clean end of stream");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        fleet.shutdown().await;
    })
    .await;
}
