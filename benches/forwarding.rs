//! Benchmark 1: forwarding latency. 200-byte UDP datagrams through chains of
//! relays on loopback (no emulated delay: this measures the relays themselves)
//! against the same traffic sent directly, at 1k, 10k and 50k packets/s. Prints
//! one-way latency percentiles and the latency each overlay hop adds.
//!
//! "N hops" is N QUIC links: N + 1 relays (a service needs an ingress and an
//! egress relay, so the shortest overlay path is one hop through two relays).
//!
//! Run: `cargo bench --bench forwarding` (about a minute).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

mod support;
use support::{epoch, start_chain};

const PACKET: usize = 200;
/// The first packets set up the flow (egress socket): not counted.
const WARMUP: u32 = 200;

struct Result {
    sent: u32,
    received: u64,
    one_way_us: Histogram<u64>,
}

/// Sends `count` packets at `rate` to `dst`; the receiver socket records latency.
fn measure(receiver: &UdpSocket, dst: SocketAddr, rate: u32, count: u32) -> Result {
    let stop = Arc::new(AtomicBool::new(false));
    let rx = receiver.try_clone().expect("clone receiver");
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let stopping = stop.clone();
    let recorder = std::thread::spawn(move || {
        let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000, 3).expect("bounds");
        let mut received = 0u64;
        let mut buf = [0u8; 2048];
        let mut quiet_since: Option<Instant> = None;
        loop {
            match rx.recv(&mut buf) {
                Ok(n) if n >= 12 => {
                    quiet_since = None;
                    let seq = u32::from_be_bytes(buf[0..4].try_into().expect("4 bytes"));
                    let sent_ns = u64::from_be_bytes(buf[4..12].try_into().expect("8 bytes"));
                    if seq >= WARMUP {
                        let now_ns = epoch().elapsed().as_nanos() as u64;
                        h.saturating_record((now_ns.saturating_sub(sent_ns) / 1000).max(1));
                        received += 1;
                    }
                }
                Ok(_) => {}
                Err(_) if stopping.load(Ordering::Relaxed) => {
                    let quiet = *quiet_since.get_or_insert_with(Instant::now);
                    if quiet.elapsed() > Duration::from_millis(300) {
                        return (h, received);
                    }
                }
                Err(_) => {}
            }
        }
    });
    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    let mut packet = [0u8; PACKET];
    let start = Instant::now();
    let gap = Duration::from_secs(1) / rate;
    for seq in 0..count + WARMUP {
        let due = start + gap * seq;
        loop {
            let now = Instant::now();
            if now >= due {
                break;
            }
            if due - now > Duration::from_micros(200) {
                std::thread::sleep(due - now - Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
        }
        packet[0..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..12].copy_from_slice(&(epoch().elapsed().as_nanos() as u64).to_be_bytes());
        let _ = sender.send_to(&packet, dst);
    }
    stop.store(true, Ordering::Relaxed);
    let (one_way_us, received) = recorder.join().expect("recorder");
    Result {
        sent: count,
        received,
        one_way_us,
    }
}

fn main() {
    // `cargo bench` passes --bench; anything else (e.g. a test run) gets a short smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let seconds = if full { 3 } else { 1 };
    let rates: &[u32] = if full {
        &[1_000, 10_000, 50_000]
    } else {
        &[1_000]
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _ = epoch();

    println!("one-way latency of {PACKET}-byte UDP datagrams on loopback, µs (hdrhistogram); {seconds} s per row");
    println!(
        "{:<18} {:>7} {:>8} {:>7} {:>7} {:>7} {:>8}   {:>13} {:>9} {:>11}",
        "path", "rate/s", "packets", "lost", "p50", "p99", "p99.9", "added/hop p50", "p99", "p99.9"
    );
    for &rate in rates {
        let count = rate * seconds;
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
        let target = receiver.local_addr().expect("addr");
        let direct = measure(&receiver, target, rate, count);
        let q = |r: &Result, p: f64| r.one_way_us.value_at_quantile(p) as i64;
        let row = |name: &str, r: &Result, hops: i64| {
            let lost = i64::from(r.sent) - r.received as i64;
            let added = |p: f64| {
                if hops == 0 {
                    "-".to_string()
                } else {
                    format!("{}", (q(r, p) - q(&direct, p)) / hops)
                }
            };
            println!(
                "{name:<18} {rate:>7} {:>8} {lost:>7} {:>7} {:>7} {:>8}   {:>13} {:>9} {:>11}",
                r.sent,
                q(r, 0.5),
                q(r, 0.99),
                q(r, 0.999),
                added(0.5),
                added(0.99),
                added(0.999)
            );
        };
        row("direct", &direct, 0);
        for hops in 1..=3usize {
            let result = runtime.block_on(async {
                let (fleet, ingress) = start_chain(hops + 1, target).await;
                let rx = receiver.try_clone().expect("clone");
                let r = tokio::task::spawn_blocking(move || measure(&rx, ingress, rate, count))
                    .await
                    .expect("measure");
                fleet.shutdown().await;
                r
            });
            row(
                &format!(
                    "{hops} hop{} ({} relays)",
                    if hops == 1 { "" } else { "s" },
                    hops + 1
                ),
                &result,
                hops as i64,
            );
        }
    }
}
