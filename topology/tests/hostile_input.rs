//! Files an attacker or a careless operator might hand to `topology::parse` and
//! `topology::load`: each must be refused quickly, with a message that says where and
//! what to do, and without exhausting memory or the stack.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// The claim: every hostile input fails well under a second.
const FAST: Duration = Duration::from_secs(1);

/// Runs `f` on its own thread and fails the test if it has not returned within
/// [`FAST`] (a hang becomes a failure, not a stuck test run).
fn fast<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(FAST) {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not return within {FAST:?}"),
    }
}

/// A fresh empty folder under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "topology-hostile-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("write temp file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The "billion laughs" file from the report: 306 bytes, 9 levels of 9 aliases
/// (9^9 ≈ 387 million strings when expanded).
fn alias_bomb() -> String {
    let mut text = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
    let names = ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'];
    for pair in names.windows(2) {
        let (prev, name) = (pair[0], pair[1]);
        let refs = vec![format!("*{prev}"); 9].join(",");
        text.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    text
}

/// The single message of a failed parse.
fn only_error(source: &str, text: String) -> topology::Diagnostic {
    let source = source.to_string();
    let result = fast("parse", move || topology::parse(&source, &text));
    let mut errors = result.expect_err("must be refused").diagnostics;
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors.remove(0)
}

#[test]
fn alias_bomb_is_refused_at_the_alias_that_crosses_the_limit() {
    let text = alias_bomb();
    assert_eq!(text.len(), 306, "the file from the report");
    let d = only_error("bomb.yaml", text);
    assert_eq!(d.file, "bomb.yaml");
    // a..d copy 8,298 values in; the aliases of `e` (line 5) are the first to cross.
    assert_eq!(d.line, 5, "{d}");
    assert!(d.message.contains("alias `*d`"), "{d}");
    assert!(d.message.contains("limit"), "{d}");
    assert!(d.message.contains("write the values out"), "{d}");
}

#[test]
fn aliases_within_the_limits_still_resolve() {
    let text = "version: 1\n\
        nodes:\n  \
        - &sha { id: sha, city: Shanghai, country: CN, region: asia-east, lat: 31.23, lon: 121.47, addr: \"127.0.0.1:7001\" }\n  \
        - { id: lax, city: Los Angeles, country: &us US, region: na, lat: 34.05, lon: -118.24, addr: \"127.0.0.1:7002\" }\n\
        links:\n  \
        - { between: [sha, lax], kind: &k undersea }\n";
    let t = topology::parse("ok.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.nodes.len(), 2);
}

#[test]
fn deeply_nested_flow_document_does_not_overflow_the_stack() {
    let depth = 100_000;
    let text = "[".repeat(depth) + &"]".repeat(depth);
    let d = only_error("deep.yaml", text);
    assert_eq!(d.line, 1, "{d}");
    assert!(d.message.contains("nested"), "{d}");
}

#[test]
fn deeply_nested_block_document_does_not_overflow_the_stack() {
    // `- - - - ... x`: block sequences, which the YAML scanner does not limit itself.
    let text = "- ".repeat(100_000) + "x\n";
    let d = only_error("deep-block.yaml", text);
    assert!(d.message.contains("nested"), "{d}");
}

#[test]
fn aliases_cannot_stack_nesting_past_the_limit() {
    // Each anchor nests the previous one 40 levels deeper: 100 levels after three.
    let mut text = String::from("a0: &a0 x\n");
    for i in 1..=3 {
        text.push_str(&format!(
            "a{i}: &a{i} {}*a{}{}\n",
            "[".repeat(40),
            i - 1,
            "]".repeat(40)
        ));
    }
    let d = only_error("stacked.yaml", text);
    assert_eq!(d.line, 3, "{d}");
    assert!(d.message.contains("nested"), "{d}");
}

#[test]
fn aliases_of_a_long_string_are_bounded_too() {
    // 64 KiB of text, aliased 1,000 times: 64 MiB if copied without a limit.
    let mut text = format!("s: &s {}\nl: [", "y".repeat(64 * 1024));
    text.push_str(&vec!["*s"; 1000].join(","));
    text.push_str("]\n");
    let d = only_error("strings.yaml", text);
    assert_eq!(d.line, 2, "{d}");
    assert!(d.message.contains("alias `*s`"), "{d}");
}

#[test]
fn a_second_document_is_refused_at_its_line() {
    let text = "version: 1\nnodes: []\n---\nversion: 2\n".to_string();
    let d = only_error("two.yaml", text);
    assert_eq!(d.line, 3, "{d}");
    assert!(d.message.contains("second YAML document"), "{d}");
    // An explicit start of the only document, or an explicit end, is fine.
    for one in [
        "---\nversion: 1\n",
        "version: 1\n...\n",
        "--- \nversion: 1\n...\n",
    ] {
        let err = topology::parse("one.yaml", one).expect_err("no nodes");
        assert!(
            err.diagnostics
                .iter()
                .all(|d| !d.message.contains("document")),
            "{one:?}: {err}"
        );
    }
}

#[test]
fn a_utf8_bom_is_skipped() {
    let text = format!("\u{feff}{}", topology::WORLD_YAML);
    let t = topology::parse("bom.yaml", &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.nodes.len(), 55);

    let dir = TempDir::new("bom");
    let path = dir.file("bom.yaml", text.as_bytes());
    let t = topology::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.nodes.len(), 55);
}

#[test]
fn many_unknown_keys_beside_a_big_value_are_reported_fast() {
    // Decoding used to copy the whole document once per unknown key, up to 256 times
    // (16 s for this kind of file at 800 KB); now one round removes every unknown key
    // of a mapping, and rounds read the document without copying it.
    let mut text = format!("version: 1\nnodes: [[{}]]\n", vec!["1"; 100_000].join(","));
    for i in 0..300 {
        text.push_str(&format!("extra{i}: 1\n"));
    }
    let result = fast("parse", move || topology::parse("keys.yaml", &text));
    let errors = result.expect_err("unknown keys").diagnostics;
    let unknown = errors
        .iter()
        .filter(|d| d.message.starts_with("unknown field"))
        .count();
    assert_eq!(unknown, 300, "extra0..299");
}

/// `topology::load` on `path`, which must fail fast; its message.
fn load_error(path: PathBuf) -> String {
    let shown = path.display().to_string();
    let err = fast("load", move || topology::load(&path)).expect_err("must be refused");
    let message = err.to_string();
    assert!(message.contains(&shown), "names the file: {message}");
    message
}

#[test]
fn load_refuses_a_fifo_without_blocking() {
    let dir = TempDir::new("fifo");
    let path = dir.0.join("fifo.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    let message = load_error(path);
    assert!(message.contains("is not a regular file"), "{message}");
    assert!(message.contains("FIFO"), "{message}");
}

#[test]
fn load_refuses_dev_zero_without_reading_it() {
    let message = load_error(PathBuf::from("/dev/zero"));
    assert!(message.contains("is not a regular file"), "{message}");
    assert!(message.contains("device"), "{message}");
}

#[test]
fn load_refuses_a_directory() {
    let dir = TempDir::new("dir");
    let message = load_error(dir.0.clone());
    assert!(message.contains("is not a regular file"), "{message}");
    assert!(message.contains("directory"), "{message}");
}

#[test]
fn load_refuses_a_file_over_the_size_cap() {
    let dir = TempDir::new("big");
    // A YAML comment one byte over 4 MiB: valid YAML, but too large.
    let mut bytes = vec![b'#'; 4 * 1024 * 1024 + 1];
    bytes[4 * 1024 * 1024] = b'\n';
    let path = dir.file("big.yaml", &bytes);
    let message = load_error(path);
    assert!(message.contains("4194304"), "states the limit: {message}");
}

#[test]
fn load_reads_a_file_at_the_size_cap() {
    let dir = TempDir::new("cap");
    let mut bytes = topology::WORLD_YAML.as_bytes().to_vec();
    bytes.push(b'#');
    bytes.resize(4 * 1024 * 1024 - 1, b' ');
    bytes.push(b'\n');
    let path = dir.file("cap.yaml", &bytes);
    let t = fast("load", move || topology::load(&path)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.nodes.len(), 55);
}

#[test]
fn non_utf8_is_reported_with_its_line_and_byte_offset() {
    let dir = TempDir::new("utf8");
    let path = dir.file("latin1.yaml", b"version: 1\nnodes:\n  - id: s\xe9l\n");
    let message = load_error(path.clone());
    // "version: 1\n" and "nodes:\n" are 18 bytes, "  - id: s" 9 more.
    assert!(
        message.contains(&format!("{}:3:", path.display())),
        "{message}"
    );
    assert!(message.contains("byte offset 27"), "{message}");
    assert!(message.contains("0xe9"), "{message}");
    assert!(message.contains("UTF-8"), "{message}");
}

#[test]
fn a_missing_file_names_the_path() {
    let message = load_error(Path::new("/nonexistent/topology.yaml").to_path_buf());
    assert!(
        message.contains("cannot read topology file /nonexistent/topology.yaml"),
        "{message}"
    );
}
