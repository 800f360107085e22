//! Benchmark 8: against nginx. The same chains measured side by side in one
//! run: plain UDP forwarders (one thread each), nginx as a UDP stream proxy
//! (one instance with 1 worker per forwarder, in two session modes) and the
//! overlay's relays, each as a 1-hop chain (2 forwarders) and a 2-hop chain
//! (3 forwarders), all on loopback. Per chain: added one-way latency per hop
//! (p50, p99) of 200-byte datagrams at 1k and 10k datagrams/s against the
//! generator sending straight to the receiver; the highest rate of 1,200-byte
//! datagrams carried with loss at or under 0.1%; and the forwarders' CPU
//! seconds per GB delivered at 100 Mbit/s and at that highest rate. Repeated
//! with the order of the systems rotated; tables give medians and ratios.
//!
//! CPU is charged to what forwards: the relays' runtime worker threads (the
//! relays run in this process, on one 2-worker runtime, as in the other
//! benches), the plain forwarder threads, and each nginx worker process.
//!
//! Run: `cargo bench --bench against_nginx` (about 6 minutes; 2 with `BENCH_REPS=1`). Needs nginx with
//! the stream module (`apt-get install nginx-light libnginx-mod-stream`, or
//! `NGINX=/path/to/nginx`); without it the nginx rows are skipped with a note.
//! `BENCH_REPS=1` for one repetition, `BENCH_TRACE=1` to print every step.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

#[path = "support/load.rs"]
mod load;
#[path = "support/nginx.rs"]
mod nginx;
#[path = "support/procfs.rs"]
mod procfs;
mod support;

use load::Receiver;

const LATENCY_BYTES: usize = 200;
const THROUGHPUT_BYTES: usize = 1200;
const LOSS_LIMIT: f64 = 0.001;
const LATENCY_RATES: [u32; 2] = [1_000, 10_000];
/// 100 Mbit/s of 1,200-byte datagrams.
const RATE_100_MBIT: u64 = 100_000_000 / 8 / THROUGHPUT_BYTES as u64;
/// Thread-name prefixes CPU is read by (`/proc/self/task/*/comm`).
const RELAY_THREADS: &str = "relay-rt";
const PLAIN_THREADS: &str = "plainfwd";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum System {
    Plain,
    Nginx(nginx::Sessions),
    Overlay,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Plain => "plain UDP forwarder",
            System::Nginx(nginx::Sessions::PerDatagram) => "nginx, proxy_responses 0",
            System::Nginx(nginx::Sessions::Kept) => "nginx, session kept",
            System::Overlay => "overlay relays",
        }
    }
}

/// The plain baseline: every datagram received is sent on to `next`, one
/// blocking `recv`/`send_to` pair per datagram, nothing added.
#[derive(Debug)]
struct PlainForwarder {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PlainForwarder {
    fn start(next: SocketAddr) -> PlainForwarder {
        let socket = load::bound_socket("127.0.0.1:0".parse().expect("addr"));
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = socket.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name(PLAIN_THREADS.into())
            .spawn(move || {
                let mut buf = [0u8; 2048];
                while !st.load(Ordering::Relaxed) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        let _ = socket.send_to(&buf[..n], next);
                    }
                }
            })
            .expect("spawn forwarder");
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

/// A chain of forwarders, running.
enum Running {
    /// Held for their `Drop`, which stops them.
    Plain {
        _forwarders: Vec<PlainForwarder>,
    },
    Nginx(Vec<nginx::Instance>),
    Overlay(Box<overlay::fleet::Fleet>),
}

impl Running {
    /// CPU nanoseconds the chain's forwarders have used so far.
    fn cpu_ns(&self) -> u64 {
        match self {
            Running::Plain { .. } => procfs::own_threads_cpu_ns(PLAIN_THREADS),
            Running::Nginx(instances) => instances
                .iter()
                .map(|i| procfs::process_cpu_ns(i.worker))
                .sum(),
            Running::Overlay(_) => procfs::own_threads_cpu_ns(RELAY_THREADS),
        }
    }
}

/// Starts a chain of `forwarders` delivering to `target`; returns it with its
/// entry address.
fn start(
    system: System,
    forwarders: usize,
    target: SocketAddr,
    runtime: &tokio::runtime::Runtime,
    nginx: Option<&nginx::Nginx>,
) -> (Running, SocketAddr) {
    match system {
        System::Plain => {
            let mut next = target;
            let chain = (0..forwarders)
                .map(|_| {
                    let f = PlainForwarder::start(next);
                    next = f.addr;
                    f
                })
                .collect();
            (Running::Plain { _forwarders: chain }, next)
        }
        System::Nginx(sessions) => {
            let nginx = nginx.expect("nginx rows only run when nginx is found");
            let mut next = target;
            let chain = (0..forwarders)
                .map(|_| {
                    let i = nginx.start(next, sessions).expect("nginx starts");
                    next = i.listen;
                    i
                })
                .collect();
            (Running::Nginx(chain), next)
        }
        System::Overlay => {
            let (fleet, ingress) = runtime.block_on(support::start_chain(forwarders, target));
            (Running::Overlay(Box::new(fleet)), ingress)
        }
    }
}

/// Durations and search parameters: full under `cargo bench`, short otherwise.
#[derive(Debug, Clone, Copy)]
struct Plan {
    reps: usize,
    latency_seconds: f64,
    cpu_seconds: f64,
    step: Duration,
    search_start: u64,
    bisections: u32,
}

/// One chain's figures in one repetition.
#[derive(Debug, Clone)]
struct Figures {
    /// One-way p50 and p99, µs, per latency rate.
    one_way: [(f64, f64); 2],
    lost: [u64; 2],
    max_rate: u64,
    cpu_per_gb_100: f64,
    cores_100: f64,
    cpu_per_gb_max: f64,
    cores_max: f64,
}

fn percentiles(h: &Histogram<u64>) -> String {
    format!(
        "p50 {} p90 {} p99 {} p99.9 {} max {} µs",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    )
}

/// Latency at both rates along `dst`, printing each run's percentiles.
fn latencies(
    rx: &Receiver,
    sender: &UdpSocket,
    dst: SocketAddr,
    plan: &Plan,
    label: &str,
) -> ([(f64, f64); 2], [u64; 2]) {
    let mut one_way = [(0.0, 0.0); 2];
    let mut lost = [0; 2];
    for (i, rate) in LATENCY_RATES.into_iter().enumerate() {
        let count = (f64::from(rate) * plan.latency_seconds) as u32;
        let l = load::latency(rx, sender, dst, LATENCY_BYTES, rate, count, 200);
        let h = &l.one_way_us;
        println!(
            "  {label:<34} {rate:>6}/s  lost {:>5} of {:>6}  {}",
            l.sent.saturating_sub(l.received),
            l.sent,
            percentiles(h)
        );
        one_way[i] = (
            h.value_at_quantile(0.5) as f64,
            h.value_at_quantile(0.99) as f64,
        );
        lost[i] = l.sent.saturating_sub(l.received);
    }
    (one_way, lost)
}

/// CPU-s per GB delivered and cores used, offering `rate` for `seconds`.
fn cpu_per_gb(
    chain: &Running,
    rx: &Receiver,
    sender: &UdpSocket,
    dst: SocketAddr,
    rate: u64,
    seconds: f64,
) -> (f64, f64) {
    let before = chain.cpu_ns();
    let started = Instant::now();
    let s = load::offer(
        rx,
        sender,
        dst,
        THROUGHPUT_BYTES,
        rate,
        Duration::from_secs_f64(seconds),
    );
    let cpu_ns = chain.cpu_ns().saturating_sub(before);
    let bytes = s.received * THROUGHPUT_BYTES as u64;
    // CPU seconds per 10^9 bytes is CPU nanoseconds per byte.
    let per_gb = cpu_ns as f64 / bytes.max(1) as f64;
    (
        per_gb,
        cpu_ns as f64 / 1e9 / started.elapsed().as_secs_f64(),
    )
}

fn measure(system: System, forwarders: usize, ctx: &Context, direct: &[(f64, f64); 2]) -> Figures {
    let hops = forwarders - 1;
    let label = format!("{}, {hops} hop{}", system.name(), plural(hops));
    let (chain, ingress) = start(
        system,
        forwarders,
        ctx.rx.addr,
        &ctx.runtime,
        ctx.nginx.as_ref(),
    );
    let (rx, sender, plan) = (&ctx.rx, &ctx.sender, &ctx.plan);
    // The first datagrams set up flows (the egress relay's socket, nginx's
    // session): not measured.
    load::offer(
        rx,
        sender,
        ingress,
        THROUGHPUT_BYTES,
        2_000,
        Duration::from_millis(300),
    );
    let (one_way, lost) = latencies(rx, sender, ingress, plan, &label);
    let (cpu_per_gb_100, cores_100) =
        cpu_per_gb(&chain, rx, sender, ingress, RATE_100_MBIT, plan.cpu_seconds);
    let (max_rate, at_max) = load::max_lossless(
        &mut |rate| load::offer(rx, sender, ingress, THROUGHPUT_BYTES, rate, plan.step),
        plan.search_start,
        plan.bisections,
        LOSS_LIMIT,
    );
    let (cpu_per_gb_max, cores_max) = if max_rate > 0 {
        cpu_per_gb(&chain, rx, sender, ingress, max_rate, plan.cpu_seconds)
    } else {
        (f64::NAN, f64::NAN)
    };
    let added = |i: usize| {
        let (p50, p99) = one_way[i];
        format!(
            "{:.0}/{:.0}",
            (p50 - direct[i].0) / hops as f64,
            (p99 - direct[i].1) / hops as f64
        )
    };
    println!(
        "  {label:<34} added/hop p50/p99 µs: {} at 1k/s, {} at 10k/s; max lossless {max_rate}/s ({:.3}% lost, {:.0} Mbit/s); \
         CPU-s/GB {cpu_per_gb_100:.1} at 100 Mbit/s ({cores_100:.2} cores), {cpu_per_gb_max:.1} at max ({cores_max:.2} cores)",
        added(0),
        added(1),
        at_max.loss() * 100.0,
        mbit(max_rate)
    );
    if let Running::Overlay(fleet) = chain {
        ctx.runtime.block_on(async {
            let mut drops = BTreeMap::new();
            for relay in fleet.relays.values() {
                for (reason, n) in relay.status().counters.drops {
                    *drops.entry(reason).or_insert(0u64) += n;
                }
            }
            drops.retain(|_, n| *n > 0);
            if !drops.is_empty() {
                println!("  {:<34} drops the relays counted: {drops:?}", "");
            }
            fleet.shutdown().await;
        });
    }
    Figures {
        one_way,
        lost,
        max_rate,
        cpu_per_gb_100,
        cores_100,
        cpu_per_gb_max,
        cores_max,
    }
}

struct Context {
    rx: Receiver,
    sender: UdpSocket,
    runtime: tokio::runtime::Runtime,
    nginx: Option<nginx::Nginx>,
    plan: Plan,
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn mbit(rate: u64) -> f64 {
    rate as f64 * THROUGHPUT_BYTES as f64 * 8.0 / 1e6
}

/// A value with the digits that mean something at its size.
fn figure(v: f64) -> String {
    if !v.is_finite() {
        "-".to_string()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

type Results = BTreeMap<(usize, System), Vec<Figures>>;

/// One table: the metric's median over repetitions per chain, each
/// repetition's value, and ratios against nginx (both modes) and the plain
/// forwarder of the same length.
fn table(title: &str, results: &Results, metric: &dyn Fn(usize, usize, &Figures) -> f64) {
    println!("\n{title}");
    println!(
        "{:<5} {:<27} {:>9} {:>26} {:>11} {:>11} {:>9}",
        "hops", "path", "median", "repetitions", "÷nginx r0", "÷nginx kept", "÷plain"
    );
    let med = |hops: usize, system: System| {
        results.get(&(hops, system)).map(|figs| {
            let v: Vec<f64> = figs
                .iter()
                .enumerate()
                .map(|(rep, f)| metric(hops, rep, f))
                .collect();
            (median(&v), v)
        })
    };
    for &(hops, system) in results.keys() {
        let Some((m, reps)) = med(hops, system) else {
            continue;
        };
        let ratio = |base: System| {
            med(hops, base).map_or("-".to_string(), |(b, _)| {
                if base == system || !b.is_finite() || b <= 0.0 {
                    "-".to_string()
                } else {
                    format!("{:.2}", m / b)
                }
            })
        };
        let reps: Vec<String> = reps.iter().map(|&v| figure(v)).collect();
        println!(
            "{hops:<5} {:<27} {:>9} {:>26} {:>11} {:>11} {:>9}",
            system.name(),
            figure(m),
            reps.join(" / "),
            ratio(System::Nginx(nginx::Sessions::PerDatagram)),
            ratio(System::Nginx(nginx::Sessions::Kept)),
            ratio(System::Plain)
        );
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let reps = std::env::var("BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(if full { 3 } else { 1 });
    let plan = if full {
        Plan {
            reps,
            latency_seconds: 1.5,
            cpu_seconds: 1.0,
            step: Duration::from_millis(500),
            search_start: 20_000,
            bisections: 2,
        }
    } else {
        Plan {
            reps,
            latency_seconds: 0.2,
            cpu_seconds: 0.2,
            step: Duration::from_millis(100),
            search_start: 2_000,
            bisections: 0,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(RELAY_THREADS)
        .enable_all()
        .build()
        .expect("runtime");
    let _ = support::epoch();
    let began = Instant::now();
    let nginx = match nginx::Nginx::find() {
        Ok(n) => {
            println!("baseline: {}", n.version);
            Some(n)
        }
        Err(why) => {
            println!("note: nginx rows skipped: {why}");
            None
        }
    };
    let mut systems = vec![System::Plain];
    if nginx.is_some() {
        systems.push(System::Nginx(nginx::Sessions::PerDatagram));
        systems.push(System::Nginx(nginx::Sessions::Kept));
    }
    systems.push(System::Overlay);
    let ctx = Context {
        rx: Receiver::start(),
        sender: UdpSocket::bind("127.0.0.1:0").expect("sender"),
        runtime,
        nginx,
        plan,
    };
    println!(
        "{LATENCY_BYTES}-byte datagrams for latency ({} s per rate), {THROUGHPUT_BYTES}-byte for throughput \
         (loss <= {:.1}%, {} s steps) and CPU ({} s at 100 Mbit/s and at the max); {} repetitions, order rotated",
        plan.latency_seconds,
        LOSS_LIMIT * 100.0,
        plan.step.as_secs_f64(),
        plan.cpu_seconds,
        plan.reps
    );
    let hop_counts: &[usize] = if full { &[1, 2] } else { &[1] };
    let mut direct: Vec<[(f64, f64); 2]> = Vec::new();
    let mut results: Results = BTreeMap::new();
    for rep in 0..plan.reps {
        println!("repetition {} of {}", rep + 1, plan.reps);
        let (one_way, _) = latencies(&ctx.rx, &ctx.sender, ctx.rx.addr, &plan, "direct");
        direct.push(one_way);
        let mut order = systems.clone();
        order.rotate_left(rep % systems.len());
        for &system in &order {
            for &hops in hop_counts {
                let f = measure(system, hops + 1, &ctx, &direct[rep]);
                results.entry((hops, system)).or_default().push(f);
            }
        }
    }
    let generator = load::max_lossless(
        &mut |rate| {
            load::offer(
                &ctx.rx,
                &ctx.sender,
                ctx.rx.addr,
                THROUGHPUT_BYTES,
                rate,
                plan.step,
            )
        },
        plan.search_start,
        plan.bisections,
        LOSS_LIMIT,
    )
    .0;

    println!("\nmedians over {} repetitions; a ratio is the row's median over the baseline's median for the same number of hops", plan.reps);
    println!("(1 hop = 2 forwarders: ingress and egress; 2 hops = 3; added latency is the chain's one-way percentile minus the direct path's, over hops)");
    for (i, rate) in LATENCY_RATES.into_iter().enumerate() {
        for (q, name) in [(0usize, "p50"), (1, "p99")] {
            table(
                &format!("added one-way latency per hop, {name} at {rate}/s, µs (lower is better)"),
                &results,
                &|hops, rep, f| {
                    let (chain, base) = if q == 0 {
                        (f.one_way[i].0, direct[rep][i].0)
                    } else {
                        (f.one_way[i].1, direct[rep][i].1)
                    };
                    (chain - base) / hops as f64
                },
            );
        }
    }
    table(
        &format!(
            "max lossless throughput, {THROUGHPUT_BYTES}-byte datagrams, Mbit/s (higher is better; generator straight to receiver: {:.0})",
            mbit(generator)
        ),
        &results,
        &|_, _, f| mbit(f.max_rate),
    );
    table(
        "CPU-s per GB delivered at 100 Mbit/s, all forwarders of the chain (lower is better)",
        &results,
        &|_, _, f| f.cpu_per_gb_100,
    );
    table("cores used at 100 Mbit/s", &results, &|_, _, f| f.cores_100);
    table(
        "CPU-s per GB delivered at the max lossless rate (lower is better)",
        &results,
        &|_, _, f| f.cpu_per_gb_max,
    );
    table(
        "cores used at the max lossless rate",
        &results,
        &|_, _, f| f.cores_max,
    );
    let lost: u64 = results
        .values()
        .flatten()
        .map(|f| f.lost[0] + f.lost[1])
        .sum();
    println!("\nlatency datagrams lost over all rows: {lost}");
    println!("whole run: {:.0} s", began.elapsed().as_secs_f64());
}
