//! A fleet of real `relay` processes on loopback, every link through a link
//! emulator in the test process, so a test can kill one relay with SIGKILL
//! (a crash: no close frame, no goodbye) while the others carry on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use emulator::{EmulatedLink, LinkParams};
use tokio::time::Instant;

use super::process::{free_tcp, free_udp, Relay};

/// What to run: nodes, links with their one-way delay, TCP services, and
/// lines appended to every relay's config.
pub struct ProcessFleetSpec<'a> {
    pub nodes: &'a [&'a str],
    pub links: &'a [(&'a str, &'a str, u64)],
    /// (name, ingress node, egress node, target).
    pub tcp_services: &'a [(&'a str, &'a str, &'a str, SocketAddr)],
    pub extra_config: &'a str,
}

pub struct ProcessFleet {
    pub dir: tempfile::TempDir,
    pub relays: BTreeMap<String, Relay>,
    pub admins: BTreeMap<String, SocketAddr>,
    /// Where each TCP service's ingress listens, by service name.
    pub ingress: BTreeMap<String, SocketAddr>,
    pub links: BTreeMap<(String, String), EmulatedLink>,
}

/// One process fleet at a time in a test binary: four debug relays with their
/// transfers take the 2 cores, and two fleets at once starve each other's
/// probes (20 ms apart, lost after 30 ms) until links never all stay up.
/// Tests take it before their time bound starts.
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE_AT_A_TIME.lock().await
}

impl ProcessFleet {
    /// Writes the CA, certificates, topology and configs, starts the
    /// emulators and every relay, and waits until every link is up.
    pub async fn start(spec: ProcessFleetSpec<'_>) -> ProcessFleet {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        pki::init_ca(&root.join("ca"), false).expect("ca");
        let mut quic = BTreeMap::new();
        for (i, id) in spec.nodes.iter().enumerate() {
            pki::issue(&root.join("ca"), id, &root.join("certs"), false).expect("issue");
            quic.insert(id.to_string(), (i, free_udp()));
        }
        let mut links = BTreeMap::new();
        for (i, (a, b, delay_ms)) in spec.links.iter().enumerate() {
            let params = LinkParams::new(Duration::from_millis(*delay_ms), Duration::ZERO, 0.0)
                .expect("params");
            let link = EmulatedLink::start(quic[*a].1, quic[*b].1, params, 11 + i as u64)
                .await
                .expect("emulator");
            links.insert((a.to_string(), b.to_string()), link);
        }
        let ingress: BTreeMap<String, SocketAddr> = spec
            .tcp_services
            .iter()
            .map(|(name, ..)| (name.to_string(), free_tcp()))
            .collect();
        write_topology(root, &spec, &quic, &ingress);
        let mut admins = BTreeMap::new();
        for id in spec.nodes {
            let admin = free_tcp();
            let mut config = format!(
                "node: {id}\ntopology: topology.yaml\ncert: certs/{id}.pem\nkey: certs/{id}.key\nca: ca/ca.pem\nadmin: \"{admin}\"\n{}dial:\n",
                spec.extra_config
            );
            for ((a, b), link) in &links {
                if a == id {
                    config += &format!("  {b}: \"{}\"\n", link.front_for_a());
                } else if b == id {
                    config += &format!("  {a}: \"{}\"\n", link.front_for_b());
                }
            }
            std::fs::write(root.join(format!("{id}.yaml")), config).expect("write config");
            admins.insert(id.to_string(), admin);
        }
        let mut relays = BTreeMap::new();
        for id in spec.nodes {
            relays.insert(
                id.to_string(),
                Relay::start(root, id, &[], &[("RUST_LOG", "warn")]),
            );
        }
        let fleet = ProcessFleet {
            dir,
            relays,
            admins,
            ingress,
            links,
        };
        fleet.wait_links_up(Duration::from_secs(30)).await;
        fleet
    }

    /// The relay's `/api/v1/status`, if it answers.
    pub async fn status(&self, id: &str) -> Option<serde_json::Value> {
        match daemon::admin::client::get(self.admins[id], "/api/v1/status").await {
            Ok((200, body)) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// Waits until every running relay sees every one of its links up.
    pub async fn wait_links_up(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            let mut all = true;
            for id in self.relays.keys() {
                let up = self.status(id).await.is_some_and(|s| {
                    s["peers"]
                        .as_array()
                        .is_some_and(|p| p.iter().all(|p| p["state"] == "up"))
                });
                all &= up;
            }
            if all {
                return;
            }
            assert!(started.elapsed() < limit, "links up within {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills a relay with SIGKILL and reaps it.
    pub fn kill(&mut self, id: &str) {
        let relay = self.relays.get_mut(id).expect("a running relay");
        relay.child.kill().expect("SIGKILL");
        relay.child.wait().expect("reaped");
    }

    /// Starts a killed relay again, on the same config and ports.
    pub fn restart(&mut self, id: &str) {
        let relay = Relay::start(self.dir.path(), id, &[], &[("RUST_LOG", "warn")]);
        self.relays.insert(id.to_string(), relay);
    }

    /// A relay's counter from its status, e.g. `tcp_resumed`.
    pub async fn counter(&self, id: &str, name: &str) -> u64 {
        self.status(id)
            .await
            .and_then(|s| s["counters"][name].as_u64())
            .unwrap_or(0)
    }
}

fn write_topology(
    root: &Path,
    spec: &ProcessFleetSpec<'_>,
    quic: &BTreeMap<String, (usize, SocketAddr)>,
    ingress: &BTreeMap<String, SocketAddr>,
) {
    let mut yaml = String::from("version: 1\nnodes:\n");
    for id in spec.nodes {
        let (i, addr) = quic[*id];
        yaml += &format!(
            "  - {{ id: {id}, city: City {i}, country: JP, region: asia, lat: {}, lon: {}, addr: \"{addr}\" }}\n",
            30.0 + i as f64,
            130.0 + i as f64,
        );
    }
    yaml += "links:\n";
    for (a, b, delay_ms) in spec.links {
        yaml +=
            &format!("  - {{ between: [{a}, {b}], kind: terrestrial, delay_ms: {delay_ms} }}\n");
    }
    yaml += "services:\n";
    for (name, from, to, target) in spec.tcp_services {
        yaml += &format!(
            "  - {{ name: {name}, protocol: tcp, ingress: {{ node: {from}, listen: \"{}\" }}, egress: {{ node: {to}, target: \"{target}\" }} }}\n",
            ingress[*name]
        );
    }
    std::fs::write(root.join("topology.yaml"), yaml).expect("write topology");
}
