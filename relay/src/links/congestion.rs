//! Congestion control for peer links: Cubic, except that a blackhole is an
//! outage, not congestion.
//!
//! RFC 9002 treats a run of lost packets spanning about three PTOs as
//! persistent congestion and drops the window to 2 packets: on the Internet a
//! path that loses everything for that long may have changed to a slower
//! one. A peer link is a dedicated line: when it comes back from a cut it has
//! the capacity it had before. With the RFC's rule a link came back from a
//! 1 s blackhole with 2,904 bytes in flight allowed, and carrying only probes
//! until traffic returned (app-limited), the window never grew; when a reroute
//! then moved a class onto it, media queued behind that window until its
//! probes timed out and the link went down under the very traffic it was
//! rescuing. Here such a run counts as one ordinary loss event (the window
//! × 0.7), as any other loss does.

use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics, CubicConfig};
use quinn_proto::RttEstimator;

/// Builds [`DedicatedLine`] controllers around Cubic as `cubic` configures it.
#[derive(Debug, Clone)]
pub struct DedicatedLineConfig {
    cubic: Arc<CubicConfig>,
}

impl DedicatedLineConfig {
    pub fn new(cubic: CubicConfig) -> DedicatedLineConfig {
        DedicatedLineConfig {
            cubic: Arc::new(cubic),
        }
    }
}

impl ControllerFactory for DedicatedLineConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(DedicatedLine {
            cubic: self.cubic.clone().build(now, current_mtu),
        })
    }
}

/// Cubic that reacts to persistent congestion as to any other loss.
pub struct DedicatedLine {
    cubic: Box<dyn Controller>,
}

impl std::fmt::Debug for DedicatedLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DedicatedLine")
            .field("window", &self.cubic.window())
            .finish()
    }
}

impl Controller for DedicatedLine {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.cubic.on_sent(now, bytes, last_packet_number)
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.cubic.on_ack(now, sent, bytes, app_limited, rtt)
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.cubic
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked)
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        _is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.cubic.on_congestion_event(now, sent, false, lost_bytes)
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.cubic.on_mtu_update(new_mtu)
    }

    fn window(&self) -> u64 {
        self.cubic.window()
    }

    fn metrics(&self) -> ControllerMetrics {
        self.cubic.metrics()
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(DedicatedLine {
            cubic: self.cubic.clone_box(),
        })
    }

    fn initial_window(&self) -> u64 {
        self.cubic.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cubic() -> CubicConfig {
        let mut c = CubicConfig::default();
        c.initial_window(1 << 20);
        c
    }

    #[test]
    fn persistent_congestion_costs_one_loss_reduction_not_the_window() {
        let t0 = Instant::now();
        let lost_at = t0 + Duration::from_secs(2);
        let mut line = Arc::new(DedicatedLineConfig::new(cubic())).build(t0, 1452);
        line.on_congestion_event(lost_at, t0, true, 100_000);
        let w = line.window();
        assert!(
            (700_000..=740_000).contains(&w),
            "window {w}: 0.7 × 1 MiB expected"
        );
        // Plain Cubic, as a baseline: the same event leaves 2 packets.
        let mut plain = Arc::new(cubic()).build(t0, 1452);
        plain.on_congestion_event(lost_at, t0, true, 100_000);
        assert_eq!(plain.window(), 2 * 1452);
    }

    #[test]
    fn ordinary_losses_still_back_off() {
        let t0 = Instant::now();
        let mut line = Arc::new(DedicatedLineConfig::new(cubic())).build(t0, 1452);
        let mut now = t0;
        for _ in 0..5 {
            // Each loss of a packet sent after the last recovery began.
            let sent = now + Duration::from_millis(1);
            now += Duration::from_millis(100);
            line.on_congestion_event(now, sent, false, 1452);
        }
        let w = line.window();
        let expected = (f64::from(1u32 << 20) * 0.7f64.powi(5)) as u64;
        assert!(
            w.abs_diff(expected) < 2_000,
            "window {w}, expected about {expected}"
        );
    }
}
