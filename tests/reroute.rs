//! Rerouting end to end: a diamond of relays with emulated links, a controller,
//! and a media stream. Traffic takes the best path, moves when a path degrades or
//! dies, comes back only after the hold-down, survives the controller's absence,
//! and does not flap under jitter.

mod support;

use std::time::Duration;

use support::diamond::{self, forwarded, ttl_drops, wait_forwarding, wait_in_service};
use tokio::time::Instant;

/// The README documents a 175–210 ms delivery gap on a blackhole cut (3 lost
/// probes at 50 ms, the loss timeout, and the backup path's extra 30 ms). The
/// bound is that figure plus 100 ms for a loaded 2-core machine: a regression
/// to the 250–260 ms of an older probe timeout would still show, one to a second
/// certainly.
const FAILOVER_GAP_BOUND: Duration = Duration::from_millis(310);

/// Runs a test's fleet within `secs`, one fleet at a time: these tests time
/// gaps and read jitter, which two fleets sharing 2 cores would distort (the
/// wait for the other fleets is outside the bound).
async fn bounded<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    let _one_at_a_time = support::FLEET_TESTS.lock().await;
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_takes_the_lower_delay_path() {
    bounded(60, async {
        let (fleet, stream) = diamond::start().await;
        let (b0, c0) = (forwarded(&fleet, "bbb"), forwarded(&fleet, "ccc"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (b, c) = (forwarded(&fleet, "bbb") - b0, forwarded(&fleet, "ccc") - c0);
        assert!(b >= 150, "bbb carried the stream: {b}");
        assert_eq!(c, 0, "nothing through the slow side");
        let route = controller::api::route(
            &fleet.controller.as_ref().expect("controller").shared,
            "aaa",
            "ddd",
        )
        .expect("route");
        assert_eq!(route.path, ["aaa", "bbb", "ddd"]);
        assert_eq!(route.backup_next_hop.as_deref(), Some("ccc"));
        assert!(stream.received() > 150);
        // The egress measures the service's one-way delay: the 20 ms of the
        // fast path, plus at most 15 ms of relays and a loaded machine.
        let text = fleet.relay("ddd").metrics_text();
        let of = |part: &str| {
            let name = format!("overlay_relay_service_one_way_delay_seconds_{part}");
            support::sample(&text, &name, &[("service", "media")]).expect("delay histogram")
        };
        let (count, mean_ms) = (of("count"), of("sum") / of("count") * 1000.0);
        println!("one-way delay at ddd: {count} datagrams, mean {mean_ms:.1} ms");
        assert!(count >= 150.0, "measured every datagram: {count}");
        assert!((20.0..35.0).contains(&mean_ms), "mean {mean_ms:.1} ms");
        fleet.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_path_is_left_for_a_better_one_and_the_move_is_timed() {
    bounded(60, async {
        let (fleet, _stream) = diamond::start().await;
        let link = fleet.link("aaa", "bbb").expect("link");
        let c0 = forwarded(&fleet, "ccc");
        let started = Instant::now();
        // 10 ms → 100 ms: the fast side becomes 110 ms against 50 ms.
        link.impair(Duration::from_millis(100), Duration::ZERO, 0.0)
            .expect("impair");
        let took = wait_forwarding(&fleet, "ccc", c0, 100, Duration::from_secs(20)).await;
        let took = took.expect("routes moved to the other path within 20 s");
        println!(
            "route moved {:.2} s after the delay rose",
            took.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let b1 = forwarded(&fleet, "bbb");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            forwarded(&fleet, "bbb") - b1 < 5,
            "the slow path is no longer used"
        );
        assert!(started.elapsed() < Duration::from_secs(25));
        fleet.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_link_fails_over_in_under_a_second_and_returns_after_hold_down() {
    bounded(90, async {
        let (fleet, stream) = diamond::start().await;
        let link = fleet.link("aaa", "bbb").expect("link");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let transitions = |to: &str| {
            let text = fleet.relay("aaa").metrics_text();
            let name = format!("overlay_relay_link_{to}_total");
            support::sample(&text, &name, &[("peer", "bbb")]).expect("link transitions exported")
        };
        let (ups0, downs0) = (transitions("ups"), transitions("downs"));
        assert!(ups0 >= 1.0, "the link came up once at least");
        let c0 = forwarded(&fleet, "ccc");
        let cut_at = Instant::now();
        link.cut();
        wait_forwarding(&fleet, "ccc", c0, 100, Duration::from_secs(5))
            .await
            .expect("traffic moved to ccc");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let gap = stream.longest_gap(cut_at, Instant::now());
        println!("delivery gap after the cut: {} ms", gap.as_millis());
        assert!(
            gap <= FAILOVER_GAP_BOUND,
            "gap {gap:?}, bound {FAILOVER_GAP_BOUND:?}"
        );
        assert_eq!(ttl_drops(&fleet), 0, "no packet looped");
        assert_eq!(transitions("downs"), downs0 + 1.0, "one transition down");

        // Restore: the link is usable again only after the hold-down (3 s here).
        let b0 = forwarded(&fleet, "bbb");
        let restored_at = Instant::now();
        link.restore();
        let back = wait_forwarding(&fleet, "bbb", b0, 50, Duration::from_secs(15))
            .await
            .expect("traffic came back");
        println!(
            "traffic returned {:.2} s after the restore",
            back.as_secs_f64()
        );
        assert!(
            back >= Duration::from_secs(3),
            "reused before the hold-down: {back:?}"
        );
        assert!(restored_at.elapsed() < Duration::from_secs(15));
        assert_eq!(transitions("ups"), ups0 + 1.0, "and one back up");
        // A blackhole is an outage of a dedicated line, not congestion: the
        // link comes back able to carry what it carried before. (QUIC's rule
        // for persistent congestion would leave it 2 packets in flight, and
        // traffic a reroute moves onto it would queue behind that window
        // until its probes time out.) Its 1 MiB initial window, less one
        // loss reduction (× 0.7), is over 512 KiB.
        let window = support::sample(
            &fleet.relay("aaa").metrics_text(),
            "overlay_relay_link_congestion_window_bytes",
            &[("peer", "bbb")],
        )
        .expect("window exported");
        println!("aaa–bbb congestion window after the blackhole: {window} bytes");
        assert!(window >= 512.0 * 1024.0, "window {window} bytes");
        assert_eq!(stream.duplicates(), 0);
        assert_eq!(ttl_drops(&fleet), 0);
        fleet.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_on_every_link_for_a_minute_does_not_flap_routes() {
    bounded(120, async {
        let (fleet, stream) = diamond::start().await;
        let controller = &fleet.controller.as_ref().expect("controller").shared;
        for (l, link) in fleet.topology.links.iter().zip(&fleet.links) {
            let delay = Duration::from_micros(l.delay_us);
            link.handle().impair(delay, delay / 10, 0.0).expect("±10% jitter");
        }
        // The relays' jitter estimates take a few seconds to follow the new
        // jitter, and a cost may move once as they do (seen: a primary moved
        // 1.7 s in, and another at 9.7 s). The minute counts from there: what
        // it guards against is jitter that keeps moving routes.
        tokio::time::sleep(Duration::from_secs(5)).await;
        // Every node's primary next hop to every destination, sampled every 100 ms.
        let primaries = || -> Vec<Vec<(u32, u32)>> {
            controller
                .tables()
                .tables
                .iter()
                .map(|t| t.entries.iter().map(|(d, e)| (d.0, e.primary.node.0)).collect())
                .collect()
        };
        // The jitter the controller sees on each link, from the relays' reports.
        let seen_jitter = || -> Vec<f64> {
            controller
                .view()
                .links
                .iter()
                .map(|l| l.view.jitter.map_or(0.0, |j| j.as_secs_f64() * 1000.0))
                .collect()
        };
        let start_version = controller.tables().version;
        let mut last = primaries();
        let mut changes = 0;
        // Each change as (seconds in, node, destination, old next hop, new next hop).
        let mut moved: Vec<(f64, u32, u32, u32, u32)> = Vec::new();
        let mut most_jitter = vec![0.0f64; fleet.topology.links.len()];
        let began = Instant::now();
        let until = began + Duration::from_secs(60);
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = primaries();
            if now != last {
                changes += 1;
                let at = began.elapsed().as_secs_f64();
                for (node, (was, is)) in last.iter().zip(&now).enumerate() {
                    for ((d, a), (_, b)) in was.iter().zip(is).filter(|(a, b)| a != b) {
                        moved.push((at, node as u32, *d, *a, *b));
                    }
                }
                last = now;
            }
            for (most, j) in most_jitter.iter_mut().zip(seen_jitter()) {
                *most = most.max(j);
            }
        }
        let versions = controller.tables().version - start_version;
        // Jitter this small is within the cost's allowance (5 ms): versions may
        // move if a cost does anyway (backups can shift); what must not happen
        // is primaries moving back and forth.
        println!("primary next-hop changes in 60 s of ±10% jitter: {changes}; table versions: {versions}; most jitter seen per link (ms): {most_jitter:.2?}");
        println!("changes (s, node, destination, next hop before, after): {moved:.1?}");
        assert!(changes <= 1, "{changes} changes of primary next hops");
        // The controller did hear the jitter: every link's reported jitter is at
        // least a tenth of the ±10% the emulator adds (1 ms on the 10 ms links),
        // so a controller ignoring the reports fails here, not above.
        for ((l, most), link) in fleet.topology.links.iter().zip(&most_jitter).zip(&fleet.topology.links) {
            let floor = l.delay_us as f64 / 1000.0 / 100.0;
            assert!(
                *most >= floor,
                "link {}–{}: jitter seen {most:.3} ms, below {floor:.2} ms",
                fleet.topology.node(link.a).id,
                fleet.topology.node(link.b).id
            );
        }
        assert!(stream.received() > 10_000);
        // Jitter beyond the allowance is priced: with ±35 ms around 50 ms on
        // aaa–ccc (17–23 ms measured), its cost is 2 × (jitter − 5) ms above
        // its one-way floor (min RTT / 2). The cost in force follows in the
        // routes' bands and holds, and the floor wanders with the jitter's
        // minimum, so in force it was 19–35 ms above the floor in four runs;
        // 10 ms is the bound. A controller ignoring jitter has its cost at the
        // floor, within the 5 ms band.
        let t = &fleet.topology;
        let node = |id: &str| t.node_idx(id).expect("node");
        let slow = t.link_between(node("aaa"), node("ccc")).expect("link aaa–ccc").get();
        let ms = Duration::from_millis;
        fleet.link("aaa", "ccc").expect("link").impair(ms(50), ms(35), 0.0).expect("jitter");
        let priced = |l: &controller::view::LinkStatus| -> Option<(f64, f64, f64)> {
            let cost = l.in_force? as f64 / 1000.0;
            let floor = l.view.min_rtt?.as_secs_f64() * 500.0;
            let jitter = l.view.jitter?.as_secs_f64() * 1000.0;
            Some((cost, floor, jitter))
        };
        // Let the floor settle and the cost follow it (hold 3 s), then look.
        tokio::time::sleep(Duration::from_secs(12)).await;
        let seen = priced(&controller.view().links[slow]);
        println!("aaa–ccc with ±35 ms of jitter: (cost in force, one-way floor, jitter) ms: {seen:.1?}");
        assert!(
            seen.is_some_and(|(cost, floor, _)| cost >= floor + 10.0),
            "aaa–ccc: (cost in force, floor, jitter) {seen:.1?} ms: jitter not priced"
        );
        fleet.shutdown().await;
    })
    .await;
}

/// The defect: with the controller away, a cut after the first transit relay
/// (bbb–ddd) black-holed the stream for seconds: bbb had no loop-free
/// alternate and aaa kept sending to it. Now bbb repairs (back through aaa,
/// then ccc, marked so it is not repaired again), within the same bound as a
/// cut next to the ingress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_past_the_first_transit_is_repaired_without_the_controller() {
    bounded(90, async {
        let (mut fleet, stream) = diamond::start().await;
        fleet.stop_controller().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r0 = fleet.relay("bbb").status().counters.sent_via_repair;
        let cut_at = Instant::now();
        fleet.link("bbb", "ddd").expect("link").cut();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let gap = stream.longest_gap(cut_at, Instant::now());
        let repaired = fleet.relay("bbb").status().counters.sent_via_repair - r0;
        println!("gap after a cut past the first transit, controller away: {} ms; bbb repaired {repaired}", gap.as_millis());
        assert!(repaired > 100, "bbb repaired the stream: {repaired}");
        assert!(
            gap <= FAILOVER_GAP_BOUND,
            "gap {gap:?}, bound {FAILOVER_GAP_BOUND:?}"
        );
        assert_eq!(ttl_drops(&fleet), 0, "no packet looped");
        fleet.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_controller_relays_keep_forwarding_and_fail_over_locally() {
    bounded(90, async {
        let (mut fleet, stream) = diamond::start().await;
        let version = fleet.relay("aaa").status().table_version;
        fleet.stop_controller().await;

        // Still forwarding on the last table.
        let n0 = stream.received();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(stream.received() - n0 > 150, "traffic kept flowing");
        assert_eq!(fleet.relay("aaa").status().table_version, version);

        // A cut now: the relay moves to its loop-free backup on its own.
        let c0 = forwarded(&fleet, "ccc");
        let cut_at = Instant::now();
        fleet.link("aaa", "bbb").expect("link").cut();
        wait_forwarding(&fleet, "ccc", c0, 100, Duration::from_secs(5))
            .await
            .expect("local failover");
        tokio::time::sleep(Duration::from_millis(500)).await;
        let gap = stream.longest_gap(cut_at, Instant::now());
        println!("gap with the controller away: {} ms", gap.as_millis());
        assert!(
            gap <= FAILOVER_GAP_BOUND,
            "gap {gap:?}, bound {FAILOVER_GAP_BOUND:?}"
        );
        // Around a dead next hop the relay repairs (node-protecting segments
        // first, the loop-free backup where there is no segment).
        let c = fleet.relay("aaa").status().counters;
        assert!(c.sent_via_repair + c.sent_via_backup > 0, "{c:?}");

        // The controller comes back: it rebuilds from reports and pushes tables
        // that route around the dead link (primary, not just backup).
        fleet.start_controller().await.expect("controller restarts");
        let shared = fleet
            .controller
            .as_ref()
            .expect("controller")
            .shared
            .clone();
        let rebuilt = async {
            loop {
                let route = controller::api::route(&shared, "aaa", "ddd").expect("route");
                let relay_has =
                    fleet.relay("aaa").status().table_version == shared.tables().version;
                if route.path == ["aaa", "ccc", "ddd"] && relay_has {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(15), rebuilt)
            .await
            .expect("state rebuilt and pushed");
        let links = controller::api::links(&shared);
        let ab = links
            .iter()
            .find(|l| l.a == "aaa" && l.b == "bbb")
            .expect("aaa-bbb");
        assert_eq!(ab.state, "down");
        fleet.shutdown().await;
    })
    .await;
}

/// How an echo session went: bytes echoed intact, the longest wait for one
/// echo, and how it ended.
struct Echoed {
    bytes: usize,
    longest: Duration,
    outcome: Result<(), String>,
}

/// An echo session: sends a 1 KiB chunk every 10 ms and checks each echo,
/// until `stop`, then half-closes and reads the target's end of stream.
async fn echo_session(
    mut client: tokio::net::TcpStream,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Echoed {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut bytes = 0;
    let mut longest = Duration::ZERO;
    let mut i = 0u8;
    let ended = |bytes, longest, e: String| Echoed {
        bytes,
        longest,
        outcome: Err(e),
    };
    while !*stop.borrow() {
        let chunk = vec![i; 1024];
        i = i.wrapping_add(1);
        let sent = Instant::now();
        if let Err(e) = client.write_all(&chunk).await {
            return ended(bytes, longest, format!("write: {e}"));
        }
        let mut back = vec![0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(15), client.read_exact(&mut back)).await {
            Ok(Ok(_)) if back == chunk => bytes += 1024,
            Ok(Ok(_)) => return ended(bytes, longest, "corrupted echo".into()),
            Ok(Err(e)) => return ended(bytes, longest, format!("read: {e}")),
            Err(_) => return ended(bytes, longest, "hung: no echo for 15 s".into()),
        }
        longest = longest.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = client.shutdown().await;
    let mut rest = Vec::new();
    let outcome = match client.read_to_end(&mut rest).await {
        Ok(_) if rest.is_empty() => Ok(()),
        Ok(_) => Err(format!("{} bytes after the last echo", rest.len())),
        Err(e) => Err(format!("closing: {e}")),
    };
    Echoed {
        bytes,
        longest,
        outcome,
    }
}

/// The TCP target of the diamond's `signal` service: echoes one session and
/// reports (bytes echoed, how the session ended: "eof", "reset" or "hung").
async fn echo_target(
    fleet: &overlay::fleet::Fleet,
) -> tokio::task::JoinHandle<(usize, &'static str)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The TCP service targets the same address as the media receiver, on TCP.
    let target = fleet
        .topology
        .services
        .iter()
        .find(|s| s.name == "signal")
        .expect("signal")
        .target;
    let listener = tokio::net::TcpListener::bind(target)
        .await
        .expect("bind the TCP target");
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 4096];
        let mut echoed = 0usize;
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
                Ok(Ok(0)) => break "eof",
                Ok(Ok(n)) => {
                    if s.write_all(&buf[..n]).await.is_err() {
                        break "reset";
                    }
                    echoed += n;
                }
                Ok(Err(_)) => break "reset",
                Err(_) => break "hung",
            }
        };
        (echoed, end)
    })
}

/// Sessions resumed at a relay so far.
fn resumed(fleet: &overlay::fleet::Fleet, node: &str) -> u64 {
    fleet.relay(node).status().counters.tcp_resumed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_sessions_survive_cuts_elsewhere_and_cuts_of_their_own_path() {
    bounded(90, async {
        let (fleet, _stream) = diamond::start().await;
        let server = echo_target(&fleet).await;
        let client = tokio::net::TcpStream::connect(fleet.relay("aaa").ingress_addrs["signal"])
            .await
            .expect("connect");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let session = tokio::spawn(echo_session(client, stop_rx));

        // A cut on the other side of the diamond: the session does not notice.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let elsewhere = fleet.link("ccc", "ddd").expect("link");
        elsewhere.cut();
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!session.is_finished(), "a cut elsewhere ended the session");
        assert_eq!(
            resumed(&fleet, "aaa"),
            0,
            "a cut elsewhere moved the session"
        );
        // Back in service: 1 s of answered probes, then the controller's 3 s
        // hold-down, later if QUIC's retransmission backoff from the cut
        // delays the link's return. Cutting bbb–ddd before that would leave
        // ddd unreachable and rightly end the session.
        elsewhere.restore();
        let back = wait_in_service(&fleet, "ccc", "ddd", Duration::from_secs(20))
            .await
            .expect("ccc–ddd back in service");
        println!(
            "ccc–ddd back in service {:.2} s after the restore",
            back.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;

        // A cut on its own path, beyond the first hop: bbb has no loop-free
        // alternate, so the session resumes once the controller moves aaa's
        // route to ccc. Not a byte lost, repeated or reset.
        fleet.link("bbb", "ddd").expect("link").cut();
        tokio::time::sleep(Duration::from_secs(3)).await;
        if session.is_finished() {
            let e = session.await.expect("task");
            panic!(
                "the cut ended the session after {} bytes: {:?}",
                e.bytes, e.outcome
            );
        }
        stop_tx.send(true).expect("stop");
        let echoed = tokio::time::timeout(Duration::from_secs(20), session)
            .await
            .expect("client side ended")
            .expect("task");
        let (echoed_by_server, server_end) = tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("server side ended")
            .expect("task");
        println!(
            "cut bbb–ddd on the path: longest echo {:.0} ms; {} bytes echoed intact; resumed {}",
            echoed.longest.as_secs_f64() * 1000.0,
            echoed.bytes,
            resumed(&fleet, "aaa"),
        );
        assert_eq!(echoed.outcome, Ok(()), "the client saw no break");
        assert_eq!(
            server_end, "eof",
            "the target saw the client's FIN, not a reset"
        );
        assert_eq!(echoed_by_server, echoed.bytes, "every byte once, none lost");
        assert_eq!(resumed(&fleet, "aaa"), 1);
        // Detection (~200 ms), the controller's reroute, the resume, a round trip.
        assert!(
            echoed.longest < Duration::from_secs(3),
            "stalled {:?}",
            echoed.longest
        );
        fleet.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_egress_ends_its_sessions_promptly_on_both_sides() {
    bounded(90, async {
        let (fleet, _stream) = diamond::start().await;
        let server = echo_target(&fleet).await;
        let client = tokio::net::TcpStream::connect(fleet.relay("aaa").ingress_addrs["signal"]).await.expect("connect");
        let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let session = tokio::spawn(echo_session(client, stop_rx));
        tokio::time::sleep(Duration::from_secs(1)).await;

        // Every link of ddd goes dark: to the fleet it is what a crash looks
        // like. The controller finds ddd unreachable and both ends give up at
        // once, long before the 20 s resume timeout.
        let cut_at = Instant::now();
        fleet.link("bbb", "ddd").expect("link").cut();
        fleet.link("ccc", "ddd").expect("link").cut();
        let echoed = tokio::time::timeout(Duration::from_secs(30), session).await.expect("client side ended").expect("task");
        let client_after = cut_at.elapsed();
        let (_, server_end) = tokio::time::timeout(Duration::from_secs(30), server).await.expect("server side ended").expect("task");
        let server_after = cut_at.elapsed();
        println!(
            "egress cut off: the client saw {:?} after {:.1} s, the target saw {server_end} after {:.1} s",
            echoed.outcome,
            client_after.as_secs_f64(),
            server_after.as_secs_f64()
        );
        assert!(echoed.outcome.as_ref().is_err_and(|e| e.contains("reset")), "{:?}", echoed.outcome);
        assert_eq!(server_end, "reset");
        assert!(client_after < Duration::from_secs(3), "{client_after:?}");
        assert!(server_after < Duration::from_secs(3), "{server_after:?}");
        let failures = &fleet.relay("aaa").status().counters.tcp_resume_failures;
        assert_eq!(failures.get("unreachable"), Some(&1), "{failures:?}");
        fleet.shutdown().await;
    })
    .await;
}
