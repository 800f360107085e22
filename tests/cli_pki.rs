//! `overlay pki ...` as an operator runs it: exit codes, files written, nothing secret printed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

mod support;

fn overlay(dir: &Path, args: &[&str]) -> Output {
    support::overlay_in(dir, args)
}

/// A scratch directory under cargo's per-target temp dir, removed when dropped. (The root
/// package has no `tempfile` dev-dependency.)
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cli_pki-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Scratch(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn assert_no_secrets(out: &Output) {
    for stream in [text(&out.stdout), text(&out.stderr)] {
        assert!(!stream.contains("PRIVATE KEY"), "{stream}");
        assert!(!stream.contains("-----BEGIN"), "{stream}");
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

#[test]
fn init_then_issue_writes_certificates_and_keys() {
    let dir = Scratch::new("init-issue");
    let out = overlay(dir.path(), &["pki", "init", "--out", "ca"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_no_secrets(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ca/ca.pem"), "{stdout}");
    assert!(stdout.contains("ca/ca.key"), "{stdout}");
    assert!(stdout.contains("SHA-256 "), "{stdout}");
    assert!(dir.path().join("ca/ca.pem").is_file());
    assert_eq!(mode(&dir.path().join("ca/ca.key")), 0o600);

    for node in ["sha", "controller"] {
        let out = overlay(
            dir.path(),
            &[
                "pki", "issue", "--ca", "ca", "--node", node, "--out", "certs",
            ],
        );
        assert_eq!(code(&out), 0, "{}", text(&out.stderr));
        assert_no_secrets(&out);
        let stdout = text(&out.stdout);
        assert!(stdout.contains(&format!("certs/{node}.pem")), "{stdout}");
        assert!(stdout.contains(&format!("certs/{node}.key")), "{stdout}");
        let cert = std::fs::read_to_string(dir.path().join(format!("certs/{node}.pem")))
            .expect("cert written");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
        assert_eq!(mode(&dir.path().join(format!("certs/{node}.key"))), 0o600);
    }

    // The written pair loads as a TLS identity, and the CA as roots.
    daemon::tls::Identity::load(
        &dir.path().join("certs/sha.pem"),
        &dir.path().join("certs/sha.key"),
    )
    .expect("identity loads");
    daemon::tls::load_roots(&dir.path().join("ca/ca.pem")).expect("roots load");
}

#[test]
fn existing_files_are_kept_unless_forced() {
    let dir = Scratch::new("force");
    assert_eq!(
        code(&overlay(dir.path(), &["pki", "init", "--out", "."])),
        0
    );
    let key = std::fs::read(dir.path().join("ca.key")).expect("key");

    let out = overlay(dir.path(), &["pki", "init", "--out", "."]);
    assert_eq!(code(&out), 64);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ca.pem") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(dir.path().join("ca.key")).expect("key"), key);

    let out = overlay(dir.path(), &["pki", "init", "--out", ".", "--force"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_ne!(std::fs::read(dir.path().join("ca.key")).expect("key"), key);
}

#[test]
fn issue_with_a_bad_node_id_exits_64() {
    let dir = Scratch::new("bad-id");
    assert_eq!(
        code(&overlay(dir.path(), &["pki", "init", "--out", "ca"])),
        0
    );
    let out = overlay(
        dir.path(),
        &[
            "pki", "issue", "--ca", "ca", "--node", "Bad_ID", "--out", "certs",
        ],
    );
    assert_eq!(code(&out), 64);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("`Bad_ID` is not a valid node id"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert!(!dir.path().join("certs").exists());
}

#[test]
fn issue_with_a_missing_ca_exits_64() {
    let dir = Scratch::new("missing-ca");
    let out = overlay(
        dir.path(),
        &[
            "pki",
            "issue",
            "--ca",
            "no-such-ca",
            "--node",
            "sha",
            "--out",
            "certs",
        ],
    );
    assert_eq!(code(&out), 64);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no-such-ca/ca.pem"), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(!dir.path().join("certs").exists());
}

#[test]
fn missing_arguments_are_usage_errors() {
    let dir = Scratch::new("missing-args");
    assert_eq!(
        code(&overlay(dir.path(), &["pki", "issue", "--node", "sha"])),
        64
    );
    assert_eq!(code(&overlay(dir.path(), &["pki", "init"])), 64);
}
