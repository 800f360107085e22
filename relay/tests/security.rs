//! Who may talk to a relay, and what a relay does with bad input: peers are
//! authenticated before a byte is forwarded; malformed, looping and misaddressed
//! packets are counted drops, never panics.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use daemon::tls::Identity;
use pki::TestCa;
use relay_core::wire::{Header, Kind};
use relay_core::DropReason;
use support::{bounded, Fleet, FleetSpec, UdpEcho};

/// A bare QUIC client with `identity`, trusting `ca`.
fn client(identity: Identity, ca: &TestCa) -> quinn::Endpoint {
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    endpoint.set_default_client_config(
        daemon::tls::client_config(identity, ca.roots()).expect("client config"),
    );
    endpoint
}

async fn dial(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    name: &str,
) -> Result<quinn::Connection, String> {
    let connecting = endpoint.connect(addr, name).map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), connecting).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Whether the server refused us. In TLS 1.3 the client's side of the handshake
/// ends before the server has checked the client certificate, so a refusal shows
/// either as a failed connect or as the server closing the connection at once.
async fn refused(endpoint: &quinn::Endpoint, addr: SocketAddr, name: &str) -> bool {
    match dial(endpoint, addr, name).await {
        Err(_) => true,
        Ok(conn) => {
            // Try to slip a datagram in; the server must never act on it.
            let _ = conn.send_datagram(bytes::Bytes::from_static(b"sneaky"));
            let closed = tokio::time::timeout(Duration::from_secs(3), conn.closed()).await;
            matches!(
                closed,
                Ok(quinn::ConnectionError::TransportError(_)
                    | quinn::ConnectionError::ConnectionClosed(_))
            )
        }
    }
}

async fn line() -> Fleet {
    Fleet::start(FleetSpec {
        nodes: &["aaa", "bbb", "ccc"],
        links: &[("aaa", "bbb"), ("bbb", "ccc")],
        start: Some(&["aaa", "bbb"]),
        ..Default::default()
    })
    .await
}

/// aaa's counters once its refusal is counted: the client sees the
/// handshake fail a moment before the relay's task counts it (bounded: 2 s).
async fn refusal_counted(fleet: &Fleet, before: u64) -> relay::metrics::Counters {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let now = fleet.relay("aaa").status().counters;
        if now.peers_refused > before || tokio::time::Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    bounded(30, async {
        let fleet = line().await;
        let rogue_ca = TestCa::new();
        // Claims to be `bbb` (a real neighbor of aaa) with a certificate from the wrong CA.
        let rogue = client(rogue_ca.issue("bbb"), &fleet.ca);
        let before = fleet.relay("aaa").status().counters;
        assert!(
            refused(&rogue, fleet.addrs["aaa"], "aaa").await,
            "the handshake must fail"
        );
        let after = refusal_counted(&fleet, before.peers_refused).await;
        assert_eq!(after.peers_refused, before.peers_refused + 1);
        assert_eq!(
            after.datagrams_received, before.datagrams_received,
            "no byte forwarded"
        );
        assert_eq!(after.streams_relayed, 0);
        assert!(
            fleet.relay("aaa").peer_up("bbb"),
            "the real bbb link is untouched"
        );
        fleet.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_node_that_is_not_a_neighbor_is_refused() {
    bounded(30, async {
        let fleet = line().await;
        // `ccc` has a valid fleet certificate but no link to `aaa` in the topology.
        let ccc = client(fleet.ca.issue("ccc"), &fleet.ca);
        let before = fleet.relay("aaa").status().counters;
        assert!(refused(&ccc, fleet.addrs["aaa"], "aaa").await, "refused");
        let after = refusal_counted(&fleet, before.peers_refused).await;
        assert_eq!(after.peers_refused, before.peers_refused + 1);
        assert_eq!(
            after.datagrams_received, before.datagrams_received,
            "no byte forwarded"
        );
        // A node that is a neighbor (here `ccc` to `bbb`) is accepted: the refusal was the topology's.
        assert!(dial(&ccc, fleet.addrs["bbb"], "bbb").await.is_ok());
        fleet.shutdown().await;
    })
    .await;
}

/// Plays a relay's part in link probing (answers probes) on a test-held
/// connection, and hands every other datagram to the test.
fn answer_probes(conn: quinn::Connection) -> tokio::sync::mpsc::Receiver<bytes::Bytes> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        while let Ok(d) = conn.read_datagram().await {
            match Header::decode(&d) {
                Ok((h, _)) if h.kind == Kind::Probe => {
                    let reply = Header {
                        kind: Kind::ProbeReply,
                        dst: h.src,
                        src: h.dst,
                        ..h
                    };
                    let _ = conn.send_datagram(reply.encode().to_vec().into());
                }
                _ => {
                    if tx.send(d).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

fn media(dst: &str, ttl: u8) -> Header {
    Header {
        kind: Kind::Media,
        ttl,
        flags: 0,
        dst: topology::wire_key(dst),
        src: topology::wire_key("aaa"),
        service: topology::wire_key("media"),
        flow: 1,
        seq: 0,
        timestamp_us: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_packets_from_an_authenticated_peer_are_counted_drops() {
    bounded(60, async {
        let echo = UdpEcho::start().await;
        let services = format!(
            "  - name: media\n    protocol: udp\n    ingress: {{ node: aaa, listen: \"127.0.0.1:0\" }}\n    egress: {{ node: ccc, target: \"{}\" }}\n",
            echo.addr
        );
        // bbb and ccc run; the test itself is `aaa`, holding aaa's real certificate.
        let fleet = Fleet::start(FleetSpec {
            nodes: &["aaa", "bbb", "ccc"],
            links: &[("aaa", "bbb"), ("bbb", "ccc")],
            services,
            start: Some(&["bbb", "ccc"]),
            ..Default::default()
        })
        .await;
        let aaa = client(fleet.ca.issue("aaa"), &fleet.ca);
        let conn = dial(&aaa, fleet.addrs["bbb"], "bbb").await.expect("aaa is bbb's neighbor");
        let mut inbox = answer_probes(conn.clone());
        // bbb sends to aaa only once its probes pass.
        let up = async {
            while !fleet.relay("bbb").peer_up("aaa") {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), up).await.expect("bbb sees aaa up");

        let mut bad_version = media("ccc", 5).encode_with(b"x");
        bad_version[0] = 9;
        let mut bad_kind = media("ccc", 5).encode_with(b"x");
        bad_kind[1] = 200;
        let datagrams: Vec<Vec<u8>> = vec![
            b"short".to_vec(),                            // malformed: truncated
            bad_version,                                  // malformed: version
            bad_kind,                                     // malformed: kind
            media("nowhere", 5).encode_with(b"x"),        // no route
            media("ccc", 0).encode_with(b"x"),            // ttl 0
            media("ccc", 1).encode_with(b"x"),            // would leave with ttl 0
            media("ccc", 5).encode_with(b"to the echo"),  // valid: delivered at ccc
        ];
        for d in datagrams {
            conn.send_datagram(d.into()).expect("send");
        }
        // A stream whose header is garbage.
        let (mut send, _recv) = conn.open_bi().await.expect("open");
        send.write_all(b"not a header").await.expect("write");
        send.finish().expect("finish");

        let bbb = fleet.relay("bbb");
        let wait = async {
            loop {
                let c = bbb.status().counters;
                if c.drop_count(DropReason::Malformed) >= 4 && c.datagrams_received >= 8 {
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let c = tokio::time::timeout(Duration::from_secs(10), wait).await.expect("drops counted within 10 s");
        assert_eq!(c.drop_count(DropReason::Malformed), 4, "3 datagrams + 1 stream: {c:?}");
        assert_eq!(c.drop_count(DropReason::NoRoute), 1, "{c:?}");
        assert_eq!(c.drop_count(DropReason::TtlExpired), 2, "{c:?}");
        assert_eq!(c.datagrams_received, 8, "7 from aaa and the echo's reply from ccc");
        // The valid packet went on to ccc and out to the target, and its reply came
        // back to `aaa`; both relays are still up.
        assert_eq!(fleet.relay("ccc").status().counters.datagrams_delivered, 1);
        let reply = tokio::time::timeout(Duration::from_secs(5), inbox.recv())
            .await
            .expect("reply within 5 s")
            .expect("reply datagram");
        let (h, payload) = Header::decode(&reply).expect("a valid header");
        assert!(h.is_reply() && h.dst == topology::wire_key("aaa"));
        assert_eq!(payload, b"echo:to the echo");
        assert!(bbb.peer_up("ccc"));
        fleet.shutdown().await;
    })
    .await;
}
