//! Peak memory of refusing alias bombs, measured from the kernel's high-water mark.
//!
//! One test in its own binary, so that no other test allocates while it measures.
//! Linux only: it resets and reads `VmHWM` through `/proc/self`.

#![cfg(target_os = "linux")]

/// The claim is "a few MB"; measured: about 5 MiB for the 306-byte bomb.
const PEAK_BUDGET_KIB: u64 = 16 * 1024;

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/self/status"))
}

/// Peak resident memory `f` adds, in KiB.
fn peak_added_kib(f: impl FnOnce()) -> u64 {
    // "5" resets VmHWM to the current resident size (Linux 4.0+). If that is not
    // allowed the high-water mark so far stands, which only makes the check stricter
    // once the process has been small.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    f();
    status_kib("VmHWM:").saturating_sub(before)
}

fn bomb(levels: usize, width: usize) -> String {
    let mut text = format!("l0: &l0 [{}]\n", vec!["x"; width].join(","));
    for i in 1..levels {
        let refs = vec![format!("*l{}", i - 1); width].join(",");
        text.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    text
}

fn cases() -> Vec<(&'static str, String)> {
    vec![
        ("9x9 (the 306-byte report)", bomb(9, 9)),
        ("30x2", bomb(30, 2)),
        ("5x100", bomb(5, 100)),
        (
            "long strings",
            format!(
                "s: &s {}\nl: [{}]\n",
                "y".repeat(60_000),
                vec!["*s"; 1000].join(",")
            ),
        ),
    ]
}

/// Set in the child process that measures one case.
const CASE_VAR: &str = "TOPOLOGY_BOMB_CASE";

/// In the child: loads case `index` from a file and prints its peak.
fn measure_one(index: usize) {
    let (name, text) = cases().swap_remove(index);
    let dir = std::env::temp_dir().join(format!("topology-bomb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("bomb.yaml");
    std::fs::write(&path, &text).expect("write bomb");
    let mut refused = false;
    let added = peak_added_kib(|| {
        refused = matches!(topology::load(&path), Err(topology::LoadError::Invalid(_)));
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert!(refused, "{name}: must be refused as invalid");
    println!("PEAK_KIB {added}");
}

/// Each case runs in a fresh process: memory freed by one case stays resident (the
/// allocator keeps it) and would hide the next case's peak.
#[test]
fn refusing_alias_bombs_peaks_under_16_mib() {
    if let Ok(index) = std::env::var(CASE_VAR) {
        measure_one(index.parse().expect("case index"));
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    for (index, (name, _)) in cases().iter().enumerate() {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "refusing_alias_bombs_peaks_under_16_mib",
                "--nocapture",
            ])
            .env(CASE_VAR, index.to_string())
            .output()
            .expect("run the measuring child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: child failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let added: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("PEAK_KIB "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name}: no PEAK_KIB line in {stdout}"));
        eprintln!("{name}: peak +{added} KiB");
        assert!(
            added < PEAK_BUDGET_KIB,
            "{name}: peak grew by {added} KiB, over {PEAK_BUDGET_KIB} KiB"
        );
    }
}
