//! The control handle of an emulated link: the parameters its task reads, and the counters
//! the task publishes.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::params::{LinkParams, ParamsError};

/// Counters of one direction of a link.
///
/// Once nothing is in flight, `received == forwarded + dropped() + send_errors`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Datagrams that entered this direction.
    pub received: u64,
    /// Datagrams sent on to their destination.
    pub forwarded: u64,
    /// Their bytes (UDP payload), for the load a link carried.
    pub forwarded_bytes: u64,
    /// Datagrams lost at random.
    pub dropped_loss: u64,
    /// Datagrams that vanished because the link was cut on arrival or before their time.
    pub dropped_cut: u64,
    /// Datagrams dropped because the in-flight queue was full.
    pub dropped_queue_full: u64,
    /// Datagrams dropped at the tail of a rate-limited link's queue.
    pub dropped_congestion: u64,
    /// Datagrams from a new client dropped because the front already had its maximum.
    pub dropped_client_limit: u64,
    /// Datagrams the operating system refused to send, or for which no back socket could
    /// be opened.
    pub send_errors: u64,
    /// Datagrams waiting for their delivery time.
    pub in_flight: u64,
}

impl DirectionStats {
    /// All datagrams dropped on purpose: loss, cut, queue full, congestion and
    /// client limit.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss
            + self.dropped_cut
            + self.dropped_queue_full
            + self.dropped_congestion
            + self.dropped_client_limit
    }
}

/// Counters of a link, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// From A to B: datagrams sent to `front_for_a`, and replies of A to clients of
    /// `front_for_b`.
    pub a_to_b: DirectionStats,
    /// From B to A: datagrams sent to `front_for_b`, and replies of B to clients of
    /// `front_for_a`.
    pub b_to_a: DirectionStats,
}

/// What the link's task reads before each event.
#[derive(Debug, Clone, Copy)]
pub(super) struct Control {
    pub(super) params: LinkParams,
    /// Bumped each time the link goes from open to cut, so that the task sees a cut even
    /// if the link was restored before the task woke up.
    pub(super) cut_epoch: u64,
}

#[derive(Debug)]
struct Shared {
    control: Mutex<Control>,
    stats: Mutex<LinkStats>,
}

/// Controls one emulated link from anywhere; clones share the link.
///
/// Changes apply to packets arriving after them, except a cut, which also makes every
/// packet in flight vanish. A handle outliving its link still works but affects nothing.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    shared: Arc<Shared>,
}

/// The lock is only held to copy plain values, so a poisoned one is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LinkHandle {
    pub(super) fn new(params: LinkParams) -> Self {
        LinkHandle {
            shared: Arc::new(Shared {
                control: Mutex::new(Control {
                    params,
                    cut_epoch: 0,
                }),
                stats: Mutex::new(LinkStats::default()),
            }),
        }
    }

    pub(super) fn control(&self) -> Control {
        *lock(&self.shared.control)
    }

    pub(super) fn publish(&self, stats: LinkStats) {
        *lock(&self.shared.stats) = stats;
    }

    /// Cuts the link both ways: packets vanish silently, in flight ones included.
    pub fn cut(&self) {
        self.apply(|p| p.cut = true);
    }

    /// Restores a cut link, keeping its delay, jitter and loss.
    pub fn restore(&self) {
        self.apply(|p| p.cut = false);
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.params().cut
    }

    /// Sets delay, jitter and loss, keeping the cut state and the bandwidth.
    /// Invalid values change nothing.
    pub fn impair(&self, delay: Duration, jitter: Duration, loss: f64) -> Result<(), ParamsError> {
        let now = self.params();
        let params = LinkParams {
            cut: now.cut,
            rate_kbps: now.rate_kbps,
            ..LinkParams::new(delay, jitter, loss)?
        };
        self.set_params(params)
    }

    /// Replaces every parameter, cut state included. Invalid values change nothing.
    pub fn set_params(&self, params: LinkParams) -> Result<(), ParamsError> {
        params.validate()?;
        self.apply(|p| *p = params);
        Ok(())
    }

    /// The parameters in force.
    pub fn params(&self) -> LinkParams {
        self.control().params
    }

    /// The counters as of the link's last event.
    pub fn stats(&self) -> LinkStats {
        *lock(&self.shared.stats)
    }

    fn apply(&self, change: impl FnOnce(&mut LinkParams)) {
        let mut control = lock(&self.shared.control);
        let was_cut = control.params.cut;
        change(&mut control.params);
        if control.params.cut && !was_cut {
            control.cut_epoch += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_epoch_counts_transitions_to_cut() {
        let h = LinkHandle::new(LinkParams::CLEAN);
        h.cut();
        h.cut();
        assert_eq!(h.control().cut_epoch, 1);
        h.restore();
        assert!(!h.is_cut());
        let cut = LinkParams {
            cut: true,
            ..LinkParams::CLEAN
        };
        h.set_params(cut).unwrap();
        assert_eq!(h.control().cut_epoch, 2);
    }

    #[test]
    fn impair_keeps_the_cut_and_rejects_bad_values() {
        let h = LinkHandle::new(LinkParams::CLEAN);
        h.cut();
        let ms = Duration::from_millis(1);
        h.impair(30 * ms, 5 * ms, 0.1).unwrap();
        let want = LinkParams {
            delay: 30 * ms,
            jitter: 5 * ms,
            loss: 0.1,
            cut: true,
            rate_kbps: None,
        };
        assert_eq!(h.params(), want);
        assert!(matches!(
            h.impair(ms, ms, f64::NAN),
            Err(ParamsError::Loss(_))
        ));
        assert_eq!(h.params(), want, "a rejected change must change nothing");
        let bad = LinkParams { loss: -1.0, ..want };
        assert!(h.set_params(bad).is_err());
        assert_eq!(h.clone().params(), want);
    }
}
