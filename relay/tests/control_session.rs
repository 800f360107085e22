//! The relay's session with its controller, against a stand-in controller
//! speaking the protocol: a large table that arrives in small pieces, while the
//! relay's own reports go out meanwhile, is applied whole with its version.
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
use futures_util::StreamExt as _;
use pki::TestCa;
use relay::RelayConfig;
use support::bounded;
use tokio::io::AsyncWriteExt as _;
use tokio_util::codec::FramedRead;

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
        })
        .chain((0..3_000).map(|i| RouteEntry {
            dst: format!("far-{i:05}"),
            primary: "bbb".into(),
            backup: None,
            repair: None,
        }))
        .collect();
        let wire = control_protocol::framing::encode(&ControllerMessage::Table(TableUpdate {
            version: 9,
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
