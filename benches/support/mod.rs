//! What several benchmarks share: a chain topology on loopback and a clock that
//! sender and receiver threads read alike. Each bench includes this file with
//! `mod support;` (benches are separate crates).

#![allow(dead_code)] // not every bench uses every helper

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

/// One process-wide epoch, so a timestamp written by one thread means the same
/// to another.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Starts [`chain`] on loopback without emulated links or a controller (the
/// relays themselves are measured) and waits until its links are up. Returns
/// the fleet and the ingress address of its `media` service.
pub async fn start_chain(relays: usize, target: SocketAddr) -> (overlay::fleet::Fleet, SocketAddr) {
    let options = overlay::fleet::FleetOptions {
        controller: false,
        emulate: false,
        ..overlay::fleet::FleetOptions::default()
    };
    let limit = std::time::Duration::from_secs(20);
    let fleet = overlay::fleet::Fleet::start_ready(chain(relays, target), options, limit)
        .await
        .expect("chain ready");
    let ingress = fleet.relay("r0").ingress_addrs["media"];
    (fleet, ingress)
}

/// A chain r0 – r1 – … of `relays` relays with one UDP service `media` from r0
/// to the last relay, delivering to `target`.
pub fn chain(relays: usize, target: SocketAddr) -> topology::Topology {
    let mut yaml = String::from("version: 1\nnodes:\n");
    for i in 0..relays {
        yaml += &format!(
            "  - {{ id: r{i}, city: R{i}, country: US, region: bench, lat: 10.0, lon: {}.0, addr: \"127.0.0.1:{}\" }}\n",
            i,
            1 + i
        );
    }
    yaml += "links:\n";
    for i in 1..relays {
        yaml += &format!(
            "  - {{ between: [r{}, r{i}], kind: terrestrial, delay_ms: 1 }}\n",
            i - 1
        );
    }
    yaml += &format!(
        "services:\n  - {{ name: media, protocol: udp, ingress: {{ node: r0, listen: \"127.0.0.1:0\" }}, egress: {{ node: r{}, target: \"{target}\" }} }}\n",
        relays - 1
    );
    topology::parse("bench-chain.yaml", &yaml).expect("valid chain")
}
