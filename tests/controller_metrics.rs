//! `GET /metrics` on a live controller with three relays: connected relays,
//! links by state, table version, and, after a link is cut, route changes and
//! route computation time; relays count the reroute too. The exposition passes
//! `promtool check metrics` (set `OVERLAY_REQUIRE_PROMTOOL=1` to fail without it).

#[path = "../relay/tests/support/exposition.rs"]
mod exposition;

use std::collections::BTreeMap;
use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use controller::{ControllerConfig, ControllerHandle};
use emulator::{EmulatedLink, LinkParams};
use exposition::{fetch, promtool_check, samples, value};
use pki::TestCa;
use relay::{RelayConfig, RelayHandle};
use topology::Topology;

struct Setup {
    topology: Arc<Topology>,
    controller: ControllerHandle,
    relays: BTreeMap<String, RelayHandle>,
    /// The emulated links, by their ends: aaa–bbb, bbb–ccc, aaa–ccc.
    links: Vec<((&'static str, &'static str), EmulatedLink)>,
}

/// A controller with an admin API, and relays aaa, bbb, ccc in a triangle of
/// emulated links where aaa–bbb is much shorter (5 ms) than the way round
/// through ccc (2 × 20 ms), so routes take it until it is cut.
async fn start() -> Setup {
    let ids = ["aaa", "bbb", "ccc"];
    let ctl_socket = UdpSocket::bind("127.0.0.1:0").expect("bind controller");
    let sockets: Vec<UdpSocket> = ids
        .iter()
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind relay"))
        .collect();
    let addr = |i: usize| sockets[i].local_addr().expect("addr");
    let mut yaml = format!(
        "version: 1\ncontrollers:\n  - {{ id: controller, addr: \"{}\" }}\nnodes:\n",
        ctl_socket.local_addr().expect("addr")
    );
    for (i, (id, lat, lon)) in [
        ("aaa", 10.0, -100.0),
        ("bbb", 10.0, -98.0),
        ("ccc", 14.0, -99.0),
    ]
    .into_iter()
    .enumerate()
    {
        yaml += &format!(
            "  - {{ id: {id}, city: C{i}, country: US, region: test, lat: {lat}, lon: {lon}, addr: \"{}\" }}\n",
            addr(i)
        );
    }
    yaml += "links:\n  - { between: [aaa, bbb], kind: terrestrial }\n  - { between: [bbb, ccc], kind: terrestrial }\n  - { between: [aaa, ccc], kind: terrestrial }\n";
    let topology =
        Arc::new(topology::parse("metrics.yaml", &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")));
    let ca = TestCa::new();
    let roots = Arc::new(ca.roots());

    let mut cfg = ControllerConfig::new(
        topology.clone(),
        "controller",
        ca.issue("controller"),
        roots.clone(),
    );
    cfg.listen = ctl_socket.local_addr().expect("addr");
    let admin = TcpListener::bind("127.0.0.1:0").expect("bind admin");
    let controller = controller::start(cfg, ctl_socket, Some(admin))
        .await
        .expect("controller starts");

    let index = |id: &str| ids.iter().position(|i| *i == id).expect("node");
    let mut links = Vec::new();
    for (seed, (a, b, delay_ms)) in [("aaa", "bbb", 5), ("bbb", "ccc", 20), ("aaa", "ccc", 20)]
        .into_iter()
        .enumerate()
    {
        let params =
            LinkParams::new(Duration::from_millis(delay_ms), Duration::ZERO, 0.0).expect("params");
        let link = EmulatedLink::start(addr(index(a)), addr(index(b)), params, seed as u64 + 1)
            .await
            .expect("emulator");
        links.push(((a, b), link));
    }
    let mut relays = BTreeMap::new();
    for (id, socket) in ids.into_iter().zip(sockets) {
        let idx = topology.node_idx(id).expect("node");
        let mut cfg = RelayConfig::new(topology.clone(), idx, ca.issue(id), roots.clone());
        cfg.tuning.reconnect_min = Duration::from_millis(20);
        for ((a, b), link) in &links {
            if *a == id {
                cfg.dial.insert(topology::wire_key(b), link.front_for_a());
            } else if *b == id {
                cfg.dial.insert(topology::wire_key(a), link.front_for_b());
            }
        }
        let relay = relay::start(cfg, socket, None).await.expect("relay starts");
        relays.insert(id.to_string(), relay);
    }
    Setup {
        topology,
        controller,
        relays,
        links,
    }
}

/// Polls `ready` every 20 ms until it holds; panics after `secs`.
async fn wait_for(what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
    let wait = async {
        while !ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(secs), wait)
        .await
        .unwrap_or_else(|_| panic!("{what} within {secs} s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_metrics_count_route_changes_after_a_cut_and_pass_promtool() {
    let test = async {
        let s = start().await;
        let ctl = &s.controller;
        let admin = ctl.admin_addr.expect("admin");
        let (a, b, c) = (
            s.topology.node_idx("aaa").expect("aaa"),
            s.topology.node_idx("bbb").expect("bbb"),
            s.topology.node_idx("ccc").expect("ccc"),
        );
        let via = |from, to| {
            ctl.tables()
                .node(from)
                .entries
                .get(&to)
                .map(|e| e.primary.node)
        };
        let next_hop = |relay: &str, to: &str| {
            let st = s.relays[relay].status();
            st.routes
                .iter()
                .find(|r| r.to == to)
                .map(|r| r.next_hop.clone())
        };
        wait_for(
            "every relay connected and routing aaa–bbb direct",
            30,
            || {
                ctl.connected().len() == 3
                    && controller::api::links(&ctl.shared)
                        .iter()
                        .all(|l| l.state == "up" && !l.stale)
                    && s.relays.values().all(|r| r.status().table_version >= 1)
                    && via(a, b) == Some(b)
                    && via(b, a) == Some(a)
                    && next_hop("aaa", "bbb").as_deref() == Some("bbb")
                    && next_hop("bbb", "aaa").as_deref() == Some("aaa")
            },
        )
        .await;
        let reroutes = |id: &str| s.relays[id].status().counters.reroutes;
        let reroutes_before = [reroutes("aaa"), reroutes("bbb")];
        let ctl_label = "controller=\"controller\"";
        let series = |m: &str| format!("overlay_controller_{m}{{{ctl_label}}}");
        let node =
            |n: &str| format!("overlay_controller_route_changes_total{{{ctl_label},node=\"{n}\"}}");
        let state = |st: &str| format!("overlay_controller_links{{{ctl_label},state=\"{st}\"}}");
        let count = series("route_computation_seconds_count");

        let (status, content_type, before_text) = fetch(admin, "/metrics").await;
        assert_eq!(status, 200, "{before_text}");
        assert_eq!(content_type, daemon::exposition::CONTENT_TYPE);
        let before = samples(&before_text);
        assert_eq!(value(&before, &series("relays_connected")), 3.0);
        assert_eq!(value(&before, &series("topology_nodes")), 3.0);
        assert_eq!(value(&before, &state("up")), 3.0);
        assert_eq!(value(&before, &state("down")), 0.0);
        let version_before = value(&before, &series("table_version"));
        assert!(version_before >= 1.0);
        // A single controller without etcd leads alone, with term 0.
        assert_eq!(value(&before, &series("leader")), 1.0);
        assert_eq!(value(&before, &series("term")), 0.0);
        assert_eq!(value(&before, &series("elections_won_total")), 1.0);
        assert_eq!(value(&before, &series("leadership_lost_total")), 0.0);
        assert!(
            !before.keys().any(|k| k.contains("etcd_reachable")),
            "no etcd series without etcd"
        );

        // Blackhole aaa–bbb: aaa and bbb now reach each other through ccc.
        s.links[0].1.handle().cut();
        wait_for("routes around the cut", 20, || {
            via(a, b) == Some(c) && via(b, a) == Some(c)
        })
        .await;
        // The relays count the reroute when they install the new table.
        wait_for("aaa and bbb installed the new routes", 20, || {
            next_hop("aaa", "bbb").as_deref() == Some("ccc")
                && next_hop("bbb", "aaa").as_deref() == Some("ccc")
        })
        .await;
        assert!(
            reroutes("aaa") > reroutes_before[0],
            "aaa counted its reroute"
        );
        assert!(
            reroutes("bbb") > reroutes_before[1],
            "bbb counted its reroute"
        );

        let (_, _, after_text) = fetch(admin, "/metrics").await;
        let after = samples(&after_text);
        for n in ["aaa", "bbb"] {
            let moved = value(&after, &node(n)) - value(&before, &node(n));
            assert!(moved >= 1.0, "route changes of {n} moved by {moved}");
        }
        let computed = value(&after, &count) - value(&before, &count);
        assert!(computed >= 1.0, "route computations moved by {computed}");
        let took = value(&after, &series("route_computation_seconds_sum"));
        assert!(took > 0.0 && took < 10.0, "computation time {took}");
        assert_eq!(value(&after, &state("down")), 1.0);
        assert_eq!(value(&after, &state("up")), 2.0);
        assert_eq!(value(&after, &series("relays_connected")), 3.0);
        let version_after = value(&after, &series("table_version"));
        assert!(version_after > version_before);
        assert!(version_after <= ctl.tables().version as f64);

        promtool_check("controller, before the cut", &before_text);
        promtool_check("controller, after the cut", &after_text);
        for (_, r) in s.relays {
            r.shutdown().await;
        }
        s.controller.shutdown().await;
        for (_, link) in s.links {
            link.shutdown().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(90), test)
        .await
        .expect("test exceeded its time bound");
}
