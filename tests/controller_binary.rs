//! The `controller` binary as an operator runs it: check-config, run, the admin
//! API with relays reporting to it, reloads on SIGHUP (a broken file refused,
//! a changed topology applied on the same addresses), and a clean exit on SIGTERM.

mod support;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A free loopback port (the controller process binds it itself).
fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

fn free_tcp() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CA, certificates, a two-node topology with a controller, and controller.yaml.
fn write_fleet(dir: &Path) -> (SocketAddr, [SocketAddr; 2]) {
    pki::init_ca(&dir.join("ca"), false).expect("ca");
    for id in ["controller", "aaa", "bbb"] {
        pki::issue(&dir.join("ca"), id, &dir.join("certs"), false).expect("issue");
    }
    let (ctl, a, b) = (free_udp(), free_udp(), free_udp());
    let topology = format!(
        "version: 1\ncontrollers:\n  - {{ id: controller, addr: \"{ctl}\" }}\nnodes:\n\
         \x20 - {{ id: aaa, city: A, country: JP, region: asia, lat: 35.68, lon: 139.69, addr: \"{a}\" }}\n\
         \x20 - {{ id: bbb, city: B, country: US, region: na, lat: 34.05, lon: -118.24, addr: \"{b}\" }}\n\
         links:\n  - {{ between: [aaa, bbb], kind: undersea, name: test-line }}\n"
    );
    std::fs::write(dir.join("topology.yaml"), topology).expect("write");
    let admin = free_tcp();
    std::fs::write(
        dir.join("controller.yaml"),
        format!("id: controller\ntopology: topology.yaml\ncert: certs/controller.pem\nkey: certs/controller.key\nca: ca/ca.pem\nadmin: \"{admin}\"\n"),
    )
    .expect("write");
    (admin, [a, b])
}

fn signal(child: &Running, name: &str) {
    assert!(Command::new("kill")
        .args([&format!("-{name}"), &child.0.id().to_string()])
        .status()
        .expect("kill")
        .success());
}

/// The controller's nodes (empty while its API is not answering).
async fn nodes(admin: SocketAddr) -> Vec<serde_json::Value> {
    match daemon::admin::client::get(admin, "/api/v1/nodes").await {
        Ok((200, body)) => serde_json::from_str(&body).expect("json"),
        _ => Vec::new(),
    }
}

#[test]
fn check_config_accepts_a_good_file_and_lists_every_error_of_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path());
    let ok = Command::new(support::daemon_binary("controller"))
        .args(["check-config", "--config"])
        .arg(dir.path().join("controller.yaml"))
        .output()
        .expect("runs");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("relays    2"));

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "id: ctl-9\ntopology: topology.yaml\ncert: certs/none.pem\nkey: certs/none.key\nca: ca/ca.pem\nstability: { relative: 0.1, hold: 3 }\n")
        .expect("write");
    let out = Command::new(support::daemon_binary("controller"))
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("bad.yaml:1: id: no controller `ctl-9`"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.yaml:3: cert:"), "{stderr}");
    assert!(
        stderr.contains("bad.yaml:6: stability.hold: unknown field `hold`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_process_serves_relays_and_its_api_reloads_on_sighup_and_stops_on_sigterm() {
    let test = async {
        let dir = tempfile::tempdir().expect("tempdir");
        let (admin, relay_addrs) = write_fleet(dir.path());
        let mut child = Running(
            Command::new(support::daemon_binary("controller"))
                .args(["run", "--config"])
                .arg(dir.path().join("controller.yaml"))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn controller"),
        );
        // Two relays in this process, from the same files, report to it.
        let topology =
            Arc::new(topology::load(&dir.path().join("topology.yaml")).expect("topology"));
        let roots =
            Arc::new(daemon::tls::load_roots(&dir.path().join("ca/ca.pem")).expect("roots"));
        let mut relays = Vec::new();
        for (id, addr) in ["aaa", "bbb"].iter().zip(relay_addrs) {
            let identity = daemon::tls::Identity::load(
                &dir.path().join(format!("certs/{id}.pem")),
                &dir.path().join(format!("certs/{id}.key")),
            )
            .expect("identity");
            let idx = topology.node_idx(id).expect("node");
            let cfg = relay::RelayConfig::new(topology.clone(), idx, identity, roots.clone());
            let socket = UdpSocket::bind(addr).expect("bind relay");
            relays.push(relay::start(cfg, socket, None).await.expect("relay"));
        }
        let started = Instant::now();
        loop {
            if let Ok((200, body)) = daemon::admin::client::get(admin, "/api/v1/links").await {
                let links: serde_json::Value = serde_json::from_str(&body).expect("json");
                let nodes: serde_json::Value = serde_json::from_str(
                    &daemon::admin::client::get(admin, "/api/v1/nodes")
                        .await
                        .expect("nodes")
                        .1,
                )
                .expect("json");
                let connected = nodes
                    .as_array()
                    .expect("array")
                    .iter()
                    .filter(|n| n["connected"] == true)
                    .count();
                if links[0]["state"] == "up" && links[0]["rtt_ms"].is_number() && connected == 2 {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "relays reported within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (status, body) = daemon::admin::client::get(admin, "/api/v1/routes?from=aaa&to=bbb")
            .await
            .expect("routes");
        assert_eq!(status, 200, "{body}");
        let route: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(route["path"], serde_json::json!(["aaa", "bbb"]));
        assert_eq!(
            daemon::admin::client::get(admin, "/api/v1/routes?from=aaa")
                .await
                .expect("bad")
                .0,
            400
        );
        assert!(
            relays.iter().all(|r| r.status().table_version > 0),
            "relays hold the controller's table"
        );

        // SIGHUP with a broken topology: refused, the controller keeps serving.
        let path = dir.path().join("topology.yaml");
        let good = std::fs::read_to_string(&path).expect("read");
        std::fs::write(
            &path,
            format!("{good}  - {{ between: [aaa, zzz], kind: terrestrial }}\n"),
        )
        .expect("write");
        signal(&child, "HUP");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(nodes(admin).await.len(), 2, "old topology in force");
        assert!(child.0.try_wait().expect("wait").is_none(), "still running");

        // A good change (a third node), reloaded several times: the controller
        // restarts in place on its own addresses each time and the relays return.
        let ccc = free_udp();
        let changed = good.replace(
            "links:\n",
            &format!("\x20 - {{ id: ccc, city: C, country: US, region: na, lat: 40.7, lon: -74.0, addr: \"{ccc}\" }}\nlinks:\n  - {{ between: [bbb, ccc], kind: terrestrial }}\n"),
        );
        assert_ne!(changed, good);
        for round in 0..3 {
            let text = if round % 2 == 0 { &changed } else { &good };
            std::fs::write(&path, text).expect("write");
            signal(&child, "HUP");
            let want = if round % 2 == 0 { 3 } else { 2 };
            let reloaded = Instant::now();
            loop {
                let n = nodes(admin).await;
                let connected = n.iter().filter(|n| n["connected"] == true).count();
                if n.len() == want && connected == 2 {
                    break;
                }
                assert!(
                    child.0.try_wait().expect("wait").is_none(),
                    "round {round}: the controller died"
                );
                assert!(
                    reloaded.elapsed() < Duration::from_secs(15),
                    "round {round}: not back in 15 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            println!(
                "reload {round}: back with {want} nodes in {:?}",
                reloaded.elapsed()
            );
        }

        signal(&child, "TERM");
        let stopping = Instant::now();
        let status = loop {
            if let Some(s) = child.0.try_wait().expect("wait") {
                break s;
            }
            assert!(
                stopping.elapsed() < Duration::from_secs(10),
                "exits within 10 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.code(), Some(0));
        for r in relays {
            r.shutdown().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("bounded");
}
