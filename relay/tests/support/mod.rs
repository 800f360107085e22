//! A test fleet: relays on loopback with real sockets, certificates from an
//! in-memory CA, optionally every link through the link emulator.

#![allow(dead_code)] // each test file uses a different part of the harness

pub mod exposition;
pub mod process;
pub mod process_fleet;
pub mod transfer;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use emulator::{EmulatedLink, LinkParams};
use pki::TestCa;
use relay::{RelayConfig, RelayHandle};
use topology::Topology;

/// Bounds every test: a hung test fails instead of stalling CI.
pub async fn bounded<T>(secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test exceeded its time bound")
}

pub struct FleetSpec<'a> {
    pub nodes: &'a [&'a str],
    pub links: &'a [(&'a str, &'a str)],
    /// YAML list items under `services:` (may be empty).
    pub services: String,
    /// Relays to start (default: all nodes).
    pub start: Option<&'a [&'a str]>,
    /// Put every link through the emulator with these parameters.
    pub emulate: Option<LinkParams>,
    pub tune: fn(&mut RelayConfig),
}

impl Default for FleetSpec<'_> {
    fn default() -> Self {
        FleetSpec {
            nodes: &[],
            links: &[],
            services: String::new(),
            start: None,
            emulate: None,
            tune: |_| {},
        }
    }
}

pub struct Fleet {
    pub topology: Arc<Topology>,
    pub relays: BTreeMap<String, RelayHandle>,
    pub ca: TestCa,
    pub addrs: BTreeMap<String, SocketAddr>,
    pub links: BTreeMap<(String, String), EmulatedLink>,
}

impl Fleet {
    pub async fn start(spec: FleetSpec<'_>) -> Fleet {
        let mut sockets = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for id in spec.nodes {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind relay socket");
            addrs.insert(id.to_string(), s.local_addr().expect("addr"));
            sockets.insert(id.to_string(), s);
        }
        let mut yaml = String::from("version: 1\nnodes:\n");
        for (i, id) in spec.nodes.iter().enumerate() {
            yaml += &format!(
                "  - {{ id: {id}, city: City {i}, country: US, region: test, lat: {}, lon: {}, addr: \"{}\" }}\n",
                10.0 + i as f64,
                -100.0 + 2.0 * i as f64,
                addrs[*id]
            );
        }
        yaml += "links:\n";
        for (a, b) in spec.links {
            yaml += &format!("  - {{ between: [{a}, {b}], kind: terrestrial }}\n");
        }
        if !spec.services.trim().is_empty() {
            yaml += "services:\n";
            yaml += &spec.services;
        }
        let topology = Arc::new(
            topology::parse("test-topology.yaml", &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}")),
        );

        let mut links = BTreeMap::new();
        if let Some(params) = spec.emulate {
            for (i, (a, b)) in spec.links.iter().enumerate() {
                let link = EmulatedLink::start(addrs[*a], addrs[*b], params, 7 + i as u64)
                    .await
                    .expect("emulator");
                links.insert((a.to_string(), b.to_string()), link);
            }
        }

        let ca = TestCa::new();
        let roots = Arc::new(ca.roots());
        let mut relays = BTreeMap::new();
        let start: Vec<&str> = spec
            .start
            .map(|s| s.to_vec())
            .unwrap_or_else(|| spec.nodes.to_vec());
        for id in start {
            let idx = topology.node_idx(id).expect("node");
            let mut cfg = RelayConfig::new(topology.clone(), idx, ca.issue(id), roots.clone());
            cfg.tuning.reconnect_min = Duration::from_millis(20);
            cfg.tuning.reconnect_max = Duration::from_millis(500);
            for ((a, b), link) in &links {
                if a == id {
                    cfg.dial.insert(topology::wire_key(b), link.front_for_a());
                } else if b == id {
                    cfg.dial.insert(topology::wire_key(a), link.front_for_b());
                }
            }
            (spec.tune)(&mut cfg);
            let socket = sockets.remove(id).expect("socket");
            let relay = relay::start(cfg, socket, None).await.expect("relay starts");
            relays.insert(id.to_string(), relay);
        }
        let fleet = Fleet {
            topology,
            relays,
            ca,
            addrs,
            links,
        };
        fleet.wait_links_up().await;
        fleet
    }

    /// Waits until every link between two started relays is up on both ends.
    pub async fn wait_links_up(&self) {
        let wait = async {
            loop {
                let all_up = self.topology.links.iter().all(|l| {
                    let (a, b) = (&self.topology.node(l.a).id, &self.topology.node(l.b).id);
                    match (self.relays.get(a), self.relays.get(b)) {
                        (Some(ra), Some(rb)) => ra.peer_up(b) && rb.peer_up(a),
                        _ => true,
                    }
                });
                if all_up {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(15), wait)
            .await
            .expect("links came up within 15 s");
    }

    pub fn relay(&self, id: &str) -> &RelayHandle {
        &self.relays[id]
    }

    pub fn ingress(&self, node: &str, service: &str) -> SocketAddr {
        self.relays[node].ingress_addrs[service]
    }

    pub async fn shutdown(self) {
        for (_, r) in self.relays {
            r.shutdown().await;
        }
    }
}

/// A UDP server that answers every datagram with `echo:` + the datagram.
pub struct UdpEcho {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    pub sources: Arc<std::sync::Mutex<Vec<SocketAddr>>>,
}

impl UdpEcho {
    pub async fn start() -> UdpEcho {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind echo");
        let addr = socket.local_addr().expect("addr");
        let sources = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sources.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                {
                    let mut s = seen.lock().expect("lock");
                    if !s.contains(&from) {
                        s.push(from);
                    }
                }
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = socket.send_to(&reply, from).await;
            }
        });
        UdpEcho {
            addr,
            task,
            sources,
        }
    }
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}
