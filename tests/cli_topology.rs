//! `overlay topology ...` as an operator runs it: exit codes, stdout and stderr.

use std::path::Path;

mod support;

use topology::paths::{Graph, Metric, Routes};

use support::{overlay, text};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("topology/tests/invalid")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn check_without_a_file_summarises_the_default() {
    let out = overlay(&["topology", "check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("55 in 16 countries"), "{stdout}");
    assert!(stdout.contains("5 undersea"), "{stdout}");
    for line in ["ncp", "faster", "unity", "plcn", "topaz"] {
        assert!(
            stdout.contains(&format!("{line} (")),
            "undersea line {line} listed:\n{stdout}"
        );
    }
    assert!(stdout.contains("diameter"), "{stdout}");
}

#[test]
fn check_a_file_reports_every_error_and_exits_64() {
    let out = overlay(&["topology", "check", &fixture("unknown-country.yaml")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr.starts_with("3 errors in "), "{stderr}");
    assert!(
        stderr.contains("unknown-country.yaml:3: nodes[0].country"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown-country.yaml:4: nodes[1].country"),
        "{stderr}"
    );
    assert!(
        stderr.contains("unknown-country.yaml:5: nodes[2].country"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn check_a_missing_file_exits_64_naming_it() {
    let out = overlay(&["topology", "check", "/nonexistent/fleet.yaml"]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot read topology file /nonexistent/fleet.yaml"),
        "{stderr}"
    );
}

#[test]
fn check_the_shipped_file_on_disk_matches_the_embedded_default() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("topology/world.yaml");
    let out = overlay(&["topology", "check", &file.display().to_string()]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("55 in 16 countries"));
}

#[test]
fn show_prints_node_and_link_tables() {
    let out = overlay(&["topology", "show"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains("nodes (55)") && stdout.contains("links (101)"),
        "{stdout}"
    );
    let shanghai = stdout
        .lines()
        .find(|l| l.starts_with("sha "))
        .expect("a row for sha");
    assert!(shanghai.contains("Shanghai") && shanghai.contains("CN") && shanghai.contains("31.23"));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("sha  pdx  undersea     ncp")),
        "{stdout}"
    );
}

#[test]
fn path_prints_hops_with_kinds_and_a_total() {
    let out = overlay(&["topology", "path", "sha", "lax"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let first = stdout.lines().next().expect("a first line");
    assert!(first.starts_with("path 1: sha → "), "{first}");
    // The printed total is the library's best-path cost.
    let t = topology::world().expect("valid");
    let (g, m) = (Graph::from_topology(&t), Metric::expected_delay(&t));
    let (sha, lax) = (
        t.node_idx("sha").expect("sha"),
        t.node_idx("lax").expect("lax"),
    );
    let best = Routes::compute(&g, &m)
        .path(&g, &m, sha, lax)
        .expect("reachable");
    let hops = best.links.len();
    let want = format!(
        "lax  ({:.1} ms one way, {hops} hops)",
        best.cost as f64 / 1000.0
    );
    assert!(first.ends_with(&want), "{first} should end with {want}");
    // One table row per hop, the undersea crossing among them.
    let rows: Vec<&str> = stdout
        .lines()
        .skip(2)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(rows.len(), hops, "{stdout}");
    assert_eq!(
        rows.iter().filter(|r| r.contains(" undersea ")).count(),
        1,
        "{stdout}"
    );
}

#[test]
fn path_with_k_lists_distinct_paths_best_first() {
    let out = overlay(&["topology", "path", "sin", "nyc", "--k", "3"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    let headers: Vec<&str> = stdout.lines().filter(|l| l.starts_with("path ")).collect();
    assert_eq!(headers.len(), 3, "{stdout}");
    let ms: Vec<f64> = headers
        .iter()
        .map(|h| {
            let inside = h.split_once("  (").expect("cost").1;
            inside
                .split_once(" ms")
                .expect("ms")
                .0
                .parse()
                .expect("number")
        })
        .collect();
    assert!(ms.windows(2).all(|w| w[0] <= w[1]), "best first: {ms:?}");
}

#[test]
fn path_accepts_a_file_first() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("topology/world.yaml");
    let out = overlay(&[
        "topology",
        "path",
        &file.display().to_string(),
        "tyo",
        "yvr",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("path 1: tyo → yvr  ("));
}

#[test]
fn path_to_an_unknown_node_exits_64_with_a_suggestion() {
    let out = overlay(&["topology", "path", "sha", "lxa"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("no node `lxa`"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).contains("did you mean `lax`?"));
}

#[test]
fn bad_usage_exits_64_and_help_exits_0() {
    assert_eq!(
        overlay(&["topology", "path", "sha"]).status.code(),
        Some(64)
    );
    assert_eq!(overlay(&["frobnicate"]).status.code(), Some(64));
    assert_eq!(
        overlay(&["topology", "path", "sha", "lax", "--k", "0"])
            .status
            .code(),
        Some(64)
    );
    let help = overlay(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("topology"));
}
