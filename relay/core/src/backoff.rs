//! Reconnect backoff: doubling from a floor to a ceiling, each wait spread by
//! ±25% so that relays that lost their controller (or a peer) at the same
//! moment do not all retry in the same instant. Sans-IO: the randomness comes
//! in as an argument.

use std::time::Duration;

/// The spread around each wait: ±25%.
pub const JITTER: f64 = 0.25;

/// A doubling backoff between `min` and `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            next: min,
        }
    }

    /// The next wait, given `unit`, a random number in [0, 1): the current step
    /// scaled into [1 − JITTER, 1 + JITTER). The step then doubles (up to `max`).
    pub fn next_wait(&mut self, unit: f64) -> Duration {
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let wait = self.next.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit);
        self.next = (self.next * 2).min(self.max);
        wait
    }

    /// Back to the floor (after a connection that worked).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_within_the_spread() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let waits: Vec<Duration> = (0..10).map(|_| b.next_wait(0.5)).collect();
        assert_eq!(waits[0], Duration::from_millis(100));
        assert_eq!(waits[1], Duration::from_millis(200));
        assert_eq!(waits[9], Duration::from_secs(5));
        b.reset();
        let low = b.next_wait(0.0);
        let mut c = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let high = c.next_wait(0.999_999);
        assert_eq!(low, Duration::from_millis(75));
        assert!(high > Duration::from_millis(124) && high <= Duration::from_millis(125));
    }

    /// The defect: every relay of a fleet retried its controller after exactly
    /// the same waits, so a restarted controller met the whole fleet at once.
    /// With a random draw per relay, 50 relays spread over half a step.
    #[test]
    fn a_fleet_retrying_together_spreads_out() {
        let draws = (0..50).map(|i| (i as f64 * 0.618_033_988_7) % 1.0);
        let waits: Vec<Duration> = draws
            .map(|u| Backoff::new(Duration::from_secs(1), Duration::from_secs(5)).next_wait(u))
            .collect();
        let (lo, hi) = (
            waits.iter().min().copied().unwrap_or_default(),
            waits.iter().max().copied().unwrap_or_default(),
        );
        assert!(hi - lo > Duration::from_millis(400), "{lo:?}..{hi:?}");
    }
}
