//! Reads YAML text into a `serde_yaml::Value` while remembering the line of every key,
//! within fixed limits so that no input can exhaust memory, time or the stack.
//!
//! serde_yaml alone tells the line of the first error only; validation here reports
//! every error with its line, so the document is parsed once from yaml-rust2's
//! marked events and each value's path (`nodes[3].lat`) is mapped to its line.
//!
//! Events are pulled one at a time (not through `Parser::load`, which recurses per
//! nesting level and reads only the first document), so a limit stops the parse at
//! the event that crosses it. The limits are in [`crate::doc`], which documents them.

use std::collections::HashMap;

use serde_yaml::{Mapping, Number, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

use crate::doc::{MAX_ALIAS_TEXT_BYTES, MAX_ALIAS_VALUES, MAX_KEY_BYTES, MAX_NESTING, MAX_VALUES};
use crate::lines::{Lines, NodeId};

/// Structural problems kept before the rest are summed up in one line.
const MAX_PROBLEMS: usize = 100;

/// A YAML syntax problem, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub path: String,
    pub message: String,
}

/// Parses one YAML document. Returns the value, the line index, and any structural
/// problems (duplicate or non-scalar keys) that serde would otherwise hide. A leading
/// UTF-8 byte order mark is skipped. A second document, a limit crossed or a syntax
/// error is fatal.
pub fn parse(text: &str) -> Result<(Value, Lines, Vec<SyntaxError>), SyntaxError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::new(text);
    let mut documents = 0usize;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| scan_error(&e))?;
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(SyntaxError {
                        line: mark.line(),
                        path: String::new(),
                        message: "a second YAML document starts here (after `---` or \
                                  `...`); the file must hold one document: remove the \
                                  second, or merge it into the first"
                            .into(),
                    });
                }
            }
            event => builder.on_event(event, mark)?,
        }
    }
    let value = builder.root.unwrap_or(Value::Null);
    Ok((value, builder.lines, builder.problems))
}

fn scan_error(e: &ScanError) -> SyntaxError {
    // The scanner reads ahead through `[[[[...`, so its own flow-nesting limit (255)
    // can be met before MAX_NESTING is: say so in the same words.
    if e.info() == "recursion limit exceeded" {
        return SyntaxError {
            line: e.marker().line(),
            path: String::new(),
            message: format!(
                "lists and mappings are nested more than {MAX_NESTING} levels deep here \
                 (column {}), past the limit; a config needs a few levels: flatten it",
                e.marker().col() + 1
            ),
        };
    }
    SyntaxError {
        line: e.marker().line(),
        path: String::new(),
        message: format!(
            "YAML syntax error: {} (column {})",
            e.info(),
            e.marker().col() + 1
        ),
    }
}

/// What a value costs: values in it (itself included), bytes of scalar and key text,
/// and levels of lists and mappings (0 for a scalar).
#[derive(Debug, Default, Clone, Copy)]
struct Size {
    values: usize,
    text: usize,
    levels: usize,
}

impl Size {
    fn scalar(text: &str) -> Size {
        Size {
            values: 1,
            text: text.len(),
            levels: 0,
        }
    }

    /// Adds a child of a collection to the collection's size.
    fn add_child(&mut self, child: Size) {
        self.values = self.values.saturating_add(child.values);
        self.text = self.text.saturating_add(child.text);
        self.levels = self.levels.max(child.levels.saturating_add(1));
    }
}

/// Running totals checked against the limits.
#[derive(Debug, Default)]
struct Totals {
    /// Values in the document, alias copies included.
    values: usize,
    /// Values and text copied in by aliases.
    aliased_values: usize,
    aliased_text: usize,
    /// Values and text kept (copied) for anchors, so that aliases can copy them.
    kept_values: usize,
    kept_text: usize,
}

/// A list or mapping under construction.
#[derive(Debug)]
enum Frame {
    Seq {
        node: NodeId,
        items: Vec<Value>,
        anchor: usize,
        size: Size,
    },
    Map {
        node: NodeId,
        map: Mapping,
        /// The key waiting for its value, and its line-index node.
        key: Option<(String, NodeId)>,
        anchor: usize,
        size: Size,
    },
}

#[derive(Debug)]
struct Builder<'a> {
    text: &'a str,
    stack: Vec<Frame>,
    root: Option<Value>,
    lines: Lines,
    anchors: HashMap<usize, (Value, Size)>,
    problems: Vec<SyntaxError>,
    problems_dropped: usize,
    totals: Totals,
}

impl<'a> Builder<'a> {
    fn new(text: &'a str) -> Self {
        Builder {
            text,
            stack: Vec::new(),
            root: None,
            lines: Lines::default(),
            anchors: HashMap::new(),
            problems: Vec::new(),
            problems_dropped: 0,
            totals: Totals::default(),
        }
    }

    fn on_event(&mut self, event: Event, mark: Marker) -> Result<(), SyntaxError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                if self.expecting_key() {
                    return self.on_key(text, mark);
                }
                self.count_values(1, mark)?;
                self.value_node(mark.line());
                let size = Size::scalar(&text);
                let is_str_tag = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == TScalarStyle::Plain && !is_str_tag {
                    resolve_plain(&text)
                } else {
                    Value::String(text)
                };
                self.finish(value, size, anchor, mark)
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_NESTING {
                    return Err(self.fatal(
                        mark,
                        format!(
                            "lists and mappings are nested more than {MAX_NESTING} levels \
                             deep here, past the limit; a config needs a few levels: flatten it"
                        ),
                    ));
                }
                if self.expecting_key() {
                    let node = self.top_node();
                    self.problem(mark.line(), node, || {
                        "a key must be a plain word, not a list or mapping".into()
                    });
                    // Give it a placeholder name so the rest of the document still parses.
                    self.on_key(format!("<complex key at line {}>", mark.line()), mark)?;
                }
                self.count_values(1, mark)?;
                let node = self.value_node(mark.line());
                let size = Size {
                    values: 1,
                    text: 0,
                    levels: 1,
                };
                self.stack
                    .push(if matches!(event, Event::SequenceStart(..)) {
                        Frame::Seq {
                            node,
                            items: Vec::new(),
                            anchor,
                            size,
                        }
                    } else {
                        Frame::Map {
                            node,
                            map: Mapping::new(),
                            key: None,
                            anchor,
                            size,
                        }
                    });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    items,
                    anchor,
                    size,
                    ..
                }) => self.finish(Value::Sequence(items), size, anchor, mark),
                Some(Frame::Map {
                    map, anchor, size, ..
                }) => self.finish(Value::Mapping(map), size, anchor, mark),
                None => Ok(()),
            },
            Event::Alias(id) => self.on_alias(id, mark),
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd
            | Event::Nothing => Ok(()),
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    /// The line-index node of the innermost open collection (the root if none).
    fn top_node(&self) -> NodeId {
        match self.stack.last() {
            None => Lines::ROOT,
            Some(Frame::Seq { node, .. } | Frame::Map { node, .. }) => *node,
        }
    }

    /// Records the line of the value about to be placed and returns its node: a new
    /// list item, the node of the key it belongs to, or the root.
    fn value_node(&mut self, line: usize) -> NodeId {
        match self.stack.last() {
            None => {
                self.lines.set_root_line(line);
                Lines::ROOT
            }
            Some(Frame::Seq { node, .. }) => self.lines.add_item(*node, line),
            Some(Frame::Map {
                key: Some((_, node)),
                ..
            }) => *node,
            Some(Frame::Map { node, .. }) => *node, // a key, not a value
        }
    }

    /// The path of the slot the next value goes into, for messages.
    fn slot_path(&self) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame::Seq { node, items, .. }) => {
                format!("{}[{}]", self.lines.path(*node), items.len())
            }
            Some(Frame::Map {
                key: Some((_, node)),
                ..
            }) => self.lines.path(*node),
            Some(Frame::Map { node, .. }) => self.lines.path(*node),
        }
    }

    fn fatal(&self, mark: Marker, message: String) -> SyntaxError {
        SyntaxError {
            line: mark.line(),
            path: self.slot_path(),
            message,
        }
    }

    /// Records a structural problem; past [`MAX_PROBLEMS`] only counts it (the
    /// message is not even built).
    fn problem(&mut self, line: usize, node: NodeId, message: impl FnOnce() -> String) {
        if self.problems.len() < MAX_PROBLEMS {
            let path = self.lines.path(node);
            self.problems.push(SyntaxError {
                line,
                path,
                message: message(),
            });
            return;
        }
        self.problems_dropped += 1;
        let note = format!(
            "{} more problems like the ones above are not shown; fix those and check again",
            self.problems_dropped
        );
        if self.problems_dropped == 1 {
            self.problems.push(SyntaxError {
                line,
                path: String::new(),
                message: note,
            });
        } else if let Some(last) = self.problems.last_mut() {
            last.message = note;
        }
    }

    /// Counts `n` more values in the document against [`MAX_VALUES`].
    fn count_values(&mut self, n: usize, mark: Marker) -> Result<(), SyntaxError> {
        self.totals.values = self.totals.values.saturating_add(n);
        if self.totals.values > MAX_VALUES {
            return Err(self.fatal(
                mark,
                format!(
                    "the document holds more than {MAX_VALUES} values (the limit) by here; \
                     a topology or config is far smaller: is this the right file?"
                ),
            ));
        }
        Ok(())
    }

    /// Places a finished value into its parent (or makes it the root), keeping a copy
    /// if it is anchored.
    fn finish(
        &mut self,
        value: Value,
        size: Size,
        anchor: usize,
        mark: Marker,
    ) -> Result<(), SyntaxError> {
        if anchor > 0 {
            self.totals.kept_values = self.totals.kept_values.saturating_add(size.values);
            self.totals.kept_text = self.totals.kept_text.saturating_add(size.text);
            if self.totals.kept_values > MAX_ALIAS_VALUES
                || self.totals.kept_text > MAX_ALIAS_TEXT_BYTES
            {
                return Err(self.fatal(
                    mark,
                    format!(
                        "the anchored values up to here hold more than {MAX_ALIAS_VALUES} \
                         values or {MAX_ALIAS_TEXT_BYTES} bytes of text (the limit on what \
                         aliases may copy); anchor smaller values, or write them out"
                    ),
                ));
            }
            self.anchors.insert(anchor, (value.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq {
                items, size: total, ..
            }) => {
                total.add_child(size);
                items.push(value);
            }
            Some(Frame::Map {
                map,
                key,
                size: total,
                ..
            }) => {
                total.add_child(size);
                if let Some((k, _)) = key.take() {
                    map.insert(Value::String(k), value);
                }
            }
        }
        Ok(())
    }

    fn on_key(&mut self, key: String, mark: Marker) -> Result<(), SyntaxError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(self.fatal(
                mark,
                format!(
                    "a key of {} bytes (the limit is {MAX_KEY_BYTES}); keys are short names: \
                     is a value missing its `key:`?",
                    key.len()
                ),
            ));
        }
        self.count_values(1, mark)?;
        let Some(Frame::Map {
            node, map, size, ..
        }) = self.stack.last_mut()
        else {
            return Ok(());
        };
        let (parent, duplicate) = (*node, map.contains_key(key.as_str()));
        size.add_child(Size::scalar(&key));
        let child = self.lines.add_key(parent, &key, mark.line());
        if duplicate {
            let first = self.lines.line(child);
            self.problem(mark.line(), child, || {
                format!("duplicate key `{key}` (first at line {first}); each key may appear once")
            });
            // The later value is kept, as serde_yaml would refuse the file anyway.
        }
        if let Some(Frame::Map { key: slot, .. }) = self.stack.last_mut() {
            *slot = Some((key, child));
        }
        Ok(())
    }

    /// An alias copies its anchor's value, within the limits on copies and nesting.
    fn on_alias(&mut self, id: usize, mark: Marker) -> Result<(), SyntaxError> {
        // An alias to an anchor still open (`&a [*a]`) has nothing to copy yet.
        let size = self
            .anchors
            .get(&id)
            .map_or(Size::scalar(""), |(_, size)| *size);
        // Only on the way to an error: finding the name costs a walk through the text.
        let text = self.text;
        let name = move || alias_name(text, mark);
        self.totals.aliased_values = self.totals.aliased_values.saturating_add(size.values);
        self.totals.aliased_text = self.totals.aliased_text.saturating_add(size.text);
        if self.totals.aliased_values > MAX_ALIAS_VALUES
            || self.totals.aliased_text > MAX_ALIAS_TEXT_BYTES
        {
            return Err(self.fatal(
                mark,
                format!(
                    "alias `{}` makes aliases copy in more than {MAX_ALIAS_VALUES} values \
                     or {MAX_ALIAS_TEXT_BYTES} bytes of text (the limit, which stops \
                     \"billion laughs\" files); write the values out, or alias smaller \
                     anchors fewer times",
                    name()
                ),
            ));
        }
        if self.stack.len().saturating_add(size.levels) > MAX_NESTING {
            return Err(self.fatal(
                mark,
                format!(
                    "alias `{}` would leave lists and mappings nested more than \
                     {MAX_NESTING} levels deep here, past the limit; flatten the anchored \
                     value",
                    name()
                ),
            ));
        }
        let value = self
            .anchors
            .get(&id)
            .map_or(Value::Null, |(value, _)| value.clone());
        if self.expecting_key() {
            let key = match value {
                Value::String(s) => s,
                _ => {
                    let node = self.top_node();
                    self.problem(mark.line(), node, || {
                        format!("alias `{}` as a key must name a plain word", name())
                    });
                    format!("<alias key at line {}>", mark.line())
                }
            };
            return self.on_key(key, mark);
        }
        self.count_values(size.values, mark)?;
        self.value_node(mark.line());
        self.finish(value, size, 0, mark)
    }
}

/// The alias as written (`*name`) at `mark`, for messages.
fn alias_name(text: &str, mark: Marker) -> String {
    let mut chars = text.chars().skip(mark.index());
    if chars.next() != Some('*') {
        return "*".into();
    }
    let name: String = chars
        .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
        .take(64)
        .collect();
    format!("*{name}")
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
        let (v, lines, _) = parse("base: &b {x: 1}\ncopy: *b\n").expect("valid yaml");
        assert_eq!(v["copy"]["x"], Value::Number(1.into()));
        // A path inside a copy has the alias's line.
        assert_eq!(lines.of("copy.x"), 2);
    }

    #[test]
    fn a_second_document_is_fatal_at_its_line() {
        let err = parse("a: 1\n---\nb: 2\n").expect_err("two documents");
        assert_eq!(err.line, 2);
        assert!(err.message.contains("second YAML document"), "{err:?}");
        // The end marker alone, or a comment after it, is still one document.
        assert!(parse("a: 1\n...\n# done\n").is_ok());
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let (v, lines, problems) = parse("\u{feff}a: 1\nb: 2\n").expect("valid yaml");
        assert!(problems.is_empty());
        assert_eq!(v["a"], Value::Number(1.into()));
        assert_eq!(lines.of("b"), 2);
    }

    #[test]
    fn an_alias_to_an_open_anchor_is_null() {
        let (v, _, _) = parse("a: &a [1, *a]\n").expect("valid yaml");
        assert_eq!(v["a"][1], Value::Null);
    }

    #[test]
    fn an_alias_of_a_list_as_a_key_is_a_problem() {
        let (_, _, problems) = parse("a: &l [1]\nm: {*l : 2}\n").expect("valid yaml");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 2);
        assert!(problems[0].message.contains("alias `*l`"), "{problems:?}");
    }

    #[test]
    fn alias_copies_are_counted_across_the_document() {
        // Each alias alone is small; together they cross MAX_ALIAS_VALUES.
        let per = 1000;
        let list = vec!["x"; per - 1].join(",");
        let mut text = format!("a: &a [{list}]\n");
        for i in 0..=(MAX_ALIAS_VALUES / per) {
            text.push_str(&format!("k{i}: *a\n"));
        }
        let err = parse(&text).expect_err("too many copies");
        assert_eq!(err.line, MAX_ALIAS_VALUES / per + 2, "{err:?}");
        assert_eq!(err.path, format!("k{}", MAX_ALIAS_VALUES / per));
        assert!(err.message.contains("alias `*a`"), "{err:?}");
    }

    #[test]
    fn anchors_kept_for_aliases_are_bounded() {
        // Nested anchors around one list keep a copy of it each: 3 x 20,000 values.
        let inner = vec!["x"; 20_000].join(",");
        let text = format!("{}{inner}{}\n", "&a [".repeat(5), "]".repeat(5));
        let err = parse(&text).expect_err("kept copies over the limit");
        assert!(err.message.contains("anchored values"), "{err:?}");
    }

    #[test]
    fn too_many_values_are_refused() {
        let text = format!("[{}]", vec!["1"; MAX_VALUES].join(","));
        let err = parse(&text).expect_err("one value too many");
        assert!(err.message.contains("more than 250000 values"), "{err:?}");
    }

    #[test]
    fn long_keys_are_refused() {
        let text = format!("? {}\n: 1\n", "k".repeat(MAX_KEY_BYTES + 1));
        let err = parse(&text).expect_err("long key");
        assert!(err.message.contains("a key of 1025 bytes"), "{err:?}");
        let ok = format!("? {}\n: 1\n", "k".repeat(MAX_KEY_BYTES));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn problems_beyond_the_cap_are_counted_in_one_line() {
        let text = format!("{{{}}}", vec!["a: 1"; MAX_PROBLEMS + 51].join(", "));
        let (_, _, problems) = parse(&text).expect("valid yaml");
        assert_eq!(problems.len(), MAX_PROBLEMS + 1);
        let last = &problems[MAX_PROBLEMS].message;
        assert!(last.starts_with("50 more problems"), "{last}");
    }
}
