//! `relay check-config` against careless and hostile config files: each case
//! exits 64 in under a second, naming the key or the file and the line.
//!
//! The defects this guards against: a key pointing at a FIFO hung the check;
//! /dev/zero as key or topology read about 1 GiB first; a second YAML document
//! was ignored (exit 0); a world-readable private key was accepted silently; a
//! controller id equal to a node id was accepted; a byte order mark read as an
//! unknown field; invalid UTF-8 was reported at line 0.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::process::write_fleet;

/// Runs `relay check-config` on `config`: (exit code, stderr, how long).
fn check(config: &Path) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["check-config", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("relay runs");
    // A hang must fail the test, not stall it.
    let deadline = started + Duration::from_secs(10);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("check-config of {} hung", config.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
        started.elapsed(),
    )
}

fn expect_refused(config: &Path, wants: &[&str]) {
    let (code, stderr, took) = check(config);
    assert_eq!(code, Some(64), "{}: {stderr}", config.display());
    assert!(
        took < Duration::from_secs(1),
        "{}: took {took:?}",
        config.display()
    );
    for want in wants {
        assert!(
            stderr.contains(want),
            "{}: wanted {want:?} in:\n{stderr}",
            config.display()
        );
    }
}

#[test]
fn careless_and_hostile_configs_are_refused_fast_with_their_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path());
    let d = dir.path();
    let base = std::fs::read_to_string(d.join("aaa.yaml")).expect("read");
    let write = |name: &str, text: &str| {
        let p = d.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let line_of = |key: &str| {
        base.lines()
            .position(|l| l.starts_with(key))
            .map(|i| i + 1)
            .expect("key in config")
    };

    // The key is a FIFO: refused, not waited on.
    let fifo = d.join("key.fifo");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    let cfg = write(
        "fifo.yaml",
        &base.replace("key: certs/aaa.key", &format!("key: {}", fifo.display())),
    );
    expect_refused(
        &cfg,
        &[
            &format!("fifo.yaml:{}: key:", line_of("key:")),
            "not a regular file",
        ],
    );

    // /dev/zero as the key and as the topology.
    let cfg = write(
        "zero-key.yaml",
        &base.replace("key: certs/aaa.key", "key: /dev/zero"),
    );
    expect_refused(&cfg, &["zero-key.yaml", "key:", "/dev/zero"]);
    let cfg = write(
        "zero-topology.yaml",
        &base.replace("topology: topology.yaml", "topology: /dev/zero"),
    );
    expect_refused(&cfg, &["zero-topology.yaml", "topology:", "/dev/zero"]);

    // A second document.
    let cfg = write("two-docs.yaml", &format!("{base}---\nnode: bbb\n"));
    expect_refused(&cfg, &["two-docs.yaml:", "document"]);

    // A private key others can read.
    let exposed = d.join("certs/exposed.key");
    std::fs::copy(d.join("certs/aaa.key"), &exposed).expect("copy");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let cfg = write(
        "exposed.yaml",
        &base.replace("key: certs/aaa.key", "key: certs/exposed.key"),
    );
    expect_refused(
        &cfg,
        &[
            &format!("exposed.yaml:{}: key:", line_of("key:")),
            "chmod 600",
        ],
    );

    // A controller named like a node (in the topology the config names).
    let topology = std::fs::read_to_string(d.join("topology.yaml")).expect("read");
    let shared_name = topology.replacen(
        "version: 1\n",
        "version: 1\ncontrollers:\n  - { id: bbb, addr: \"127.0.0.1:7999\" }\n",
        1,
    );
    std::fs::write(d.join("named.topology.yaml"), shared_name).expect("write");
    let cfg = write(
        "named.yaml",
        &base.replace("topology: topology.yaml", "topology: named.topology.yaml"),
    );
    expect_refused(
        &cfg,
        &[
            "named.yaml",
            "topology:",
            "controller id `bbb` is also a node id",
        ],
    );

    // Invalid UTF-8: line and byte offset.
    let mut bytes = base.clone().into_bytes();
    bytes.extend_from_slice(b"drain_grace_ms: 1\xe9\n");
    let cfg = d.join("latin1.yaml");
    std::fs::write(&cfg, &bytes).expect("write");
    expect_refused(
        &cfg,
        &[
            "latin1.yaml",
            &format!("line {}", base.lines().count() + 1),
            "byte offset",
        ],
    );

    // A byte order mark is fine.
    let cfg = write("bom.yaml", &format!("\u{feff}{base}"));
    let (code, stderr, _) = check(&cfg);
    assert_eq!(code, Some(0), "a BOM is accepted: {stderr}");
}
