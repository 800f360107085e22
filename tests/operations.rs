//! Operations end to end, on the diamond fleet with its controller: a reload
//! that adds a service leaves a running flow untouched, and a draining relay
//! moves the traffic crossing it onto the other path before it exits.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::diamond::{self, forwarded, ttl_drops};
use support::FLEET_TESTS;
use tokio::net::UdpSocket;
use tokio::time::Instant;

async fn bounded<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time bound")
}

/// Sequence numbers sent in [first, last] that never arrived.
fn missing(stream: &diamond::Stream, first: u32, last: u32) -> Vec<u32> {
    let arrived: std::collections::BTreeSet<u32> = stream
        .arrivals
        .lock()
        .expect("lock")
        .iter()
        .map(|(seq, _)| *seq)
        .collect();
    (first..=last).filter(|s| !arrived.contains(s)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_a_service_and_a_running_flow_loses_nothing() {
    let _one = FLEET_TESTS.lock().await;
    bounded(60, async {
        let (mut fleet, stream) = diamond::start().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = *stream.sent.lock().expect("lock");

        // The same fleet with one more UDP service, aaa → ddd, to a second target.
        let extra_target = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let target = fleet.relay("ddd").config().topology.services[0].target;
        let mut yaml = diamond::yaml(target);
        yaml.push_str(&format!(
            "  - {{ name: extra, protocol: udp, ingress: {{ node: aaa, listen: \"127.0.0.1:0\" }}, egress: {{ node: ddd, target: \"{}\" }} }}\n",
            extra_target.local_addr().expect("addr")
        ));
        let topology = Arc::new(topology::parse("diamond.yaml", &yaml).expect("valid"));
        for (id, relay) in fleet.relays.iter_mut() {
            let mut cfg = (*relay.config()).clone();
            cfg.node = topology.node_idx(id).expect("node");
            cfg.topology = topology.clone();
            let summary = relay.reload(cfg).await.expect("reload");
            let expected: &[&str] = if id == "aaa" || id == "ddd" { &["extra"] } else { &[] };
            assert_eq!(summary.plan.services_added, expected, "{id}: {summary}");
            assert!(summary.plan.services_removed.is_empty() && summary.plan.services_changed.is_empty());
            assert!(summary.plan.links_added.is_empty() && summary.plan.links_removed.is_empty());
        }

        // The new service carries traffic.
        let ingress = fleet.relay("aaa").ingress_addrs["extra"];
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let mut buf = [0u8; 64];
        let mut got = None;
        for _ in 0..50 {
            client.send_to(b"new service", ingress).await.expect("send");
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(100), extra_target.recv(&mut buf)).await
            {
                got = Some(buf[..n].to_vec());
                break;
            }
        }
        assert_eq!(got.as_deref(), Some(&b"new service"[..]));

        // The running flow: every packet sent around the reload arrived, through
        // the same egress flow (a restarted flow would open a second socket).
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = *stream.sent.lock().expect("lock");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let lost = missing(&stream, before, after);
        assert!(lost.is_empty(), "lost around the reload: {lost:?}");
        assert!(after > before + 100, "the stream kept sending: {before}..{after}");
        let flows = fleet.relay("ddd").status().flows.udp_egress;
        assert_eq!(flows, 2, "the media flow and the new one, nothing restarted");
        fleet.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_relay_moves_transit_traffic_off_before_it_exits() {
    let _one = FLEET_TESTS.lock().await;
    bounded(60, async {
        let (mut fleet, stream) = diamond::start().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(forwarded(&fleet, "aaa") > 50, "the stream flows");
        let mut bbb = fleet.relays.remove("bbb").expect("bbb");
        let via_ccc_before = forwarded(&fleet, "ccc");
        let sent_before = *stream.sent.lock().expect("lock");

        let grace = Duration::from_secs(5);
        let started = Instant::now();
        assert!(!bbb.status().draining);
        let report = bbb.drain(grace).await;
        assert!(bbb.status().draining, "status shows the drain");
        let took = started.elapsed();
        println!("drain: {report:?}");
        assert!(
            took <= grace + Duration::from_millis(200),
            "drain took {took:?}"
        );
        assert!(
            report.quiet,
            "traffic stopped crossing bbb before the grace ran out: {report:?}"
        );
        let moved = forwarded(&fleet, "ccc") - via_ccc_before;
        assert!(moved > 50, "the stream now crosses ccc: {moved} datagrams");

        bbb.shutdown().await;
        // Nothing was lost on the way: the stream kept arriving through ccc
        // while bbb drained and after it left.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let sent_after = *stream.sent.lock().expect("lock");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let lost = missing(&stream, sent_before, sent_after);
        assert!(lost.len() <= 2, "lost while draining: {lost:?}");
        assert_eq!(ttl_drops(&fleet), 0, "no loops");
        let route = controller::api::route(
            &fleet.controller.as_ref().expect("controller").shared,
            "aaa",
            "ddd",
        )
        .expect("route");
        assert_eq!(route.path, ["aaa", "ccc", "ddd"]);
        fleet.shutdown().await;
    })
    .await;
}
