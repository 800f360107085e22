//! `overlay lab` as a user runs it, on a small fleet with known link delays: the
//! report's measured latency must match the paths and delays, with no loss.

mod support;

use std::path::Path;

use support::{overlay, text};

/// (class, path, expected ms, p50 ms, p99 ms, loss %) for each class row.
fn class_rows(report: &str) -> Vec<(String, String, f64, f64, f64, f64)> {
    report
        .lines()
        .filter(|l| l.starts_with("class-"))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let n = cols.len();
            let num = |s: &str| s.trim_end_matches('%').parse::<f64>().expect("number");
            (
                cols[0].to_string(),
                cols[1..n - 14].join(" "),
                num(cols[n - 14]),
                num(cols[n - 13]),
                num(cols[n - 12]),
                num(cols[n - 9]),
            )
        })
        .collect()
}

/// The floor row of `path`: links' delay, floor p50, floor p99, floor loss %,
/// classes on it, classes' p50, overlay p50 above the floor (ms).
fn floor_row(report: &str, path: &str) -> [f64; 7] {
    let cols = report
        .lines()
        .filter(|l| l.starts_with("  ") && l.split_whitespace().count() > 7)
        .find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let n = cols.len();
            (cols[..n - 7].join(" ") == path).then(|| cols[n - 7..].to_vec())
        })
        .unwrap_or_else(|| panic!("floor row for {path}\n{report}"));
    let num = |s: &str| s.trim_end_matches('%').parse::<f64>().expect("number");
    std::array::from_fn(|i| num(cols[i]))
}

/// Runs `overlay lab` on the fixture `name` (in tests/fixtures) with `args`,
/// its API on a free port; asserts it exited 0 and returns (stdout, stderr).
fn lab_on(name: &str, args: &[&str]) -> (String, String) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let file = file.display().to_string();
    let mut all = vec!["lab", "--topology", &file, "--api", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let out = overlay(&all);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    (stdout, stderr)
}

#[test]
fn lab_on_a_small_fleet_measures_the_latency_its_links_imply() {
    let _one_at_a_time = support::one_fleet_at_a_time();
    let (stdout, stderr) = lab_on(
        "lab-triangle.yaml",
        &["--duration", "3s", "--classes", "4", "--scenario", "none"],
    );
    // Not a terminal: each progress report is a line of its own.
    assert!(!stderr.contains('\r'), "{stderr}");
    assert!(
        stderr.lines().filter(|l| l.starts_with('[')).count() >= 2,
        "{stderr}"
    );
    let rows = class_rows(&stdout);
    assert_eq!(rows.len(), 4, "{stdout}");
    for (class, path, expected, p50, p99, loss) in rows {
        // Students are in Asia (tyo); teachers in North America. To lax the
        // route goes through sea (30 ms), not over the 50 ms internet link.
        let (want_path, want_ms) = if class.ends_with("-lax") {
            ("tyo sea lax", 30.0)
        } else {
            ("tyo sea", 20.0)
        };
        assert_eq!(path, want_path, "{class}");
        assert_eq!(expected, want_ms, "{class}");
        // The floor: the emulator alone on the same path, in the same run.
        let [delay, floor_p50, floor_p99, floor_loss, on_it, _, above] =
            floor_row(&stdout, want_path);
        assert_eq!(delay, want_ms, "{stdout}");
        assert!(floor_p50 >= want_ms, "floor below the delay\n{stdout}");
        assert_eq!(floor_loss, 0.0, "the floor loses nothing\n{stdout}");
        assert_eq!(on_it, 2.0, "two classes on each path\n{stdout}");
        assert!(
            above < 10.0,
            "overlay p50 {above} ms above the floor\n{stdout}"
        );
        assert!(
            p50 >= want_ms,
            "{class}: p50 {p50} ms below the links' delay"
        );
        // Against the floor, so the machine's own lateness (a busy machine's
        // timers) is not blamed on the overlay.
        assert!(
            p50 < floor_p50 + 10.0,
            "{class}: p50 {p50} ms, far above the floor's {floor_p50}\n{stdout}"
        );
        assert!(
            p99 < floor_p99.max(want_ms) + 20.0,
            "{class}: p99 {p99} ms, floor p99 {floor_p99}\n{stdout}"
        );
        assert_eq!(loss, 0.0, "{class}: no loss on clean links");
    }
    assert!(
        stdout.contains("4 of 4 classes within the 200 ms budget"),
        "{stdout}"
    );
    // Signalling: every class's TCP session echoed its messages and none broke;
    // the teacher's media came back within the same bounds.
    for line in stdout.lines().filter(|l| l.starts_with("class-")) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (ok, broken) = cols[cols.len() - 5].split_once('/').expect("ok/broken");
        assert!(ok.parse::<u64>().expect("ok") >= 4, "{line}");
        assert_eq!(broken, "0", "{line}");
        let back: f64 = cols[cols.len() - 6].parse().expect("back p99");
        let path = cols[1..cols.len() - 14].join(" ");
        let [delay, _, floor_p99, ..] = floor_row(&stdout, &path);
        assert!(back < floor_p99.max(delay) + 20.0, "{line}\n{stdout}");
    }
    assert!(
        stdout.contains("overlay above the floor at p50"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the machine kept up") || stdout.contains("the machine cannot keep up"),
        "{stdout}"
    );
    // Every class crosses the one undersea line, which carried packets both ways.
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("test-line"))
        .expect("undersea usage row");
    // line, a, b, packets a→b, b→a, Mbit/s a→b, b→a, queue drops, classes.
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[8], "4", "{line}");
    assert_eq!(cols[7], "0", "no bandwidth limit, no queue drops: {line}");
    assert!(cols[5].parse::<f64>().expect("Mbit/s a→b") > 0.0, "{line}");
    assert!(
        cols[3].parse::<u64>().expect("a→b") > 500 && cols[4].parse::<u64>().expect("b→a") > 100,
        "{line}"
    );
}

#[test]
fn lab_rejects_bad_options_with_exit_64() {
    for args in [
        &["lab", "--duration", "soon"][..],
        &["lab", "--classes", "0"][..],
        &["lab", "--loss", "1.5"][..],
        &["lab", "--topology", "/nonexistent.yaml"][..],
        &[
            "lab",
            "--scenario",
            "/nonexistent-scenario.yaml",
            "--duration",
            "1s",
        ][..],
    ] {
        let out = overlay(args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn a_scenario_cut_reroutes_the_classes_that_used_the_link_and_the_report_says_so() {
    let _one_at_a_time = support::one_fleet_at_a_time();
    let scenario = std::env::temp_dir().join(format!("lab-scenario-{}.yaml", std::process::id()));
    std::fs::write(&scenario, "events:\n  - { at: 2s, cut: [sea, lax] }\n")
        .expect("write scenario");
    let scenario_arg = scenario.display().to_string();
    let (stdout, _) = lab_on(
        "lab-triangle.yaml",
        &[
            "--duration",
            "5s",
            "--classes",
            "4",
            "--scenario",
            &scenario_arg,
            // The relays' probes for a busy machine: slower to call a link
            // down, but the cut is still found and repaired.
            "--tolerant-probes",
        ],
    );
    let _ = std::fs::remove_file(&scenario);
    assert!(
        stdout.contains("probes every 50 ms, a link down after 3 lost (--tolerant-probes)"),
        "{stdout}"
    );
    assert!(stdout.contains("cut sea–lax"), "{stdout}");
    // Both classes to lax moved off the cut link, to the direct line; none to sea did.
    let moved: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("tyo sea lax  tyo lax"))
        .collect();
    assert_eq!(moved.len(), 2, "{stdout}");
    assert!(
        !stdout
            .lines()
            .any(|l| l.contains("-tyo-sea") && l.contains(" → ")),
        "{stdout}"
    );
    // Their longest gap in delivery stayed under a second.
    for line in moved {
        let gap: u64 = line
            .split_whitespace()
            .last()
            .expect("gap")
            .trim_start_matches('<')
            .parse()
            .expect("ms");
        assert!(gap < 1000, "gap {gap} ms: {line}");
    }
}

/// (audio lost, audio longest gap ms, video lost, signalling broken) per class row.
fn stream_cols(line: &str) -> (u64, u64, u64, u64) {
    let cols: Vec<&str> = line.split_whitespace().collect();
    let n = cols.len();
    let num = |s: &str| s.parse::<u64>().expect("number");
    let (_, broken) = cols[n - 5].split_once('/').expect("ok/broken");
    (
        num(cols[n - 4]),
        num(cols[n - 3]),
        num(cols[n - 2]),
        num(broken),
    )
}

#[test]
fn the_default_cut_loses_no_protected_audio_breaks_no_signalling_and_downs_no_other_link() {
    let _one_at_a_time = support::one_fleet_at_a_time();
    // The default scenario cuts the only undersea line (tyo–sea), which every
    // class crosses, at 2 s and restores it at 4 s.
    let (stdout, _) = lab_on("lab-triangle.yaml", &["--duration", "6s", "--classes", "4"]);
    assert!(stdout.contains("cut tyo–sea"), "{stdout}");
    assert!(
        stdout.contains("probes every 20 ms, a link down after 2 lost (the defaults)"),
        "{stdout}"
    );
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("class-")).collect();
    assert_eq!(rows.len(), 4, "{stdout}");
    for line in rows {
        let (audio_lost, audio_gap, _video_lost, broken) = stream_cols(line);
        // Audio goes on two disjoint paths: the cut of one loses nothing, and
        // its longest gap stays well under what detecting the cut takes (about
        // 200 ms: the video's gap). Not the 20 ms packet interval: on a busy
        // 2-core machine scheduling alone stalls a stream ~100 ms now and then.
        assert_eq!(
            audio_lost, 0,
            "protected audio lost packets: {line}\n{stdout}"
        );
        assert!(
            audio_gap < 150,
            "audio gap {audio_gap} ms: {line}\n{stdout}"
        );
        // The class's TCP session resumes over the new path.
        assert_eq!(broken, 0, "signalling broken: {line}\n{stdout}");
    }
    assert!(stdout.contains(", 0 sessions broken"), "{stdout}");
    assert!(stdout.contains("audio (protected) 0 of "), "{stdout}");
    // The cut link went down; no other link did.
    let downs = stdout
        .lines()
        .find(|l| l.starts_with("link-downs:"))
        .expect("link-downs line");
    assert!(downs.contains(" 0 false "), "{downs}\n{stdout}");
    assert!(
        !downs.starts_with("link-downs: 0 on"),
        "the cut link went down: {downs}"
    );
}

/// The last column of the undersea table's row for `line`: classes on it at
/// the end of the run, by the paths the report gives them.
fn classes_on_line(report: &str, line: &str) -> u64 {
    report
        .lines()
        .find(|l| l.split_whitespace().next() == Some(line))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("undersea row for {line}\n{report}"))
}

/// Four classes Tokyo → Los Angeles, and two lines each with room under the
/// placement ceiling for about two: the direct line (faster) and the one
/// through Guam. Placement moves some onto the Guam line, and the report must
/// say where each class's media went (its placed path), not the route by
/// delay, which has all four on the direct line. (Placement often moves them
/// back before the run ends, overloading the direct line: not asserted here;
/// see the session note.)
#[test]
fn the_report_gives_each_class_the_placed_path_its_media_takes() {
    let _one_at_a_time = support::one_fleet_at_a_time();
    // 10 Gbit/s × 0.00014 = 1.4 Mbit/s per line and direction: 80% of it
    // holds every class's protected audio (about 0.1 Mbit/s each, on both
    // lines) and the video (about 0.25 Mbit/s) of two classes, not four.
    let (stdout, _) = lab_on(
        "lab-two-lines.yaml",
        &[
            "--duration",
            "15s",
            "--classes",
            "4",
            "--scenario",
            "none",
            "--capacity-scale",
            "0.00014",
            "--undersea-only",
        ],
    );
    let rows = class_rows(&stdout);
    assert_eq!(rows.len(), 4, "{stdout}");
    // Placement put classes on the Guam line (the route by delay never goes
    // there), and the report says so: in a class's row, or in a reroute
    // ("(at) class tyo lax  tyo gum lax").
    let on_guam = (stdout.lines()).any(|l| l.contains("-tyo-lax ") && l.contains(" tyo gum lax"));
    assert!(on_guam, "no class reported on the Guam line\n{stdout}");
    // Where the classes ended, by their rows and by the undersea table, agree.
    let direct = rows.iter().filter(|r| r.1.starts_with("tyo lax")).count();
    let via_guam = (rows.iter())
        .filter(|r| r.1.starts_with("tyo gum lax"))
        .count();
    assert_eq!(direct + via_guam, 4, "{stdout}");
    assert_eq!(
        classes_on_line(&stdout, "direct-line"),
        direct as u64,
        "{stdout}"
    );
    assert_eq!(
        classes_on_line(&stdout, "guam-line"),
        via_guam as u64,
        "{stdout}"
    );
}

#[test]
fn services_given_with_the_topology_are_carried_alongside_the_classes() {
    let _one_at_a_time = support::one_fleet_at_a_time();
    // The user's own server at lax (an echo), reached through a service of the
    // topology from tyo.
    let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind server");
    let target = server.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let _ = server.send_to(&buf[..n], from);
        }
    });
    let listen = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr")
    };
    let base = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lab-triangle.yaml"),
    )
    .expect("fixture");
    let file = std::env::temp_dir().join(format!("lab-services-{}.yaml", std::process::id()));
    std::fs::write(
        &file,
        format!(
            "{base}services:\n  - name: my-server\n    protocol: udp\n    ingress: {{ node: tyo, listen: \"{listen}\" }}\n    egress:  {{ node: lax, target: \"{target}\" }}\n"
        ),
    )
    .expect("write topology");
    let mut lab = std::process::Command::new(env!("CARGO_BIN_EXE_overlay"))
        .args([
            "lab",
            "--topology",
            &file.display().to_string(),
            "--duration",
            "4s",
            "--classes",
            "2",
            "--scenario",
            "none",
            "--api",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("overlay runs");
    // Until the run ends, ask through the service every 100 ms.
    let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind client");
    client
        .set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .expect("timeout");
    let started = std::time::Instant::now();
    let mut echoed = 0;
    while started.elapsed() < std::time::Duration::from_secs(25) && echoed < 5 {
        let _ = client.send_to(b"hello through the lab", listen);
        let mut buf = [0u8; 64];
        if let Ok(n) = client.recv(&mut buf) {
            if &buf[..n] == b"hello through the lab" {
                echoed += 1;
            }
        }
        if let Ok(Some(_)) = lab.try_wait() {
            break;
        }
    }
    let out = lab.wait_with_output().expect("lab ends");
    let _ = std::fs::remove_file(&file);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{stdout}");
    assert!(
        stderr.contains("lab: service my-server (udp) from the topology"),
        "{stderr}"
    );
    assert_eq!(
        echoed, 5,
        "the user's service carried packets both ways\n{stderr}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("class-")).count(),
        2,
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_not_ready_says_which_links_and_tables_are_missing() {
    let _one_at_a_time = support::FLEET_TESTS.lock().await;
    let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = receiver.local_addr().expect("addr");
    let fleet = overlay::fleet::Fleet::start(
        support::diamond::topology(target),
        overlay::fleet::FleetOptions::default(),
    )
    .await
    .expect("fleet starts");
    // One link never comes up.
    fleet.link("bbb", "ddd").expect("emulated").cut();
    let err = fleet
        .wait_ready(std::time::Duration::from_secs(3))
        .await
        .expect_err("not ready with a link cut");
    let msg = format!("{err:#}");
    assert!(msg.contains("3 of 4 links up"), "{msg}");
    assert!(msg.contains("not up: bbb–ddd"), "{msg}");
    assert!(
        msg.contains("the controller does not have every link in force"),
        "{msg}"
    );
    fleet.shutdown().await;
}
