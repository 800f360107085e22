//! Every file in `tests/invalid/` must fail validation with exactly the errors its
//! `#< message` markers name, each on the marker's line.

use std::fs;
use std::path::Path;

/// (line, expected message fragment) for each `#< ` marker in the text.
fn markers(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            line.split_once("#< ")
                .map(|(_, msg)| (i + 1, msg.trim().to_string()))
        })
        .collect()
}

#[test]
fn every_invalid_fixture_fails_with_its_messages_and_lines() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .expect("tests/invalid exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected at least 20 fixtures in {}, found {}",
        dir.display(),
        files.len()
    );

    for file in files {
        let name = file
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .to_string();
        let text = fs::read_to_string(&file).expect("readable fixture");
        let expected = markers(&text);
        assert!(!expected.is_empty(), "{name}: no `#< message` markers");

        let errors = match topology::parse(&name, &text) {
            Ok(_) => panic!("{name}: validated, but it must fail"),
            Err(e) => e.diagnostics,
        };
        for (line, fragment) in &expected {
            assert!(
                errors
                    .iter()
                    .any(|d| d.line == *line && d.message.contains(fragment.as_str())),
                "{name}: no error at line {line} containing {fragment:?}; got:\n{}",
                errors
                    .iter()
                    .map(|d| format!("  {d}\n"))
                    .collect::<String>()
            );
        }
        for d in &errors {
            assert!(
                expected.iter().any(|(line, _)| *line == d.line),
                "{name}: unexpected error (no marker on line {}): {d}",
                d.line
            );
            assert_eq!(d.file, name, "every error names its file");
        }
    }
}

#[test]
fn errors_render_as_file_line_key_message() {
    let text = "version: 1\nnodes:\n  - { id: a, city: A, country: ZZ, region: r, lat: 0, lon: 0, addr: \"127.0.0.1:1\" }\n";
    let err = topology::parse("fleet.yaml", text).expect_err("ZZ is no country");
    let shown = err.to_string();
    assert!(shown.starts_with("1 error in fleet.yaml\n"), "{shown}");
    assert!(
        shown.contains("fleet.yaml:3: nodes[0].country: `ZZ` is not an ISO 3166-1"),
        "{shown}"
    );
}
