//! Property tests of the YAML reader on hostile input: arbitrary bytes, token soup
//! and random anchor/alias structures never panic, always finish quickly, and never
//! build more than the limits allow. Alias structures are checked against a simple
//! reference that computes their expanded size.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_yaml::Value;
use topology::doc::{Doc, MAX_ALIAS_VALUES, MAX_NESTING, MAX_VALUES};

/// Generous for a debug build on a shared machine; each case is a few KiB of input.
const CASE_TIME: Duration = Duration::from_secs(1);

/// Values in a decoded document, counted the way the limits count them.
fn count(v: &Value) -> usize {
    match v {
        Value::Sequence(items) => 1 + items.iter().map(count).sum::<usize>(),
        Value::Mapping(map) => 1 + map.iter().map(|(k, v)| count(k) + count(v)).sum::<usize>(),
        Value::Tagged(t) => count(&t.value),
        _ => 1,
    }
}

/// Levels of lists and mappings in a decoded value (0 for a scalar).
fn levels(v: &Value) -> usize {
    match v {
        Value::Sequence(items) => 1 + items.iter().map(levels).max().unwrap_or(0),
        Value::Mapping(map) => 1 + map.values().map(levels).max().unwrap_or(0),
        _ => 0,
    }
}

/// Parses `text` both ways (validation and the raw document); checks time and the
/// size of what was built.
fn parse_checked(text: &str) -> Result<(), TestCaseError> {
    let start = Instant::now();
    let _ = topology::parse("prop.yaml", text);
    let doc = Doc::parse("prop.yaml", text);
    let took = start.elapsed();
    prop_assert!(took < CASE_TIME, "took {took:?} on {text:?}");
    match doc {
        Ok((_, value)) => {
            prop_assert!(count(&value) <= MAX_VALUES);
            prop_assert!(levels(&value) <= MAX_NESTING);
        }
        Err(e) => {
            prop_assert_eq!(e.diagnostics.len(), 1, "a fatal error is one diagnostic");
            prop_assert_eq!(e.diagnostics[0].file.as_str(), "prop.yaml");
            prop_assert!(e.diagnostics[0].line >= 1, "{}", e);
        }
    }
    Ok(())
}

/// Pieces YAML is made of, including the ones that go wrong.
fn token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "[",
        "]",
        "{",
        "}",
        ",",
        "- ",
        ": ",
        ":",
        "? ",
        "\n",
        "  ",
        "    ",
        "&a ",
        "&b ",
        "*a",
        "*b",
        " *a",
        "&a [",
        "---\n",
        "...\n",
        "--- ",
        "%YAML 1.2\n",
        "%TAG ! tag:x,2000:\n",
        "!!str ",
        "!x ",
        "'",
        "\"",
        "\\",
        "#",
        "|\n",
        ">-\n",
        "\u{feff}",
        "x",
        "key",
        "1",
        "-1.5e3",
        "~",
        "null",
        "true",
        "é",
        "\t",
        "\r\n",
        "<<: *a\n",
        "a: &a [x, x]\n",
        "b: [*a, *a, *a]\n",
    ])
}

/// A random anchor/alias structure: level `i` is `a{i}: &a{i} [...]`, wrapped in
/// `wrap` more brackets, whose items are scalars or aliases of earlier levels.
#[derive(Debug, Clone)]
struct Levels(Vec<(usize, Vec<Option<usize>>)>);

fn alias_levels() -> impl Strategy<Value = Levels> {
    prop::collection::vec(
        (
            // Mostly flat, so that copies grow; sometimes deep, so that nesting does.
            prop_oneof![12 => Just(0usize), 3 => 1usize..=3, 1 => 8usize..=30],
            prop::collection::vec(
                prop::option::weighted(0.8, any::<prop::sample::Index>()),
                1..=12,
            ),
        ),
        1..=12,
    )
    .prop_map(|raw| {
        Levels(
            raw.into_iter()
                .enumerate()
                .map(|(i, (wrap, items))| {
                    let items = items
                        .into_iter()
                        // One of the last three levels, so that copies multiply.
                        .map(|r| r.filter(|_| i > 0).map(|ix| i - 1 - ix.index(i.min(3))))
                        .collect();
                    (wrap, items)
                })
                .collect(),
        )
    })
}

impl Levels {
    fn text(&self) -> String {
        let mut out = String::new();
        for (i, (wrap, items)) in self.0.iter().enumerate() {
            let items: Vec<String> = items
                .iter()
                .map(|r| r.map_or("x".to_string(), |j| format!("*a{j}")))
                .collect();
            out.push_str(&format!(
                "a{i}: &a{i} {}[{}]{}\n",
                "[".repeat(*wrap),
                items.join(", "),
                "]".repeat(*wrap)
            ));
        }
        out
    }

    /// The reference: (values in the document, values aliases copy, values kept for
    /// anchors, deepest nesting an alias reaches), saturating.
    fn expected(&self) -> (u128, u128, u128, usize) {
        let mut size: Vec<u128> = Vec::new();
        let mut depth: Vec<usize> = Vec::new();
        let (mut doc, mut aliased, mut kept, mut deepest) = (1u128, 0u128, 0u128, 1usize);
        for (wrap, items) in &self.0 {
            let mut inner = 1u128; // the innermost list
            let mut inner_levels = 1usize;
            for r in items {
                match r {
                    None => inner += 1,
                    Some(j) => {
                        inner = inner.saturating_add(size[*j]);
                        aliased = aliased.saturating_add(size[*j]);
                        inner_levels = inner_levels.max(1 + depth[*j]);
                        // Open when the alias comes: the root, the wraps, the list.
                        deepest = deepest.max(2 + wrap + depth[*j]);
                    }
                }
            }
            let total = inner.saturating_add(*wrap as u128);
            size.push(total);
            depth.push(inner_levels + wrap);
            deepest = deepest.max(1 + wrap + inner_levels);
            kept = kept.saturating_add(total);
            doc = doc.saturating_add(1).saturating_add(total); // key and value
        }
        (doc, aliased, kept, deepest)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        parse_checked(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn yaml_like_token_soup_never_panics(tokens in prop::collection::vec(token(), 0..200)) {
        parse_checked(&tokens.concat())?;
    }

    #[test]
    fn alias_structures_expand_exactly_or_are_refused(structure in alias_levels()) {
        let text = structure.text();
        let start = Instant::now();
        let result = Doc::parse("alias.yaml", &text);
        let took = start.elapsed();
        prop_assert!(took < CASE_TIME, "took {took:?}");
        let (doc, aliased, kept, deepest) = structure.expected();
        let within = doc <= MAX_VALUES as u128
            && aliased <= MAX_ALIAS_VALUES as u128
            && kept <= MAX_ALIAS_VALUES as u128
            && deepest <= MAX_NESTING;
        match result {
            Ok((_, value)) => {
                prop_assert!(within, "accepted past a limit: {doc} {aliased} {kept} {deepest}");
                prop_assert_eq!(count(&value) as u128, doc);
                prop_assert!(levels(&value) <= MAX_NESTING);
            }
            Err(e) => {
                prop_assert!(!within, "refused within the limits: {e}");
                let message = &e.diagnostics[0].message;
                prop_assert!(message.contains("the limit"), "{message}");
            }
        }
    }
}
