//! The relay's session with its controller, against a stand-in controller
//! speaking the protocol: a large table that arrives in small pieces, while the
//! relay's own reports go out meanwhile, is applied whole with its version.
//! And fencing, against two stand-ins: the relay reports to both, puts the
//! highest term's tables in force and refuses (and counts) an older term's.
//!
//! The defect this guards against: the relay created its message reader afresh
//! inside `select!`, so when the report timer fired in the middle of a table the
//! bytes already read were lost and the session fell apart.

mod support;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use control_protocol::{
    ControlCodec, ControllerMessage, RelayMessage, RouteEntry, TableUpdate, MAX_CONTROLLER_MESSAGE,
    MAX_RELAY_MESSAGE,
};
use futures_util::{SinkExt as _, StreamExt as _};
use pki::TestCa;
use relay::RelayConfig;
use support::bounded;
use tokio::io::AsyncWriteExt as _;
use tokio_util::codec::{FramedRead, FramedWrite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_trickling_in_while_reports_go_out_is_applied_whole() {
    bounded(60, async {
        let ca = TestCa::new();
        let ctl_socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let ctl_addr = ctl_socket.local_addr().expect("addr");
        let relay_socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let yaml = format!(
            "version: 1\ncontrollers:\n  - {{ id: controller, addr: \"{ctl_addr}\" }}\nnodes:\n\
             \x20 - {{ id: aaa, city: A, country: JP, region: asia, lat: 35.0, lon: 139.0, addr: \"{}\" }}\n\
             \x20 - {{ id: bbb, city: B, country: US, region: na, lat: 34.0, lon: -118.0, addr: \"127.0.0.1:9\" }}\n\
             links:\n  - {{ between: [aaa, bbb], kind: undersea }}\n",
            relay_socket.local_addr().expect("addr")
        );
        let topology = Arc::new(topology::parse("t.yaml", &yaml).expect("topology"));

        // The stand-in controller.
        let server = daemon::tls::server_config(
            ca.issue("controller"),
            ca.roots(),
            daemon::tls::PeerPolicy::new(["aaa"]),
        )
        .expect("server config");
        let (endpoint, _) =
            daemon::quic::quic_endpoint(ctl_socket, server, 1 << 20).expect("endpoint");

        let idx = topology.node_idx("aaa").expect("aaa");
        let mut cfg = RelayConfig::new(topology.clone(), idx, ca.issue("aaa"), Arc::new(ca.roots()));
        cfg.tuning.reconnect_min = Duration::from_millis(50);
        let relay = relay::start(cfg, relay_socket, None).await.expect("relay starts");

        let conn = endpoint
            .accept()
            .await
            .expect("the relay connects")
            .await
            .expect("handshake");
        let (mut send, recv) = conn.accept_bi().await.expect("control stream");
        let mut reader = FramedRead::new(
            recv,
            ControlCodec::<RelayMessage, ControllerMessage>::new(
                MAX_RELAY_MESSAGE,
                MAX_CONTROLLER_MESSAGE,
            ),
        );
        let hello = reader.next().await.expect("hello").expect("decodes");
        assert!(matches!(hello, RelayMessage::Hello { ref node, .. } if node == "aaa"), "{hello:?}");

        // A full table of 3,000 destinations (only bbb exists; the rest are
        // kept as routes to unknown nodes, which is what the relay is told).
        let set: Vec<RouteEntry> = std::iter::once(RouteEntry {
            dst: "bbb".into(),
            primary: "bbb".into(),
            backup: None,
            repair: None,
            second: None,
            placed: Vec::new(),
        })
        .chain((0..3_000).map(|i| RouteEntry {
            dst: format!("far-{i:05}"),
            primary: "bbb".into(),
            backup: None,
            repair: None,
            second: None,
            placed: Vec::new(),
        }))
        .collect();
        let wire = control_protocol::framing::encode(&ControllerMessage::Table(TableUpdate {
            version: 9,
            term: 0,
            full: true,
            set,
            remove: Vec::new(),
        }))
        .expect("encode");
        // Trickled over about 3 s: the relay's 1 s report timer fires in the
        // middle of it, more than once.
        let started = tokio::time::Instant::now();
        let chunk = wire.len() / 150 + 1;
        let mut reports_meanwhile = 0;
        let mut applied = None;
        for piece in wire.chunks(chunk) {
            send.write_all(piece).await.expect("write");
            send.flush().await.expect("flush");
            let pause = tokio::time::sleep(Duration::from_millis(20));
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    m = reader.next() => {
                        match m.expect("the session stays up").expect("decodes") {
                            RelayMessage::Links { .. } => reports_meanwhile += 1,
                            RelayMessage::Applied { version } => applied = Some(version),
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                }
            }
        }
        assert!(
            started.elapsed() > Duration::from_secs(2),
            "the table took {:?} to send",
            started.elapsed()
        );
        assert!(reports_meanwhile >= 2, "{reports_meanwhile} reports went out meanwhile");
        // The relay acknowledges the version, and holds that table with it.
        let applied = loop {
            if let Some(version) = applied {
                break version;
            }
            match reader.next().await.expect("the session stays up").expect("decodes") {
                RelayMessage::Applied { version } => applied = Some(version),
                RelayMessage::Links { .. } => continue,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(applied, 9);
        let routes = relay.routes();
        assert_eq!(routes.version, 9);
        assert_eq!(routes.table.routes().count(), 3_001);
        relay.shutdown().await;
    })
    .await;
}

type StandInCodec = ControlCodec<RelayMessage, ControllerMessage>;

fn stand_in_codec() -> StandInCodec {
    ControlCodec::new(MAX_RELAY_MESSAGE, MAX_CONTROLLER_MESSAGE)
}

/// One stand-in controller's side of a relay's session.
struct StandIn {
    reader: FramedRead<quinn::RecvStream, StandInCodec>,
    writer: FramedWrite<quinn::SendStream, StandInCodec>,
    _conn: quinn::Connection,
}

impl StandIn {
    /// Waits for the relay to connect, say hello and send a report.
    async fn accept(endpoint: &quinn::Endpoint) -> StandIn {
        let conn = endpoint
            .accept()
            .await
            .expect("the relay connects")
            .await
            .expect("handshake");
        let (send, recv) = conn.accept_bi().await.expect("control stream");
        let mut s = StandIn {
            reader: FramedRead::new(recv, stand_in_codec()),
            writer: FramedWrite::new(send, stand_in_codec()),
            _conn: conn,
        };
        let hello = s.reader.next().await.expect("hello").expect("decodes");
        assert!(matches!(hello, RelayMessage::Hello { ref node, .. } if node == "aaa"));
        match s.reader.next().await.expect("a report").expect("decodes") {
            RelayMessage::Links { links, .. } => assert_eq!(links.len(), 1),
            other => panic!("expected a report, got {other:?}"),
        }
        s
    }

    async fn send(&mut self, term: u64, version: u64, full: bool, primary: &str) {
        let update = TableUpdate {
            version,
            term,
            full,
            set: vec![RouteEntry {
                dst: "ddd".into(),
                primary: primary.into(),
                backup: None,
                repair: None,
                second: None,
                placed: Vec::new(),
            }],
            remove: Vec::new(),
        };
        self.writer
            .send(ControllerMessage::Table(update))
            .await
            .expect("send");
    }

    /// The version the relay acknowledges within `wait`, reports skipped.
    async fn applied_within(&mut self, wait: Duration) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.reader.next()).await;
            match next {
                Err(_) => return None,
                Ok(m) => match m.expect("the session stays up").expect("decodes") {
                    RelayMessage::Applied { version } => return Some(version),
                    RelayMessage::Links { .. } => continue,
                    other => panic!("unexpected {other:?}"),
                },
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_reports_to_every_controller_and_refuses_an_older_terms_table() {
    bounded(60, async {
        let ca = TestCa::new();
        let sockets = [
            UdpSocket::bind("127.0.0.1:0").expect("bind"),
            UdpSocket::bind("127.0.0.1:0").expect("bind"),
        ];
        let addrs = sockets.each_ref().map(|s| s.local_addr().expect("addr"));
        let relay_socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let yaml = format!(
            "version: 1\ncontrollers:\n  - {{ id: c1, addr: \"{}\" }}\n  - {{ id: c2, addr: \"{}\" }}\nnodes:\n\
             \x20 - {{ id: aaa, city: A, country: JP, region: asia, lat: 35.0, lon: 139.0, addr: \"{}\" }}\n\
             \x20 - {{ id: bbb, city: B, country: US, region: na, lat: 34.0, lon: -118.0, addr: \"127.0.0.1:9\" }}\n\
             \x20 - {{ id: ddd, city: D, country: US, region: na, lat: 36.0, lon: -117.0, addr: \"127.0.0.1:10\" }}\n\
             links:\n  - {{ between: [aaa, bbb], kind: undersea }}\n  - {{ between: [bbb, ddd], kind: terrestrial }}\n",
            addrs[0],
            addrs[1],
            relay_socket.local_addr().expect("addr")
        );
        let topology = Arc::new(topology::parse("t.yaml", &yaml).expect("topology"));
        let mut endpoints = Vec::new();
        for (id, socket) in ["c1", "c2"].into_iter().zip(sockets) {
            let server = daemon::tls::server_config(
                ca.issue(id),
                ca.roots(),
                daemon::tls::PeerPolicy::new(["aaa"]),
            )
            .expect("server config");
            endpoints.push(daemon::quic::quic_endpoint(socket, server, 1 << 20).expect("endpoint").0);
        }
        let idx = topology.node_idx("aaa").expect("aaa");
        let mut cfg = RelayConfig::new(topology.clone(), idx, ca.issue("aaa"), Arc::new(ca.roots()));
        cfg.tuning.reconnect_min = Duration::from_millis(50);
        let relay = relay::start(cfg, relay_socket, None).await.expect("relay starts");
        // Both hear the relay: a standby's link state stays warm.
        let (mut c1, mut c2) = tokio::join!(StandIn::accept(&endpoints[0]), StandIn::accept(&endpoints[1]));
        let refused = |reason: &str| relay.status().counters.tables_refused[reason];
        let short = Duration::from_millis(1500);

        // c1 leads with term 5.
        c1.send(5, 1, true, "bbb").await;
        assert_eq!(c1.applied_within(Duration::from_secs(5)).await, Some(1));
        // c2 is elected with term 9: its first (whole) table wins, whatever its version.
        c2.send(9, 1, true, "bbb").await;
        assert_eq!(c2.applied_within(Duration::from_secs(5)).await, Some(1));
        let status = relay.status();
        assert_eq!((status.table_term, status.table_version), (9, 1));

        // c1, the old leader waking up, pushes term 5: refused, whole or diff,
        // not acknowledged, nothing changes.
        c1.send(5, 2, false, "ccc").await;
        c1.send(5, 3, true, "ccc").await;
        assert_eq!(c1.applied_within(short).await, None, "an old term's table is never acknowledged");
        assert_eq!(refused("stale_term"), 2);
        let routes = relay.routes();
        assert_eq!((routes.term, routes.version), (9, 1));
        assert_eq!(
            routes.table.route(topology::wire_key("ddd")).map(|r| r.primary),
            Some(topology::wire_key("bbb"))
        );

        // A diff cannot open a term; a whole table can.
        c1.send(11, 1, false, "bbb").await;
        assert_eq!(c1.applied_within(short).await, None);
        assert_eq!(refused("diff_of_new_term"), 1);
        c1.send(11, 4, true, "bbb").await;
        assert_eq!(c1.applied_within(Duration::from_secs(5)).await, Some(4));
        c2.send(9, 2, false, "bbb").await;
        assert_eq!(c2.applied_within(short).await, None);
        assert_eq!(refused("stale_term"), 3);
        assert_eq!(relay.routes().term, 11);
        relay.shutdown().await;
    })
    .await;
}
