//! The demand file: what a valid one means, and that every mistake is reported at
//! its line with its key.

use topology::demand::{ClassProfile, Demand, DEFAULT_BUDGET_US};

fn world() -> topology::Topology {
    topology::world().expect("the shipped world is valid")
}

#[test]
fn a_file_with_defaults_gives_one_hd_service_at_200_ms() {
    let t = world();
    let text = "version: 1\nclasses:\n  - { from: sha, to: nyc, count: 120 }\n  - { from: sel, to: sfo, count: 40 }\n";
    let d = Demand::parse(&t, "d.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.services.len(), 1);
    assert_eq!(d.services[0].name, "class");
    assert_eq!(d.services[0].budget_us, DEFAULT_BUDGET_US);
    assert_eq!(d.services[0].profile, ClassProfile::HD);
    assert_eq!(d.total_classes(), 160);
    let sha = t.node_idx("sha").expect("sha");
    let nyc = t.node_idx("nyc").expect("nyc");
    assert!(d
        .pairs
        .iter()
        .any(|p| p.src == sha && p.dst == nyc && p.classes == 120));
}

#[test]
fn services_set_budgets_and_profiles_per_entry() {
    let t = world();
    let text = "\
version: 1
services:
  - name: class
  - name: trial
    budget_ms: 150
    profile:
      forward: { video_kbps: 800 }
      reverse: { video_kbps: 0, audio_kbps: 40 }
classes:
  - { from: sha, to: nyc, count: 10 }
  - { from: sha, to: nyc, count: 5, service: trial }
";
    let d = Demand::parse(&t, "d.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d.services.len(), 2);
    let trial = &d.services[1];
    assert_eq!(trial.budget_us, 150_000);
    assert_eq!(trial.profile.forward.video_kbps, 800);
    assert_eq!(
        trial.profile.forward.audio_kbps,
        ClassProfile::HD.forward.audio_kbps
    );
    assert_eq!(trial.profile.reverse.video_kbps, 0);
    assert_eq!(trial.profile.reverse.audio_kbps, 40);
    assert_eq!(d.pairs.len(), 2, "same pair, two services");
    assert_eq!(
        d.pairs.iter().find(|p| p.service == 1).map(|p| p.classes),
        Some(5)
    );
}

#[test]
fn every_mistake_is_reported_with_its_line_and_key() {
    let t = world();
    let text = "\
version: 2
services:
  - name: class
    budget_ms: -5
    colour: red
  - name: class
classes:
  - { from: shz, to: nyc, count: 1 }
  - { from: sha, to: sha, count: 1 }
  - { from: sha, to: nyc, count: 0 }
  - { from: sha, to: nyc, count: 2, service: lecture }
  - { from: sel, to: sfo, count: 3 }
  - { from: sel, to: sfo, count: 4 }
  - { from: sel, to: sfo, count: many }
";
    let err = Demand::parse(&t, "d.yaml", text).expect_err("many mistakes");
    let got: Vec<(usize, &str)> = err
        .diagnostics
        .iter()
        .map(|d| (d.line, d.key.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (1, "version"),
            (4, "services[0].budget_ms"),
            (5, "services[0].colour"),
            (6, "services[1].name"),
            (8, "classes[0].from"),
            (9, "classes[1].to"),
            (10, "classes[2].count"),
            (11, "classes[3].service"),
            (13, "classes[5].from"),
            (14, "classes[6].count"),
        ],
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("did you mean `sha`?"), "{text}");
    assert!(text.contains("first at line 12"), "{text}");
    assert!(text.contains("the services are: class"), "{text}");
    assert!(text.contains("d.yaml:1: version"), "{text}");
}

#[test]
fn empty_and_malformed_files_are_refused() {
    let t = world();
    for text in ["", "version: 1\n", "version: 1\nclasses: 3\n", "[1, 2"] {
        let err = Demand::parse(&t, "d.yaml", text).expect_err(text);
        assert!(!err.diagnostics.is_empty(), "{text:?}");
        assert!(err.diagnostics.iter().all(|d| d.file == "d.yaml"));
    }
}
