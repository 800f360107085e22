//! Per-service quality as the egress relay measures it (issue 15): with loss
//! and delay injected on the service's path, the figures in `/metrics` come
//! out within a few percent of what the emulator was told to do.

mod support;

use std::time::Duration;

use support::diamond;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_loss_and_delay_show_in_the_egress_figures() {
    let _one_at_a_time = support::FLEET_TESTS.lock().await;
    let test = async {
        let (mut fleet, stream) = diamond::start().await;
        // Without the controller the route stays on aaa–bbb–ddd whatever the
        // link's cost: the impairment below is what the stream goes through.
        fleet.stop_controller().await;
        let ms = Duration::from_millis(1);
        fleet
            .link("aaa", "bbb")
            .expect("link")
            .impair(30 * ms, Duration::ZERO, 0.05)
            .expect("valid impairment");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let read = || {
            let text = fleet.relay("ddd").metrics_text();
            let get =
                |name: &str| support::sample(&text, name, &[("service", "media")]).expect(name);
            (
                get("overlay_relay_service_delivered_packets_total"),
                get("overlay_relay_service_lost_packets_total"),
                get("overlay_relay_service_one_way_delay_seconds_sum"),
                get("overlay_relay_service_one_way_delay_seconds_count"),
            )
        };
        let (got0, lost0, sum0, count0) = read();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (got1, lost1, sum1, count1) = read();
        let (got, lost) = (got1 - got0, lost1 - lost0);
        let loss = lost / (got + lost);
        let mean_ms = (sum1 - sum0) / (count1 - count0) * 1000.0;
        println!(
            "egress measured: {got} delivered, {lost} lost ({:.2}%), mean one-way {mean_ms:.1} ms",
            loss * 100.0
        );
        // 1,000 datagrams at 5% loss: 50 ± 3σ (σ ≈ 6.9) is 3–7 %.
        assert!((0.03..0.07).contains(&loss), "loss {loss}");
        // 30 + 10 ms of links, plus the emulator's millisecond timers and the
        // relays: 3 ms on a quiet machine, up to 8 ms measured while other
        // builds ran; the bound allows 15.
        assert!((40.0..55.0).contains(&mean_ms), "mean {mean_ms:.1} ms");
        let missing = stream.missing(0, stream.sent()) as f64;
        assert!(
            missing >= lost,
            "the receiver saw at least the losses counted"
        );
        fleet.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("bounded");
}
