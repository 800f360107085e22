//! Drain: how a relay leaves without cutting classes. It tells the controller
//! it is leaving (routes then move transit traffic off it), refuses new flows
//! (UDP ingress drops them as `draining`, TCP listeners close), and waits for
//! the traffic through it to stop, or for the grace period, whichever is first.
//! Flows that start or end here cannot move elsewhere; they last until the
//! grace period ends.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use crate::runtime::RelayHandle;

/// How long no datagram may cross the relay before it counts as drained.
pub const QUIET: Duration = Duration::from_millis(1000);
/// How often the drain looks at the counters.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// How a drain ended.
#[derive(Debug, Clone, PartialEq)]
pub struct DrainReport {
    /// From the start of the drain until it ended.
    pub took: Duration,
    /// True if traffic stopped before the grace period ran out.
    pub quiet: bool,
    /// Datagrams sent on peer links during the drain.
    pub sent_while_draining: u64,
}

impl RelayHandle {
    /// Drains the relay; returns within `grace` (plus one look, 50 ms). Call
    /// [`RelayHandle::shutdown`] after it.
    pub async fn drain(&mut self, grace: Duration) -> DrainReport {
        let shared = self.ctx.clone();
        let started = Instant::now();
        if shared.admission.start_draining() {
            info!(
                grace_s = daemon::logging::log_secs(grace),
                "draining: routes move off this relay, no new flows"
            );
            // The controller hears now, not at the next periodic report.
            shared.links_changed.notify_one();
            // TCP: close the listeners so new connections are refused; open
            // sessions carry on. UDP ingress sockets stay for existing flows.
            let tcp: Vec<u32> = shared
                .live()
                .cfg
                .topology
                .services
                .iter()
                .filter(|s| s.protocol == topology::Protocol::Tcp)
                .map(|s| s.key)
                .collect();
            let mut stops = shared.stops();
            for key in tcp {
                if let Some(stop) = stops.services.remove(&key) {
                    stop.cancel();
                }
            }
        }
        let crossing = || {
            shared.metrics.datagrams_sent.load(Ordering::Relaxed)
                + shared.metrics.datagrams_received.load(Ordering::Relaxed)
        };
        let sent_at_start = shared.metrics.datagrams_sent.load(Ordering::Relaxed);
        let deadline = started + grace;
        let mut last = crossing();
        let mut last_moved = Instant::now();
        let quiet = loop {
            let now = Instant::now();
            if now >= deadline {
                break false;
            }
            if now.duration_since(last_moved) >= QUIET {
                break true;
            }
            tokio::time::sleep(LOOK_EVERY.min(deadline - now)).await;
            let seen = crossing();
            if seen != last {
                last = seen;
                last_moved = Instant::now();
            }
        };
        let report = DrainReport {
            took: started.elapsed(),
            quiet,
            sent_while_draining: shared.metrics.datagrams_sent.load(Ordering::Relaxed)
                - sent_at_start,
        };
        info!(
            took_s = daemon::logging::log_secs(report.took),
            quiet = report.quiet,
            sent = report.sent_while_draining,
            "drained"
        );
        report
    }
}
