//! The `relay` binary as an operator runs it: certificates from the fleet CA,
//! a topology file and one config per node, `relay check-config`, `relay run`,
//! traffic through it, the admin API, and a clean exit on SIGTERM.

mod support;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{bounded, UdpEcho};

/// A free loopback port. The `relay` process binds it itself, so the test cannot
/// hand it a bound socket; the tiny race with other tests is accepted here.
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

fn relay_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_relay"));
    c.args(args).env("RUST_LOG", "warn");
    c
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes the CA, two node certificates, a topology and two relay configs.
fn write_fleet(dir: &Path, echo: SocketAddr) -> (SocketAddr, [SocketAddr; 2]) {
    pki::init_ca(&dir.join("ca"), false).expect("ca");
    for id in ["aaa", "bbb"] {
        pki::issue(&dir.join("ca"), id, &dir.join("certs"), false).expect("issue");
    }
    let (quic_a, quic_b) = (free_udp(), free_udp());
    let ingress = free_udp();
    let topology = format!(
        "version: 1\nnodes:\n\
         \x20 - {{ id: aaa, city: A, country: JP, region: asia, lat: 35.68, lon: 139.69, addr: \"{quic_a}\" }}\n\
         \x20 - {{ id: bbb, city: B, country: US, region: na, lat: 34.05, lon: -118.24, addr: \"{quic_b}\" }}\n\
         links:\n  - {{ between: [aaa, bbb], kind: undersea, name: test-line }}\n\
         services:\n  - name: media\n    protocol: udp\n\
         \x20   ingress: {{ node: aaa, listen: \"{ingress}\" }}\n    egress: {{ node: bbb, target: \"{echo}\" }}\n"
    );
    std::fs::write(dir.join("topology.yaml"), topology).expect("write topology");
    let admins = [free_tcp(), free_tcp()];
    for (id, admin) in ["aaa", "bbb"].iter().zip(admins) {
        let config = format!(
            "node: {id}\ntopology: topology.yaml\ncert: certs/{id}.pem\nkey: certs/{id}.key\nca: ca/ca.pem\nadmin: \"{admin}\"\n"
        );
        std::fs::write(dir.join(format!("{id}.yaml")), config).expect("write config");
    }
    (ingress, admins)
}

#[test]
fn check_config_accepts_a_good_file_and_lists_every_error_of_a_bad_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path(), "127.0.0.1:9".parse().expect("addr"));
    let ok = relay_cmd(&["check-config", "--config"])
        .arg(dir.path().join("aaa.yaml"))
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout.contains("node      aaa") && stdout.contains("peers     bbb"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "node: zzz\ntopology: topology.yaml\ncert: certs/nope.pem\nkey: certs/aaa.key\nca: ca/ca.pem\nadmin: here\ncolour: red\n")
        .expect("write");
    let out = relay_cmd(&["check-config", "--config"])
        .arg(&bad)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("bad.yaml:1: node: no node `zzz`"),
        "{stderr}"
    );
    assert!(stderr.contains("bad.yaml:3: cert:"), "{stderr}");
    assert!(
        stderr.contains("bad.yaml:6: admin: `here` is not an address"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.yaml:7: colour: unknown field `colour`"),
        "{stderr}"
    );
    assert!(!stderr.contains("PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relay_processes_carry_udp_serve_the_admin_api_and_stop_on_sigterm() {
    bounded(60, async {
        let echo = UdpEcho::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let (ingress, admins) = write_fleet(dir.path(), echo.addr);
        let spawn = |id: &str| {
            let child = relay_cmd(&["run", "--config"])
                .arg(dir.path().join(format!("{id}.yaml")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn relay");
            Running(child)
        };
        let mut a = spawn("aaa");
        let _b = spawn("bbb");

        // Healthy, and the link comes up (seen in aaa's status).
        let started = Instant::now();
        loop {
            if let Ok((200, body)) = daemon::admin::client::get(admins[0], "/api/v1/status").await {
                let status: serde_json::Value = serde_json::from_str(&body).expect("json");
                if status["peers"][0]["state"] == "up" {
                    assert_eq!(status["node"], "aaa");
                    assert_eq!(status["routes"][0]["to"], "bbb");
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "link up within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // bbb counts the link up on its own probes' answers, a moment apart.
        let healthz = || async {
            daemon::admin::client::get(admins[1], "/healthz")
                .await
                .expect("healthz")
        };
        let mut bbb = healthz().await;
        while bbb.0 != 200 && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            bbb = healthz().await;
        }
        assert_eq!(bbb, (200, "ok\n".to_string()));

        // A datagram in at aaa comes back from the target through bbb.
        let client = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut buf = [0u8; 128];
        client.send_to(b"hello fleet", ingress).await.expect("send");
        let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .expect("reply within 5 s")
            .expect("recv");
        assert_eq!(&buf[..n], b"echo:hello fleet");

        // SIGTERM: a clean, prompt exit.
        let pid = a.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success());
        let stopped = Instant::now();
        let status = loop {
            if let Some(s) = a.0.try_wait().expect("wait") {
                break s;
            }
            assert!(
                stopped.elapsed() < Duration::from_secs(10),
                "exits within 10 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.code(), Some(0));
    })
    .await;
}
