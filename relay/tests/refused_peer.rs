//! A relay whose neighbour refuses it (the neighbour's topology no longer has
//! the link) backs off between dials like after any failed dial.
//!
//! The defect this guards against: in TLS 1.3 the dialer's handshake ends
//! before the server has checked its certificate, so the dial "succeeded", the
//! peer closed the connection at once, and the relay dialed again without
//! waiting: 98 redials and 190 warnings in 3 s.

mod support;

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use pki::TestCa;
use relay::RelayConfig;
use support::bounded;

fn topology(links: &str, addrs: &[std::net::SocketAddr; 3]) -> Arc<topology::Topology> {
    let yaml = format!(
        "version: 1\nnodes:\n\
         \x20 - {{ id: aaa, city: A, country: JP, region: asia, lat: 35.0, lon: 139.0, addr: \"{}\" }}\n\
         \x20 - {{ id: bbb, city: B, country: US, region: na, lat: 34.0, lon: -118.0, addr: \"{}\" }}\n\
         \x20 - {{ id: ccc, city: C, country: US, region: na, lat: 40.0, lon: -74.0, addr: \"{}\" }}\n\
         links:\n{links}",
        addrs[0], addrs[1], addrs[2]
    );
    Arc::new(topology::parse("t.yaml", &yaml).expect("topology"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_relay_backs_off_between_dials() {
    bounded(30, async {
        let ca = TestCa::new();
        let sockets: Vec<UdpSocket> = (0..2)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let addrs = [
            sockets[0].local_addr().expect("addr"),
            sockets[1].local_addr().expect("addr"),
            "127.0.0.1:9".parse().expect("addr"),
        ];
        // aaa (the smaller id, which dials without deferring) thinks it links
        // to bbb; bbb's topology links bbb only to ccc.
        let for_aaa = topology(
            "  - { between: [aaa, bbb], kind: terrestrial }\n  - { between: [bbb, ccc], kind: terrestrial }\n",
            &addrs,
        );
        let for_bbb = topology(
            "  - { between: [aaa, ccc], kind: terrestrial }\n  - { between: [bbb, ccc], kind: terrestrial }\n",
            &addrs,
        );
        let roots = Arc::new(ca.roots());
        let mut sockets = sockets.into_iter();
        let mut aaa_cfg = RelayConfig::new(
            for_aaa.clone(),
            for_aaa.node_idx("aaa").expect("aaa"),
            ca.issue("aaa"),
            roots.clone(),
        );
        aaa_cfg.tuning.reconnect_min = Duration::from_millis(100);
        aaa_cfg.tuning.reconnect_max = Duration::from_secs(5);
        let bbb_cfg = RelayConfig::new(
            for_bbb.clone(),
            for_bbb.node_idx("bbb").expect("bbb"),
            ca.issue("bbb"),
            roots,
        );
        let bbb = relay::start(bbb_cfg, sockets.nth(1).expect("socket"), None)
            .await
            .expect("bbb");
        let aaa_socket = UdpSocket::bind(addrs[0]);
        let aaa = relay::start(aaa_cfg, aaa_socket.expect("rebind aaa"), None)
            .await
            .expect("aaa");
        tokio::time::sleep(Duration::from_secs(3)).await;
        let refused = bbb.status().counters.peers_refused;
        println!("bbb refused aaa {refused} times in 3 s");
        // Waits from 100 ms doubling (±25%) fit at most 5 dials in 3 s.
        assert!(refused >= 2, "aaa kept trying: {refused}");
        assert!(refused <= 6, "aaa redialed {refused} times in 3 s");
        bbb.shutdown().await;
        aaa.shutdown().await;
    })
    .await;
}
