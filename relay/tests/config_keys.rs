//! The relay config's tuning keys as `relay check-config` sees them: good
//! values pass, bad ones are each reported with their line, exit 64.

mod support;

use std::process::Command;

use support::process::write_fleet;

fn check(config: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["check-config", "--config"])
        .arg(config)
        .output()
        .expect("relay runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn tuning_keys_are_checked_with_their_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path());
    let base = std::fs::read_to_string(dir.path().join("aaa.yaml")).expect("read");
    let lines_before = base.lines().count();

    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        format!("{base}probe_interval_ms: 30\nprobe_timeout_floor_ms: 60\nprobe_down_after: 2\nprobe_up_again_after: 25\ndrain_grace_ms: 5000\nsocket_buffer_bytes: 1048576\ntcp_resume_timeout_ms: 5000\ntcp_session_buffer_bytes: 262144\n"),
    )
    .expect("write");
    let (code, stderr) = check(&good);
    assert_eq!(code, Some(0), "{stderr}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!("{base}probe_interval_ms: 2\nprobe_timeout_floor_ms: 5000\nprobe_down_after: 0\nprobe_up_again_after: 3\ndrain_grace_ms: 900000\nsocket_buffer_bytes: 1000\ntcp_resume_timeout_ms: 10\ntcp_session_buffer_bytes: 100\n"),
    )
    .expect("write");
    let (code, stderr) = check(&bad);
    assert_eq!(code, Some(64), "{stderr}");
    for (offset, key) in [
        "probe_interval_ms",
        "probe_timeout_floor_ms",
        "probe_down_after",
        "probe_up_again_after",
        "drain_grace_ms",
        "socket_buffer_bytes",
        "tcp_resume_timeout_ms",
        "tcp_session_buffer_bytes",
    ]
    .iter()
    .enumerate()
    {
        let line = lines_before + offset + 1;
        assert!(
            stderr.contains(&format!("bad.yaml:{line}: {key}:")),
            "{key} reported on line {line}:\n{stderr}"
        );
    }
}

#[test]
fn a_certificate_key_or_ca_that_does_not_fit_the_node_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path());
    pki::init_ca(&dir.path().join("other-ca"), false).expect("other ca");
    pki::issue(
        &dir.path().join("other-ca"),
        "aaa",
        &dir.path().join("other"),
        false,
    )
    .expect("issue");
    let base = std::fs::read_to_string(dir.path().join("aaa.yaml")).expect("read");
    let line_of = |key: &str| {
        base.lines()
            .position(|l| l.starts_with(&format!("{key}:")))
            .expect("key in config")
            + 1
    };
    for (name, from, to, key, expect) in [
        (
            "wrong-node",
            "certs/aaa.pem",
            "certs/bbb.pem",
            "cert",
            "not node `aaa`",
        ),
        (
            "wrong-key",
            "certs/aaa.key",
            "certs/bbb.key",
            "key",
            "does not belong",
        ),
        (
            "other-ca",
            "certs/aaa.pem",
            "other/aaa.pem",
            "cert",
            "does not verify against the CA",
        ),
        (
            "missing-key",
            "certs/aaa.key",
            "certs/none.key",
            "key",
            "does not exist",
        ),
    ] {
        let config = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&config, base.replace(from, to)).expect("write");
        let (code, stderr) = check(&config);
        assert_eq!(code, Some(64), "{name}: {stderr}");
        let at = format!("{name}.yaml:{}: {key}:", line_of(key));
        assert!(stderr.contains(&at), "{name}: wanted `{at}`:\n{stderr}");
        assert!(
            stderr.contains(expect),
            "{name}: wanted `{expect}`:\n{stderr}"
        );
    }
}

/// Every tuning key `relay.example.yaml` documents (commented out, with its
/// default) is a key `relay check-config` takes, and its default is in range.
#[test]
fn the_example_config_documents_keys_the_relay_accepts_at_their_defaults() {
    let example = include_str!("../relay.example.yaml");
    // Node-specific keys (addresses, peers) are left to the fleet's config.
    let skip = ["listen", "admin", "dial"];
    let keys: Vec<(&str, &str)> = example
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter_map(|l| {
            let (key, rest) = l.split_once(':')?;
            let key_ok = !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_');
            let value = rest.split(" #").next()?.trim();
            (key_ok && !value.is_empty()).then_some((key, value))
        })
        .filter(|(key, _)| !skip.contains(key))
        .collect();
    for key in [
        "tcp_idle_timeout_ms",
        "tcp_resume_timeout_ms",
        "tcp_session_buffer_bytes",
    ] {
        assert!(
            keys.iter().any(|(k, _)| *k == key),
            "{key} documented: {keys:?}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path());
    let mut config = std::fs::read_to_string(dir.path().join("aaa.yaml")).expect("read");
    for (key, value) in &keys {
        config += &format!("{key}: {value}\n");
    }
    let path = dir.path().join("example.yaml");
    std::fs::write(&path, &config).expect("write");
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(0), "{config}\n{stderr}");
}

/// `relay.example.yaml` and the deployment guide's relay config (section 5)
/// name the same files, and the example's `dial:` line is the form the guide
/// documents and the relay takes.
#[test]
fn the_example_config_agrees_with_the_deployment_guide() {
    let example = include_str!("../relay.example.yaml");
    let guide = include_str!("../../docs/deploy.md");
    let start = guide
        .find("`/etc/overlay/relay.yaml`")
        .expect("the guide's relay config");
    let block = &guide[start..];
    let block = &block[block.find("```yaml").expect("a yaml block") + 7..];
    let block = &block[..block.find("```").expect("its end")];
    let value = |text: &str, key: &str| -> Option<String> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(&format!("{key}:"))?;
            Some(rest.split('#').next()?.trim().to_string())
        })
    };
    for key in ["node", "topology", "cert", "key", "ca"] {
        let (e, g) = (value(example, key), value(block, key));
        assert!(e.is_some(), "{key} in the example");
        assert_eq!(e, g, "{key}: example vs docs/deploy.md section 5");
    }
    // The dial line: the guide's form, and a key the relay takes.
    let dial = example
        .lines()
        .find_map(|l| l.strip_prefix("# dial: "))
        .expect("a dial example");
    let dial = dial.split("  #").next().expect("value").trim();
    assert!(
        guide.contains(&format!("`{dial}`")),
        "the guide documents `{dial}`"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path());
    let mut config = std::fs::read_to_string(dir.path().join("aaa.yaml")).expect("read");
    let peer = dial.replace("lax", "bbb");
    config += &format!("dial: {peer}\n");
    let path = dir.path().join("dial.yaml");
    std::fs::write(&path, &config).expect("write");
    let (code, stderr) = check(&path);
    assert_eq!(code, Some(0), "{config}\n{stderr}");
}
