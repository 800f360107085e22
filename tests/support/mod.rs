//! Running the built `overlay` binary from the workspace's end-to-end tests.

#![allow(dead_code)] // each test file uses part of this

pub mod diamond;
pub mod ha;

/// Tests that run a whole fleet measure timings (gaps, hold-downs) on a 2-core
/// machine: run them one at a time, so they do not starve each other's probes.
pub static FLEET_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The value of the sample of `name` whose labels include every `labels`
/// pair, in OpenMetrics text; `None` if there is none.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A fleet on `topology` with `options`, started and ready (links up,
/// routes in force) within 20 s; panics otherwise.
pub async fn ready_fleet(
    topology: topology::Topology,
    options: overlay::fleet::FleetOptions,
) -> overlay::fleet::Fleet {
    overlay::fleet::Fleet::start_ready(topology, options, Duration::from_secs(20))
        .await
        .expect("fleet ready")
}

/// The same, for tests that are not async (they run `overlay lab` processes).
pub fn one_fleet_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    FLEET_TESTS.blocking_lock()
}

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

/// The path of a workspace daemon's binary (`relay`, `controller`), built if
/// it is not there yet: cargo builds only this package's binaries for its
/// tests, and `cargo test --workspace` builds them all first.
pub fn daemon_binary(name: &str) -> std::path::PathBuf {
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    let _one = BUILD.lock().unwrap_or_else(|p| p.into_inner());
    if !path.exists() {
        let release = dir.file_name().is_some_and(|p| p == "release");
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "-p", name, "--bin", name]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building {name} failed");
    }
    path
}
