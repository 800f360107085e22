//! A diamond fleet with a media stream, for the reroute tests:
//!
//! ```text
//!        bbb            aaa–bbb 10 ms, bbb–ddd 10 ms   (fast)
//!  aaa <      > ddd
//!        ccc            aaa–ccc 25 ms, ccc–ddd 25 ms   (slow)
//! ```
//!
//! A sender streams numbered UDP packets into `aaa` toward a receiver behind
//! `ddd`, which records when each arrived.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use overlay::fleet::{Fleet, FleetOptions};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub fn topology(target: SocketAddr) -> topology::Topology {
    topology::parse("diamond.yaml", &yaml(target)).unwrap_or_else(|e| panic!("{e}"))
}

/// The diamond's topology file; its `services:` list comes last, so a test can
/// append services to it.
pub fn yaml(target: SocketAddr) -> String {
    format!(
        "version: 1\nnodes:\n\
         \x20 - {{ id: aaa, city: A, country: JP, region: asia, lat: 35.0, lon: 139.0, addr: \"127.0.0.1:1\" }}\n\
         \x20 - {{ id: bbb, city: B, country: JP, region: asia, lat: 36.0, lon: 140.0, addr: \"127.0.0.1:2\" }}\n\
         \x20 - {{ id: ccc, city: C, country: JP, region: asia, lat: 34.0, lon: 138.0, addr: \"127.0.0.1:3\" }}\n\
         \x20 - {{ id: ddd, city: D, country: US, region: na, lat: 34.0, lon: -118.0, addr: \"127.0.0.1:4\" }}\n\
         links:\n\
         \x20 - {{ between: [aaa, bbb], kind: terrestrial, delay_ms: 10 }}\n\
         \x20 - {{ between: [bbb, ddd], kind: undersea, name: fast-line, delay_ms: 10 }}\n\
         \x20 - {{ between: [aaa, ccc], kind: terrestrial, delay_ms: 25 }}\n\
         \x20 - {{ between: [ccc, ddd], kind: undersea, name: slow-line, delay_ms: 25 }}\n\
         services:\n\
         \x20 - {{ name: media, protocol: udp, ingress: {{ node: aaa, listen: \"127.0.0.1:0\" }}, egress: {{ node: ddd, target: \"{target}\" }} }}\n\
         \x20 - {{ name: signal, protocol: tcp, ingress: {{ node: aaa, listen: \"127.0.0.1:0\" }}, egress: {{ node: ddd, target: \"{target}\" }} }}\n"
    )
}

/// Faster stability timers than production, so tests take seconds.
pub fn options() -> FleetOptions {
    FleetOptions {
        jitter: 0.0,
        tune_controller: |c| {
            c.stability.hold = Duration::from_secs(1);
            c.stability.hold_down = Duration::from_secs(3);
        },
        tune_relay: |r| r.tuning.link_idle_timeout = Duration::from_secs(3),
        ..FleetOptions::default()
    }
}

/// Arrivals at the receiver: (sequence number, when).
pub type Arrivals = Arc<Mutex<Vec<(u32, Instant)>>>;

pub struct Stream {
    pub arrivals: Arrivals,
    pub sent: Arc<Mutex<u32>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Stream {
    /// Sends a packet every `every` into `ingress`; `receiver` records arrivals.
    pub async fn start(receiver: UdpSocket, ingress: SocketAddr, every: Duration) -> Stream {
        let arrivals: Arrivals = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(0u32));
        let a = arrivals.clone();
        let rx = tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok((n, _)) = receiver.recv_from(&mut buf).await {
                if n >= 4 {
                    let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    a.lock().expect("lock").push((seq, Instant::now()));
                }
            }
        });
        let s = sent.clone();
        let tx = tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind sender");
            let mut ticker = tokio::time::interval(every);
            for seq in 0u32.. {
                ticker.tick().await;
                let mut packet = seq.to_be_bytes().to_vec();
                packet.resize(160, 0);
                let _ = socket.send_to(&packet, ingress).await;
                *s.lock().expect("lock") = seq + 1;
            }
        });
        Stream {
            arrivals,
            sent,
            tasks: vec![rx, tx],
        }
    }

    /// Datagrams sent so far (their sequence numbers are 0 to this, less one).
    pub fn sent(&self) -> u32 {
        *self.sent.lock().expect("lock")
    }

    /// Sequence numbers in `from..to` that never arrived.
    pub fn missing(&self, from: u32, to: u32) -> usize {
        let a = self.arrivals.lock().expect("lock");
        let got: std::collections::BTreeSet<u32> = a
            .iter()
            .map(|(s, _)| *s)
            .filter(|s| (from..to).contains(s))
            .collect();
        (to.saturating_sub(from) as usize).saturating_sub(got.len())
    }

    pub fn received(&self) -> usize {
        self.arrivals.lock().expect("lock").len()
    }

    /// The longest time without an arrival within [from, to].
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let a = self.arrivals.lock().expect("lock");
        let mut times: Vec<Instant> = a
            .iter()
            .map(|(_, t)| *t)
            .filter(|t| *t >= from && *t <= to)
            .collect();
        times.sort();
        let mut gap = Duration::ZERO;
        let mut prev = from;
        for t in times.iter().chain(std::iter::once(&to)) {
            gap = gap.max(t.saturating_duration_since(prev));
            prev = *t;
        }
        gap
    }

    /// Sequence numbers that arrived more than once (a loop would duplicate none —
    /// TTL drops it — but a broken path could).
    pub fn duplicates(&self) -> usize {
        let a = self.arrivals.lock().expect("lock");
        let mut seqs: Vec<u32> = a.iter().map(|(s, _)| *s).collect();
        let n = seqs.len();
        seqs.sort_unstable();
        seqs.dedup();
        n - seqs.len()
    }
}

/// Datagrams each relay has handed on so far.
pub fn forwarded(fleet: &Fleet, node: &str) -> u64 {
    fleet.relay(node).status().counters.datagrams_sent
}

/// Sum of TTL-expired drops over every relay: nonzero means a packet looped.
pub fn ttl_drops(fleet: &Fleet) -> u64 {
    fleet
        .relays
        .values()
        .map(|r| {
            r.status()
                .counters
                .drop_count(relay_core::DropReason::TtlExpired)
        })
        .sum()
}

/// Waits until `node` forwards at least `n` more datagrams than `base`.
pub async fn wait_forwarding(
    fleet: &Fleet,
    node: &str,
    base: u64,
    n: u64,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if forwarded(fleet, node) >= base + n {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Waits until the controller routes over the link `a`–`b` again (up and
/// past its hold-down: a cost in force). How long that took, or `None`.
pub async fn wait_in_service(fleet: &Fleet, a: &str, b: &str, limit: Duration) -> Option<Duration> {
    let t = &fleet.topology;
    let link = t.link_between(t.node_idx(a)?, t.node_idx(b)?)?;
    let controller = &fleet.controller.as_ref()?.shared;
    let started = Instant::now();
    while started.elapsed() < limit {
        if controller.view().links[link.get()].in_force.is_some() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

pub async fn start() -> (Fleet, Stream) {
    start_with(|yaml| yaml, Duration::from_millis(5)).await
}

/// The diamond with its topology file changed by `edit`, and a stream into
/// `media` of one packet every `every`.
pub async fn start_with(edit: impl FnOnce(String) -> String, every: Duration) -> (Fleet, Stream) {
    let receiver = UdpSocket::bind("127.0.0.1:0").await.expect("bind receiver");
    let target = receiver.local_addr().expect("addr");
    let t = topology::parse("diamond.yaml", &edit(yaml(target))).unwrap_or_else(|e| panic!("{e}"));
    let fleet = Fleet::start_ready(t, options(), Duration::from_secs(20))
        .await
        .expect("fleet ready");
    let ingress = fleet.relay("aaa").ingress_addrs["media"];
    let stream = Stream::start(receiver, ingress, every).await;
    (fleet, stream)
}
