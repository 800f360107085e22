//! End-to-end tests of the link emulator over real loopback UDP: delay, loss accounting,
//! cut and restore, both directions, per-client back sockets, and shutdown.

// `allow-unwrap-in-tests` does not reach the helpers of an integration test file; a
// failed setup step should fail the test loudly, which is what `unwrap` does here.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use emulator::{EmulatedLink, LinkHandle, LinkParams, LinkStats, MAX_CLIENTS_PER_FRONT};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

/// Every test finishes within this, or fails.
const TEST_LIMIT: Duration = Duration::from_secs(20);

const MS: Duration = Duration::from_millis(1);

async fn bounded<F: Future>(test: F) -> F::Output {
    timeout(TEST_LIMIT, test).await.expect("test timed out")
}

async fn loopback() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

fn params(delay: Duration, jitter: Duration, loss: f64) -> LinkParams {
    LinkParams::new(delay, jitter, loss).unwrap()
}

/// A UDP echo server that counts datagrams and remembers their sources.
struct Echo {
    addr: SocketAddr,
    count: Arc<AtomicU64>,
    sources: Arc<Mutex<HashSet<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl Echo {
    async fn start() -> Echo {
        let socket = loopback().await;
        let addr = socket.local_addr().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let sources = Arc::new(Mutex::new(HashSet::new()));
        let (c, s) = (count.clone(), sources.clone());
        let task = tokio::spawn(async move {
            let mut buf = vec![0; 65_535];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                c.fetch_add(1, Ordering::SeqCst);
                s.lock().unwrap().insert(from);
                let _ = socket.send_to(&buf[..n], from).await;
            }
        });
        Echo {
            addr,
            count,
            sources,
            task,
        }
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }

    fn sources(&self) -> HashSet<SocketAddr> {
        self.sources.lock().unwrap().clone()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sends `payload` to `to` and waits for the same bytes back from `to`.
async fn round_trip(client: &UdpSocket, to: SocketAddr, payload: &[u8]) -> Duration {
    let start = Instant::now();
    client.send_to(payload, to).await.unwrap();
    let mut buf = vec![0; 65_535];
    let (n, from) = timeout(Duration::from_secs(2), client.recv_from(&mut buf))
        .await
        .expect("no echo within 2 s")
        .unwrap();
    let rtt = start.elapsed();
    assert_eq!(
        from, to,
        "the reply must come from the front the client sent to"
    );
    assert_eq!(&buf[..n], payload, "bytes must come back unchanged");
    rtt
}

/// The next datagram within `wait`, if any.
async fn recv_within(socket: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0; 65_535];
    match timeout(wait, socket.recv_from(&mut buf)).await {
        Ok(result) => {
            let (n, from) = result.unwrap();
            Some((buf[..n].to_vec(), from))
        }
        Err(_) => None,
    }
}

/// Polls the link's counters until `done` holds, for at most 5 s.
async fn wait_for(handle: &LinkHandle, what: &str, done: impl Fn(&LinkStats) -> bool) -> LinkStats {
    for _ in 0..500 {
        let stats = handle.stats();
        if done(&stats) {
            return stats;
        }
        sleep(10 * MS).await;
    }
    panic!("timed out waiting for {what}: {:?}", handle.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_applies_each_way_and_bytes_are_unchanged() {
    bounded(async {
        let echo = Echo::start().await;
        let client = loopback().await;
        let a = client.local_addr().unwrap();
        let link = EmulatedLink::start(a, echo.addr, params(25 * MS, Duration::ZERO, 0.0), 1)
            .await
            .unwrap();
        let slack = 40 * MS;
        for i in 0..20u8 {
            let payload: Vec<u8> = (0..200).map(|j: u8| j.wrapping_mul(i)).collect();
            let rtt = round_trip(&client, link.front_for_a(), &payload).await;
            assert!(
                rtt >= 50 * MS,
                "packet {i}: round trip {rtt:?} under 2 x 25 ms"
            );
            assert!(
                rtt < 50 * MS + slack,
                "packet {i}: round trip {rtt:?} too slow"
            );
        }
        // The largest UDP payload over IPv4 goes through untruncated.
        let big: Vec<u8> = (0..65_507u32).map(|j| (j % 251) as u8).collect();
        round_trip(&client, link.front_for_a(), &big).await;

        let stats = link.handle().stats();
        assert_eq!(stats.a_to_b.forwarded, 21);
        assert_eq!(stats.b_to_a.forwarded, 21);
        assert_eq!(
            echo.sources().len(),
            1,
            "one client, one stable source at B"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loss_is_plausible_and_counters_add_up() {
    bounded(async {
        let echo = Echo::start().await;
        let client = loopback().await;
        let a = client.local_addr().unwrap();
        let link = EmulatedLink::start(a, echo.addr, params(5 * MS, 4 * MS, 0.5), 7)
            .await
            .unwrap();
        let handle = link.handle();
        const SENT: u64 = 400;
        for i in 0..SENT as u32 {
            client
                .send_to(&i.to_be_bytes(), link.front_for_a())
                .await
                .unwrap();
            if i % 10 == 9 {
                // Pace so no kernel buffer overflows: every datagram must reach the emulator.
                sleep(MS).await;
            }
        }
        let stats = wait_for(&handle, "both directions to settle", |s| {
            s.a_to_b.received == SENT
                && s.a_to_b.in_flight == 0
                && s.b_to_a.in_flight == 0
                && s.b_to_a.received == s.a_to_b.forwarded
        })
        .await;
        let mut got = Vec::new();
        while let Some((bytes, _)) = recv_within(&client, 100 * MS).await {
            got.push(u32::from_be_bytes(
                bytes.try_into().expect("4-byte payload"),
            ));
        }

        for (name, d) in [("a->b", stats.a_to_b), ("b->a", stats.b_to_a)] {
            assert_eq!(
                d.forwarded + d.dropped() + d.send_errors,
                d.received,
                "{name}: {d:?}"
            );
            assert_eq!(
                d.dropped(),
                d.dropped_loss,
                "{name}: only loss drops: {d:?}"
            );
            assert_eq!(d.send_errors, 0, "{name}");
        }
        assert_eq!(
            echo.count(),
            stats.a_to_b.forwarded,
            "B got what a->b forwarded"
        );
        assert_eq!(
            got.len() as u64,
            stats.b_to_a.forwarded,
            "A got what b->a forwarded"
        );
        let lost = stats.a_to_b.dropped_loss;
        assert!(
            (150..=250).contains(&lost),
            "a->b lost {lost} of 400 at p = 0.5"
        );
        assert!(
            (60..=140).contains(&got.len()),
            "{} of 400 made it back",
            got.len()
        );
        // Jitter of 4 ms on datagrams 0.1 ms apart would reorder them: the FIFO holds.
        assert!(got.windows(2).all(|w| w[0] < w[1]), "reordered: {got:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_blackholes_and_restore_resumes() {
    bounded(async {
        let echo = Echo::start().await;
        let client = loopback().await;
        let a = client.local_addr().unwrap();
        let link = EmulatedLink::start(a, echo.addr, params(30 * MS, Duration::ZERO, 0.0), 3)
            .await
            .unwrap();
        let (front, handle) = (link.front_for_a(), link.handle());
        round_trip(&client, front, b"before").await;

        // Datagrams in flight when the link is cut vanish, even if it is restored before
        // they are due.
        for _ in 0..5 {
            client.send_to(b"in flight", front).await.unwrap();
        }
        wait_for(&handle, "5 in flight", |s| s.a_to_b.in_flight == 5).await;
        handle.cut();
        sleep(5 * MS).await;
        handle.restore();
        assert_eq!(recv_within(&client, 300 * MS).await, None);
        let stats = wait_for(&handle, "in-flight drops", |s| s.a_to_b.in_flight == 0).await;
        assert_eq!(stats.a_to_b.dropped_cut, 5);
        assert_eq!(echo.count(), 1, "B saw only the first datagram");

        // While cut, nothing gets through, and every datagram is counted.
        handle.cut();
        assert!(handle.is_cut());
        for _ in 0..10 {
            client.send_to(b"into the void", front).await.unwrap();
        }
        assert_eq!(recv_within(&client, 300 * MS).await, None);
        let stats = wait_for(&handle, "cut drops", |s| s.a_to_b.dropped_cut == 15).await;
        assert_eq!(stats.a_to_b.received, 16);
        assert_eq!(echo.count(), 1);

        handle.restore();
        let rtt = round_trip(&client, front, b"after").await;
        assert!(rtt >= 60 * MS, "the delay survives a cut: {rtt:?}");
        assert_eq!(echo.count(), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_starts_from_either_side() {
    bounded(async {
        let node_a = loopback().await;
        let node_b = loopback().await;
        let (a, b) = (node_a.local_addr().unwrap(), node_b.local_addr().unwrap());
        let link = EmulatedLink::start(a, b, params(2 * MS, Duration::ZERO, 0.0), 5)
            .await
            .unwrap();

        // B starts: it reaches A's address, from one stable source, and A's reply to that
        // source comes back to B from front_for_b.
        node_b.send_to(b"b1", link.front_for_b()).await.unwrap();
        node_b.send_to(b"b2", link.front_for_b()).await.unwrap();
        let (m1, via1) = recv_within(&node_a, 2_000 * MS)
            .await
            .expect("b1 reaches A");
        let (m2, via2) = recv_within(&node_a, 2_000 * MS)
            .await
            .expect("b2 reaches A");
        assert_eq!((m1.as_slice(), m2.as_slice()), (&b"b1"[..], &b"b2"[..]));
        assert_eq!(via1, via2, "A sees one stable source for B");
        assert!(via1.ip().is_loopback());
        node_a.send_to(b"a-reply", via1).await.unwrap();
        let (reply, from) = recv_within(&node_b, 2_000 * MS)
            .await
            .expect("reply reaches B");
        assert_eq!(
            (reply.as_slice(), from),
            (&b"a-reply"[..], link.front_for_b())
        );

        // A starts too, through the other front.
        node_a.send_to(b"a1", link.front_for_a()).await.unwrap();
        let (m, _) = recv_within(&node_b, 2_000 * MS)
            .await
            .expect("a1 reaches B");
        assert_eq!(m, b"a1");

        let stats = wait_for(&link.handle(), "counts", |s| {
            s.a_to_b.forwarded == 2 && s.b_to_a.forwarded == 2
        })
        .await;
        assert_eq!((stats.a_to_b.received, stats.b_to_a.received), (2, 2));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_gets_its_own_back_socket_up_to_the_limit() {
    bounded(async {
        let echo = Echo::start().await;
        let first = loopback().await;
        let link =
            EmulatedLink::start(first.local_addr().unwrap(), echo.addr, LinkParams::CLEAN, 9)
                .await
                .unwrap();
        let mut clients = vec![first];
        for _ in 1..=MAX_CLIENTS_PER_FRONT {
            clients.push(loopback().await);
        }
        for (i, client) in clients.iter().enumerate() {
            client
                .send_to(&[i as u8], link.front_for_a())
                .await
                .unwrap();
        }
        let total = clients.len() as u64;
        let stats = wait_for(&link.handle(), "all clients seen", |s| {
            s.a_to_b.received == total && s.b_to_a.forwarded == total - 1
        })
        .await;
        assert_eq!(stats.a_to_b.dropped_client_limit, 1);
        assert_eq!(stats.a_to_b.forwarded, total - 1);
        assert_eq!(
            echo.sources().len(),
            MAX_CLIENTS_PER_FRONT,
            "one source per client"
        );
        for (i, client) in clients.iter().take(MAX_CLIENTS_PER_FRONT).enumerate() {
            let (bytes, _) = recv_within(client, 2_000 * MS).await.expect("own reply");
            assert_eq!(bytes, [i as u8], "client {i} got another client's reply");
        }
        let last = clients.last().unwrap();
        assert_eq!(
            recv_within(last, 200 * MS).await,
            None,
            "client over the limit"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_link_stops_forwarding() {
    bounded(async {
        let echo = Echo::start().await;
        let client = loopback().await;
        let a = client.local_addr().unwrap();
        let link = EmulatedLink::start(a, echo.addr, LinkParams::CLEAN, 11)
            .await
            .unwrap();
        let (front, handle) = (link.front_for_a(), link.handle());
        round_trip(&client, front, b"alive").await;
        drop(link);
        sleep(100 * MS).await;
        for _ in 0..5 {
            // The front may already be closed; either way nothing may come through.
            let _ = client.send_to(b"after drop", front).await;
        }
        assert_eq!(recv_within(&client, 300 * MS).await, None);
        assert_eq!(echo.count(), 1, "B got nothing after the drop");
        // A handle outliving its link still answers.
        handle.cut();
        assert_eq!(handle.stats().a_to_b.forwarded, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_task_and_closes_the_fronts() {
    bounded(async {
        let echo = Echo::start().await;
        let client = loopback().await;
        let a = client.local_addr().unwrap();
        let link = EmulatedLink::start(a, echo.addr, params(MS, Duration::ZERO, 0.0), 13)
            .await
            .unwrap();
        let front = link.front_for_a();
        round_trip(&client, front, b"alive").await;
        link.shutdown().await;
        // The task is gone, so its sockets are closed: the port can be bound again.
        let rebound = UdpSocket::bind(front).await;
        assert!(rebound.is_ok(), "front {front} still bound: {rebound:?}");
    })
    .await;
}

#[tokio::test]
async fn start_rejects_bad_params_and_endpoints() {
    bounded(async {
        let ok: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let bad_loss = LinkParams {
            loss: 1.5,
            ..LinkParams::CLEAN
        };
        let err = EmulatedLink::start(ok, ok, bad_loss, 0).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("loss"), "{err}");
        for bad in ["10.1.2.3:9", "127.0.0.1:0"] {
            let bad: SocketAddr = bad.parse().unwrap();
            let err = EmulatedLink::start(ok, bad, LinkParams::CLEAN, 0)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        let link = EmulatedLink::start(ok, ok, LinkParams::CLEAN, 0)
            .await
            .unwrap();
        let handle = link.handle();
        assert!(handle.impair(MS, MS, f64::NAN).is_err());
        assert_eq!(handle.params(), LinkParams::CLEAN);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_link_counts_what_its_queue_drops_and_the_bytes_it_carries() {
    bounded(async {
        let echo = Echo::start().await;
        let client = loopback().await;
        let a = client.local_addr().unwrap();
        // 800 kbit/s: a 1,000-byte datagram takes 10 ms to leave, so the 50 ms
        // queue holds about 5 and a burst of 100 overflows it.
        let limited = LinkParams {
            rate_kbps: Some(800),
            ..params(MS, Duration::ZERO, 0.0)
        };
        let link = EmulatedLink::start(a, echo.addr, limited, 3).await.unwrap();
        let handle = link.handle();
        const SENT: u64 = 100;
        for i in 0..SENT {
            client
                .send_to(&[7u8; 1000], link.front_for_a())
                .await
                .unwrap();
            if i % 10 == 9 {
                // Pace so no kernel buffer overflows: every datagram must reach the emulator.
                sleep(MS).await;
            }
        }
        let stats = wait_for(&handle, "the burst to settle", |s| {
            s.a_to_b.received == SENT && s.a_to_b.in_flight == 0 && s.b_to_a.in_flight == 0
        })
        .await;
        let d = stats.a_to_b;
        assert!(
            d.dropped_congestion >= SENT / 2,
            "a burst 20x the queue must overflow it: {d:?}"
        );
        assert_eq!(
            d.forwarded + d.dropped() + d.send_errors,
            d.received,
            "every datagram is forwarded or counted as dropped: {d:?}"
        );
        assert_eq!(d.forwarded_bytes, 1000 * d.forwarded, "{d:?}");
        assert_eq!(echo.count(), d.forwarded);

        // Impairing the link changes delay, jitter and loss, not its bandwidth.
        handle.impair(20 * MS, MS, 0.01).unwrap();
        assert_eq!(handle.params().rate_kbps, Some(800));
    })
    .await;
}

/// A burst larger than one read batch, from both sides at once: every datagram
/// arrives, each direction in the order sent, and the counters agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_both_sides_arrives_whole_and_in_order() {
    bounded(async {
        // More than a read batch (64), fewer than a default receive buffer holds
        // (about 250 small datagrams), as each side is read in turn.
        const BURST: u32 = 200;
        let node_a = loopback().await;
        let node_b = loopback().await;
        let (a, b) = (node_a.local_addr().unwrap(), node_b.local_addr().unwrap());
        let link = EmulatedLink::start(a, b, params(3 * MS, Duration::ZERO, 0.0), 9)
            .await
            .unwrap();
        for seq in 0..BURST {
            node_a
                .send_to(&seq.to_be_bytes(), link.front_for_a())
                .await
                .unwrap();
            node_b
                .send_to(&seq.to_be_bytes(), link.front_for_b())
                .await
                .unwrap();
        }
        for (receiver, side) in [(&node_b, "A to B"), (&node_a, "B to A")] {
            for want in 0..BURST {
                let (got, _) = recv_within(receiver, 2_000 * MS)
                    .await
                    .unwrap_or_else(|| panic!("{side}: datagram {want} missing"));
                assert_eq!(got, want.to_be_bytes(), "{side}: out of order");
            }
        }
        let stats = wait_for(&link.handle(), "counts", |s| {
            s.a_to_b.forwarded == u64::from(BURST) && s.b_to_a.forwarded == u64::from(BURST)
        })
        .await;
        assert_eq!(
            stats.a_to_b.dropped_queue_full + stats.b_to_a.dropped_queue_full,
            0
        );
    })
    .await;
}
