//! Running the built `overlay` binary from the workspace's end-to-end tests.

#![allow(dead_code)] // each test file uses part of this

pub mod diamond;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `overlay` with `args` in `dir`, bounded in time.
pub fn overlay_in(dir: &Path, args: &[&str]) -> Output {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_overlay"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("overlay runs");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "overlay {args:?} took too long"
    );
    out
}

/// Runs `overlay` with `args` in the package directory.
pub fn overlay(args: &[&str]) -> Output {
    overlay_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
