//! The line of every value in a YAML document, kept as a tree of path steps.
//!
//! A tree rather than a map from full path strings: a path string repeats every
//! ancestor's key, so a map of them can grow far beyond the file (a long key above a
//! long list). Here each key is stored once and a list item costs one slot, so the
//! index stays proportional to the document; `of` walks a dotted path down it.

use std::collections::HashMap;

/// Id of a node in [`Lines`]; the root is [`Lines::ROOT`].
pub type NodeId = usize;

/// Line numbers of every path in a document.
#[derive(Debug, Clone)]
pub struct Lines {
    nodes: Vec<LineNode>,
}

#[derive(Debug, Clone)]
struct LineNode {
    line: usize,
    parent: NodeId,
    step: Step,
    children: Children,
}

/// How a node is reached from its parent.
#[derive(Debug, Clone)]
enum Step {
    Root,
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone)]
enum Children {
    None,
    Keys(HashMap<String, NodeId>),
    Items(Vec<NodeId>),
}

impl Default for Lines {
    fn default() -> Self {
        Lines {
            nodes: vec![LineNode {
                line: 1,
                parent: Self::ROOT,
                step: Step::Root,
                children: Children::None,
            }],
        }
    }
}

impl Lines {
    /// The whole document.
    pub const ROOT: NodeId = 0;

    /// The line of `path`, or of its nearest ancestor that has one, or 1.
    pub fn of(&self, path: &str) -> usize {
        let mut at = Self::ROOT;
        for step in steps(path) {
            let next = match (&self.nodes[at].children, step) {
                (Children::Keys(keys), Want::Key(k)) => keys.get(k).copied(),
                (Children::Items(items), Want::Index(i)) => items.get(i).copied(),
                _ => None,
            };
            match next {
                Some(n) => at = n,
                None => break,
            }
        }
        self.nodes[at].line
    }

    /// The line recorded for `node`.
    pub fn line(&self, node: NodeId) -> usize {
        self.nodes.get(node).map_or(1, |n| n.line)
    }

    /// Sets the root's line (the line the document's value starts on).
    pub fn set_root_line(&mut self, line: usize) {
        self.nodes[Self::ROOT].line = line;
    }

    /// The child of `parent` under `key`, if recorded.
    pub fn key(&self, parent: NodeId, key: &str) -> Option<NodeId> {
        match &self.nodes.get(parent)?.children {
            Children::Keys(keys) => keys.get(key).copied(),
            _ => None,
        }
    }

    /// Records `key` under `parent` at `line`; a key already there keeps its node
    /// and first line.
    pub fn add_key(&mut self, parent: NodeId, key: &str, line: usize) -> NodeId {
        if let Some(id) = self.key(parent, key) {
            return id;
        }
        let id = self.push(parent, Step::Key(key.to_string()), line);
        if let Children::None | Children::Items(_) = self.nodes[parent].children {
            self.nodes[parent].children = Children::Keys(HashMap::new());
        }
        if let Children::Keys(keys) = &mut self.nodes[parent].children {
            keys.insert(key.to_string(), id);
        }
        id
    }

    /// Records the next list item under `parent` at `line`.
    pub fn add_item(&mut self, parent: NodeId, line: usize) -> NodeId {
        if let Children::None | Children::Keys(_) = self.nodes[parent].children {
            self.nodes[parent].children = Children::Items(Vec::new());
        }
        let index = match &self.nodes[parent].children {
            Children::Items(items) => items.len(),
            _ => 0,
        };
        let id = self.push(parent, Step::Index(index), line);
        if let Children::Items(items) = &mut self.nodes[parent].children {
            items.push(id);
        }
        id
    }

    /// The dotted path of `node` for a message, e.g. `nodes[3].lat` (empty for the
    /// root); past [`MAX_SHOWN_PATH`] bytes the middle is cut out.
    pub fn path(&self, node: NodeId) -> String {
        shorten(self.full_path(node))
    }

    fn full_path(&self, node: NodeId) -> String {
        let mut chain = Vec::new();
        let mut at = node;
        while at != Self::ROOT && at < self.nodes.len() {
            chain.push(&self.nodes[at].step);
            at = self.nodes[at].parent;
        }
        let mut out = String::new();
        for step in chain.into_iter().rev() {
            match step {
                Step::Root => {}
                Step::Key(k) if out.is_empty() => out.push_str(k),
                Step::Key(k) => {
                    out.push('.');
                    out.push_str(k);
                }
                Step::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    fn push(&mut self, parent: NodeId, step: Step, line: usize) -> NodeId {
        self.nodes.push(LineNode {
            line,
            parent,
            step,
            children: Children::None,
        });
        self.nodes.len() - 1
    }
}

/// Longest path shown in a message; a longer one keeps its start and end.
pub const MAX_SHOWN_PATH: usize = 200;

fn shorten(path: String) -> String {
    if path.len() <= MAX_SHOWN_PATH {
        return path;
    }
    let head = floor_char_boundary(&path, MAX_SHOWN_PATH / 3);
    let tail = ceil_char_boundary(&path, path.len() - MAX_SHOWN_PATH * 2 / 3);
    format!("{}…{}", &path[..head], &path[tail..])
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// One step of a path being looked up.
#[derive(Debug, PartialEq)]
enum Want<'a> {
    Key(&'a str),
    Index(usize),
}

/// The steps of a dotted path: `nodes[3].lat` is `nodes`, `[3]`, `lat`. A part whose
/// brackets are not an index (`a[x]`) is taken as one key.
fn steps(path: &str) -> Vec<Want<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        let mut indices = Vec::new();
        while let Some(inner) = rest.strip_prefix('[') {
            let Some(close) = inner.find(']') else { break };
            let Ok(i) = inner[..close].parse::<usize>() else {
                break;
            };
            indices.push(i);
            rest = &inner[close + 1..];
        }
        if !rest.is_empty() {
            out.push(Want::Key(part));
            continue;
        }
        if !name.is_empty() {
            out.push(Want::Key(name));
        }
        out.extend(indices.into_iter().map(Want::Index));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_keys_and_indices() {
        assert_eq!(
            steps("nodes[3].lat"),
            vec![Want::Key("nodes"), Want::Index(3), Want::Key("lat")]
        );
        assert_eq!(steps("[0][1]"), vec![Want::Index(0), Want::Index(1)]);
        assert_eq!(steps("a[x]"), vec![Want::Key("a[x]")]);
        assert_eq!(steps(""), vec![]);
    }

    #[test]
    fn lookups_fall_back_to_the_nearest_ancestor() {
        let mut lines = Lines::default();
        lines.set_root_line(2);
        let nodes = lines.add_key(Lines::ROOT, "nodes", 3);
        let first = lines.add_item(nodes, 4);
        let lat = lines.add_key(first, "lat", 5);
        assert_eq!(lines.of(""), 2);
        assert_eq!(lines.of("nodes"), 3);
        assert_eq!(lines.of("nodes[0]"), 4);
        assert_eq!(lines.of("nodes[0].lat"), 5);
        assert_eq!(lines.of("nodes[0].lat.deeper[9]"), 5);
        assert_eq!(lines.of("nodes[7].lat"), 3);
        assert_eq!(lines.of("links"), 2);
        assert_eq!(lines.path(lat), "nodes[0].lat");
        assert_eq!(lines.add_key(first, "lat", 9), lat, "first line kept");
        assert_eq!(lines.line(lat), 5);
    }

    #[test]
    fn long_paths_are_shortened_for_messages() {
        let mut lines = Lines::default();
        let mut node = Lines::ROOT;
        for _ in 0..100 {
            node = lines.add_key(node, "ключ", 1);
        }
        let shown = lines.path(node);
        assert!(shown.len() <= MAX_SHOWN_PATH + '…'.len_utf8(), "{shown}");
        assert!(shown.starts_with("ключ.ключ") && shown.ends_with("ключ.ключ"));
        assert!(shown.contains('…'));
    }
}
