//! `overlay status|links|routes|trace` against a live controller's API.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{diamond, overlay, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_links_and_routes_show_the_live_fleet() {
    let _one_at_a_time = support::FLEET_TESTS.lock().await;
    let test = async {
        let (fleet, _stream) = diamond::start().await;
        let shared = fleet
            .controller
            .as_ref()
            .expect("controller")
            .shared
            .clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let api = listener.local_addr().expect("addr").to_string();
        let tasks = daemon::Supervisor::new(tokio_util::sync::CancellationToken::new());
        tasks.spawn(
            "api",
            daemon::OnFailure::Log,
            daemon::admin::serve(
                listener,
                controller::api::router(shared),
                daemon::admin::AdminLimits::default(),
                Arc::default(),
                tasks.cancel_token().clone(),
                tasks.spawner(),
            ),
        );
        let run = |args: Vec<String>| {
            tokio::task::spawn_blocking(move || {
                overlay(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
        };
        let whole = run(vec!["status".into(), "--api".into(), api.clone()])
            .await
            .expect("status");
        let out = text(&whole.stdout);
        assert_eq!(whole.status.code(), Some(0), "the whole fleet up: {out}");
        assert!(out.contains("4 up, 0 held down, 0 down (of 4)"), "{out}");

        fleet.link("ccc", "ddd").expect("link").cut();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let status = run(vec!["status".into(), "--api".into(), api.clone()])
            .await
            .expect("status");
        let out = text(&status.stdout);
        assert_eq!(
            status.status.code(),
            Some(2),
            "a link down: degraded, summary printed all the same; {}",
            text(&status.stderr)
        );
        assert!(out.contains("relays   4 of 4 connected"), "{out}");
        assert!(out.contains("3 up, 0 held down, 1 down (of 4)"), "{out}");
        assert!(out.contains("ccc–ddd (down)"), "{out}");

        // A host name is taken (issue 14.6), each address it resolves to tried.
        let port = api.rsplit(':').next().expect("a port").to_string();
        let links = run(vec![
            "links".into(),
            "--api".into(),
            format!("localhost:{port}"),
        ])
        .await
        .expect("links");
        assert_eq!(links.status.code(), Some(0), "{}", text(&links.stderr));
        let out = text(&links.stdout);
        let ab = out
            .lines()
            .find(|l| l.starts_with("aaa  bbb"))
            .expect("a row for aaa–bbb");
        assert!(ab.contains(" up ") && ab.contains("terrestrial"), "{ab}");
        let rtt: f64 = ab
            .split_whitespace()
            .nth(6)
            .expect("rtt column")
            .parse()
            .expect("a number");
        assert!(
            (18.0..40.0).contains(&rtt),
            "aaa–bbb is 10 ms each way: rtt {rtt}"
        );
        // The stream (200 datagrams/s of 192 B plus QUIC's overhead, about
        // 0.4 Mbit/s) goes aaa → bbb; back come acks and probe echoes.
        let cols: Vec<&str> = ab.split_whitespace().collect();
        let (ab_mbps, ba_mbps): (f64, f64) = (
            cols[11].parse().expect("Mbit/s a→b"),
            cols[12].parse().expect("Mbit/s b→a"),
        );
        assert!((0.2..2.0).contains(&ab_mbps), "{ab}");
        assert!(ba_mbps < ab_mbps, "{ab}");
        assert!(
            out.lines()
                .any(|l| l.starts_with("ccc  ddd") && l.contains("down")),
            "{out}"
        );

        let routes = run(vec![
            "routes".into(),
            "aaa".into(),
            "ddd".into(),
            "--api".into(),
            api.clone(),
        ])
        .await
        .expect("routes");
        let out = text(&routes.stdout);
        assert!(out.starts_with("aaa → ddd: aaa → bbb → ddd"), "{out}");
        let unknown = run(vec![
            "routes".into(),
            "aaa".into(),
            "zzz".into(),
            "--api".into(),
            api.clone(),
        ])
        .await
        .expect("routes");
        assert_eq!(unknown.status.code(), Some(64), "{}", text(&unknown.stderr));
        assert!(text(&unknown.stderr).contains("no node `zzz`"));

        // The stream into `media` has run for a few report intervals: the
        // egress's measurements reached the controller.
        let trace = run(vec![
            "trace".into(),
            "media".into(),
            "--api".into(),
            api.clone(),
        ])
        .await
        .expect("trace");
        let out = text(&trace.stdout);
        assert_eq!(trace.status.code(), Some(0), "{}", text(&trace.stderr));
        assert!(out.starts_with("media (udp): aaa → ddd"), "{out}");
        assert!(out.contains("path aaa → bbb → ddd"), "{out}");
        let hop = out
            .lines()
            .find(|l| l.trim_start().starts_with("aaa → bbb"))
            .expect("a row for the first hop");
        assert!(hop.contains(" up "), "{hop}");
        let forward = out
            .lines()
            .find(|l| l.contains("clients → target, at ddd"))
            .expect("a row for the forward direction");
        let cols: Vec<&str> = forward.split_whitespace().collect();
        let (packets, p50): (u64, f64) = (
            cols[5].parse().expect("packets"),
            cols[6].parse().expect("p50"),
        );
        assert!(packets > 100, "the 200/s stream was measured: {forward}");
        assert!(
            (20.0..40.0).contains(&p50),
            "the fast path is 20 ms one way: {forward}"
        );
        let no_such = run(vec![
            "trace".into(),
            "nope".into(),
            "--api".into(),
            api.clone(),
        ])
        .await
        .expect("trace");
        assert_eq!(no_such.status.code(), Some(64));
        assert!(
            text(&no_such.stderr).contains("no service `nope`"),
            "{}",
            text(&no_such.stderr)
        );
        tasks.shutdown(Duration::from_secs(1)).await;
        fleet.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("bounded");
}
