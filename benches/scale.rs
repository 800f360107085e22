//! Benchmark 5: scale. 35,000 concurrent UDP flows held by one relay: memory per
//! flow, CPU at a stated aggregate packet rate, and whether any flow is starved.
//!
//! Set-up: the relay under test, `r0`, is the ingress of every flow. Its UDP
//! services `media-1`..`media-k` leave the overlay at egress relays `e1`..`ek`,
//! which hold one UDP socket per flow (one open file: see
//! [`EGRESS_FDS_PER_FLOW`]); k is the fewest egress processes that stay under
//! this host's open-files limit. Each relay runs in its own child process (this
//! program re-executed with `OVERLAY_SCALE_RELAY=<relay.yaml>`), so `/proc`
//! measures each alone. A raw socket sends hand-built IPv4/UDP datagrams from
//! one loopback address per flow (127.1.x.y), so the clients cost no sockets.
//! One receiver per egress target counts deliveries per flow and one-way
//! latency, and answers each flow's first datagram once, so every egress
//! flow's reply path (its reader task and buffer) is used as in production.
//!
//! Phases: links up; warm-up (one extra flow per service) and the baseline;
//! establish (one datagram per flow, resent to flows not seen); steady (round
//! robin over all flows at the stated rate). Each child is sampled (RSS, open
//! files, CPU ticks) at the baseline, once established and at the end; the
//! relays' own flow tables and drop counters are read too.
//!
//! Run: `cargo bench --bench scale` (under a minute). Needs root (raw socket)
//! and one free ephemeral port per flow (see [`preflight`]). Without `--bench`:
//! 2,000 flows for 2 s. `SCALE_FLOWS`, `SCALE_RATE` (packets/s) and
//! `SCALE_SECS` override the defaults.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::Value;

mod support;
use support::now_ns;
#[path = "support/procfs.rs"]
mod procfs;
use procfs::{cpu_percent, Kernel, Sample};

const CHILD_ENV: &str = "OVERLAY_SCALE_RELAY";
/// The flow count the target is stated for; the projection is made for it.
const TARGET_FLOWS: u64 = 35_000;
const TARGET_BYTES: u64 = 200_000_000;
/// Audio-sized datagrams.
const PAYLOAD: usize = 200;
/// Every client sends from this port, each from its own loopback address.
const CLIENT_PORT: u16 = 5000;
const MB: f64 = 1e6;
/// Open files an egress relay holds per flow: the flow's socket
/// (`SplitSocket` in `relay/src/udp.rs`). The report prints what the run
/// really measured.
const EGRESS_FDS_PER_FLOW: usize = 1;

fn main() -> ExitCode {
    if let Some(config) = std::env::var_os(CHILD_ENV) {
        return run_relay(Path::new(&config));
    }
    let full = std::env::args().any(|a| a == "--bench");
    let env = |name: &str, default: u64| {
        std::env::var(name).map_or(default, |v| v.parse().expect("a whole number"))
    };
    let flows = env("SCALE_FLOWS", if full { TARGET_FLOWS } else { 2_000 }) as usize;
    let rate = env("SCALE_RATE", if full { 20_000 } else { 4_000 });
    let steady = Duration::from_secs(env("SCALE_SECS", if full { 15 } else { 2 }));
    let k = preflight(flows);
    // Services of equal size: round the flow count up to a multiple of k.
    bench(flows.div_ceil(k) * k, k, rate, steady);
    ExitCode::SUCCESS
}

/// Fails early, and says why, if the host cannot hold the flows: each egress
/// flow needs open files in its egress process and an ephemeral UDP port on
/// the host (the egress binds `0.0.0.0:0` per flow, so no two flows share a
/// port). Returns how many egress processes keep each under the files limit.
fn preflight(flows: usize) -> usize {
    let per_process = procfs::open_files_limit().saturating_sub(200) / EGRESS_FDS_PER_FLOW;
    assert!(per_process > 0, "the open files limit is too low");
    let ((lo, hi), bound) = procfs::udp_ports();
    let free = (hi + 1 - lo).saturating_sub(bound);
    assert!(
        flows + 100 + 500 <= free,
        "the egress relays need one ephemeral UDP port per flow ({flows}), but \
         net.ipv4.ip_local_port_range is {lo}-{hi} with {bound} UDP sockets bound \
         ({free} free). Widen it for the run, e.g. \
         `sysctl -w net.ipv4.ip_local_port_range=\"20000 65535\"`, and restore it \
         afterwards; or set SCALE_FLOWS lower"
    );
    flows.div_ceil(per_process).max(2)
}

// ------------------------------------------------------------- relay processes

/// Child mode: one relay from its config file, as the daemon runs it, until it
/// is killed or its parent goes away (its stdin closes).
fn run_relay(config: &Path) -> ExitCode {
    let cfg = match relay::RelayConfig::load(config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("scale relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (tx, signals) = tokio::sync::mpsc::channel(1);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = tx.blocking_send(daemon::Signal::Stop);
    });
    let path = config.to_path_buf();
    daemon::cli::run_until_signal("scale relay", || async move {
        let (socket, admin) = daemon::quic::bind(cfg.listen, cfg.admin)?;
        let notify = daemon::Notifier::disabled();
        let load = || relay::RelayConfig::load(&path);
        relay::run(cfg, socket, admin, signals, &notify, load).await
    })
}

/// A relay child process.
struct Relay {
    name: String,
    role: String,
    flows: usize,
    admin: SocketAddr,
    child: Child,
}

/// The children and their scratch directory; killed and removed when dropped,
/// on success or panic alike.
struct Relays {
    relays: Vec<Relay>,
    dir: PathBuf,
}

impl Drop for Relays {
    fn drop(&mut self) {
        for r in &mut self.relays {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Free loopback ports: bound together (so distinct), then released for the
/// children to bind. Another process could take one in between; for a bench
/// that small race is acceptable.
fn free_ports(udp: usize, tcp: usize) -> (Vec<u16>, Vec<u16>) {
    let u: Vec<UdpSocket> = (0..udp)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind a udp port"))
        .collect();
    let t: Vec<std::net::TcpListener> = (0..tcp)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a tcp port"))
        .collect();
    let port = |a: std::io::Result<SocketAddr>| a.expect("local addr").port();
    (
        u.iter().map(|s| port(s.local_addr())).collect(),
        t.iter().map(|s| port(s.local_addr())).collect(),
    )
}

/// Writes the PKI, the topology and each relay's config, and starts `r0` and
/// one egress relay per target (`e1` for `media-1`, ...). Returns the children
/// and each service's ingress address on `r0`.
fn start_relays(flows: usize, targets: &[SocketAddr]) -> (Relays, Vec<SocketAddrV4>) {
    let k = targets.len();
    let dir = std::env::temp_dir().join(format!("overlay-scale-{}", std::process::id()));
    let mut relays = Relays {
        relays: Vec::new(),
        dir: dir.clone(),
    };
    let (udp, tcp) = free_ports(1 + 2 * k, 1 + k);
    let ingress: Vec<SocketAddrV4> = udp[1 + k..]
        .iter()
        .map(|&p| SocketAddrV4::new(Ipv4Addr::LOCALHOST, p))
        .collect();
    let names: Vec<String> = std::iter::once("r0".to_string())
        .chain((1..=k).map(|i| format!("e{i}")))
        .collect();
    pki::init_ca(&dir.join("ca"), false).expect("create the CA");
    let mut topology = String::from("version: 1\nnodes:\n");
    for (i, name) in names.iter().enumerate() {
        pki::issue(&dir.join("ca"), name, &dir.join("certs"), false).expect("issue");
        topology += &format!(
            "  - {{ id: {name}, city: C{i}, country: US, region: bench, lat: 10.0, lon: {i}.0, \
             addr: \"127.0.0.1:{}\" }}\n",
            udp[i]
        );
    }
    topology += "links:\n";
    for e in &names[1..] {
        topology += &format!("  - {{ between: [r0, {e}], kind: terrestrial, delay_ms: 1 }}\n");
    }
    topology += "services:\n";
    for (i, e) in names[1..].iter().enumerate() {
        topology += &format!(
            "  - {{ name: media-{}, protocol: udp, ingress: {{ node: r0, listen: \"{}\" }}, \
             egress: {{ node: {e}, target: \"{}\" }} }}\n",
            i + 1,
            ingress[i],
            targets[i]
        );
    }
    std::fs::write(dir.join("topology.yaml"), topology).expect("write topology");
    for (i, name) in names.into_iter().enumerate() {
        let config = dir.join(format!("{name}.yaml"));
        let yaml = format!(
            "node: {name}\ntopology: topology.yaml\ncert: certs/{name}.pem\n\
             key: certs/{name}.key\nca: ca/ca.pem\nadmin: \"127.0.0.1:{}\"\n\
             flow_idle_timeout_ms: 60000\nmax_flows_per_service: 100000\n",
            tcp[i]
        );
        std::fs::write(&config, yaml).expect("write relay config");
        let child = Command::new(std::env::current_exe().expect("own path"))
            .env(CHILD_ENV, &config)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start a relay process");
        relays.relays.push(Relay {
            role: match i {
                0 => format!("ingress, all {k} services"),
                _ => format!("egress, media-{i}"),
            },
            flows: if i == 0 { flows } else { flows / k },
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, tcp[i])),
            name,
            child,
        });
    }
    (relays, ingress)
}

/// One relay's `/api/v1/status`, within 5 s.
fn status(rt: &tokio::runtime::Runtime, relay: &Relay) -> Result<Value, String> {
    let answer = rt.block_on(async {
        let get = daemon::admin::client::get(relay.admin, "/api/v1/status");
        tokio::time::timeout(Duration::from_secs(5), get).await
    });
    match answer {
        Ok(Ok((200, body))) => serde_json::from_str(&body).map_err(|e| e.to_string()),
        Ok(Ok((code, _))) => Err(format!("status {code}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

fn flow_count(s: &Value, which: &str) -> u64 {
    s["flows"][which].as_u64().expect("flow count in status")
}

/// Nonzero drop counters by reason, e.g. `queue_full=12`.
fn drops(s: &Value) -> String {
    let list: Vec<String> = s["counters"]["drops"]
        .as_object()
        .expect("drops in status")
        .iter()
        .filter(|(_, n)| n.as_u64() != Some(0))
        .map(|(reason, n)| format!("{reason}={n}"))
        .collect();
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(" ")
    }
}

/// Waits until `ok` holds for every relay's status, or panics after `limit`
/// naming the relay and its last status.
fn wait_all(
    rt: &tokio::runtime::Runtime,
    relays: &mut Relays,
    limit: Duration,
    what: &str,
    ok: impl Fn(usize, &Value) -> bool,
) {
    let deadline = Instant::now() + limit;
    for (i, r) in relays.relays.iter_mut().enumerate() {
        loop {
            if let Some(exit) = r.child.try_wait().expect("child state") {
                panic!("relay {} exited: {exit}", r.name);
            }
            let s = status(rt, r);
            if s.as_ref().is_ok_and(|s| ok(i, s)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not {what} within {limit:?}; last status: {s:?}",
                r.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

// ---------------------------------------------------- generator and receivers

/// Sends IPv4/UDP datagrams with a chosen source address through a raw socket.
struct Generator {
    socket: socket2::Socket,
    packet: [u8; 28 + PAYLOAD],
}

impl Generator {
    fn new() -> Generator {
        // IPPROTO_RAW: send-only, and the IP header is ours (IP_HDRINCL implied);
        // the kernel fills in the total length, id and header checksum.
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::RAW,
            Some(socket2::Protocol::from(255)),
        )
        .expect("a raw socket (the scale bench needs root or CAP_NET_RAW)");
        let mut packet = [0u8; 28 + PAYLOAD];
        // Version 4, 20-byte header; don't fragment; TTL 64; protocol UDP.
        packet[..10].copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17]);
        packet[20..22].copy_from_slice(&CLIENT_PORT.to_be_bytes());
        packet[24..26].copy_from_slice(&((8 + PAYLOAD) as u16).to_be_bytes());
        // UDP checksum left 0: none, which IPv4 allows.
        Generator { socket, packet }
    }

    /// Sends flow `flow`'s datagram number `seq` to `to`, from 127.1.0.1 + flow.
    /// Payload: flow, seq, send time (ns), padding.
    fn send(&mut self, flow: usize, seq: u32, to: SocketAddrV4) {
        let p = &mut self.packet;
        p[12..16].copy_from_slice(&Ipv4Addr::from(0x7f01_0001 + flow as u32).octets());
        p[16..20].copy_from_slice(&to.ip().octets());
        p[22..24].copy_from_slice(&to.port().to_be_bytes());
        p[28..32].copy_from_slice(&(flow as u32).to_be_bytes());
        p[32..36].copy_from_slice(&seq.to_be_bytes());
        p[36..44].copy_from_slice(&now_ns().to_be_bytes());
        let to = socket2::SockAddr::from(SocketAddr::V4(to));
        // A full buffer means the generator is the limit: retry, don't drop.
        let mut tries = 0;
        while let Err(e) = self.socket.send_to(p, &to) {
            tries += 1;
            assert!(tries < 20_000, "raw send keeps failing: {e}");
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

/// Calls `send(n)` for n in 0..total, paced at `rate` per second; returns how
/// long that took.
fn paced(total: usize, rate: u64, mut send: impl FnMut(usize)) -> Duration {
    let start = Instant::now();
    let mut sent = 0;
    while sent < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
        if sent >= due {
            std::thread::sleep(Duration::from_micros(200));
        }
        while sent < due {
            send(sent);
            sent += 1;
        }
    }
    start.elapsed()
}

/// Per-flow arrivals, shared by the receivers: establishing datagrams (seq 0)
/// and steady ones (seq >= 1).
struct Tallies {
    first: Vec<AtomicU32>,
    steady: Vec<AtomicU32>,
}

impl Tallies {
    fn steady_total(&self) -> u64 {
        self.steady
            .iter()
            .map(|c| u64::from(c.load(Ordering::Relaxed)))
            .sum()
    }
}

/// One egress target: counts each arrival for its flow and records steady
/// latency (µs); answers a flow's first datagram once, through the egress
/// flow socket it came from.
struct Receiver {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Histogram<u64>>>,
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

impl Receiver {
    fn start(tallies: Arc<Tallies>) -> Receiver {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .expect("receiver socket");
        let _ = socket.set_recv_buffer_size(4 << 20);
        socket
            .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
            .expect("bind receiver");
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let addr = socket.local_addr().expect("receiver addr");
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut latency_us = latency_histogram();
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let word = |i: usize| u32::from_be_bytes(buf[i..i + 4].try_into().expect("4"));
                let (flow, seq) = (word(0) as usize, word(4));
                if n < 16 || flow >= tallies.first.len() {
                    continue;
                }
                if seq == 0 {
                    if tallies.first[flow].fetch_add(1, Ordering::Relaxed) == 0 {
                        let _ = socket.send_to(&buf[..16], from);
                    }
                } else {
                    tallies.steady[flow].fetch_add(1, Ordering::Relaxed);
                    let sent = u64::from_be_bytes(buf[8..16].try_into().expect("8"));
                    latency_us.saturating_record(now_ns().saturating_sub(sent) / 1000);
                }
            }
            latency_us
        });
        Receiver {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Histogram<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take().expect("receiver running");
        thread.join().expect("receiver thread")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------------ the bench

/// Samples of every relay process, in `Relays` order.
fn sample_all(relays: &Relays) -> Vec<Sample> {
    let pids = relays.relays.iter().map(|r| r.child.id());
    pids.map(procfs::sample).collect()
}

/// Samples every relay until no RSS moves by 64 KiB in half a second (at most
/// 10 s), and returns the last samples.
fn settled(relays: &Relays) -> Vec<Sample> {
    let mut last = sample_all(relays);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(500));
        let now = sample_all(relays);
        let still = (now.iter().zip(&last)).all(|(a, b)| a.rss.abs_diff(b.rss) < 64 << 10);
        last = now;
        if still {
            break;
        }
    }
    last
}

/// Sends one datagram per flow, then again to flows not yet delivered (up to
/// three rounds). Returns how long it took and how many were resent.
fn establish(
    gen: &mut Generator,
    tallies: &Tallies,
    ingress: &[SocketAddrV4],
    rate: u64,
) -> (Duration, usize) {
    let started = Instant::now();
    let unseen = |f: &usize| tallies.first[*f].load(Ordering::Relaxed) == 0;
    let mut missing: Vec<usize> = (0..tallies.first.len()).collect();
    let mut resent = 0;
    for round in 0..3 {
        if round > 0 {
            resent += missing.len();
        }
        paced(missing.len(), rate, |n| {
            let flow = missing[n];
            gen.send(flow, 0, ingress[flow % ingress.len()]);
        });
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && missing.iter().any(unseen) {
            std::thread::sleep(Duration::from_millis(100));
        }
        missing.retain(unseen);
        if missing.is_empty() {
            return (started.elapsed(), resent);
        }
    }
    panic!("{} flows never delivered in 3 rounds", missing.len());
}

/// Waits (at most 3 s) until deliveries stop growing.
fn drain(tallies: &Tallies) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = tallies.steady_total();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        let now = tallies.steady_total();
        if now == last {
            return;
        }
        last = now;
    }
}

fn bench(flows: usize, k: usize, rate: u64, steady: Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Allocated before anything is measured.
    let tallies = Arc::new(Tallies {
        first: (0..flows).map(|_| AtomicU32::new(0)).collect(),
        steady: (0..flows).map(|_| AtomicU32::new(0)).collect(),
    });
    let receivers: Vec<Receiver> = (0..k).map(|_| Receiver::start(tallies.clone())).collect();
    let mut gen = Generator::new();
    let targets: Vec<SocketAddr> = receivers.iter().map(|r| r.addr).collect();
    let (mut relays, ingress) = start_relays(flows, &targets);
    let links_up = |_: usize, s: &Value| {
        let peers = s["peers"].as_array().map_or(&[][..], |p| p.as_slice());
        !peers.is_empty() && peers.iter().all(|p| p["state"] == "up")
    };
    let limit = Duration::from_secs(30);
    wait_all(&rt, &mut relays, limit, "links up", links_up);
    // Warm the data path up with one extra flow per service (not counted) so
    // the baseline is relays already forwarding, and let memory settle.
    paced(k * 50, rate, |n| gen.send(flows + n % k, 1, ingress[n % k]));
    let base = settled(&relays);
    let kernel_base = procfs::kernel();

    // Establish, and check that the relays' own tables hold every flow.
    let (establish_time, resent) = establish(&mut gen, &tallies, &ingress, rate);
    let table = |i: usize| match i {
        0 => ("udp_ingress", (flows + k) as u64),
        _ => ("udp_egress", (flows / k + 1) as u64),
    };
    let all_flows = |i: usize, s: &Value| flow_count(s, table(i).0) == table(i).1;
    let limit = Duration::from_secs(10);
    wait_all(&rt, &mut relays, limit, "holding every flow", all_flows);
    let established = sample_all(&relays);
    let kernel_established = procfs::kernel();

    // Steady: round robin over every flow at `rate`.
    let total = (rate as f64 * steady.as_secs_f64()) as usize;
    let me = std::process::id();
    let (start, me_start) = (sample_all(&relays), procfs::sample(me));
    let sent_for = paced(total, rate, |n| {
        let flow = n % flows;
        gen.send(flow, 1 + (n / flows) as u32, ingress[flow % k]);
    });
    let (end, me_end) = (sample_all(&relays), procfs::sample(me));
    drain(&tallies);
    let after = sample_all(&relays);
    let statuses: Vec<Value> = relays
        .relays
        .iter()
        .map(|r| status(&rt, r).unwrap_or_else(|e| panic!("{} status: {e}", r.name)))
        .collect();
    let mut latency = latency_histogram();
    for r in receivers {
        latency.add(r.finish()).expect("same bounds");
    }

    // The table, one row per process.
    let secs = sent_for.as_secs_f64();
    println!(
        "scale: {flows} flows over {k} services (ingress r0, egress e1..e{k}), steady {rate} \
         packets/s of {PAYLOAD} bytes for {} s; MB = 10^6 bytes; CPU % of one core",
        steady.as_secs()
    );
    println!(
        "{:<4} {:<24} {:>6} {:>9} {:>11} {:>10} {:>10} {:>8} {:>9} {:>6}",
        "proc",
        "role",
        "flows",
        "RSS base",
        "RSS estab.",
        "RSS after",
        "bytes/flow",
        "fds base",
        "fds after",
        "CPU %"
    );
    let mut per_flow = Vec::new();
    let mut cpu = Vec::new();
    for (i, r) in relays.relays.iter().enumerate() {
        per_flow.push(after[i].rss.saturating_sub(base[i].rss) as f64 / r.flows as f64);
        cpu.push(cpu_percent(start[i], end[i], secs));
        println!(
            "{:<4} {:<24} {:>6} {:>6.1} MB {:>8.1} MB {:>7.1} MB {:>10.0} {:>8} {:>9} {:>6.1}",
            r.name,
            r.role,
            r.flows,
            base[i].rss as f64 / MB,
            established[i].rss as f64 / MB,
            after[i].rss as f64 / MB,
            per_flow[i],
            base[i].fds,
            after[i].fds,
            cpu[i],
        );
    }
    println!(
        "{:<4} {:<24} {:>6} {:>69.1}",
        "gen",
        "generator + receivers",
        flows,
        cpu_percent(me_start, me_end, secs)
    );

    // Delivery, starvation, latency, the relays' own view.
    let mut got: Vec<u32> = tallies
        .steady
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    // Round robin: flow f was sent total / flows datagrams, one more if f < total % flows.
    let share = |f: usize| (total / flows + usize::from(f < total % flows)) as u32;
    let starved = (0..flows).filter(|&f| got[f] * 2 < share(f)).count();
    got.sort_unstable();
    let pct = |p: f64| got[((got.len() - 1) as f64 * p) as usize];
    let received = tallies.steady_total();
    let tables: Vec<String> = (relays.relays.iter().zip(&statuses).enumerate())
        .map(|(i, (r, s))| format!("{} {}", r.name, flow_count(s, table(i).0)))
        .collect();
    println!(
        "establish: {flows} flows in {:.1} s ({resent} resent); flows in the relays' tables \
         at the end (1 warm-up flow per service included): {}",
        establish_time.as_secs_f64(),
        tables.join(", ")
    );
    println!(
        "steady: offered {:.0} packets/s for {secs:.1} s, each flow every {:.2} s; \
         delivered {received} of {total} (loss {:.3}%)",
        total as f64 / secs,
        flows as f64 / rate as f64,
        (1.0 - received as f64 / total.max(1) as f64) * 100.0
    );
    println!(
        "per flow: share {}-{}, delivered min {} p1 {} median {}; \
         starved (under half its share): {starved} of {flows}",
        share(flows - 1),
        share(0),
        pct(0.0),
        pct(0.01),
        pct(0.5)
    );
    println!(
        "one-way latency: p50 {} us, p99 {} us, max {} us",
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.max()
    );
    println!(
        "replies (one per flow, target -> client): r0 delivered {} to clients",
        statuses[0]["counters"]["datagrams_delivered"]
    );
    for (r, s) in relays.relays.iter().zip(&statuses) {
        println!("drops at {}: {}", r.name, drops(s));
    }
    report_projection(
        flows,
        rate,
        &base,
        &after,
        &per_flow,
        &cpu,
        kernel_base,
        kernel_established,
    );
}

/// Kernel memory, and what one relay holding the target's flows at both ends
/// would need, from the per-flow costs measured.
#[allow(clippy::too_many_arguments)]
fn report_projection(
    flows: usize,
    rate: u64,
    base: &[Sample],
    after: &[Sample],
    per_flow: &[f64],
    cpu: &[f64],
    kernel_base: Kernel,
    kernel_established: Kernel,
) {
    let k = per_flow.len() - 1;
    let sockets = kernel_established
        .udp_inuse
        .saturating_sub(kernel_base.udp_inuse);
    let slab = kernel_established.slab.saturating_sub(kernel_base.slab);
    let per_socket = slab as f64 / sockets.max(1) as f64;
    let egress_fds: usize = (1..=k).map(|i| after[i].fds - base[i].fds).sum();
    println!(
        "kernel: +{sockets} UDP sockets, {:.1} open files per egress flow; slab +{:.1} MB \
         ({per_socket:.0} bytes per socket, host-wide); UDP pages charged (sockstat mem) {} -> {}",
        egress_fds as f64 / flows as f64,
        slab as f64 / MB,
        kernel_base.udp_pages,
        kernel_established.udp_pages
    );
    let egress = per_flow[1..].iter().sum::<f64>() / k as f64;
    let projected = base[0].rss as f64 + (per_flow[0] + egress) * TARGET_FLOWS as f64;
    println!(
        "projected: one relay holding {TARGET_FLOWS} ingress + {TARGET_FLOWS} egress flows: \
         {:.1} MB base + {TARGET_FLOWS} x ({:.0} ingress + {egress:.0} egress) bytes = {:.1} MB RSS, \
         target {:.0} MB: {}; plus {:.1} MB kernel slab for its sockets (not in RSS)",
        base[0].rss as f64 / MB,
        per_flow[0],
        projected / MB,
        TARGET_BYTES as f64 / MB,
        if projected <= TARGET_BYTES as f64 {
            "met"
        } else {
            "MISSED"
        },
        per_socket * TARGET_FLOWS as f64 / MB
    );
    let egress_cpu: f64 = cpu[1..].iter().sum();
    println!(
        "CPU at {rate} packets/s: ingress {:.1}% + egress {egress_cpu:.1}% (all e*) = {:.1}% of one core",
        cpu[0],
        cpu[0] + egress_cpu
    );
}
