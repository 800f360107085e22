//! Reads YAML text into a `serde_yaml::Value` while remembering the line of every key.
//!
//! serde_yaml alone tells the line of the first error only; validation here reports
//! every error with its line, so the document is parsed once from yaml-rust2's
//! marked events and each value's path (`nodes[3].lat`) is mapped to its line.

use std::collections::HashMap;

use serde_yaml::{Mapping, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Line numbers of every path in a document.
#[derive(Debug, Default, Clone)]
pub struct Lines {
    by_path: HashMap<String, usize>,
}

impl Lines {
    /// The line of `path`, or of its nearest ancestor that has one, or 1.
    pub fn of(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(&line) = self.by_path.get(p) {
                return line;
            }
            match p.rfind(['.', '[']) {
                Some(cut) => p = &p[..cut],
                None => return self.by_path.get("").copied().unwrap_or(1),
            }
        }
    }
}

/// A YAML syntax problem, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub path: String,
    pub message: String,
}

/// Parses one YAML document. Returns the value, the line index, and any structural
/// problems (duplicate or non-scalar keys) that serde would otherwise hide.
pub fn parse(text: &str) -> Result<(Value, Lines, Vec<SyntaxError>), SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        line: e.marker().line(),
        path: String::new(),
        message: format!(
            "YAML syntax error: {} (column {})",
            e.info(),
            e.marker().col() + 1
        ),
    })?;
    let value = builder.root.unwrap_or(Value::Null);
    Ok((value, builder.lines, builder.problems))
}

/// A path segment under construction.
#[derive(Debug)]
enum Frame {
    Seq {
        path: String,
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        path: String,
        map: Mapping,
        key: Option<String>,
        anchor: usize,
    },
}

#[derive(Debug, Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    lines: Lines,
    anchors: HashMap<usize, Value>,
    problems: Vec<SyntaxError>,
}

impl Builder {
    /// The path the next value will have, given the innermost open collection.
    fn next_path(&self) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame::Seq { path, items, .. }) => format!("{path}[{}]", items.len()),
            Some(Frame::Map {
                path, key: Some(k), ..
            }) => join(path, k),
            Some(Frame::Map { path, .. }) => path.clone(), // a key, not a value
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// Places a finished value into its parent (or makes it the root).
    fn finish(&mut self, value: Value, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, .. }) => {
                if let Some(k) = key.take() {
                    map.insert(Value::String(k), value);
                }
            }
        }
    }

    fn on_key(&mut self, key: String, mark: Marker) {
        let Some(Frame::Map {
            path,
            map,
            key: slot,
            ..
        }) = self.stack.last_mut()
        else {
            return;
        };
        let full = join(path, &key);
        if map.contains_key(key.as_str()) {
            self.problems.push(SyntaxError {
                line: mark.line(),
                path: full.clone(),
                message: format!(
                    "duplicate key `{key}` (first at line {}); each key may appear once",
                    self.lines.of(&full)
                ),
            });
            // The later value is kept, as serde_yaml would refuse the file anyway.
        } else {
            self.lines.by_path.insert(full, mark.line());
        }
        *slot = Some(key);
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if self.expecting_key() {
                    self.on_key(text, mark);
                    return;
                }
                let path = self.next_path();
                self.lines.by_path.entry(path).or_insert(mark.line());
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == TScalarStyle::Plain && !is_str_tag {
                    resolve_plain(&text)
                } else {
                    Value::String(text)
                };
                self.finish(value, anchor);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.expecting_key() {
                    let path = self.next_path();
                    self.problems.push(SyntaxError {
                        line: mark.line(),
                        path,
                        message: "a key must be a plain word, not a list or mapping".into(),
                    });
                    // Give it a placeholder name so the rest of the document still parses.
                    self.on_key(format!("<complex key at line {}>", mark.line()), mark);
                }
                let path = self.next_path();
                self.lines
                    .by_path
                    .entry(path.clone())
                    .or_insert(mark.line());
                self.stack
                    .push(if matches!(event, Event::SequenceStart(..)) {
                        Frame::Seq {
                            path,
                            items: Vec::new(),
                            anchor,
                        }
                    } else {
                        Frame::Map {
                            path,
                            map: Mapping::new(),
                            key: None,
                            anchor,
                        }
                    });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { items, anchor, .. }) => {
                    self.finish(Value::Sequence(items), anchor)
                }
                Some(Frame::Map { map, anchor, .. }) => self.finish(Value::Mapping(map), anchor),
                None => {}
            },
            Event::Alias(id) => {
                let value = self.anchors.get(&id).cloned().unwrap_or(Value::Null);
                if self.expecting_key() {
                    let key = value.as_str().unwrap_or("<alias>").to_string();
                    self.on_key(key, mark);
                } else {
                    self.finish(value, 0);
                }
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
    }
}

/// YAML 1.2 core-schema resolution of a plain scalar. Unlike YAML 1.1, `NO` (Norway)
/// and `yes` stay strings.
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(n) = text.parse::<u64>() {
        return Value::Number(Number::from(n));
    }
    if let Ok(n) = text.parse::<i64>() {
        return Value::Number(Number::from(n));
    }
    let looks_numeric = text
        .trim_start_matches(['-', '+'])
        .trim_start_matches('.')
        .starts_with(|c: char| c.is_ascii_digit());
    if looks_numeric {
        if let Ok(f) = text.parse::<f64>() {
            return Value::Number(Number::from(f));
        }
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_lines() {
        let text = "a: 1\nb:\n  - x: true\n    y: NO\n  - x: 2.5\nc: '7'\n";
        let (v, lines, problems) = parse(text).expect("valid yaml");
        assert!(problems.is_empty());
        assert_eq!(v["a"], Value::Number(1.into()));
        assert_eq!(v["b"][0]["x"], Value::Bool(true));
        assert_eq!(v["b"][0]["y"], Value::String("NO".into()));
        assert_eq!(v["b"][1]["x"], Value::Number(Number::from(2.5)));
        assert_eq!(v["c"], Value::String("7".into()));
        assert_eq!(lines.of("a"), 1);
        assert_eq!(lines.of("b[0].y"), 4);
        assert_eq!(lines.of("b[1].x"), 5);
        assert_eq!(lines.of("b[1].nothing.here"), 5);
        assert_eq!(lines.of("c"), 6);
    }

    #[test]
    fn duplicate_keys_are_reported_with_both_lines() {
        let (_, _, problems) = parse("a: 1\nb: 2\na: 3\n").expect("valid yaml");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 3);
        assert!(
            problems[0].message.contains("first at line 1"),
            "{problems:?}"
        );
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n").expect_err("unclosed flow sequence");
        assert!(err.line >= 2, "{err:?}");
        assert!(err.message.contains("YAML syntax error"));
    }

    #[test]
    fn anchors_and_aliases_resolve() {
        let (v, _, _) = parse("base: &b {x: 1}\ncopy: *b\n").expect("valid yaml");
        assert_eq!(v["copy"]["x"], Value::Number(1.into()));
    }
}
