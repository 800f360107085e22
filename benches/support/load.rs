//! Load for forwarding benchmarks: one receiver thread that counts (and, when
//! asked, times) what arrives, a spin-paced latency prober and a burst-paced
//! rate generator. Datagrams carry `[step u32][sent ns u64][seq u32]`, so late
//! arrivals from an earlier step never count. Include with
//! `#[path = "support/load.rs"] mod load;` next to `mod support;`.

#![allow(dead_code)] // not every bench uses every helper

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::support::now_ns;

/// Arrivals for the current step, written by the receiver thread.
#[derive(Debug)]
struct Tally {
    step: AtomicU32,
    received: AtomicU64,
    /// Datagrams with a smaller sequence number set up flows: not timed.
    warmup: AtomicU32,
    timing: AtomicBool,
    one_way_us: Mutex<Histogram<u64>>,
}

/// The sink every path delivers to.
#[derive(Debug)]
pub struct Receiver {
    pub addr: SocketAddr,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    next_step: AtomicU32,
}

/// A UDP socket with a 4 MiB receive buffer (what the relays ask for too), so
/// the receiver is not what overflows.
pub fn bound_socket(addr: SocketAddr) -> UdpSocket {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
    let _ = socket.set_recv_buffer_size(4 << 20);
    socket.bind(&addr.into()).expect("bind");
    socket.into()
}

impl Receiver {
    pub fn start() -> Receiver {
        let socket = bound_socket("127.0.0.1:0".parse().expect("addr"));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let tally = Arc::new(Tally {
            step: AtomicU32::new(0),
            received: AtomicU64::new(0),
            warmup: AtomicU32::new(0),
            timing: AtomicBool::new(false),
            one_way_us: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            ),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (t, st) = (tally.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("sink".into())
            .spawn(move || {
                let mut buf = [0u8; 2048];
                while !st.load(Ordering::Relaxed) {
                    let Ok(n) = socket.recv(&mut buf) else {
                        continue;
                    };
                    if n < 16 || read_u32(&buf, 0) != t.step.load(Ordering::Relaxed) {
                        continue;
                    }
                    if read_u32(&buf, 12) < t.warmup.load(Ordering::Relaxed) {
                        continue;
                    }
                    t.received.fetch_add(1, Ordering::Relaxed);
                    if t.timing.load(Ordering::Relaxed) {
                        let sent = u64::from_be_bytes(buf[4..12].try_into().expect("8 bytes"));
                        let us = (now_ns().saturating_sub(sent) / 1000).max(1);
                        t.one_way_us
                            .lock()
                            .expect("histogram lock")
                            .saturating_record(us);
                    }
                }
            })
            .expect("spawn receiver");
        Receiver {
            addr,
            tally,
            stop,
            thread: Some(thread),
            next_step: AtomicU32::new(1),
        }
    }

    /// Starts a new step: earlier arrivals stop counting.
    fn begin(&self, warmup: u32, timing: bool) -> u32 {
        let step = self.next_step.fetch_add(1, Ordering::Relaxed);
        let t = &self.tally;
        t.timing.store(false, Ordering::Relaxed);
        t.step.store(step, Ordering::Relaxed);
        t.warmup.store(warmup, Ordering::Relaxed);
        t.received.store(0, Ordering::Relaxed);
        t.one_way_us.lock().expect("histogram lock").reset();
        t.timing.store(timing, Ordering::Relaxed);
        step
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

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn stamp(packet: &mut [u8], step: u32, seq: u32) {
    packet[0..4].copy_from_slice(&step.to_be_bytes());
    packet[4..12].copy_from_slice(&now_ns().to_be_bytes());
    packet[12..16].copy_from_slice(&seq.to_be_bytes());
}

/// Everything in flight arrives within this after the last send.
const DRAIN: Duration = Duration::from_millis(200);

/// One latency run.
#[derive(Debug)]
pub struct Latency {
    pub sent: u64,
    pub received: u64,
    pub one_way_us: Histogram<u64>,
}

/// Sends `warmup + count` datagrams of `size` bytes at `rate`, each at its due
/// time (sleeping, then spinning the last 100 µs), and times the last `count`.
pub fn latency(
    rx: &Receiver,
    sender: &UdpSocket,
    dst: SocketAddr,
    size: usize,
    rate: u32,
    count: u32,
    warmup: u32,
) -> Latency {
    let step = rx.begin(warmup, true);
    let mut packet = vec![0u8; size.max(16)];
    let gap = Duration::from_secs(1) / rate;
    let start = Instant::now();
    for seq in 0..warmup + count {
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
        stamp(&mut packet, step, seq);
        let _ = sender.send_to(&packet, dst);
    }
    std::thread::sleep(DRAIN);
    let t = &rx.tally;
    t.timing.store(false, Ordering::Relaxed);
    Latency {
        sent: u64::from(count),
        received: t.received.load(Ordering::Relaxed),
        one_way_us: t.one_way_us.lock().expect("histogram lock").clone(),
    }
}

/// One step of offered load.
#[derive(Debug, Clone, Copy)]
pub struct Offered {
    pub sent: u64,
    pub received: u64,
    /// The rate really offered (the generator falls behind at its ceiling).
    pub achieved: f64,
}

impl Offered {
    pub fn loss(&self) -> f64 {
        1.0 - self.received as f64 / self.sent.max(1) as f64
    }
}

/// Offers `rate` datagrams/s of `size` bytes to `dst` for `duration`: each
/// 100 µs it sends what is due, retrying on a full socket buffer (then the
/// generator is the limit, and `achieved` says so).
pub fn offer(
    rx: &Receiver,
    sender: &UdpSocket,
    dst: SocketAddr,
    size: usize,
    rate: u64,
    duration: Duration,
) -> Offered {
    let step = rx.begin(0, false);
    let mut packet = vec![0u8; size.max(16)];
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
            stamp(&mut packet, step, sent as u32);
            while sender.send_to(&packet, dst).is_err() {
                std::hint::spin_loop();
            }
            sent += 1;
        }
    }
    let offered_for = start.elapsed();
    std::thread::sleep(DRAIN);
    Offered {
        sent,
        received: rx.tally.received.load(Ordering::Relaxed),
        achieved: sent as f64 / offered_for.as_secs_f64(),
    }
}

/// The highest rate a path carries with loss at or under `loss_limit`: raise
/// the rate by half from `start` until a rate fails twice running (one stall
/// of a shared machine should not end the search), then bisect `bisections`
/// times. A rate fails on loss, or when the generator falls 3% short of it.
pub fn max_lossless(
    send: &mut dyn FnMut(u64) -> Offered,
    start: u64,
    bisections: u32,
    loss_limit: f64,
) -> (u64, Offered) {
    let mut trial = |rate: u64| {
        let s = send(rate);
        let ok = s.achieved >= rate as f64 * 0.97 && s.loss() <= loss_limit;
        if std::env::var_os("BENCH_TRACE").is_some() {
            eprintln!(
                "    {rate}/s: sent {} received {} ({:.3}% lost, offered {:.0}/s)",
                s.sent,
                s.received,
                s.loss() * 100.0,
                s.achieved
            );
        }
        (ok, s)
    };
    let mut measure = |rate: u64| {
        let (ok, s) = trial(rate);
        if ok {
            (ok, s)
        } else {
            trial(rate)
        }
    };
    let mut pass: Option<(u64, Offered)> = None;
    let mut fail: Option<u64> = None;
    let mut rate = start;
    while fail.is_none() && rate <= 2_000_000 {
        match measure(rate) {
            (true, s) => {
                pass = Some((rate, s));
                rate = rate * 3 / 2;
            }
            (false, _) => fail = Some(rate),
        }
    }
    for _ in 0..bisections {
        let (Some((lo, _)), Some(hi)) = (pass, fail) else {
            break;
        };
        let mid = (lo + hi) / 2;
        match measure(mid) {
            (true, s) => pass = Some((mid, s)),
            (false, _) => fail = Some(mid),
        }
    }
    pass.unwrap_or((
        0,
        Offered {
            sent: 0,
            received: 0,
            achieved: 0.0,
        },
    ))
}
