//! `overlay lab` as a user runs it, on a small fleet with known link delays: the
//! report's measured latency must match the paths and delays, with no loss.

mod support;

use std::path::Path;

use support::{overlay, text};

/// (class, path, expected ms, p50 ms, p99 ms, loss %) for each class row.
fn class_rows(report: &str) -> Vec<(String, String, f64, f64, f64, f64)> {
    report
        .lines()
        .filter(|l| l.starts_with("class-"))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let n = cols.len();
            let num = |s: &str| s.trim_end_matches('%').parse::<f64>().expect("number");
            (
                cols[0].to_string(),
                cols[1..n - 10].join(" "),
                num(cols[n - 10]),
                num(cols[n - 9]),
                num(cols[n - 8]),
                num(cols[n - 5]),
            )
        })
        .collect()
}

#[test]
fn lab_on_a_small_fleet_measures_the_latency_its_links_imply() {
    let _one_at_a_time = support::one_fleet_at_a_time();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lab-triangle.yaml");
    let out = overlay(&[
        "lab",
        "--topology",
        &file.display().to_string(),
        "--duration",
        "3s",
        "--classes",
        "4",
        "--scenario",
        "none",
        "--api",
        "127.0.0.1:0",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{stdout}",
        text(&out.stderr)
    );
    let rows = class_rows(&stdout);
    assert_eq!(rows.len(), 4, "{stdout}");
    for (class, path, expected, p50, p99, loss) in rows {
        // Students are in Asia (tyo); teachers in North America. To lax the
        // route goes through sea (30 ms), not over the 50 ms internet link.
        let (want_path, want_ms) = if class.ends_with("-lax") {
            ("tyo sea lax", 30.0)
        } else {
            ("tyo sea", 20.0)
        };
        assert_eq!(path, want_path, "{class}");
        assert_eq!(expected, want_ms, "{class}");
        assert!(
            p50 >= want_ms,
            "{class}: p50 {p50} ms below the links' delay"
        );
        assert!(
            p50 < want_ms + 10.0,
            "{class}: p50 {p50} ms, far above {want_ms}"
        );
        assert!(p99 < want_ms + 20.0, "{class}: p99 {p99} ms");
        assert_eq!(loss, 0.0, "{class}: no loss on clean links");
    }
    assert!(
        stdout.contains("4 of 4 classes within the 200 ms budget"),
        "{stdout}"
    );
    // Signalling: every class's TCP session echoed its messages and none broke;
    // the teacher's media came back within the same bounds.
    for line in stdout.lines().filter(|l| l.starts_with("class-")) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (ok, broken) = cols[cols.len() - 1].split_once('/').expect("ok/broken");
        assert!(ok.parse::<u64>().expect("ok") >= 4, "{line}");
        assert_eq!(broken, "0", "{line}");
        let back: f64 = cols[cols.len() - 2].parse().expect("back p99");
        assert!(back < 50.0, "{line}");
    }
    // Every class crosses the one undersea line, which carried packets both ways.
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("test-line"))
        .expect("undersea usage row");
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[5], "4", "{line}");
    assert!(
        cols[3].parse::<u64>().expect("a→b") > 500 && cols[4].parse::<u64>().expect("b→a") > 100,
        "{line}"
    );
}

#[test]
fn lab_rejects_bad_options_with_exit_64() {
    for args in [
        &["lab", "--duration", "soon"][..],
        &["lab", "--classes", "0"][..],
        &["lab", "--loss", "1.5"][..],
        &["lab", "--topology", "/nonexistent.yaml"][..],
        &[
            "lab",
            "--scenario",
            "/nonexistent-scenario.yaml",
            "--duration",
            "1s",
        ][..],
    ] {
        let out = overlay(args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_scenario_cut_reroutes_the_classes_that_used_the_link_and_the_report_says_so() {
    let _one_at_a_time = support::one_fleet_at_a_time();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let scenario = std::env::temp_dir().join(format!("lab-scenario-{}.yaml", std::process::id()));
    std::fs::write(&scenario, "events:\n  - { at: 2s, cut: [sea, lax] }\n")
        .expect("write scenario");
    let out = overlay(&[
        "lab",
        "--topology",
        &dir.join("lab-triangle.yaml").display().to_string(),
        "--duration",
        "5s",
        "--classes",
        "4",
        "--scenario",
        &scenario.display().to_string(),
        "--api",
        "127.0.0.1:0",
    ]);
    let _ = std::fs::remove_file(&scenario);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{stdout}",
        text(&out.stderr)
    );
    assert!(stdout.contains("cut sea–lax"), "{stdout}");
    // Both classes to lax moved off the cut link, to the direct line; none to sea did.
    let moved: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("tyo sea lax  tyo lax"))
        .collect();
    assert_eq!(moved.len(), 2, "{stdout}");
    assert!(
        !stdout
            .lines()
            .any(|l| l.contains("-tyo-sea") && l.contains(" → ")),
        "{stdout}"
    );
    // Their longest gap in delivery stayed under a second.
    for line in moved {
        let gap: u64 = line
            .split_whitespace()
            .last()
            .expect("gap")
            .parse()
            .expect("ms");
        assert!(gap < 1000, "gap {gap} ms: {line}");
    }
}
