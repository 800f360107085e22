//! `overlay plan`: the controller's placement on the default peak, beside
//! delay-only routing, as a user runs it.

mod support;

use serde_json::Value;
use support::{overlay, text};

fn plan_json(args: &[&str]) -> Value {
    let mut all = vec!["plan", "--json"];
    all.extend_from_slice(args);
    let out = overlay(&all);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn the_default_peak_fits_under_the_ceiling_where_delay_only_overloads_lines() {
    let p = plan_json(&[]);
    assert_eq!(p["classes"], 35_000);
    let placed = &p["placed"];
    let base = &p["delay_only"];
    assert_eq!(placed["over_ceiling"].as_array().map(Vec::len), Some(0));
    let over: Vec<f64> = base["over_ceiling"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["utilisation"].as_f64())
        .collect();
    assert!(
        over.iter().any(|u| *u > 1.0),
        "delay-only puts a line past 100%: {over:?}"
    );
    assert_eq!(placed["latency_ms"]["within_budget"], 35_000);
    let lines = placed["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 5, "the five undersea lines");
    assert!(lines.iter().all(|l| l["classes"].as_u64() > Some(0)));
    // Any one line lost: nothing stranded, nothing past 100 %, nobody over budget.
    let cuts = placed["cuts"].as_array().expect("cuts");
    assert_eq!(cuts.len(), 5);
    for c in cuts {
        assert_eq!(c["stranded"], 0, "{c}");
        assert_eq!(c["left_budget"], 0, "{c}");
        let worst = c["worst"]["utilisation"].as_f64().expect("a worst link");
        assert!(worst <= 1.0, "{c}");
    }
}

#[test]
fn one_cut_a_smaller_demand_and_bad_arguments() {
    let p = plan_json(&["--cut", "unity", "--classes", "1000"]);
    assert_eq!(p["classes"], 1_000);
    let cuts = p["placed"]["cuts"].as_array().expect("cuts");
    assert_eq!(cuts.len(), 1);
    assert_eq!(cuts[0]["line"], "unity");

    let table = overlay(&["plan"]);
    assert_eq!(table.status.code(), Some(0));
    let out = text(&table.stdout);
    for heading in ["one-way latency", "undersea line", "cut"] {
        assert!(out.contains(heading), "{out}");
    }

    let bad = overlay(&["plan", "--cut", "nope"]);
    assert_eq!(bad.status.code(), Some(64));
    assert!(
        text(&bad.stderr).contains("no undersea line"),
        "{}",
        text(&bad.stderr)
    );
    let zero = overlay(&["plan", "--classes", "0"]);
    assert_eq!(zero.status.code(), Some(64));
}
