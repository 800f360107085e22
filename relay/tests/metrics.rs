//! `GET /metrics` on a live relay: per-link and per-service counters move by at
//! least the traffic sent through a service, and the exposition passes
//! `promtool check metrics` (set `OVERLAY_REQUIRE_PROMTOOL=1` to fail without it).

mod support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use pki::TestCa;
use relay::{RelayConfig, RelayHandle};
use support::exposition::{fetch, promtool_check, samples, value};
use support::{bounded, UdpEcho};

const DATAGRAMS: usize = 100;
const PAYLOAD: usize = 200;

/// Two relays `aaa`–`bbb`, each with an admin API, and a UDP service `media`
/// from `aaa` to `target`.
async fn start_pair(target: SocketAddr) -> Vec<RelayHandle> {
    start_one_then_other(target, |_| async {}).await
}

/// As [`start_pair`], calling `between` with `aaa` after it starts and before
/// `bbb` does.
async fn start_one_then_other<F, Fut>(target: SocketAddr, between: F) -> Vec<RelayHandle>
where
    F: FnOnce(&RelayHandle) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut between = Some(between);
    let sockets: Vec<UdpSocket> = (0..2)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind relay socket"))
        .collect();
    let addr = |i: usize| sockets[i].local_addr().expect("addr");
    let yaml = format!(
        "version: 1\nnodes:\n\
         \x20 - {{ id: aaa, city: A, country: US, region: test, lat: 10, lon: -100, addr: \"{}\" }}\n\
         \x20 - {{ id: bbb, city: B, country: US, region: test, lat: 11, lon: -98, addr: \"{}\" }}\n\
         links:\n  - {{ between: [aaa, bbb], kind: terrestrial }}\n\
         services:\n  - name: media\n    protocol: udp\n\
         \x20   ingress: {{ node: aaa, listen: \"127.0.0.1:0\" }}\n\
         \x20   egress: {{ node: bbb, target: \"{target}\" }}\n",
        addr(0),
        addr(1)
    );
    let topology =
        Arc::new(topology::parse("metrics.yaml", &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")));
    let ca = TestCa::new();
    let roots = Arc::new(ca.roots());
    let mut relays = Vec::new();
    for (id, socket) in ["aaa", "bbb"].into_iter().zip(sockets) {
        let idx = topology.node_idx(id).expect("node");
        let mut cfg = RelayConfig::new(topology.clone(), idx, ca.issue(id), roots.clone());
        cfg.tuning.reconnect_min = Duration::from_millis(20);
        let admin = TcpListener::bind("127.0.0.1:0").expect("bind admin");
        let relay = relay::start(cfg, socket, Some(admin))
            .await
            .expect("relay starts");
        if let Some(between) = between.take() {
            between(&relay).await;
        }
        relays.push(relay);
    }
    let up = async {
        while !(relays[0].peer_up("bbb") && relays[1].peer_up("aaa")) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), up)
        .await
        .expect("the link came up within 15 s");
    relays
}

async fn scrape(relay: &RelayHandle) -> (String, BTreeMap<String, f64>) {
    let (status, content_type, body) = fetch(relay.admin_addr.expect("admin"), "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, daemon::exposition::CONTENT_TYPE);
    let parsed = samples(&body);
    (body, parsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_link_and_service_traffic_and_pass_promtool() {
    bounded(60, async {
        let echo = UdpEcho::start().await;
        let relays = start_pair(echo.addr).await;
        let (a, b) = (&relays[0], &relays[1]);
        let (_, a0) = scrape(a).await;
        let (_, b0) = scrape(b).await;

        let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let ingress = a.ingress_addrs["media"];
        let mut buf = [0u8; 2048];
        let mut replies = 0;
        for i in 0..DATAGRAMS {
            let payload = format!("{i:04}{}", "x".repeat(PAYLOAD - 4));
            client
                .send_to(payload.as_bytes(), ingress)
                .await
                .expect("send");
            // One at a time: each reply is back before the next datagram goes.
            let n = tokio::time::timeout(Duration::from_secs(2), client.recv(&mut buf))
                .await
                .expect("a reply within 2 s")
                .expect("recv");
            assert_eq!(n, PAYLOAD + "echo:".len());
            replies += 1;
        }
        assert_eq!(replies, DATAGRAMS);

        let (a_text, a1) = scrape(a).await;
        let (b_text, b1) = scrape(b).await;
        let moved = |before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, s: &str| {
            value(after, s) - value(before, s)
        };
        let (n, out_bytes, back_bytes) = (
            DATAGRAMS as f64,
            (DATAGRAMS * PAYLOAD) as f64,
            (DATAGRAMS * (PAYLOAD + 5)) as f64,
        );

        // The service, at its ingress (aaa) and egress (bbb).
        let svc = |node: &str, m: &str| {
            format!("overlay_relay_service_{m}{{node=\"{node}\",service=\"media\"}}")
        };
        let checks = [
            (&a0, &a1, svc("aaa", "received_packets_total"), n),
            (&a0, &a1, svc("aaa", "received_bytes_total"), out_bytes),
            (&a0, &a1, svc("aaa", "delivered_packets_total"), n),
            (&a0, &a1, svc("aaa", "delivered_bytes_total"), back_bytes),
            (&b0, &b1, svc("bbb", "delivered_packets_total"), n),
            (&b0, &b1, svc("bbb", "delivered_bytes_total"), out_bytes),
            (&b0, &b1, svc("bbb", "received_packets_total"), n),
            (&b0, &b1, svc("bbb", "received_bytes_total"), back_bytes),
        ];
        for (before, after, series, want) in &checks {
            let got = moved(before, after, series);
            assert_eq!(got, *want, "{series} moved by {got}, expected {want}");
        }
        assert_eq!(
            value(&a1, &svc("aaa", "flows")),
            1.0,
            "one client, one flow"
        );
        assert_eq!(value(&b1, &svc("bbb", "flows")), 1.0, "one egress flow");

        // The link, from both ends: every datagram plus the overlay header went
        // over it (QUIC counts whole UDP datagrams, so at least that much).
        let link = |node: &str, peer: &str, m: &str| {
            format!("overlay_relay_link_{m}{{node=\"{node}\",peer=\"{peer}\"}}")
        };
        let link_checks = [
            (&a0, &a1, link("aaa", "bbb", "transmit_packets_total"), n),
            (
                &a0,
                &a1,
                link("aaa", "bbb", "transmit_bytes_total"),
                out_bytes,
            ),
            (&a0, &a1, link("aaa", "bbb", "receive_packets_total"), n),
            (
                &a0,
                &a1,
                link("aaa", "bbb", "receive_bytes_total"),
                back_bytes,
            ),
            (&b0, &b1, link("bbb", "aaa", "receive_packets_total"), n),
            (
                &b0,
                &b1,
                link("bbb", "aaa", "receive_bytes_total"),
                out_bytes,
            ),
            (&b0, &b1, link("bbb", "aaa", "transmit_packets_total"), n),
            (
                &b0,
                &b1,
                link("bbb", "aaa", "transmit_bytes_total"),
                back_bytes,
            ),
        ];
        for (before, after, series, at_least) in &link_checks {
            let got = moved(before, after, series);
            assert!(
                got >= *at_least,
                "{series} moved by {got}, expected at least {at_least}"
            );
        }
        // The kernel's drops on each socket are exported (issue 14.9): none
        // here, one datagram at a time.
        let drops = |node: &str, socket: &str| {
            format!("overlay_relay_socket_drops_total{{node=\"{node}\",socket=\"{socket}\"}}")
        };
        assert_eq!(value(&a1, &drops("aaa", "quic")), 0.0);
        assert_eq!(value(&a1, &drops("aaa", "ingress/media")), 0.0);
        assert_eq!(value(&b1, &drops("bbb", "quic")), 0.0);
        assert_eq!(value(&b1, &drops("bbb", "egress/media")), 0.0);
        // What every daemon says about itself.
        assert_eq!(
            value(
                &a1,
                &format!(
                    "overlay_relay_build_info{{node=\"aaa\",version=\"{}\"}}",
                    env!("CARGO_PKG_VERSION")
                )
            ),
            1.0
        );
        let expiry = value(
            &a1,
            "overlay_relay_certificate_expiry_timestamp_seconds{node=\"aaa\"}",
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        assert!(
            expiry > now && expiry < now + 20.0 * 366.0 * 86_400.0,
            "the test CA's certificate expires in the future: {expiry} vs now {now}"
        );
        assert!(value(&a1, "process_cpu_seconds_total{node=\"aaa\"}") > 0.0);
        assert!(value(&a1, "process_resident_memory_bytes{node=\"aaa\"}") > 1e6);
        let fds = value(&a1, "process_open_fds{node=\"aaa\"}");
        assert!(fds >= 3.0 && fds <= value(&a1, "process_max_fds{node=\"aaa\"}"));
        assert_eq!(value(&a1, &link("aaa", "bbb", "up")), 1.0);
        let rtt = value(&a1, &link("aaa", "bbb", "rtt_seconds"));
        assert!(rtt > 0.0 && rtt < 0.5, "loopback rtt {rtt}");
        let loss = value(&a1, &link("aaa", "bbb", "loss_ratio"));
        assert!((0.0..=1.0).contains(&loss), "loss {loss}");

        // The forwarding plane: both ends sent and delivered every datagram;
        // nothing dropped; no controller, so table 0 and no reroutes.
        let own = |node: &str, m: &str| format!("overlay_relay_{m}{{node=\"{node}\"}}");
        for (node, before, after) in [("aaa", &a0, &a1), ("bbb", &b0, &b1)] {
            for m in [
                "datagrams_sent_total",
                "datagrams_received_total",
                "datagrams_delivered_total",
            ] {
                let got = moved(before, after, &own(node, m));
                assert_eq!(got, n, "{node} {m} moved by {got}");
            }
            assert_eq!(value(after, &own(node, "table_version")), 0.0);
            assert_eq!(value(after, &own(node, "table_term")), 0.0);
            assert_eq!(value(after, &own(node, "reroutes_total")), 0.0);
            for reason in relay_core::routes::Refused::ALL {
                let series = format!(
                    "overlay_relay_tables_refused_total{{node=\"{node}\",reason=\"{reason}\"}}"
                );
                assert_eq!(value(after, &series), 0.0, "{series}");
            }
            let drops: f64 = after
                .iter()
                .filter(|(k, _)| k.starts_with("overlay_relay_drops_total{"))
                .map(|(_, v)| v)
                .sum();
            assert_eq!(drops, 0.0, "{node} dropped nothing");
            let reasons = after
                .keys()
                .filter(|k| k.starts_with("overlay_relay_drops_total{"))
                .count();
            assert_eq!(
                reasons,
                relay_core::DropReason::ALL.len(),
                "every reason listed"
            );
        }

        promtool_check("relay aaa", &a_text);
        promtool_check("relay bbb", &b_text);
        for r in relays {
            r.shutdown().await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_until_a_link_is_up_then_200() {
    bounded(60, async {
        let echo = UdpEcho::start().await;
        let relays = start_one_then_other(echo.addr, |aaa| {
            let admin = aaa.admin_addr.expect("admin");
            async move {
                let (status, body) = daemon::admin::client::get(admin, "/healthz")
                    .await
                    .expect("healthz answers");
                assert_eq!(
                    (status, body.as_str()),
                    (503, "not ready: 0 of 1 links up\n"),
                    "aaa alone: nothing it takes in can leave"
                );
            }
        })
        .await;
        for r in &relays {
            let admin = r.admin_addr.expect("admin");
            let got = daemon::admin::client::get(admin, "/healthz")
                .await
                .expect("healthz answers");
            assert_eq!(got, (200, "ok\n".to_string()), "link up: ready");
        }
    })
    .await;
}
