//! The admin API's JSON through the router, without a socket: the live map's
//! additions (docs/map.md) beside the fields that were there before.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use super::*;
use crate::compute::Published;
use crate::linkstate::LinkStateDb;
use crate::live::{Live, LiveLimits};
use crate::metrics::ControllerMetrics;
use crate::routing::RouteSelector;
use crate::ControllerConfig;

/// aaa → ddd: fast over bbb (10 + 10 ms), slow over ccc (25 + 25 ms).
pub(crate) const DIAMOND: &str = r#"version: 1
nodes:
  - { id: aaa, city: A, country: JP, region: asia, lat: 35.5, lon: 139.5, addr: "127.0.0.1:1" }
  - { id: bbb, city: B, country: JP, region: asia, lat: 36.0, lon: 140.0, addr: "127.0.0.1:2" }
  - { id: ccc, city: C, country: JP, region: asia, lat: 34.0, lon: 138.0, addr: "127.0.0.1:3" }
  - { id: ddd, city: D, country: US, region: na, lat: 34.0, lon: -118.25, addr: "127.0.0.1:4" }
links:
  - { between: [aaa, bbb], kind: terrestrial, delay_ms: 10, capacity_mbps: 1000 }
  - { between: [bbb, ddd], kind: undersea, name: fast-line, delay_ms: 10, capacity_mbps: 10000 }
  - { between: [aaa, ccc], kind: terrestrial, delay_ms: 25 }
  - { between: [ccc, ddd], kind: undersea, name: slow-line, delay_ms: 25 }
services:
  - { name: media, protocol: udp, ingress: { node: aaa, listen: "127.0.0.1:0" }, egress: { node: ddd, target: "127.0.0.1:9" } }
  - { name: back, protocol: tcp, ingress: { node: ddd, listen: "127.0.0.1:0" }, egress: { node: ccc, target: "127.0.0.1:9" } }
"#;

/// A controller's shared state with no tasks: tests publish views by hand.
pub(crate) fn shared_with(yaml: &str, limits: LiveLimits) -> Arc<Shared> {
    let topo = Arc::new(topology::parse("t.yaml", yaml).expect("topology"));
    let ca = pki::TestCa::new();
    let cfg = ControllerConfig::new(
        topo.clone(),
        "controller",
        ca.issue("controller"),
        Arc::new(ca.roots()),
    );
    let selector = RouteSelector::new(topo.clone(), cfg.stability);
    let db = LinkStateDb::new(topo.clone());
    let (reports, _) = tokio::sync::mpsc::channel(1);
    Arc::new(Shared {
        published: Arc::new(Published::new(&topo, &selector, &db)),
        reports,
        sessions: Mutex::default(),
        reports_dropped: AtomicU64::new(0),
        quality: Default::default(),
        handshakes: Arc::default(),
        cancel: CancellationToken::new(),
        started: tokio::time::Instant::now(),
        metrics: Arc::new(ControllerMetrics::new(topo.nodes.len())),
        live: Live::new(limits),
        election: Arc::new(
            tokio::sync::watch::channel(crate::election::ElectionView::sole(&cfg.id)).0,
        ),
        cfg,
    })
}

pub(crate) fn shared() -> Arc<Shared> {
    shared_with(DIAMOND, LiveLimits::default())
}

/// Publishes a view with `change` applied to the one in force, as the
/// compute task would (state times carried over, readers woken).
pub(crate) fn publish(shared: &Shared, change: impl FnOnce(&mut FleetView)) {
    let prev = shared.view();
    let mut next = (*prev).clone();
    change(&mut next);
    let next = next.since(Some(&prev), std::time::Instant::now());
    shared.published.view.store(Arc::new(next));
    shared.published.views.send_modify(|n| *n += 1);
}

/// Every link up with fresh reports (as after relays' first reports).
pub(crate) fn all_reported_up(v: &mut FleetView) {
    for l in &mut v.links {
        l.view.up = true;
        l.view.stale = false;
        l.view.rtt = Some(Duration::from_millis(20));
    }
}

pub(crate) async fn get(shared: &Arc<Shared>, path: &str) -> (StatusCode, Value) {
    let r = router(shared.clone())
        .oneshot(Request::get(path).body(Body::empty()).expect("request"))
        .await
        .expect("answer");
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20)
        .await
        .expect("body");
    (status, serde_json::from_slice(&body).expect("JSON"))
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn nodes_carry_their_position() {
    let s = shared();
    let (status, nodes) = get(&s, "/api/v1/nodes").await;
    assert_eq!(status, StatusCode::OK);
    let nodes = nodes.as_array().expect("a list");
    assert_eq!(nodes.len(), 4);
    assert_eq!(nodes[3]["id"], "ddd");
    assert_eq!(nodes[3]["lat"], 34.0);
    assert_eq!(nodes[3]["lon"], -118.25);
    assert_eq!(nodes[3]["connected"], false);
    assert_eq!(nodes[3]["connected_for_s"], Value::Null);
    let mut k = keys(&nodes[0]);
    k.sort_unstable();
    assert_eq!(
        k,
        [
            "city",
            "connected",
            "connected_for_s",
            "country",
            "id",
            "lat",
            "lon",
            "region",
            "table_version_applied"
        ]
    );
}

#[tokio::test]
async fn links_carry_capacity_unknown_load_and_the_degraded_state() {
    let s = shared();
    publish(&s, |v| {
        all_reported_up(v);
        v.links[0].view.loss = 0.02;
        v.links[1].view.jitter = Some(Duration::from_millis(12));
        v.links[2].view.up = false;
        v.links[3].view.loss = 0.01;
    });
    let (status, links) = get(&s, "/api/v1/links").await;
    assert_eq!(status, StatusCode::OK);
    let links = links.as_array().expect("a list");
    let before = [
        "a",
        "b",
        "kind",
        "name",
        "state",
        "since_s",
        "rtt_ms",
        "min_rtt_ms",
        "jitter_ms",
        "loss",
        "stale",
        "expected_ms",
        "cost_in_force_ms",
    ];
    let added = [
        "capacity_mbps",
        "load_ab_mbps",
        "load_ba_mbps",
        "utilisation_ab",
        "utilisation_ba",
    ];
    let mut want: Vec<&str> = before.iter().chain(&added).copied().collect();
    want.sort_unstable();
    assert_eq!(
        keys(&links[0]),
        want,
        "the fields of before, and the new ones"
    );
    let states: Vec<&str> = links
        .iter()
        .map(|l| l["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(states, ["degraded", "degraded", "down", "up"]);
    assert_eq!(links[0]["capacity_mbps"], 1000);
    assert_eq!(
        links[2]["capacity_mbps"],
        Value::Null,
        "the topology does not say"
    );
    for l in links {
        for k in &added[1..] {
            assert_eq!(l[k], Value::Null, "{k}: relays do not report load yet");
        }
    }
    // The states changed just now; since_s says so.
    assert!(links[0]["since_s"].as_f64().is_some_and(|s| s < 5.0));
    // Link 3 was unknown (nobody had reported) and is first heard of up now:
    // its relays did not say since when, so from now (not null: issue 14.6).
    assert!(links[3]["since_s"].as_f64().is_some_and(|s| s < 5.0));
}

#[test]
fn utilisation_is_load_over_capacity_when_both_are_known() {
    assert_eq!(utilisation(Some(250.0), Some(1000)), Some(0.25));
    assert_eq!(utilisation(Some(1200.0), Some(1000)), Some(1.2));
    assert_eq!(utilisation(None, Some(1000)), None);
    assert_eq!(utilisation(Some(250.0), None), None);
    assert_eq!(utilisation(Some(250.0), Some(0)), None);
}

#[tokio::test]
async fn a_route_has_its_repair_path_and_expected_and_measured_latency() {
    let s = shared();
    let (status, r) = get(&s, "/api/v1/routes?from=aaa&to=ddd").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["path"], serde_json::json!(["aaa", "bbb", "ddd"]));
    assert_eq!(r["backup_next_hop"], "ccc");
    assert_eq!(r["repair_path"], serde_json::json!(["aaa", "ccc", "ddd"]));
    assert_eq!(r["expected_ms"], 20.0);
    assert_eq!(r["measured_ms"], Value::Null, "no RTT measured yet");
    publish(&s, |v| {
        all_reported_up(v);
        v.links[0].view.rtt = Some(Duration::from_millis(22));
        v.links[1].view.rtt = Some(Duration::from_millis(24));
    });
    let (_, r) = get(&s, "/api/v1/routes?from=aaa&to=ddd").await;
    assert_eq!(r["measured_ms"], 23.0, "half of 22 + 24 ms");
    assert_eq!(r["cost_ms"], 20.0, "as before: the costs in force");

    let (_, same) = get(&s, "/api/v1/routes?from=bbb&to=bbb").await;
    assert_eq!(same["path"], serde_json::json!(["bbb"]));
    assert_eq!(same["expected_ms"], 0.0);
    assert_eq!(same["repair_path"], Value::Null);

    // No route: the walk stops, and what it cannot know is null.
    publish(&s, |v| {
        let mut t = (*v.tables).clone();
        t.tables[0].entries.clear();
        v.tables = Arc::new(t);
    });
    let (status, r) = get(&s, "/api/v1/routes?from=aaa&to=ddd").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["path"], serde_json::json!(["aaa"]));
    for k in [
        "cost_ms",
        "backup_next_hop",
        "repair_path",
        "expected_ms",
        "measured_ms",
    ] {
        assert_eq!(r[k], Value::Null, "{k}");
    }
    let (status, e) = get(&s, "/api/v1/routes?from=aaa&to=zzz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        e["error"].as_str().is_some_and(|e| e.contains("zzz")),
        "{e}"
    );
}

#[tokio::test]
async fn services_list_their_path_and_unmeasured_quality() {
    let s = shared();
    let (status, v) = get(&s, "/api/v1/services").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        v,
        serde_json::json!([
            {"name": "media", "protocol": "udp", "ingress": "aaa", "egress": "ddd",
             "path": ["aaa", "bbb", "ddd"],
             "one_way_ms_p50": null, "one_way_ms_p99": null, "loss": null, "reordered": null,
             "forward": null, "replies": null},
            {"name": "back", "protocol": "tcp", "ingress": "ddd", "egress": "ccc",
             "path": ["ddd", "ccc"],
             "one_way_ms_p50": null, "one_way_ms_p99": null, "loss": null, "reordered": null,
             "forward": null, "replies": null},
        ])
    );
    publish(&s, |v| {
        let mut t = (*v.tables).clone();
        t.tables[0].entries.clear();
        v.tables = Arc::new(t);
    });
    let (_, v) = get(&s, "/api/v1/services").await;
    assert_eq!(
        v[0]["path"],
        serde_json::json!([]),
        "not placed while no route reaches"
    );
}

#[tokio::test]
async fn links_nobody_reported_are_unknown_not_up_in_the_api_and_the_metrics() {
    // A controller that just started (or lost every relay): 4 links, no report.
    let s = shared();
    let (_, links) = get(&s, "/api/v1/links").await;
    let states: Vec<&str> = links
        .as_array()
        .expect("a list")
        .iter()
        .map(|l| l["state"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(states, ["unknown"; 4]);
    let text = crate::exposition::scrape(&s).encode().expect("encodes");
    let count = |state: &str| {
        let key =
            format!("overlay_controller_links{{controller=\"controller\",state=\"{state}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .unwrap_or_else(|| panic!("no {key} in\n{text}"))
            .parse::<f64>()
            .expect("a number")
    };
    assert_eq!(count("up"), 0.0);
    assert_eq!(count("unknown"), 4.0);
    for series in [
        "overlay_controller_build_info{controller=\"controller\",version=\"",
        "overlay_controller_certificate_expiry_timestamp_seconds{controller=\"controller\"} ",
        "process_cpu_seconds_total{controller=\"controller\"} ",
        "process_resident_memory_bytes{controller=\"controller\"} ",
        "process_open_fds{controller=\"controller\"} ",
        "process_max_fds{controller=\"controller\"} ",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(series)),
            "no {series} in\n{text}"
        );
    }
    // One end of aaa–bbb reports it up: that link (only) is up.
    publish(&s, |v| {
        v.links[0].view.stale = false;
    });
    let (_, links) = get(&s, "/api/v1/links").await;
    assert_eq!(links[0]["state"], "up");
    assert_eq!(links[1]["state"], "unknown");
    let text = crate::exposition::scrape(&s).encode().expect("encodes");
    let up = text
        .lines()
        .find(|l| l.contains("overlay_controller_links{") && l.contains("state=\"up\""))
        .expect("an up series");
    assert!(up.ends_with(" 1") || up.ends_with(" 1.0"), "{up}");
}

#[tokio::test]
async fn healthz_is_503_until_a_relay_is_connected() {
    let s = shared();
    let text = |s: &Arc<Shared>| {
        let s = s.clone();
        async move {
            let r = router(s)
                .oneshot(
                    Request::get("/healthz")
                        .body(Body::empty())
                        .expect("request"),
                )
                .await
                .expect("answer");
            let status = r.status();
            let body = axum::body::to_bytes(r.into_body(), 1 << 10)
                .await
                .expect("body");
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(
        text(&s).await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no relay connected (0 of 4)\n".to_string()
        )
    );
    s.add_session(
        "bbb",
        crate::shared::Session {
            remote: "127.0.0.1:1".parse().expect("addr"),
            since: tokio::time::Instant::now(),
            applied: 0,
            conn_id: 1,
        },
    );
    assert_eq!(text(&s).await, (StatusCode::OK, "ok\n".to_string()));
}

#[tokio::test]
async fn placement_lists_split_pairs_their_shares_and_shortfalls() {
    let s = shared();
    let (status, r) = get(&s, "/api/v1/placement").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["pairs"], serde_json::json!([]), "nothing split yet");
    assert_eq!(r["over_ceiling"], serde_json::json!([]));
    let (aaa, bbb, ccc, ddd) = (NodeIdx(0), NodeIdx(1), NodeIdx(2), NodeIdx(3));
    publish(&s, |v| {
        let mut t = (*v.tables).clone();
        let split =
            crate::placing::Split::new(&[(&[aaa, bbb, ddd][..], 3), (&[aaa, ccc, ddd][..], 1)])
                .expect("a split");
        t.tables[0].placed.insert(ddd, split);
        v.tables = Arc::new(t);
        v.placement
            .shortfalls
            .over_ceiling
            .push(crate::placing::OverCeiling {
                link: LinkIdx(1),
                dir: topology::placement::Dir::BtoA,
                utilisation: 0.93,
            });
    });
    let (_, r) = get(&s, "/api/v1/placement").await;
    assert_eq!(
        r["pairs"],
        serde_json::json!([{ "from": "aaa", "to": "ddd", "placed": [
            { "path": ["aaa", "bbb", "ddd"], "share": 0.75 },
            { "path": ["aaa", "ccc", "ddd"], "share": 0.25 }
        ]}])
    );
    assert_eq!(
        r["over_ceiling"],
        serde_json::json!([{ "from": "ddd", "to": "bbb", "utilisation": 0.93 }])
    );
    let (_, route) = get(&s, "/api/v1/routes?from=aaa&to=ddd").await;
    assert_eq!(route["placed"], r["pairs"][0]["placed"]);
}
