//! Hitless media: a protected service (`protect: true`) sends each datagram
//! on two disjoint paths and the egress keeps the first copy, so cutting
//! either path loses nothing. The diamond of `support::diamond`: the fast
//! path aaa–bbb–ddd (20 ms) and the slow aaa–ccc–ddd (50 ms) are the two
//! copies' paths.

mod support;

use std::time::Duration;

use support::diamond::{self, Stream};
use tokio::time::Instant;

/// The sender's interval.
const EVERY: Duration = Duration::from_millis(5);
/// With the fast path cut the slow copy is the first
/// to arrive, 30 ms later than the fast one was: the longest gap at the
/// receiver is about 5 + 30 ms (32–33 ms measured). The bound adds 65 ms for a
/// 2-core machine busy with other work (one run in a dozen then saw a stall
/// past 80 ms); a failover without protection takes 175–310 ms (tests/reroute.rs).
const HITLESS_GAP_BOUND: Duration = Duration::from_millis(100);

async fn bounded<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time bound")
}

/// The diamond with its media service protected.
async fn start() -> (overlay::fleet::Fleet, Stream) {
    let protect = |yaml: String| {
        let (head, services) = yaml.split_once("services:\n").expect("services");
        let services = services.replacen(" }\n", ", protect: true }\n", 1);
        format!("{head}services:\n{services}")
    };
    let (fleet, stream) = diamond::start_with(protect, EVERY).await;
    let t = fleet.relay("aaa").config().topology.clone();
    assert!(t.services.iter().any(|s| s.name == "media" && s.protect));
    (fleet, stream)
}

/// A counter of `/metrics` for the service `media`.
fn service_counter(fleet: &overlay::fleet::Fleet, node: &str, name: &str) -> u64 {
    let text = fleet.relay(node).metrics_text();
    let name = format!("overlay_relay_{name}_total");
    support::sample(&text, &name, &[("service", "media")])
        .unwrap_or_else(|| panic!("{name} not in {node}'s metrics:\n{text}")) as u64
}

/// Cuts `a`–`b` with the stream running and checks nothing was lost or
/// duplicated at the receiver, and the longest gap.
async fn cut_loses_nothing(a: &str, b: &str) {
    let (fleet, stream) = start().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = stream.sent();
    let dup0 = service_counter(&fleet, "ddd", "service_duplicate_packets");
    assert!(
        dup0 > 0,
        "the second copies reach ddd and are dropped there"
    );
    let cut_at = Instant::now();
    fleet.link(a, b).expect("link").cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let gap = stream.longest_gap(cut_at, Instant::now());
    let sent = stream.sent();
    // Leave the last packets time to arrive before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let missing = stream.missing(before, sent);
    println!(
        "cut {a}–{b} under a protected stream: {missing} of {} lost, longest gap {} ms",
        sent - before,
        gap.as_millis()
    );
    assert_eq!(missing, 0, "a protected stream loses nothing to one cut");
    assert_eq!(
        stream.duplicates(),
        0,
        "the receiver sees each datagram once"
    );
    assert!(
        gap <= HITLESS_GAP_BOUND,
        "gap {gap:?}, bound {HITLESS_GAP_BOUND:?}"
    );
    assert_eq!(
        service_counter(&fleet, "ddd", "service_lost_packets"),
        0,
        "the egress counted no loss"
    );
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_first_path_of_a_protected_stream_loses_nothing() {
    let _one = support::FLEET_TESTS.lock().await;
    bounded(90, cut_loses_nothing("bbb", "ddd")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_second_path_of_a_protected_stream_loses_nothing() {
    let _one = support::FLEET_TESTS.lock().await;
    bounded(90, cut_loses_nothing("aaa", "ccc")).await;
}
