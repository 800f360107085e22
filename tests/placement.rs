//! Placement end to end: more media between two cities than the fast line's
//! ceiling, on emulated lines with real bandwidth limits. Delay-only routing
//! would push it all onto the fast line and overflow it; the controller
//! places the surplus on the slow line, the ingress marks each flow's packets
//! with its placed path, and nothing is lost to congestion.

mod support;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use overlay::fleet::{Fleet, FleetOptions};

/// The diamond of `support::diamond` with 2 Mbit/s lines each way.
fn diamond(target: std::net::SocketAddr) -> topology::Topology {
    let yaml = format!(
        "version: 1\nnodes:\n\
         \x20 - {{ id: aaa, city: A, country: JP, region: asia, lat: 35.0, lon: 139.0, addr: \"127.0.0.1:1\" }}\n\
         \x20 - {{ id: bbb, city: B, country: JP, region: asia, lat: 36.0, lon: 140.0, addr: \"127.0.0.1:2\" }}\n\
         \x20 - {{ id: ccc, city: C, country: JP, region: asia, lat: 34.0, lon: 138.0, addr: \"127.0.0.1:3\" }}\n\
         \x20 - {{ id: ddd, city: D, country: US, region: na, lat: 34.0, lon: -118.0, addr: \"127.0.0.1:4\" }}\n\
         links:\n\
         \x20 - {{ between: [aaa, bbb], kind: terrestrial, delay_ms: 10, capacity_mbps: 100 }}\n\
         \x20 - {{ between: [bbb, ddd], kind: undersea, name: fast-line, delay_ms: 10, capacity_mbps: 2 }}\n\
         \x20 - {{ between: [aaa, ccc], kind: terrestrial, delay_ms: 25, capacity_mbps: 100 }}\n\
         \x20 - {{ between: [ccc, ddd], kind: undersea, name: slow-line, delay_ms: 25, capacity_mbps: 2 }}\n\
         services:\n\
         \x20 - {{ name: media, protocol: udp, ingress: {{ node: aaa, listen: \"127.0.0.1:0\" }}, egress: {{ node: ddd, target: \"{target}\" }} }}\n"
    );
    topology::parse("diamond.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"))
}

/// Flows and their pace: 28 × 400 B every 40 ms = 28 × 98 kbit/s on a link
/// (payload and the overlay's 90 bytes a packet) ≈ 2.7 Mbit/s, past the fast
/// line's 2 Mbit/s (the emulator counts the QUIC packets' UDP payload: about
/// 2.6 Mbit/s of it).
const FLOWS: usize = 28;
const PACKET: usize = 400;
const EVERY: Duration = Duration::from_millis(40);

/// What a measured window saw.
#[derive(Debug)]
struct Window {
    offered: u64,
    delivered: u64,
    fast_mbps: f64,
    slow_mbps: f64,
    /// Datagrams the lines' queues dropped for want of bandwidth.
    congestion_drops: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_past_a_lines_ceiling_is_placed_over_both_lines_without_loss() {
    let _one = support::FLEET_TESTS.lock().await;
    let w = tokio::time::timeout(Duration::from_secs(90), run(true))
        .await
        .expect("test timed out");
    assert!(
        w.slow_mbps > 0.3 && w.fast_mbps > 0.3,
        "both lines carry a share: {w:?}"
    );
    // Margin: the debug-built relays on 2 cores stall now and then and pass
    // on a burst that a 2 Mbit/s line's 50 ms queue cannot hold; those drops
    // stay under 1% (the control below loses over 10%).
    assert!(
        (w.congestion_drops as f64) < 0.01 * w.offered as f64,
        "the lines drop almost nothing for want of bandwidth once placed: {w:?}"
    );
    assert!(
        w.delivered as f64 >= 0.98 * w.offered as f64,
        "delivered: {w:?}"
    );
}

/// The control: the same traffic with placement off goes where the routes
/// send it, all on one line at a time, which overflows (so the test above
/// measures what placement does). The loss is congestion's, and that of the
/// fast line going down when its queue drops the probes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_placement_the_same_media_overflows_the_fast_line() {
    let _one = support::FLEET_TESTS.lock().await;
    let w = tokio::time::timeout(Duration::from_secs(90), run(false))
        .await
        .expect("test timed out");
    assert!(
        (w.delivered as f64) < 0.90 * w.offered as f64,
        "more than 10% lost: {w:?}"
    );
}

/// Runs the diamond with the media, placement on or off, and measures a
/// 4-second window once placement has taken effect (or after 5 s without).
async fn run(placement: bool) -> Window {
    {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let target = receiver.local_addr().expect("addr");
        let fleet = Fleet::start(
            diamond(target),
            FleetOptions {
                jitter: 0.0,
                capacity_scale: Some(1.0),
                tune_controller: if placement {
                    |c| c.placement.interval = Duration::from_secs(1)
                } else {
                    |c| c.placement.enabled = false
                },
                ..FleetOptions::default()
            },
        )
        .await
        .expect("fleet");
        fleet
            .wait_ready(Duration::from_secs(20))
            .await
            .expect("ready");
        let ingress = fleet.relay("aaa").ingress_addrs["media"];

        let stop = Arc::new(AtomicBool::new(false));
        let (sent, got) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, st) = (sent.clone(), stop.clone());
        let sender = std::thread::spawn(move || {
            let sockets: Vec<UdpSocket> = (0..FLOWS)
                .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
                .collect();
            let packet = [7u8; PACKET];
            // Flows take turns across each interval, as independent
            // classrooms would, rather than all sending at one instant.
            let mut next = Instant::now();
            while !st.load(Ordering::Relaxed) {
                for socket in &sockets {
                    if socket.send_to(&packet, ingress).is_ok() {
                        s.fetch_add(1, Ordering::Relaxed);
                    }
                    next += EVERY / FLOWS as u32;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
            }
        });
        let (g, st) = (got.clone(), stop.clone());
        receiver
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let counter = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                if receiver.recv(&mut buf).is_ok() {
                    g.fetch_add(1, Ordering::Relaxed);
                }
            }
        });

        // Demand is reported each second and placed each second: wait until
        // the ingress sends on placed paths, then give the split a moment.
        let placed = |f: &Fleet| f.relay("aaa").status().counters.sent_on_placed_path;
        let waited = Instant::now();
        if placement {
            while placed(&fleet) == 0 && waited.elapsed() < Duration::from_secs(20) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert!(
                placed(&fleet) > 0,
                "no datagram went on a placed path in 20 s"
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        } else {
            tokio::time::sleep(Duration::from_secs(5)).await;
            assert_eq!(placed(&fleet), 0, "placement is off");
        }
        let placed_after = waited.elapsed();

        // A measured window: what went in, what came out, what each line carried.
        let fast = fleet.link("bbb", "ddd").expect("fast line");
        let slow = fleet.link("ccc", "ddd").expect("slow line");
        let line = |h: &emulator::LinkHandle| {
            let s = h.stats();
            (
                s.a_to_b.forwarded_bytes + s.b_to_a.forwarded_bytes,
                s.a_to_b.dropped_congestion + s.b_to_a.dropped_congestion,
            )
        };
        let (fast0, slow0) = (line(&fast), line(&slow));
        let (sent0, got0) = (sent.load(Ordering::Relaxed), got.load(Ordering::Relaxed));
        let window = Duration::from_secs(4);
        tokio::time::sleep(window).await;
        let (sent1, got1) = (sent.load(Ordering::Relaxed), got.load(Ordering::Relaxed));
        let (fast1, slow1) = (line(&fast), line(&slow));
        stop.store(true, Ordering::Relaxed);
        let _ = (sender.join(), counter.join());

        let mbps = |bytes: u64| bytes as f64 * 8.0 / window.as_secs_f64() / 1e6;
        let (fast_mbps, slow_mbps) = (mbps(fast1.0 - fast0.0), mbps(slow1.0 - slow0.0));
        let (offered, delivered) = (sent1 - sent0, got1 - got0);
        eprintln!(
            "placement {placement}, window from {placed_after:?}; in it: {delivered} of {offered} delivered, \
             fast line {fast_mbps:.2} Mbit/s ({} dropped), slow line {slow_mbps:.2} Mbit/s ({} dropped)",
            fast1.1 - fast0.1,
            slow1.1 - slow0.1
        );
        fleet.shutdown().await;
        Window {
            offered,
            delivered,
            fast_mbps,
            slow_mbps,
            congestion_drops: (fast1.1 - fast0.1) + (slow1.1 - slow0.1),
        }
    }
}
