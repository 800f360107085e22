//! `overlay status|links|routes` against a live controller's API.

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
            api,
        ])
        .await
        .expect("routes");
        assert_eq!(unknown.status.code(), Some(64), "{}", text(&unknown.stderr));
        assert!(text(&unknown.stderr).contains("no node `zzz`"));
        tasks.shutdown(Duration::from_secs(1)).await;
        fleet.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("bounded");
}
