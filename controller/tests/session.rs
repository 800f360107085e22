//! A relay's session with the controller, from a stand-in relay speaking the
//! protocol: a large report that arrives in small pieces while the controller's
//! other work goes on (its first-report timer fires, tables go out) is read
//! whole, and its links reach the controller's view.
//!
//! The defect this guards against: the controller created its message reader
//! afresh inside `select!`, so when another branch fired in the middle of a
//! report the bytes already read were lost and the session fell apart.

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use control_protocol::{
    ControlCodec, ControllerMessage, LinkReport, RelayMessage, MAX_CONTROLLER_MESSAGE,
    MAX_RELAY_MESSAGE,
};
use futures_util::StreamExt as _;
use pki::TestCa;
use tokio_util::codec::FramedRead;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_trickling_in_while_the_controller_works_is_read_whole() {
    let test = async {
        let ca = TestCa::new();
        let (controller, ctl_addr) = support::two_node_controller(&ca).await;

        // The stand-in relay `aaa`.
        let client = daemon::tls::client_config(ca.issue("aaa"), ca.roots()).expect("client");
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let server = daemon::tls::server_config(
            ca.issue("aaa"),
            ca.roots(),
            daemon::tls::PeerPolicy::new(Vec::<String>::new()),
        )
        .expect("server config");
        let (endpoint, _) = daemon::quic::quic_endpoint(socket, server, 1 << 20).expect("endpoint");
        let conn = endpoint
            .connect_with(client, ctl_addr, "controller")
            .expect("connect")
            .await
            .expect("handshake");
        let (mut send, recv) = conn.open_bi().await.expect("control stream");
        let mut reader = FramedRead::new(
            recv,
            ControlCodec::<ControllerMessage, RelayMessage>::new(
                MAX_CONTROLLER_MESSAGE,
                MAX_RELAY_MESSAGE,
            ),
        );
        let hello = control_protocol::framing::encode(&RelayMessage::Hello {
            node: "aaa".into(),
            table_version: 0,
            protocol: 1,
        })
        .expect("encode");
        send.write_all(&hello).await.expect("hello");

        // A report of the real link plus 1,500 entries about links the
        // topology does not have (ignored), about 150 KB in all.
        let mut links = vec![LinkReport {
            peer: "bbb".into(),
            up: true,
            rtt_ms: Some(123.0),
            min_rtt_ms: Some(120.0),
            jitter_ms: Some(0.5),
            loss: 0.0,
            tx_mbps: None,
            up_for_s: None,
        }];
        links.extend((0..1_500).map(|i| LinkReport {
            peer: format!("elsewhere-{i:05}"),
            up: true,
            rtt_ms: Some(1.0),
            min_rtt_ms: Some(1.0),
            jitter_ms: Some(0.1),
            loss: 0.0,
            tx_mbps: None,
            up_for_s: None,
        }));
        let wire = control_protocol::framing::encode(&RelayMessage::Links {
            links,
            draining: false,
            services: vec![],
            demand: vec![],
        })
        .expect("encode");
        assert!(wire.len() > 100_000, "{} bytes", wire.len());
        // Over about 3 s: the controller's 2 s first-report timer fires in the
        // middle, and it pushes a table meanwhile.
        let started = tokio::time::Instant::now();
        let mut tables = 0;
        for piece in wire.chunks(wire.len() / 150 + 1) {
            send.write_all(piece).await.expect("the session stays up");
            let pause = tokio::time::sleep(Duration::from_millis(20));
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    m = reader.next() => {
                        let m = m.expect("the session stays up").expect("decodes");
                        assert!(matches!(m, ControllerMessage::Table(_)));
                        tables += 1;
                    }
                }
            }
        }
        assert!(started.elapsed() > Duration::from_secs(2));
        assert!(
            tables >= 1,
            "a table went out while the report was arriving"
        );
        // The report was read whole: the controller's view has the link's RTT.
        let seen = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let view = controller.shared.view();
                let link = view.links[0].view;
                if link.rtt == Some(Duration::from_millis(123)) && !link.stale {
                    return link;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the report reached the controller");
        assert!(seen.up);
        assert_eq!(controller.connected(), ["aaa"]);
        conn.close(0u32.into(), b"done");
        controller.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("bounded");
}

/// The defect: the controller waited forever for a relay's first message, so
/// a relay (or anything holding a relay's certificate) could keep sessions
/// open without a word. Now it must say hello within the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_never_says_hello_is_let_go() {
    let test = async {
        let ca = TestCa::new();
        let (controller, ctl_addr) = support::two_node_controller(&ca).await;
        let conn = support::connect_as_aaa(&ca, ctl_addr).await;
        // A stream, but no hello on it.
        let (_send, _recv) = conn.open_bi().await.expect("stream");
        let started = tokio::time::Instant::now();
        let closed = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
        assert!(closed.is_ok(), "the controller let the silent relay go");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(4) && took < Duration::from_secs(7),
            "let go after {took:?}; the deadline is 5 s"
        );
        assert!(controller.connected().is_empty());
        controller.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("bounded");
}
