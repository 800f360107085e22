//! What the controller's end-to-end tests share: a controller of a two-node
//! fleet (`aaa`, `bbb`) on loopback, and a stand-in relay `aaa` connecting to it.

#![allow(dead_code)] // each test file uses part of this

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use controller::{ControllerConfig, ControllerHandle};
use pki::TestCa;

/// Starts the controller of a fleet of `aaa` and `bbb` joined by one link;
/// returns it and its QUIC address.
pub async fn two_node_controller(ca: &TestCa) -> (ControllerHandle, SocketAddr) {
    let ctl_socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let ctl_addr = ctl_socket.local_addr().expect("addr");
    let yaml = format!(
        "version: 1\ncontrollers:\n  - {{ id: controller, addr: \"{ctl_addr}\" }}\nnodes:\n\
         \x20 - {{ id: aaa, city: A, country: JP, region: asia, lat: 35.0, lon: 139.0, addr: \"127.0.0.1:8\" }}\n\
         \x20 - {{ id: bbb, city: B, country: US, region: na, lat: 34.0, lon: -118.0, addr: \"127.0.0.1:9\" }}\n\
         links:\n  - {{ between: [aaa, bbb], kind: undersea }}\n"
    );
    let topology = Arc::new(topology::parse("t.yaml", &yaml).expect("topology"));
    let mut cfg = ControllerConfig::new(
        topology,
        "controller",
        ca.issue("controller"),
        Arc::new(ca.roots()),
    );
    cfg.listen = ctl_addr;
    let controller = controller::start(cfg, ctl_socket, None)
        .await
        .expect("controller starts");
    (controller, ctl_addr)
}

/// A QUIC connection to the controller at `ctl_addr` as the relay `aaa`.
pub async fn connect_as_aaa(ca: &TestCa, ctl_addr: SocketAddr) -> quinn::Connection {
    let client = daemon::tls::client_config(ca.issue("aaa"), ca.roots()).expect("client");
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(client);
    endpoint
        .connect(ctl_addr, "controller")
        .expect("connect")
        .await
        .expect("handshake")
}
