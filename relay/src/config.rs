//! The relay's config file (`relay.yaml`): raw schema, defaults, and the compile
//! step into a checked [`RelayConfig`]. Loading reads files but binds no port.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use daemon::config_file::{
    admin_addr, decode_root, load_identity_and_ca, load_topology, parse_addr, read_file,
    single_error,
};
use daemon::tls::Identity;
use serde::Deserialize;
use topology::{ConfigErrors, NodeIdx, Topology};

/// `relay.yaml` as written. Relative paths are relative to the file itself.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelayConfig {
    /// This relay's node id in the topology, e.g. `sha`. Required.
    node: String,
    /// Path of the fleet's topology file. Required.
    topology: String,
    /// QUIC listen address. Default: the node's `addr` in the topology.
    #[serde(default)]
    listen: Option<String>,
    /// This node's certificate (PEM), issued by `overlay pki issue`. Required.
    cert: String,
    /// This node's private key (PEM, mode 0600). Required; never printed.
    key: String,
    /// The fleet CA certificate (PEM). Required.
    ca: String,
    /// Admin HTTP listen address (`/healthz`, `/api/v1/status`). Default
    /// `127.0.0.1:9900`; `off` disables it.
    #[serde(default)]
    admin: Option<String>,
    /// A UDP flow with no packet for this long is forgotten and its socket
    /// released. Default 30000 (30 s).
    #[serde(default)]
    flow_idle_timeout_ms: Option<u64>,
    /// Most concurrent flows per service at this relay; beyond it new flows are
    /// dropped and counted. Default 100000.
    #[serde(default)]
    max_flows_per_service: Option<u32>,
    /// TCP sessions (QUIC streams) one peer link carries at once; beyond it a
    /// new session waits for one to end. Default 16384. Each allowed stream
    /// costs about 50 bytes per link end.
    #[serde(default)]
    max_streams_per_link: Option<u32>,
    /// A TCP session with no byte either way for this long is closed (both
    /// ends see a reset). Default 600000 (10 minutes).
    #[serde(default)]
    tcp_idle_timeout_ms: Option<u64>,
    /// How long an end of a TCP session whose path broke keeps it for a
    /// resume over a new path: the ingress keeps trying, the egress keeps the
    /// target connection waiting. Then the session ends (both local sockets
    /// see a reset). Default 20000 (20 s); 1000 to 600000.
    #[serde(default)]
    tcp_resume_timeout_ms: Option<u64>,
    /// Bytes of one direction of a TCP session kept at its ingress or egress
    /// until the far end acknowledges them; when full, reading from the local
    /// socket pauses. Default 1048576 (1 MiB); 65536 to 67108864. Memory grows
    /// only as bytes wait.
    #[serde(default)]
    tcp_session_buffer_bytes: Option<u32>,
    /// Receive and send buffer asked for on the QUIC socket and each UDP
    /// ingress socket. Default 4194304 (4 MiB); the kernel caps it at
    /// `net.core.rmem_max` / `wmem_max`.
    #[serde(default)]
    socket_buffer_bytes: Option<u32>,
    /// On SIGTERM, how long the relay drains (routes move off it, no new
    /// flows) before it exits. Default 10000 (10 s); keep it under the unit's
    /// `TimeoutStopSec`.
    #[serde(default)]
    drain_grace_ms: Option<u64>,
    /// Time between two link probes. Default 20. Shorter detects a dead link
    /// sooner (a link is down after 2 lost probes) at more probe traffic and
    /// more sensitivity to a starved CPU; see BENCHMARKS.md, benchmark 3.
    #[serde(default)]
    probe_interval_ms: Option<u64>,
    /// The least time a probe may take before it counts as lost. Default 30.
    /// Links with longer round trips wait srtt + 4 x rttvar instead.
    #[serde(default)]
    probe_timeout_floor_ms: Option<u64>,
    /// Consecutive lost probes that take a link down. Default 2: with the
    /// 20 ms interval and the 30 ms floor, bench 3's gap is about 85/90 ms
    /// (p50/p99); 3 with 50 ms and 50 ms gave about 200/220. A probe lost
    /// while the peer is still heard is excused, so loss alone rarely counts.
    #[serde(default)]
    probe_down_after: Option<u32>,
    /// Consecutive answered probes that bring a link back up after it went
    /// down. Default 50 (1 s at the default interval); a new link needs 5.
    /// A link that failed proves itself before it draws traffic back.
    #[serde(default)]
    probe_up_again_after: Option<u32>,
    /// Dial this address for a peer instead of its topology `addr` (the lab and
    /// tests put link emulators there). Default: none.
    #[serde(default)]
    dial: BTreeMap<String, String>,
}

/// Knobs with defaults; the lab and tests shorten the timers.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub flow_idle_timeout: Duration,
    pub max_flows_per_service: usize,
    /// Buffer size asked for on the sockets carrying aggregate traffic.
    pub socket_buffer: usize,
    /// The longest a drain waits before the relay exits.
    pub drain_grace: Duration,
    /// QUIC keep-alive on peer links.
    pub keep_alive: Duration,
    /// A peer link silent this long is closed (a backstop: probes detect loss sooner).
    pub link_idle_timeout: Duration,
    /// Reconnect backoff bounds (doubling, with ±25% jitter).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Handshakes, stream headers and target connects must finish within this.
    pub setup_timeout: Duration,
    /// QUIC initial MTU. 1400 lets a 1200-byte video datagram plus headers through
    /// from the first packet on ordinary 1500-byte paths.
    pub initial_mtu: u16,
    /// Link probing: interval, loss timeouts and up/down hysteresis.
    pub probe: relay_core::probe::ProbeConfig,
    /// TCP sessions (QUIC streams) one peer link carries at once. quinn keeps
    /// about 50 bytes per allowed stream per connection end.
    pub max_streams_per_link: u32,
    /// A TCP session idle this long (no byte either way) is closed.
    pub tcp_idle_timeout: Duration,
    /// TCP sessions end to end: send buffer bound and resume timeout.
    pub tcp_session: relay_core::session::SessionConfig,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            flow_idle_timeout: Duration::from_secs(30),
            max_flows_per_service: 100_000,
            socket_buffer: 4 << 20,
            drain_grace: Duration::from_secs(10),
            keep_alive: Duration::from_secs(1),
            link_idle_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            setup_timeout: Duration::from_secs(5),
            initial_mtu: 1400,
            probe: relay_core::probe::ProbeConfig::default(),
            max_streams_per_link: 16_384,
            tcp_idle_timeout: Duration::from_secs(600),
            tcp_session: relay_core::session::SessionConfig::default(),
        }
    }
}

/// A checked relay configuration, ready to run.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub topology: Arc<Topology>,
    pub node: NodeIdx,
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub identity: Identity,
    pub roots: Arc<rustls::RootCertStore>,
    /// Dial overrides by peer node key.
    pub dial: HashMap<u32, SocketAddr>,
    /// Dial this address for the topology's first controller instead of its
    /// own (lab, tests); other controllers are dialled at their addresses.
    pub controller_addr: Option<SocketAddr>,
    pub tuning: Tuning,
}

pub const DEFAULT_ADMIN: &str = "127.0.0.1:9900";

impl RelayConfig {
    /// A config with defaults, for the lab and tests (no files involved).
    pub fn new(
        topology: Arc<Topology>,
        node: NodeIdx,
        identity: Identity,
        roots: Arc<rustls::RootCertStore>,
    ) -> Self {
        RelayConfig {
            listen: topology.node(node).addr,
            topology,
            node,
            admin: None,
            identity,
            roots,
            dial: HashMap::new(),
            controller_addr: None,
            tuning: Tuning::default(),
        }
    }

    pub fn node_id(&self) -> &str {
        &self.topology.node(self.node).id
    }

    /// The address to dial for a peer: an override, or its topology address.
    pub fn dial_addr(&self, peer: NodeIdx) -> SocketAddr {
        let key = self.topology.node_key(peer);
        self.dial
            .get(&key)
            .copied()
            .unwrap_or(self.topology.node(peer).addr)
    }

    /// Reads and checks `relay.yaml` and everything it names: the topology, the
    /// certificate, key and CA. Every problem is reported, each with its line.
    pub fn load(path: &Path) -> Result<RelayConfig, ConfigErrors> {
        read_file(path, Self::parse)
    }

    /// As [`RelayConfig::load`], from text; relative paths resolve against `base`.
    pub fn parse(file: &str, text: &str, base: &Path) -> Result<RelayConfig, ConfigErrors> {
        let (mut doc, raw) = decode_root::<RawRelayConfig>(file, text)?;
        let topology = load_topology(&mut doc, base, &raw.topology);
        let node = topology
            .as_ref()
            .and_then(|t| match t.require_node(&raw.node) {
                Ok(n) => Some(n),
                Err(e) => {
                    doc.error("node", e.to_string());
                    None
                }
            });
        let listen = match (&raw.listen, &topology, node) {
            (Some(text), _, _) => parse_addr(&mut doc, "listen", text),
            (None, Some(t), Some(n)) => Some(t.node(n).addr),
            _ => None,
        };
        let admin = admin_addr(&mut doc, raw.admin.as_deref(), DEFAULT_ADMIN);
        let (identity, roots) =
            load_identity_and_ca(&mut doc, base, (&raw.cert, &raw.key, &raw.ca), &raw.node);
        let mut dial = HashMap::new();
        for (peer, addr) in &raw.dial {
            let path = format!("dial.{peer}");
            let Some(addr) = parse_addr(&mut doc, &path, addr) else {
                continue;
            };
            match topology.as_ref().map(|t| t.require_node(peer)) {
                Some(Ok(idx)) => {
                    dial.insert(topology.as_ref().map_or(0, |t| t.node_key(idx)), addr);
                }
                Some(Err(e)) => doc.error(&path, e.to_string()),
                None => {}
            }
        }
        let mut tuning = Tuning::default();
        if let Some(ms) = raw.flow_idle_timeout_ms {
            if ms == 0 {
                doc.error("flow_idle_timeout_ms", "must be above 0 ms");
            }
            tuning.flow_idle_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = raw.max_flows_per_service {
            if n == 0 {
                doc.error("max_flows_per_service", "must be at least 1");
            }
            tuning.max_flows_per_service = n as usize;
        }
        if let Some(n) = raw.max_streams_per_link {
            if !(1..=1_000_000).contains(&n) {
                doc.error("max_streams_per_link", "must be between 1 and 1000000");
            }
            tuning.max_streams_per_link = n;
        }
        if let Some(ms) = raw.tcp_idle_timeout_ms {
            if ms < 1000 {
                doc.error("tcp_idle_timeout_ms", "must be at least 1000 (1 s)");
            }
            tuning.tcp_idle_timeout = Duration::from_millis(ms);
        }
        if let Some(ms) = raw.tcp_resume_timeout_ms {
            if !(1000..=600_000).contains(&ms) {
                doc.error("tcp_resume_timeout_ms", "must be between 1000 and 600000");
            }
            tuning.tcp_session.resume_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = raw.tcp_session_buffer_bytes {
            if !(65_536..=67_108_864).contains(&n) {
                doc.error(
                    "tcp_session_buffer_bytes",
                    "must be between 65536 (64 KiB) and 67108864 (64 MiB)",
                );
            }
            tuning.tcp_session.buffer = n as usize;
        }
        if let Some(n) = raw.socket_buffer_bytes {
            if n < 65_536 {
                doc.error("socket_buffer_bytes", "must be at least 65536 (64 KiB)");
            }
            tuning.socket_buffer = n as usize;
        }
        if let Some(ms) = raw.probe_interval_ms {
            if !(5..=1000).contains(&ms) {
                doc.error("probe_interval_ms", "must be between 5 and 1000");
            }
            tuning.probe.interval = Duration::from_millis(ms);
        }
        if let Some(ms) = raw.probe_timeout_floor_ms {
            if !(5..=1000).contains(&ms) {
                doc.error("probe_timeout_floor_ms", "must be between 5 and 1000");
            }
            tuning.probe.min_timeout = Duration::from_millis(ms);
        }
        if let Some(n) = raw.probe_down_after {
            if !(1..=20).contains(&n) {
                doc.error("probe_down_after", "must be between 1 and 20");
            }
            tuning.probe.down_after = n;
        }
        if let Some(n) = raw.probe_up_again_after {
            let least = tuning.probe.up_after;
            if !(least..=1000).contains(&n) {
                doc.error(
                    "probe_up_again_after",
                    format!("must be between {least} (the answers a new link needs) and 1000"),
                );
            }
            tuning.probe.up_again_after = n;
        }
        if let Some(ms) = raw.drain_grace_ms {
            if ms > 600_000 {
                doc.error("drain_grace_ms", "must be at most 600000 (10 minutes)");
            }
            tuning.drain_grace = Duration::from_millis(ms);
        }
        doc.finish()?;
        match (topology, node, listen, identity, roots) {
            (Some(topology), Some(node), Some(listen), Some(identity), Some(roots)) => {
                Ok(RelayConfig {
                    topology,
                    node,
                    listen,
                    admin,
                    identity,
                    roots,
                    dial,
                    controller_addr: None,
                    tuning,
                })
            }
            _ => Err(single_error(file, "incomplete config")), // every missing part was reported above
        }
    }
}
