//! Reading a YAML config document so that every error carries file, line and key.
//!
//! Shared by the topology file and the daemons' config files: read the file with
//! [`read_config_text`], parse once with line tracking, decode each mapping into its
//! serde struct on its own, and collect every problem instead of stopping at the first.
//!
//! # Limits
//!
//! Every document is held to fixed limits, so that no file (however written) can
//! exhaust memory, time or the stack; crossing one is an error at the line where it
//! happened, saying which limit and what to do:
//!
//! | limit | value | stops |
//! |---|---|---|
//! | [`MAX_CONFIG_BYTES`] | 4 MiB per file | huge files, `/dev/zero` |
//! | [`MAX_VALUES`] | 250,000 values | huge documents (memory: a few hundred bytes per value) |
//! | [`MAX_NESTING`] | 64 levels of lists and mappings | stack overflow (`[[[[...]]]]`) |
//! | [`MAX_ALIAS_VALUES`] | 50,000 values copied by aliases (and as many kept by anchors) | "billion laughs" alias bombs |
//! | [`MAX_ALIAS_TEXT_BYTES`] | 1 MiB of text copied by aliases (and as much kept by anchors) | aliases of long strings |
//! | [`MAX_KEY_BYTES`] | 1 KiB per key | keys that are really misplaced values |
//!
//! One document per file (a second `---` is an error at its line); a leading UTF-8
//! byte order mark is skipped. Only regular files are read. A document lists its
//! first 1,000 errors, then one line counting the rest.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::{Mapping, Value};

use crate::error::{ConfigErrors, Diagnostic};
use crate::lines::Lines;
use crate::yaml;

pub use crate::read::{read_bounded_bytes, read_config_text, ReadError, MAX_CONFIG_BYTES};

/// Most values one document may hold: every scalar, key, list and mapping, the
/// copies aliases make included. The 55-city world has 1,834 and a 2,000-node fleet
/// about 85,000; at the limit parsing holds about 100 MB.
pub const MAX_VALUES: usize = 250_000;

/// Deepest nesting of lists and mappings (a topology needs 4 levels).
pub const MAX_NESTING: usize = 64;

/// Most values aliases may copy into one document, in total; anchored values kept
/// for aliases to copy are held to the same bound.
pub const MAX_ALIAS_VALUES: usize = 50_000;

/// Most bytes of scalar and key text aliases may copy into one document, in total;
/// anchored values kept for aliases are held to the same bound.
pub const MAX_ALIAS_TEXT_BYTES: usize = 1024 * 1024;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// A document being read: its line index and the problems found so far.
#[derive(Debug)]
pub struct Doc {
    file: String,
    lines: Lines,
    diags: Vec<Diagnostic>,
    /// Problems found past [`MAX_DIAGNOSTICS`], counted but not kept.
    dropped: usize,
}

impl Doc {
    /// Parses `text`; a YAML syntax error ends reading at once (nothing else can be
    /// trusted). Structural problems such as duplicate keys are collected.
    pub fn parse(file: &str, text: &str) -> Result<(Doc, Value), ConfigErrors> {
        let (value, lines, problems) = yaml::parse(text).map_err(|e| ConfigErrors {
            diagnostics: vec![Diagnostic {
                file: file.to_string(),
                line: e.line,
                key: e.path,
                message: e.message,
            }],
        })?;
        let mut doc = Doc {
            file: file.to_string(),
            lines,
            diags: Vec::new(),
            dropped: 0,
        };
        for p in problems {
            doc.error_at(p.line, &p.path, p.message);
        }
        Ok((doc, value))
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line of `path` (or of its nearest ancestor).
    pub fn line(&self, path: &str) -> usize {
        self.lines.of(path)
    }

    /// Records a problem at the line of `path`.
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.error_at(self.lines.of(path), path, message);
    }

    /// Records a problem at an explicit line.
    pub fn error_at(&mut self, line: usize, key: &str, message: impl Into<String>) {
        if self.diags.len() >= MAX_DIAGNOSTICS {
            self.dropped += 1;
            return;
        }
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// Problems found so far, those not kept included.
    pub fn error_count(&self) -> usize {
        self.diags.len() + self.dropped
    }

    /// Ok when nothing was wrong; otherwise every problem, in line order (the
    /// first [`MAX_DIAGNOSTICS`] found, then one line counting the rest).
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.diags.is_empty() {
            return Ok(());
        }
        let mut diagnostics = self.diags;
        diagnostics.sort_by_key(|d| d.line);
        if self.dropped > 0 {
            let line = diagnostics.last().map_or(0, |d| d.line);
            diagnostics.push(Diagnostic {
                file: self.file,
                line,
                key: String::new(),
                message: format!(
                    "{} more errors not shown; fix the ones above and check again",
                    self.dropped
                ),
            });
        }
        Err(ConfigErrors { diagnostics })
    }

    /// Decodes one mapping into `T`, reporting every unknown key and then the first
    /// other error (a wrong type or a missing field) with its path.
    pub fn decode<T: DeserializeOwned>(&mut self, mut value: Value, path: &str) -> Option<T> {
        // Each round removes every unknown key of one mapping (serde names the fields it
        // expects), so there are as many rounds as mappings with unknown keys, plus one;
        // the bound is a backstop. Rounds decode from a reference: no copy of the value.
        for _ in 0..MAX_DECODE_ROUNDS {
            let err = match serde_path_to_error::deserialize::<_, T>(&value) {
                Ok(t) => return Some(t),
                Err(e) => e,
            };
            let mut segments: Vec<Segment> = err.path().iter().cloned().collect();
            let message = err.inner().to_string();
            let Some(unknown) = UnknownField::parse(&message) else {
                let full = join_segments(path, &segments);
                self.error(&full, plain_message(&message));
                return None;
            };
            if matches!(segments.last(), Some(Segment::Map { key }) if key == unknown.field) {
                segments.pop();
            }
            let map_path = join_segments(path, &segments);
            let Some(map) = mapping_at(&mut value, &segments) else {
                self.error(&join_key(&map_path, unknown.field), plain_message(&message));
                return None;
            };
            let mut extra: Vec<String> = match &unknown.expected {
                Some(fields) => map
                    .keys()
                    .filter_map(Value::as_str)
                    .filter(|k| !fields.contains(k))
                    .map(str::to_string)
                    .collect(),
                None => Vec::new(),
            };
            if !extra.iter().any(|k| k == unknown.field) {
                // The expected list could not be read: take the one key serde named.
                extra = vec![unknown.field.to_string()];
            }
            for key in &extra {
                map.shift_remove(key.as_str());
            }
            for key in &extra {
                self.error(
                    &join_key(&map_path, key),
                    format!("unknown field `{key}`, {}", unknown.tail),
                );
            }
        }
        self.error(
            path,
            "too many unknown keys to check the rest; fix the ones reported and check again",
        );
        None
    }
}

/// Rounds of [`Doc::decode`] before it gives up (each removes one mapping's unknown keys).
const MAX_DECODE_ROUNDS: usize = 64;

/// Problems one document records; the rest are counted in one closing line, since
/// nobody reads thousands and a file of a million bad entries must not cost gigabytes.
const MAX_DIAGNOSTICS: usize = 1000;

/// serde's "unknown field `x`, expected one of `a`, `b`" taken apart.
#[derive(Debug, PartialEq)]
struct UnknownField<'a> {
    field: &'a str,
    /// What follows "`x`, ": "expected ..." or "there are no fields".
    tail: &'a str,
    /// The field names serde expects; `None` if they cannot be read.
    expected: Option<Vec<&'a str>>,
}

impl<'a> UnknownField<'a> {
    fn parse(message: &'a str) -> Option<Self> {
        let rest = message.strip_prefix("unknown field `")?;
        // The key itself may hold a backtick; serde's field names never do.
        if let Some(cut) = rest.rfind("`, expected ") {
            let tail = &rest[cut + 3..];
            let names: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
            let expected = (!names.is_empty()).then_some(names);
            return Some(UnknownField {
                field: &rest[..cut],
                tail,
                expected,
            });
        }
        let cut = rest.rfind("`, there are no fields")?;
        Some(UnknownField {
            field: &rest[..cut],
            tail: &rest[cut + 3..],
            expected: Some(Vec::new()),
        })
    }
}

/// Longest serde message shown whole: serde quotes the offending value, which can be
/// megabytes long; the middle of a longer message is cut out.
const MAX_MESSAGE_BYTES: usize = 300;

/// serde's messages name Rust types; say what a YAML author would write instead.
fn plain_message(message: &str) -> String {
    let mut m = message
        .replace("expected f64", "expected a number")
        .replace("expected u64", "expected a whole number")
        .replace("expected u32", "expected a whole number")
        .replace("expected u16", "expected a whole number")
        .replace("expected a sequence", "expected a list");
    // "expected struct RawNode" → "expected a mapping"
    if let Some(at) = m.find("expected struct ") {
        let end = m[at..].find([',', ' ']).map_or(m.len(), |_| {
            let rest = &m[at + "expected struct ".len()..];
            at + "expected struct ".len() + rest.find([',', ' ']).unwrap_or(rest.len())
        });
        m.replace_range(at..end, "expected a mapping");
    }
    shorten(&m, MAX_MESSAGE_BYTES)
}

/// `text` if it is at most `max` bytes, else its start and end around a `…`.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut head = max * 2 / 3;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - max / 3;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}…{}", &text[..head], &text[tail..])
}

pub(crate) fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn join_segments(base: &str, segments: &[Segment]) -> String {
    let mut out = base.to_string();
    for s in segments {
        match s {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => out = join_key(&out, key),
            Segment::Unknown => {}
        }
    }
    out
}

/// The mapping at `segments` inside `value`, if there is one.
fn mapping_at<'v>(value: &'v mut Value, segments: &[Segment]) -> Option<&'v mut Mapping> {
    let mut cur = value;
    for s in segments {
        cur = match (s, cur) {
            (Segment::Seq { index }, Value::Sequence(items)) => items.get_mut(*index)?,
            (Segment::Map { key }, Value::Mapping(map)) => map.get_mut(key.as_str())?,
            _ => return None,
        };
    }
    match cur {
        Value::Mapping(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        count: u32,
    }

    #[test]
    fn every_unknown_key_is_reported_then_the_type_error() {
        let text = "name: x\ncolour: red\ncount: many\nsize: 3\n";
        let (mut doc, value) = Doc::parse("s.yaml", text).expect("valid yaml");
        assert!(doc.decode::<Sample>(value, "").is_none());
        let err = doc.finish().expect_err("three problems");
        let lines: Vec<(usize, &str)> = err
            .diagnostics
            .iter()
            .map(|d| (d.line, d.key.as_str()))
            .collect();
        assert_eq!(lines, vec![(2, "colour"), (3, "count"), (4, "size")]);
        assert!(err.diagnostics[1]
            .message
            .contains("expected a whole number"));
    }

    #[test]
    fn struct_names_are_not_shown_to_users() {
        assert_eq!(
            plain_message("invalid type: string \"x\", expected struct RawNode"),
            "invalid type: string \"x\", expected a mapping"
        );
    }

    #[test]
    fn long_values_are_cut_out_of_messages() {
        let text = format!("name: x\ncount: \"{}\"\n", "é".repeat(100_000));
        let (mut doc, value) = Doc::parse("s.yaml", &text).expect("valid yaml");
        assert!(doc.decode::<Sample>(value, "").is_none());
        let err = doc.finish().expect_err("wrong types");
        let message = &err.diagnostics[0].message;
        assert!(
            message.len() <= MAX_MESSAGE_BYTES + '…'.len_utf8(),
            "{message}"
        );
        assert!(
            message.contains('…') && message.ends_with("expected a whole number"),
            "{message}"
        );
    }

    #[test]
    fn every_unknown_key_of_a_mapping_goes_in_one_round() {
        // More unknown keys than rounds allowed: all are reported, in line order.
        let mut text = String::from("name: x\ncount: 1\n");
        for i in 0..300 {
            text.push_str(&format!("extra{i}: {i}\n"));
        }
        let (mut doc, value) = Doc::parse("s.yaml", &text).expect("valid yaml");
        let sample = doc.decode::<Sample>(value, "");
        assert!(sample.is_some(), "decodes once the unknown keys are gone");
        let err = doc.finish().expect_err("300 unknown keys");
        assert_eq!(err.diagnostics.len(), 300);
        for (i, d) in err.diagnostics.iter().enumerate() {
            assert_eq!((d.line, d.key.clone()), (i + 3, format!("extra{i}")));
            assert!(d.message.ends_with("expected `name` or `count`"), "{d}");
        }
    }

    #[test]
    fn unknown_field_messages_are_taken_apart() {
        let u = UnknownField::parse("unknown field `a`b`, expected one of `x`, `y`, `z`")
            .expect("an unknown field");
        assert_eq!(u.field, "a`b");
        assert_eq!(u.tail, "expected one of `x`, `y`, `z`");
        assert_eq!(u.expected, Some(vec!["x", "y", "z"]));
        let u = UnknownField::parse("unknown field `q`, there are no fields").expect("one");
        assert_eq!((u.field, u.expected), ("q", Some(vec![])));
        assert_eq!(UnknownField::parse("missing field `name`"), None);
    }

    #[test]
    fn errors_past_the_cap_are_counted_in_one_line() {
        let (mut doc, _) = Doc::parse("s.yaml", "a: 1\n").expect("valid yaml");
        for _ in 0..MAX_DIAGNOSTICS + 5 {
            doc.error("a", "bad");
        }
        assert_eq!(doc.error_count(), MAX_DIAGNOSTICS + 5);
        let err = doc.finish().expect_err("errors");
        assert_eq!(err.diagnostics.len(), MAX_DIAGNOSTICS + 1);
        let last = &err.diagnostics[MAX_DIAGNOSTICS].message;
        assert!(last.starts_with("5 more errors not shown"), "{last}");
    }
}
