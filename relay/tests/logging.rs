//! The `relay` binary's logs: human-readable by default, JSON lines with
//! `--log-format json` or `OVERLAY_LOG_FORMAT=json`; link state changes and the
//! reroutes they cause are logged in the link's `peer` span.

mod support;

use std::process::Command;
use std::time::Duration;

use support::process::{write_fleet, Relay};

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"))
}

#[test]
fn log_format_json_prints_one_json_object_per_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path());
    for (args, env) in [
        (&["--log-format", "json"][..], &[][..]),
        (&[][..], &[("OVERLAY_LOG_FORMAT", "json")][..]),
        // The flag wins over the environment.
        (
            &["--log-format", "json"][..],
            &[("OVERLAY_LOG_FORMAT", "human")][..],
        ),
    ] {
        let mut relay = Relay::start(dir.path(), "aaa", args, env);
        let line = relay.line(Duration::from_secs(15), |l| l.contains("relay started"));
        let event = json(&line);
        assert_eq!(event["level"], "INFO", "{line}");
        assert_eq!(event["fields"]["message"], "relay started", "{line}");
        assert_eq!(event["fields"]["node"], "aaa", "{line}");
        assert_eq!(event["target"], "relay::runtime", "{line}");
        for earlier in &relay.seen {
            json(earlier);
        }
    }
}

#[test]
fn logs_are_human_readable_by_default_without_colours_off_a_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path());
    for env in [&[][..], &[("OVERLAY_LOG_FORMAT", "human")][..]] {
        let mut relay = Relay::start(dir.path(), "aaa", &[], env);
        let line = relay.line(Duration::from_secs(15), |l| l.contains("relay started"));
        assert!(
            serde_json::from_str::<serde_json::Value>(&line).is_err(),
            "{line}"
        );
        assert!(
            line.contains(" INFO ") && line.contains("node=aaa"),
            "{line}"
        );
        assert!(
            !line.contains('\u{1b}'),
            "no ANSI escapes in a pipe: {line:?}"
        );
    }
}

#[test]
fn an_unknown_log_format_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path());
    let config = dir.path().join("aaa.yaml");
    let flag = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["check-config", "--log-format", "xml", "--config"])
        .arg(&config)
        .env_remove("OVERLAY_LOG_FORMAT")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&flag.stderr);
    assert_eq!(flag.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("xml"), "{stderr}");

    let env = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["check-config", "--config"])
        .arg(&config)
        .env("OVERLAY_LOG_FORMAT", "xml")
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&env.stderr);
    assert_eq!(env.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("OVERLAY_LOG_FORMAT: `xml` is not a log format"),
        "{stderr}"
    );

    let ok = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["check-config", "--config"])
        .arg(&config)
        .args(["--log-format", "json"])
        .output()
        .expect("runs");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn link_state_changes_and_failover_are_logged_in_the_peer_span() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_fleet(dir.path());
    let json_logs = ["--log-format", "json"];
    let mut a = Relay::start(dir.path(), "aaa", &json_logs, &[]);
    let mut b = Relay::start(dir.path(), "bbb", &json_logs, &[]);

    let up = json(&a.line(Duration::from_secs(20), |l| l.contains("link up")));
    assert_eq!(up["level"], "INFO", "{up}");
    assert_eq!(up["span"]["name"], "peer", "{up}");
    assert_eq!(up["span"]["peer"], "bbb", "{up}");
    assert!(up["span"]["remote"].is_string(), "{up}");
    // Numbers are numbers (not `"Some(0.351201)"`), rounded to the µs.
    let rtt = up["fields"]["rtt_ms"].as_f64().expect("rtt_ms a number");
    assert_eq!(rtt, (rtt * 1000.0).round() / 1000.0, "{up}");
    // bbb is aaa's only route, so the link coming up is a reroute from nowhere.
    let reroute = json(&a.line(Duration::from_secs(5), |l| l.contains("reroute")));
    assert_eq!(reroute["fields"]["cause"], "local failover", "{reroute}");
    assert_eq!(reroute["fields"]["next_hops"], "bbb: - → bbb", "{reroute}");
    assert_eq!(reroute["span"]["peer"], "bbb", "{reroute}");

    // bbb vanishes without closing anything: aaa's probes find out.
    let _ = b.child.kill();
    let _ = b.child.wait();
    let down = json(&a.line(Duration::from_secs(10), |l| l.contains("link down")));
    assert_eq!(down["level"], "WARN", "{down}");
    assert_eq!(down["span"]["peer"], "bbb", "{down}");
    // As many lost in a row as the default `probe_down_after`.
    let down_after = relay_core::probe::ProbeConfig::default().down_after;
    assert_eq!(down["fields"]["consecutive"], down_after, "{down}");
    assert!(down["fields"]["loss"].is_number(), "{down}");
    let reroute = json(&a.line(Duration::from_secs(5), |l| l.contains("reroute")));
    assert_eq!(reroute["fields"]["cause"], "local failover", "{reroute}");
    assert_eq!(reroute["fields"]["moved"], 1, "{reroute}");
    assert_eq!(reroute["fields"]["next_hops"], "bbb: bbb → -", "{reroute}");
}
