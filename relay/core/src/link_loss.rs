//! A link's loss as QUIC itself measures it: packets its loss detection
//! declared lost over packets sent, over a sliding window. Unlike probe loss,
//! this is loss on the wire only: a datagram dropped in a full queue before
//! it was ever sent is not a packet QUIC lost (those are counted as
//! `overload` drops).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Samples of (when, packets sent, packets lost) counters over a window.
#[derive(Debug, Clone)]
pub struct LossWindow {
    span: Duration,
    samples: VecDeque<(Instant, u64, u64)>,
}

impl LossWindow {
    /// A window of `span` (e.g. 5 s).
    pub fn new(span: Duration) -> LossWindow {
        LossWindow {
            span,
            samples: VecDeque::new(),
        }
    }

    /// Takes the connection's counters at `now` (they only grow; a smaller
    /// value means a new connection, and the window starts over).
    pub fn sample(&mut self, now: Instant, sent: u64, lost: u64) {
        if self
            .samples
            .back()
            .is_some_and(|&(_, s, l)| sent < s || lost < l)
        {
            self.samples.clear();
        }
        self.samples.push_back((now, sent, lost));
        while self
            .samples
            .front()
            .is_some_and(|&(t, _, _)| now.saturating_duration_since(t) > self.span)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// Lost over sent within the window, in [0, 1]; 0 before two samples.
    pub fn loss(&self) -> f64 {
        let (Some(&(_, s0, l0)), Some(&(_, s1, l1))) = (self.samples.front(), self.samples.back())
        else {
            return 0.0;
        };
        let sent = s1.saturating_sub(s0);
        if sent == 0 {
            return 0.0;
        }
        (l1.saturating_sub(l0) as f64 / sent as f64).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_is_measured_over_the_window_only() {
        let t0 = Instant::now();
        let mut w = LossWindow::new(Duration::from_secs(5));
        assert_eq!(w.loss(), 0.0);
        w.sample(t0, 0, 0);
        w.sample(t0 + Duration::from_secs(1), 1000, 10);
        assert!((w.loss() - 0.01).abs() < 1e-9);
        // Ten seconds of clean sending later, the old losses are out of the window.
        for i in 2..=12 {
            w.sample(t0 + Duration::from_secs(i), 1000 * i, 10);
        }
        assert_eq!(w.loss(), 0.0);
        // A new connection (counters from zero) starts the window over.
        w.sample(t0 + Duration::from_secs(13), 5, 0);
        w.sample(t0 + Duration::from_secs(14), 105, 50);
        assert!((w.loss() - 0.5).abs() < 1e-9);
    }
}
