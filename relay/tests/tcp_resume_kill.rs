//! TCP sessions and dead relays, with real `relay` processes killed by SIGKILL
//! (a crash: its peers hear nothing, its links just go quiet):
//!
//! - a transit relay dies mid-transfer: 10 MB each way still arrive intact,
//!   after a stall of about detection plus a round trip;
//! - the ingress or the egress relay dies: the session ends at the other side
//!   with a reset, within the resume timeout (3 s here), not hanging;
//! - the egress relay dies and comes back at once: it no longer holds the
//!   session, so the ingress's resume is refused (`unknown session`) and the
//!   client is reset as soon as the link is back, long before the timeout.
//!
//! ```text
//!        bbb             aaa–bbb, bbb–ddd 5 ms    (the path)
//!  aaa <     > ddd
//!        ccc             aaa–ccc, ccc–ddd 10 ms   (aaa's local backup)
//! ```

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::bounded;
use support::exposition::{fetch, samples, value};
use support::process_fleet::{ProcessFleet, ProcessFleetSpec};
use support::transfer::{exchange, pattern, sha, Progress, TEN_MB};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Resume timeout of these fleets.
const RESUME: Duration = Duration::from_secs(3);

async fn diamond(target: SocketAddr) -> ProcessFleet {
    diamond_with(target, "tcp_resume_timeout_ms: 3000\n").await
}

async fn diamond_with(target: SocketAddr, extra_config: &str) -> ProcessFleet {
    ProcessFleet::start(ProcessFleetSpec {
        nodes: &["aaa", "bbb", "ccc", "ddd"],
        links: &[
            ("aaa", "bbb", 5),
            ("bbb", "ddd", 5),
            ("aaa", "ccc", 10),
            ("ccc", "ddd", 10),
        ],
        tcp_services: &[("signal", "aaa", "ddd", target)],
        extra_config,
    })
    .await
}

/// How long after `since` the relay `at` reported its link to `peer` not up.
async fn detection(fleet: &ProcessFleet, at: &str, peer: &str, since: Instant) -> Duration {
    loop {
        if let Some(s) = fleet.status(at).await {
            let up = s["peers"]
                .as_array()
                .and_then(|p| p.iter().find(|p| p["id"] == peer))
                .is_some_and(|p| p["state"] == "up");
            if !up {
                return since.elapsed();
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "{at} never saw {peer} down"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mb_each_way_arrive_intact_while_the_transit_relay_is_killed_with_sigkill() {
    let _one_at_a_time = support::process_fleet::one_at_a_time().await;
    bounded(180, async {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut fleet = diamond(target.local_addr().expect("addr")).await;
        let (at_server, at_client) = (Progress::new(), Progress::new());
        let p = at_server.clone();
        let server = tokio::spawn(async move {
            let (stream, _) = target.accept().await.expect("accept");
            exchange(stream, pattern(2, TEN_MB), p).await
        });
        let client = TcpStream::connect(fleet.ingress["signal"])
            .await
            .expect("connect");
        let p = at_client.clone();
        let client = tokio::spawn(async move { exchange(client, pattern(1, TEN_MB), p).await });

        at_server
            .wait_for(TEN_MB / 3, Duration::from_secs(60))
            .await;
        let killed_at = Instant::now();
        fleet.kill("bbb");
        let detected = detection(&fleet, "aaa", "bbb", killed_at).await;
        while fleet.counter("aaa", "tcp_resumed").await == 0 {
            assert!(
                killed_at.elapsed() < Duration::from_secs(10),
                "aaa never resumed the session"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let resumed_after = killed_at.elapsed();

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
            at_server.longest_gap_since(killed_at),
            at_client.longest_gap_since(killed_at),
        );
        let resumed = fleet.counter("aaa", "tcp_resumed").await;
        let resent = fleet.counter("aaa", "tcp_retransmitted_bytes").await
            + fleet.counter("ddd", "tcp_retransmitted_bytes").await;
        println!(
            "transit bbb killed (SIGKILL) mid-transfer: aaa saw bbb down after {:.0} ms, resumed \
             after {:.0} ms; longest gap between reads client→target {:.0} ms, target→client \
             {:.0} ms; resumed {resumed}; {resent} bytes retransmitted",
            detected.as_secs_f64() * 1000.0,
            resumed_after.as_secs_f64() * 1000.0,
            up.as_secs_f64() * 1000.0,
            down.as_secs_f64() * 1000.0,
        );
        assert!(resumed >= 1, "the session resumed");
        // The same counts, as Prometheus scrapes them.
        let (status, _, body) = fetch(fleet.admins["aaa"], "/metrics").await;
        assert_eq!(status, 200, "{body}");
        let scraped = samples(&body);
        let series = |m: &str| format!("overlay_relay_tcp_sessions_{m}_total{{node=\"aaa\"}}");
        assert_eq!(value(&scraped, &series("resumed")), resumed as f64);
        assert!(value(&scraped, &series("retransmitted_bytes")) > 0.0);
        // The status is polled over HTTP every few ms, so the resume time is
        // a little late; a round trip on the backup path is 40 ms.
        assert!(
            resumed_after < detected + Duration::from_millis(300),
            "resumed {resumed_after:?} after the kill, {detected:?} after detection"
        );
        // Detection plus a round trip on the backup path (4 × 10 ms) and the
        // resent bytes, with room for a loaded 2-core machine.
        for stall in [up, down] {
            assert!(
                stall < detected + Duration::from_millis(300),
                "stall {stall:?}"
            );
        }
    })
    .await;
}

/// An echo session through the fleet: the target echoes; returns the client
/// stream once a first ping went round.
async fn echo_session(fleet: &ProcessFleet, target: TcpListener) -> (TcpStream, TcpStream) {
    let mut client = TcpStream::connect(fleet.ingress["signal"])
        .await
        .expect("connect");
    client.write_all(b"ping").await.expect("write");
    let (mut server, _) = tokio::time::timeout(Duration::from_secs(5), target.accept())
        .await
        .expect("the target got the session")
        .expect("accept");
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).await.expect("read");
    server.write_all(&buf).await.expect("echo");
    client.read_exact(&mut buf).await.expect("echoed");
    assert_eq!(&buf, b"ping");
    (client, server)
}

/// A relay's count of sessions that could not resume, for one reason.
async fn resume_failures(fleet: &ProcessFleet, id: &str, reason: &str) -> u64 {
    let status = fleet.status(id).await.expect("status");
    status["counters"]["tcp_resume_failures"][reason]
        .as_u64()
        .expect("a count")
}

/// How a local socket's session ended, and how long after `since`.
async fn ended(stream: &mut TcpStream, since: Instant, limit: Duration) -> (String, Duration) {
    let mut buf = [0u8; 64];
    let how = match tokio::time::timeout(limit, stream.read(&mut buf)).await {
        Ok(Ok(0)) => "end of stream".to_string(),
        Ok(Ok(n)) => panic!("{n} unexpected bytes"),
        Ok(Err(e)) => format!("{:?}", e.kind()),
        Err(_) => panic!("still open after {limit:?}"),
    };
    (how, since.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_egress_relay_resets_the_client_within_the_resume_timeout() {
    let _one_at_a_time = support::process_fleet::one_at_a_time().await;
    bounded(60, async {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut fleet = diamond(target.local_addr().expect("addr")).await;
        let (mut client, mut server) = echo_session(&fleet, target).await;
        let killed_at = Instant::now();
        fleet.kill("ddd");
        let (server_end, server_after) = ended(&mut server, killed_at, RESUME).await;
        let (client_end, client_after) = ended(&mut client, killed_at, RESUME * 2).await;
        println!(
            "egress ddd killed: its target saw {server_end} after {:.0} ms (the kernel), the \
             client saw {client_end} after {:.0} ms",
            server_after.as_secs_f64() * 1000.0,
            client_after.as_secs_f64() * 1000.0
        );
        assert_eq!(client_end, "ConnectionReset", "the client is told: a reset");
        assert!(
            client_after < RESUME + Duration::from_millis(1500),
            "{client_after:?}"
        );
        assert_eq!(resume_failures(&fleet, "aaa", "timeout").await, 1);
        let (_, _, body) = fetch(fleet.admins["aaa"], "/metrics").await;
        let failed: Vec<f64> = samples(&body)
            .into_iter()
            .filter(|(k, _)| {
                k.starts_with("overlay_relay_tcp_sessions_resume_failures_total{")
                    && k.contains("reason=\"timeout\"")
            })
            .map(|(_, v)| v)
            .collect();
        assert_eq!(failed, [1.0], "{body}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_ingress_relay_resets_the_target_within_the_resume_timeout() {
    let _one_at_a_time = support::process_fleet::one_at_a_time().await;
    bounded(60, async {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut fleet = diamond(target.local_addr().expect("addr")).await;
        let (mut client, mut server) = echo_session(&fleet, target).await;
        let killed_at = Instant::now();
        fleet.kill("aaa");
        let (client_end, client_after) = ended(&mut client, killed_at, RESUME).await;
        let (server_end, server_after) = ended(&mut server, killed_at, RESUME * 2).await;
        println!(
            "ingress aaa killed: its client saw {client_end} after {:.0} ms (the kernel), the \
             target saw {server_end} after {:.0} ms",
            client_after.as_secs_f64() * 1000.0,
            server_after.as_secs_f64() * 1000.0
        );
        assert_eq!(server_end, "ConnectionReset", "the target is told: a reset");
        assert!(
            server_after < RESUME + Duration::from_millis(1500),
            "{server_after:?}"
        );
        assert_eq!(resume_failures(&fleet, "ddd", "timeout").await, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_egress_refuses_the_resume_and_the_client_is_reset_before_the_timeout() {
    let _one_at_a_time = support::process_fleet::one_at_a_time().await;
    bounded(90, async {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        // A resume timeout far above the restart, so that only the refusal
        // can end the session within the bound below.
        let resume = Duration::from_secs(30);
        let mut fleet = diamond_with(
            target.local_addr().expect("addr"),
            "tcp_resume_timeout_ms: 30000\n",
        )
        .await;
        let (mut client, mut server) = echo_session(&fleet, target).await;
        let killed_at = Instant::now();
        fleet.kill("ddd");
        fleet.restart("ddd");
        let (server_end, _) = ended(&mut server, killed_at, Duration::from_secs(5)).await;
        let (client_end, client_after) = ended(&mut client, killed_at, resume).await;
        println!(
            "egress ddd killed and restarted: its target saw {server_end}, the client saw \
             {client_end} after {:.0} ms (resume timeout {resume:?})",
            client_after.as_secs_f64() * 1000.0,
        );
        assert_eq!(client_end, "ConnectionReset", "the client is told: a reset");
        // The restart and the links coming back take a second or two.
        assert!(client_after < Duration::from_secs(10), "{client_after:?}");
        assert_eq!(resume_failures(&fleet, "aaa", "unknown_session").await, 1);
        assert_eq!(resume_failures(&fleet, "aaa", "timeout").await, 0);
    })
    .await;
}
