//! Benchmark 2: throughput. The most packets/s (and Mbit/s) a chain of relays
//! carries with loss at or under 0.1%, for 200-byte (audio) and 1200-byte (video)
//! datagrams, against a chain of plain UDP forwarders (one thread each, no
//! encryption, no header) of the same length measured in the same run, and
//! against the load generator sending straight to the receiver (its ceiling).
//!
//! Method: offer a paced rate for one second, count what arrives; raise the rate
//! by half until loss exceeds 0.1% in two trials running, then bisect between
//! the last rate that passed and the first that failed. The generator, the receiver and whatever forwards
//! share the machine's cores, as in the other benchmarks.
//!
//! Run: `cargo bench --bench throughput` (about 3 minutes).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[path = "support/procfs.rs"]
mod procfs;
mod support;
use procfs::udp_rcvbuf_errors;
use support::start_chain;

const LOSS_LIMIT: f64 = 0.001;

/// The receiver's count of arrivals for the current step.
#[derive(Clone)]
struct Tally {
    step: Arc<AtomicU32>,
    received: Arc<AtomicU64>,
}

/// Counts arrivals tagged with the current step; late packets of earlier steps
/// are ignored.
struct Receiver {
    addr: SocketAddr,
    tally: Tally,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let socket = bound_socket("127.0.0.1:0".parse().expect("addr"));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let (step, received, stop) = (
            Arc::new(AtomicU32::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (s, r, st) = (step.clone(), received.clone(), stop.clone());
        let addr = socket.local_addr().expect("addr");
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    if n >= 4
                        && u32::from_be_bytes(buf[..4].try_into().expect("4"))
                            == s.load(Ordering::Relaxed)
                    {
                        r.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Receiver {
            addr,
            tally: Tally { step, received },
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A UDP socket with the largest receive buffer the host allows (the same for
/// every system measured, so the receiver is not what overflows).
fn bound_socket(addr: SocketAddr) -> UdpSocket {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into()).expect("bind");
    socket.into()
}

/// A plain forwarder: every datagram received is sent on to `next`, unchanged.
struct PlainForwarder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PlainForwarder {
    fn start(next: SocketAddr) -> PlainForwarder {
        let socket = bound_socket("127.0.0.1:0".parse().expect("addr"));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let _ = socket.send_to(&buf[..n], next);
                }
            }
        });
        PlainForwarder {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for PlainForwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One step's outcome.
struct Step {
    sent: u64,
    received: u64,
    /// The rate the generator really offered (it falls behind at its ceiling).
    achieved: f64,
}

/// Steps are numbered across the whole run, so no late packet counts twice.
static NEXT_STEP: AtomicU32 = AtomicU32::new(1);

/// Offers `rate` packets/s of `size` bytes to `dst` for `duration`, tagged with
/// a new step number; counts what arrives.
fn offer(
    sender: &UdpSocket,
    tally: &Tally,
    dst: SocketAddr,
    size: usize,
    rate: u64,
    duration: Duration,
) -> Step {
    let step = NEXT_STEP.fetch_add(1, Ordering::Relaxed);
    tally.step.store(step, Ordering::Relaxed);
    tally.received.store(0, Ordering::Relaxed);
    let mut packet = vec![0u8; size];
    packet[..4].copy_from_slice(&step.to_be_bytes());
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        if sent >= due {
            std::thread::sleep(Duration::from_micros(100));
            continue;
        }
        while sent < due {
            packet[4..12].copy_from_slice(&sent.to_be_bytes());
            // A full socket buffer means the generator is the limit: retry, don't drop.
            while sender.send_to(&packet, dst).is_err() {
                std::hint::spin_loop();
            }
            sent += 1;
        }
    }
    let offered_for = start.elapsed();
    // Let the tail drain: everything in flight arrives within this.
    std::thread::sleep(Duration::from_millis(250));
    Step {
        sent,
        received: tally.received.load(Ordering::Relaxed),
        achieved: sent as f64 / offered_for.as_secs_f64(),
    }
}

struct Found {
    /// The highest rate with loss ≤ 0.1%.
    rate: u64,
    /// Loss at that rate, and at the first rate that failed (if any).
    loss: f64,
    failed_at: Option<(u64, Failure)>,
}

#[derive(Clone, Copy)]
enum Failure {
    Loss(f64),
    /// The generator could not offer the rate (more than 3% short).
    GeneratorLimit(f64),
}

/// Raises the rate until loss exceeds the limit, then bisects.
fn find_max(send: &dyn Fn(u64) -> Step, start: u64, bisections: u32) -> Found {
    let trial = |rate: u64| {
        let full_buffers = udp_rcvbuf_errors();
        let s = send(rate);
        let full_buffers = udp_rcvbuf_errors() - full_buffers;
        if std::env::var_os("THROUGHPUT_TRACE").is_some() {
            eprintln!(
                "  {rate}/s: sent {} received {} (kernel: {full_buffers} dropped at full receive buffers)",
                s.sent, s.received
            );
        }
        let loss = 1.0 - s.received as f64 / s.sent.max(1) as f64;
        if s.achieved < rate as f64 * 0.97 {
            Err(Failure::GeneratorLimit(s.achieved))
        } else if loss > LOSS_LIMIT {
            Err(Failure::Loss(loss))
        } else {
            Ok(loss)
        }
    };
    // A rate fails only if a second trial fails too: one stall of the shared
    // machine should not end the search.
    let measure = |rate: u64| trial(rate).or_else(|_| trial(rate));
    let mut pass: Option<(u64, f64)> = None;
    let mut fail: Option<(u64, Failure)> = None;
    let mut rate = start;
    while fail.is_none() && rate <= 2_000_000 {
        match measure(rate) {
            Ok(loss) => {
                pass = Some((rate, loss));
                rate = rate * 3 / 2;
            }
            Err(f) => fail = Some((rate, f)),
        }
    }
    for _ in 0..bisections {
        let (Some((lo, _)), Some((hi, _))) = (pass, fail) else {
            break;
        };
        let mid = (lo + hi) / 2;
        match measure(mid) {
            Ok(loss) => pass = Some((mid, loss)),
            Err(f) => fail = Some((mid, f)),
        }
    }
    let (rate, loss) = pass.unwrap_or((0, 1.0));
    Found {
        rate,
        loss,
        failed_at: fail,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (duration, bisections, start_rate) = if full {
        (Duration::from_secs(1), 3, 10_000)
    } else {
        (Duration::from_millis(200), 0, 2_000)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let receiver = Receiver::start();
    let sender = UdpSocket::bind("127.0.0.1:0").expect("sender");

    println!(
        "highest rate with loss <= {:.1}%, {} s per step; ratio = overlay / plain forwarders of the same length",
        LOSS_LIMIT * 100.0,
        duration.as_secs_f64()
    );
    println!(
        "{:<6} {:<30} {:>10} {:>9} {:>8} {:>20} {:>7}",
        "bytes", "path", "packets/s", "Mbit/s", "loss", "first failing rate", "ratio"
    );
    let sizes: &[usize] = if full { &[200, 1200] } else { &[200] };
    for &size in sizes {
        let print = |name: &str, f: &Found, baseline: Option<&Found>| {
            let mbit = f.rate as f64 * size as f64 * 8.0 / 1e6;
            let failed = match f.failed_at {
                None => "none".to_string(),
                Some((r, Failure::Loss(l))) => format!("{r} ({:.2}% lost)", l * 100.0),
                Some((r, Failure::GeneratorLimit(a))) => format!("{r} (sent {a:.0}/s)"),
            };
            let ratio = baseline.map_or("-".to_string(), |b| {
                format!("{:.2}", f.rate as f64 / b.rate.max(1) as f64)
            });
            println!(
                "{size:<6} {name:<30} {:>10} {mbit:>9.1} {:>7.3}% {failed:>20} {ratio:>7}",
                f.rate,
                f.loss * 100.0
            );
        };
        let direct = find_max(
            &|rate| {
                offer(
                    &sender,
                    &receiver.tally,
                    receiver.addr,
                    size,
                    rate,
                    duration,
                )
            },
            start_rate,
            bisections,
        );
        print("direct (generator ceiling)", &direct, None);
        for relays in [2usize, 3] {
            let plain = {
                let mut next = receiver.addr;
                let mut chain = Vec::new();
                for _ in 0..relays {
                    let f = PlainForwarder::start(next);
                    next = f.addr;
                    chain.push(f);
                }
                find_max(
                    &|rate| offer(&sender, &receiver.tally, next, size, rate, duration),
                    start_rate,
                    bisections,
                )
            };
            print(&format!("plain UDP, {relays} forwarders"), &plain, None);
            let overlay = runtime.block_on(async {
                let (fleet, ingress) = start_chain(relays, receiver.addr).await;
                let sender = sender.try_clone().expect("clone");
                let tally = receiver.tally.clone();
                let found = tokio::task::spawn_blocking(move || {
                    // The first packets set up the flow at both ends: not measured.
                    offer(
                        &sender,
                        &tally,
                        ingress,
                        size,
                        2_000,
                        Duration::from_millis(300),
                    );
                    find_max(
                        &|rate| offer(&sender, &tally, ingress, size, rate, duration),
                        start_rate,
                        bisections,
                    )
                })
                .await
                .expect("measure");
                let mut drops = std::collections::BTreeMap::new();
                for relay in fleet.relays.values() {
                    for (reason, n) in relay.status().counters.drops {
                        *drops.entry(reason).or_insert(0u64) += n;
                    }
                }
                drops.retain(|_, n| *n > 0);
                fleet.shutdown().await;
                (found, drops)
            });
            let (overlay, drops) = overlay;
            print(
                &format!(
                    "overlay, {relays} relays ({} hop{})",
                    relays - 1,
                    if relays == 2 { "" } else { "s" }
                ),
                &overlay,
                Some(&plain),
            );
            if !drops.is_empty() {
                println!(
                    "{:<6} (drops counted by the relays over the search: {drops:?})",
                    ""
                );
            }
        }
    }
}
