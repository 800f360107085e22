//! A relay out of file descriptors (classroom clients opened flows until none
//! was left) still answers its admin API, counts the flows it could not open,
//! and does not spin.
//!
//! The defect this guards against: the admin accept loop retried a failing
//! accept at once, forever: at 100% CPU the API answered nothing.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use support::process::{free_udp, write_fleet, Relay};

fn append(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    let mut t = std::fs::read_to_string(&path).expect("read");
    t.push_str(text);
    std::fs::write(&path, t).expect("write");
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

async fn status(admin: SocketAddr) -> Option<serde_json::Value> {
    match daemon::admin::client::get(admin, "/api/v1/status").await {
        Ok((200, body)) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_admin_api_answers_and_nothing_spins() {
    let test = async {
        let dir = tempfile::tempdir().expect("tempdir");
        let admins = write_fleet(dir.path());
        let ingress = free_udp();
        let target = UdpSocket::bind("127.0.0.1:0").expect("bind");
        append(
            dir.path(),
            "topology.yaml",
            &format!(
                "services:\n  - {{ name: class, protocol: udp, ingress: {{ node: aaa, listen: \"{ingress}\" }}, egress: {{ node: bbb, target: \"{}\" }} }}\n",
                target.local_addr().expect("addr")
            ),
        );
        let _aaa = Relay::start(dir.path(), "aaa", &[], &[("RUST_LOG", "warn")]);
        let bbb = Relay::start_with_nofile(dir.path(), "bbb", 64);
        let started = Instant::now();
        loop {
            let up = status(admins[1])
                .await
                .is_some_and(|s| s["peers"][0]["state"] == "up");
            if up {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the link came up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // 200 classroom clients, each a flow: bbb opens a socket per flow
        // toward the target, and runs out of descriptors on the way.
        let mut clients = Vec::new();
        for _ in 0..200 {
            let c = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let _ = c.send_to(b"hello", ingress);
            clients.push(c);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Hold the admin API's reserve down with open connections, then look.
        let cpu_before = cpu_seconds(bbb.child.id());
        let watch_from = Instant::now();
        let mut answered = 0;
        for _ in 0..10 {
            if let Ok((200, body)) = daemon::admin::client::get(admins[1], "/healthz").await {
                assert_eq!(body, "ok\n");
                answered += 1;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let status = status(admins[1]).await.expect("status answers");
        let cpu = (cpu_seconds(bbb.child.id()) - cpu_before) / watch_from.elapsed().as_secs_f64();
        let failed = status["counters"]["drops"]["send_failed"]
            .as_u64()
            .unwrap_or(0);
        let flows = status["flows"]["udp_egress"].as_u64().unwrap_or(0);
        println!(
            "answered {answered}/10; {flows} egress flows, {failed} flows refused; cpu {:.0}%",
            cpu * 100.0
        );
        assert_eq!(answered, 10, "every /healthz answered");
        assert!(failed > 0, "flows beyond the descriptors are counted");
        assert!(
            flows + failed >= 190,
            "every client's first datagram is accounted for"
        );
        assert!(
            cpu < 0.5,
            "the relay used {:.0}% of a core doing nothing",
            cpu * 100.0
        );
        drop(clients);
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("bounded");
}
