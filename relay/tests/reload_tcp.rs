//! A reload that inserts a node, with a TCP service running: the service's
//! sessions still reach its egress relay.
//!
//! The defect this guards against: a TCP ingress kept the service as it was
//! bound, node indexes included, and looked the old egress index up in the new
//! topology. Nodes are indexed in id order, so a reload that inserts a node
//! shifts the indexes after it, and sessions went to the wrong relay.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use support::{bounded, Fleet, FleetSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use topology::Topology;

/// The same fleet file with one more node, `abc`, linked to `aaa` (its id sorts
/// between `aaa` and `bbb`, so every index from `bbb` on moves).
fn with_node_abc(t: &Topology) -> Topology {
    let mut y = String::from("version: 1\nnodes:\n");
    y += "  - { id: abc, city: Extra, country: US, region: test, lat: 20, lon: -90, addr: \"127.0.0.1:9\" }\n";
    for n in &t.nodes {
        y += &format!(
            "  - {{ id: {}, city: \"{}\", country: {}, region: {}, lat: {}, lon: {}, addr: \"{}\" }}\n",
            n.id, n.city, n.country, n.region, n.lat, n.lon, n.addr
        );
    }
    y += "links:\n  - { between: [aaa, abc], kind: terrestrial }\n";
    for l in &t.links {
        y += &format!(
            "  - {{ between: [{}, {}], kind: terrestrial }}\n",
            t.node(l.a).id,
            t.node(l.b).id
        );
    }
    y += "services:\n";
    for s in &t.services {
        y += &format!(
            "  - {{ name: {}, protocol: tcp, ingress: {{ node: {}, listen: \"{}\" }}, egress: {{ node: {}, target: \"{}\" }} }}\n",
            s.name,
            t.node(s.ingress_node).id,
            s.listen,
            t.node(s.egress_node).id,
            s.target
        );
    }
    topology::parse("reordered.yaml", &y).unwrap_or_else(|e| panic!("{e}\n{y}"))
}

/// One session through `ingress`: sends `ping`, half-closes, returns the reply.
async fn session(ingress: SocketAddr) -> Vec<u8> {
    let mut s = TcpStream::connect(ingress).await.expect("connect");
    s.write_all(b"ping").await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply).await;
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_inserts_a_node_keeps_tcp_sessions_going_to_their_egress() {
    bounded(60, async {
        let target = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let target_addr = target.local_addr().expect("addr");
        let echo = tokio::spawn(async move {
            while let Ok((mut s, _)) = target.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let _ = s.read_to_end(&mut buf).await;
                    let _ = s.write_all(b"echo:").await;
                    let _ = s.write_all(&buf).await;
                });
            }
        });
        let mut fleet = Fleet::start(FleetSpec {
            nodes: &["aaa", "bbb", "ccc"],
            links: &[("aaa", "bbb"), ("bbb", "ccc")],
            services: format!(
                "  - {{ name: signal, protocol: tcp, ingress: {{ node: aaa, listen: \"127.0.0.1:0\" }}, egress: {{ node: ccc, target: \"{target_addr}\" }} }}\n"
            ),
            ..Default::default()
        })
        .await;
        let ingress = fleet.ingress("aaa", "signal");
        assert_eq!(session(ingress).await, b"echo:ping", "before the reload");

        let new = Arc::new(with_node_abc(&fleet.topology));
        assert_ne!(
            new.node_idx("ccc"),
            fleet.topology.node_idx("ccc"),
            "the egress node's index moved"
        );
        for (id, relay) in fleet.relays.iter_mut() {
            let mut cfg = (*relay.config()).clone();
            cfg.node = new.node_idx(id).expect("node");
            cfg.topology = new.clone();
            let summary = relay.reload(cfg).await.expect("reload");
            let link: &[&str] = if id == "aaa" { &["abc"] } else { &[] };
            assert_eq!(summary.to_string().contains("links +abc"), !link.is_empty(), "{id}: {summary}");
            assert!(!summary.to_string().contains("services"), "{id}: {summary}");
        }
        assert_eq!(
            fleet.ingress("aaa", "signal"),
            ingress,
            "the unchanged service kept its listener"
        );
        for round in 0..3 {
            assert_eq!(session(ingress).await, b"echo:ping", "after the reload, session {round}");
        }
        echo.abort();
        fleet.shutdown().await;
    })
    .await;
}
