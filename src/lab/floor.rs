//! The lab's floor: the emulator alone, no relays, on the classes' paths, in the
//! same run. Each path is a chain of emulated links (same delay, jitter and loss
//! as the fleet's) joined by plain UDP forwarders; an audio-rate stream of
//! stamped packets crosses it and its one-way latency is what the machine itself
//! costs (timers, scheduling on shared cores). The overlay's cost is what the
//! classes measure above it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emulator::EmulatedLink;
use hdrhistogram::Histogram;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use topology::Topology;

use super::classes::{latency_histogram, now_us, AUDIO_BYTES, AUDIO_INTERVAL};

/// What one floor path measured.
#[derive(Debug)]
pub struct FloorStats {
    pub sent: u64,
    pub received: u64,
    pub one_way_us: Histogram<u64>,
}

/// One path's floor stream, running until dropped.
pub struct FloorPath {
    /// Node ids, student's city first.
    pub path: Vec<String>,
    /// The sum of the links' delays, µs.
    pub delay_us: u64,
    pub stats: Arc<Mutex<FloorStats>>,
    tasks: Vec<JoinHandle<()>>,
    _links: Vec<EmulatedLink>,
}

impl Drop for FloorPath {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FloorPath {
    /// Starts a chain of emulated links along `path` (node ids) and streams
    /// through it. `None` for a path of fewer than two nodes or a missing link.
    pub async fn start(
        t: &Topology,
        path: &[String],
        jitter: f64,
        loss: f64,
        seed: u64,
    ) -> anyhow::Result<Option<FloorPath>> {
        let mut delays = Vec::new();
        for w in path.windows(2) {
            let link = t
                .node_idx(&w[0])
                .zip(t.node_idx(&w[1]))
                .and_then(|(a, b)| t.link_between(a, b));
            match link {
                Some(l) => delays.push(t.link(l).delay_us),
                None => return Ok(None),
            }
        }
        if delays.is_empty() {
            return Ok(None);
        }
        // One socket per node of the path: node i receives from link i-1 and
        // sends into link i.
        let mut sockets = Vec::new();
        for _ in 0..path.len() {
            sockets.push(UdpSocket::bind("127.0.0.1:0").await?);
        }
        let addrs: Vec<SocketAddr> = sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<_, _>>()?;
        let mut links = Vec::new();
        for (i, &delay_us) in delays.iter().enumerate() {
            let params = overlay::fleet::link_params(delay_us, jitter, loss)?;
            let seed = seed.wrapping_mul(1000).wrapping_add(i as u64);
            links.push(EmulatedLink::start(addrs[i], addrs[i + 1], params, seed).await?);
        }
        let stats = Arc::new(Mutex::new(FloorStats {
            sent: 0,
            received: 0,
            one_way_us: latency_histogram(),
        }));
        let mut tasks = Vec::new();
        let mut sockets = sockets.into_iter();
        let first = sockets
            .next()
            .ok_or_else(|| anyhow::anyhow!("empty path"))?;
        let into_first = links[0].front_for_a();
        let s = stats.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(AUDIO_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut packet = vec![0u8; AUDIO_BYTES];
            loop {
                ticker.tick().await;
                packet[8..16].copy_from_slice(&now_us().to_be_bytes());
                if first.send_to(&packet, into_first).await.is_ok() {
                    s.lock().unwrap_or_else(|p| p.into_inner()).sent += 1;
                }
            }
        }));
        for (i, socket) in sockets.enumerate() {
            // Node i + 1: forward into link i + 1, or, at the end, measure.
            let next = links.get(i + 1).map(|l| l.front_for_a());
            let s = stats.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                while let Ok(n) = socket.recv(&mut buf).await {
                    match next {
                        Some(to) => {
                            let _ = socket.send_to(&buf[..n], to).await;
                        }
                        None if n >= 16 => {
                            let sent_us =
                                u64::from_be_bytes(buf[8..16].try_into().unwrap_or_default());
                            let mut st = s.lock().unwrap_or_else(|p| p.into_inner());
                            st.received += 1;
                            st.one_way_us
                                .saturating_record(now_us().saturating_sub(sent_us).max(1));
                        }
                        None => {}
                    }
                }
            }));
        }
        Ok(Some(FloorPath {
            path: path.to_vec(),
            delay_us: delays.iter().sum(),
            stats,
            tasks,
            _links: links,
        }))
    }

    /// Stops sending; the receivers run until dropped.
    pub fn stop_sending(&self) {
        if let Some(t) = self.tasks.first() {
            t.abort();
        }
    }
}

/// How far above the links' delay the floor may sit at p99 before the lab says
/// the machine cannot keep up (the emulator's timers alone are late by this much).
pub const KEEP_UP_P99: Duration = Duration::from_millis(10);
