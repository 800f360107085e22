//! TCP sessions survive their path: 10 MB each way through a diamond of relays
//! on emulated links arrive intact (SHA-256) while the path is cut in the
//! middle of the transfer, and the stall is measured against the claim:
//! detection (the link's probes: 2 lost at 20 ms, then the loss timeout,
//! at most 70 ms) plus about one round trip on the new path.
//!
//! ```text
//!        bbb
//!  aaa <     > ddd        every link 5 ms each way; the service aaa → ddd
//!        ccc
//! ```

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use emulator::LinkParams;
use support::transfer::{exchange, pattern, sha, Progress, TEN_MB};
use support::{bounded, Fleet, FleetSpec};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Detection (≤ 210 ms, see `tests/reroute.rs`) plus a round trip on the new
/// path (4 × 5 ms) plus re-sending what was in flight, with 150 ms for a loaded
/// 2-core machine. A regression to waiting on QUIC's idle timeout (10 s) or to
/// a reset would fail it.
const STALL_BOUND: Duration = Duration::from_millis(500);

/// From detection to the resume: the ingress opens a stream on the other
/// path and the HELLOs cross it (a round trip, 4 × 5 ms), with room for a
/// loaded 2-core machine.
const RESUME_AFTER_DETECTION: Duration = Duration::from_millis(150);

async fn diamond(target: SocketAddr) -> Fleet {
    Fleet::start(FleetSpec {
        nodes: &["aaa", "bbb", "ccc", "ddd"],
        links: &[("aaa", "bbb"), ("bbb", "ddd"), ("aaa", "ccc"), ("ccc", "ddd")],
        services: format!(
            "  - {{ name: signal, protocol: tcp, ingress: {{ node: aaa, listen: \"127.0.0.1:0\" }}, egress: {{ node: ddd, target: \"{target}\" }} }}\n"
        ),
        emulate: Some(LinkParams::new(Duration::from_millis(5), Duration::ZERO, 0.0).expect("params")),
        ..Default::default()
    })
    .await
}

/// The neighbour `from` sends toward `to` through, by the table in force.
fn next_hop(fleet: &Fleet, from: &str, to: &str) -> String {
    let table = fleet.relay(from).table();
    let route = table.route(topology::wire_key(to)).expect("a route");
    let t = &fleet.topology;
    let idx = t.node_by_key(route.primary).expect("a node");
    t.node(idx).id.clone()
}

/// How long after `since` the relay `at` saw its link to `peer` go down.
async fn detection(fleet: &Fleet, at: &str, peer: &str, since: Instant) -> Duration {
    while fleet.relay(at).peer_up(peer) {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "{at} never saw {peer} down"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    since.elapsed()
}

/// How long after `since` the ingress `at` counted its first resume.
async fn resumed(fleet: &Fleet, at: &str, since: Instant) -> Duration {
    while fleet.relay(at).status().counters.tcp_resumed == 0 {
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "{at} never resumed the session"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mb_each_way_arrive_intact_while_the_path_is_cut_mid_transfer() {
    bounded(120, async {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let fleet = diamond(target.local_addr().expect("addr")).await;
        let via = next_hop(&fleet, "aaa", "ddd");
        let (at_server, at_client) = (Progress::new(), Progress::new());
        let p = at_server.clone();
        let server = tokio::spawn(async move {
            let (stream, _) = target.accept().await.expect("accept");
            exchange(stream, pattern(2, TEN_MB), p).await
        });
        let client = TcpStream::connect(fleet.ingress("aaa", "signal"))
            .await
            .expect("connect");
        let p = at_client.clone();
        let client = tokio::spawn(async move { exchange(client, pattern(1, TEN_MB), p).await });

        // A third of the way through, the first link of the path goes dark.
        at_server
            .wait_for(TEN_MB / 3, Duration::from_secs(60))
            .await;
        let cut_at = Instant::now();
        fleet.links[&("aaa".to_string(), via.clone())]
            .handle()
            .cut();
        let detected = detection(&fleet, "aaa", &via, cut_at).await;
        let resumed_after = resumed(&fleet, "aaa", cut_at).await;

        let client_got = client.await.expect("client task");
        let server_got = server.await.expect("server task");
        assert_eq!(
            server_got,
            (TEN_MB, sha(&pattern(1, TEN_MB))),
            "client → target intact"
        );
        assert_eq!(
            client_got,
            (TEN_MB, sha(&pattern(2, TEN_MB))),
            "target → client intact"
        );

        let (up, down) = (
            at_server.longest_gap_since(cut_at),
            at_client.longest_gap_since(cut_at),
        );
        let ingress = fleet.relay("aaa").status().counters;
        let egress = fleet.relay("ddd").status().counters;
        println!(
            "cut aaa–{via} mid-transfer: aaa saw the link down after {:.0} ms, resumed after \
             {:.0} ms; longest gap between reads client→target {:.0} ms, target→client {:.0} ms; \
             resumed {} (ingress) {} (egress); retransmitted {} + {} bytes",
            detected.as_secs_f64() * 1000.0,
            resumed_after.as_secs_f64() * 1000.0,
            up.as_secs_f64() * 1000.0,
            down.as_secs_f64() * 1000.0,
            ingress.tcp_resumed,
            egress.tcp_resumed,
            ingress.tcp_retransmitted_bytes,
            egress.tcp_retransmitted_bytes,
        );
        assert!(ingress.tcp_resumed >= 1, "the session resumed");
        // Bytes already past the cut drain on while the path is down, so the
        // gaps between reads understate the stall; the resume time does not.
        assert!(
            resumed_after < detected + RESUME_AFTER_DETECTION,
            "resumed {resumed_after:?} after the cut, {detected:?} after detection"
        );
        assert!(
            resumed_after < STALL_BOUND,
            "resumed after {resumed_after:?}"
        );
        assert!(
            up < STALL_BOUND && down < STALL_BOUND,
            "stalls {up:?} / {down:?}"
        );
        fleet.shutdown().await;
    })
    .await;
}
