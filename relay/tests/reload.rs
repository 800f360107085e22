//! The `relay` binary on SIGHUP and SIGTERM: a broken config is refused with
//! its errors logged and the running one stays; a good one adding a service
//! binds it at once; SIGTERM drains and exits within the grace period.

mod support;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::process::{free_udp, write_fleet, Relay};

fn signal(relay: &Relay, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &relay.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name} failed");
}

fn add_to_topology(dir: &Path, text: &str) {
    let path = dir.join("topology.yaml");
    let mut topology = std::fs::read_to_string(&path).expect("read topology");
    topology.push_str(text);
    std::fs::write(&path, topology).expect("write topology");
}

#[test]
fn sighup_refuses_a_broken_config_applies_a_good_one_and_sigterm_drains_within_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path());
    let config = dir.path().join("aaa.yaml");
    let mut text = std::fs::read_to_string(&config).expect("read config");
    text.push_str("drain_grace_ms: 2000\n");
    std::fs::write(&config, text).expect("write config");
    let original = std::fs::read_to_string(dir.path().join("topology.yaml")).expect("read");

    let mut relay = Relay::start(dir.path(), "aaa", &[], &[]);
    relay.line(Duration::from_secs(15), |l| l.contains("relay started"));

    // A link to a node that does not exist: refused, with the file and line.
    add_to_topology(
        dir.path(),
        "  - { between: [aaa, zzz], kind: terrestrial }\n",
    );
    signal(&relay, "HUP");
    let refused = relay.line(Duration::from_secs(10), |l| l.contains("reload refused"));
    let detail = relay.line(Duration::from_secs(5), |l| l.contains("zzz"));
    assert!(
        detail.contains("topology.yaml"),
        "the error names the file: {refused}\n{detail}"
    );
    assert!(
        relay.child.try_wait().expect("wait").is_none(),
        "the relay still runs"
    );

    // A good topology with a new UDP service whose ingress is this relay.
    let ingress = free_udp();
    std::fs::write(dir.path().join("topology.yaml"), &original).expect("restore");
    add_to_topology(
        dir.path(),
        &format!(
            "services:\n  - {{ name: extra, protocol: udp, ingress: {{ node: aaa, listen: \"{ingress}\" }}, egress: {{ node: bbb, target: \"127.0.0.1:9\" }} }}\n"
        ),
    );
    signal(&relay, "HUP");
    let applied = relay.line(Duration::from_secs(10), |l| l.contains("reload applied"));
    assert!(applied.contains("services +extra"), "{applied}");
    let taken = UdpSocket::bind(ingress);
    assert!(
        taken.is_err(),
        "the new service's ingress {ingress} is bound by the relay"
    );

    // SIGTERM: drains (no traffic, so it is quiet after a second) and exits.
    let stopping = Instant::now();
    signal(&relay, "TERM");
    relay.line(Duration::from_secs(5), |l| l.contains("draining"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = relay.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the relay did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    let took = stopping.elapsed();
    assert!(status.success(), "exit status {status}");
    // Grace 2 s, plus the bounded shutdown of tasks and the QUIC endpoint.
    assert!(took < Duration::from_secs(6), "stopped in {took:?}");
    println!("stopped {took:?} after SIGTERM");
}
