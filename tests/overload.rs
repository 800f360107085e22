//! More media than a chain of relays can carry: the surplus is dropped and
//! counted as overload, the links stay up, and the controller pushes no new
//! route version for it.
//!
//! The defect this guards against: offered twice what two hops carry, every
//! link's probes drowned in the media queue, every link was declared down,
//! about 20 route versions went out in 20 s, and half the traffic was lost to
//! the flapping rather than to the chain's real ceiling.

mod support;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use overlay::fleet::FleetOptions;
use relay_core::DropReason;

fn chain(target: std::net::SocketAddr) -> topology::Topology {
    let yaml = format!(
        "version: 1\nnodes:\n\
         \x20 - {{ id: aaa, city: A, country: JP, region: asia, lat: 35.0, lon: 139.0, addr: \"127.0.0.1:1\" }}\n\
         \x20 - {{ id: bbb, city: B, country: JP, region: asia, lat: 36.0, lon: 140.0, addr: \"127.0.0.1:2\" }}\n\
         \x20 - {{ id: ccc, city: C, country: US, region: na, lat: 34.0, lon: -118.0, addr: \"127.0.0.1:3\" }}\n\
         links:\n\
         \x20 - {{ between: [aaa, bbb], kind: terrestrial, delay_ms: 2 }}\n\
         \x20 - {{ between: [bbb, ccc], kind: terrestrial, delay_ms: 2 }}\n\
         services:\n\
         \x20 - {{ name: media, protocol: udp, ingress: {{ node: aaa, listen: \"127.0.0.1:0\" }}, egress: {{ node: ccc, target: \"{target}\" }} }}\n"
    );
    topology::parse("chain.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_drops_media_and_keeps_links_up() {
    let _one = support::FLEET_TESTS.lock().await;
    let test = async {
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let target = receiver.local_addr().expect("addr");
        let fleet = support::ready_fleet(
            chain(target),
            FleetOptions {
                jitter: 0.0,
                ..FleetOptions::default()
            },
        )
        .await;
        let controller = fleet
            .controller
            .as_ref()
            .expect("controller")
            .shared
            .clone();
        let version_before = controller.tables().version;
        let ingress = fleet.relay("aaa").ingress_addrs["media"];

        // A sender as fast as it can go (far beyond what the debug-built chain
        // carries), and a receiver counting arrivals.
        let stop = Arc::new(AtomicBool::new(false));
        let (sent, got) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, st) = (sent.clone(), stop.clone());
        let sender = std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let packet = [7u8; 1200];
            while !st.load(Ordering::Relaxed) {
                for _ in 0..64 {
                    if socket.send_to(&packet, ingress).is_ok() {
                        s.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::yield_now();
            }
        });
        let (g, st) = (got.clone(), stop.clone());
        receiver
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let counter = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                if receiver.recv(&mut buf).is_ok() {
                    g.fetch_add(1, Ordering::Relaxed);
                }
            }
        });

        let started = Instant::now();
        let mut downs = 0;
        while started.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if fleet.links_up() < 2 {
                downs += 1;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let _ = (sender.join(), counter.join());
        tokio::time::sleep(Duration::from_millis(500)).await;

        let version_after = controller.tables().version;
        let overload: u64 = fleet
            .relays
            .values()
            .map(|r| r.status().counters.drop_count(DropReason::Overload))
            .sum();
        let (sent, got) = (sent.load(Ordering::Relaxed), got.load(Ordering::Relaxed));
        println!(
            "offered {sent}, delivered {got} ({:.0}%); overload drops {overload}; \
             samples with a link down {downs}; route versions {version_before} -> {version_after}",
            100.0 * got as f64 / sent.max(1) as f64
        );
        assert!(
            got < sent * 9 / 10,
            "the chain was overloaded: {got} of {sent}"
        );
        assert!(got > 1_000, "media still flowed: {got}");
        assert_eq!(downs, 0, "a link was seen down under overload");
        assert!(overload > 0, "the surplus was counted as overload");
        assert_eq!(
            version_after, version_before,
            "no route version was pushed for the overload"
        );
        fleet.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(90), test)
        .await
        .expect("bounded");
}
