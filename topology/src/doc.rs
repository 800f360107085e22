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
//! byte order mark is skipped. Only regular files are read.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_yaml::Value;

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
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub fn error_count(&self) -> usize {
        self.diags.len()
    }

    /// Ok when nothing was wrong; otherwise every problem, in line order.
    pub fn finish(self) -> Result<(), ConfigErrors> {
        if self.diags.is_empty() {
            return Ok(());
        }
        let mut diagnostics = self.diags;
        diagnostics.sort_by_key(|d| d.line);
        Err(ConfigErrors { diagnostics })
    }

    /// Decodes one mapping into `T`, reporting every unknown key and then the first
    /// other error (a wrong type or a missing field) with its path.
    pub fn decode<T: DeserializeOwned>(&mut self, mut value: Value, path: &str) -> Option<T> {
        // Each round removes one unknown key, so the loop ends; the bound is a backstop.
        for _ in 0..256 {
            let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(t) => return Some(t),
                Err(e) => e,
            };
            let mut segments: Vec<Segment> = err.path().iter().cloned().collect();
            let message = plain_message(&err.inner().to_string());
            if let Some(field) = unknown_field(&message) {
                if matches!(segments.last(), Some(Segment::Map { key }) if key == &field) {
                    segments.pop();
                }
                let map_path = join_segments(path, &segments);
                self.error(&join_key(&map_path, &field), message);
                if remove_key(&mut value, &segments, &field) {
                    continue;
                }
                return None;
            }
            let full = join_segments(path, &segments);
            self.error(&full, message);
            return None;
        }
        None
    }
}

/// The field name in serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

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
    m
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

/// Removes `key` from the mapping at `segments` inside `value`; false if absent.
fn remove_key(value: &mut Value, segments: &[Segment], key: &str) -> bool {
    let mut cur = value;
    for s in segments {
        cur = match (s, cur) {
            (Segment::Seq { index }, Value::Sequence(items)) => match items.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Map { key }, Value::Mapping(map)) => match map.get_mut(key.as_str()) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match cur {
        Value::Mapping(map) => map.remove(key).is_some(),
        _ => false,
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
}
