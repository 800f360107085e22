//! Pacing of the live map's `links` and `nodes` events (sans-IO, takes `now`):
//! changes are gathered and flushed at most once per [`Pace::flush_gap`]; a
//! change of state goes out in the next flush, a change of measurements only
//! at most once per [`Pace::measurement_gap`] for each item. The hub tells it
//! what changed ([`Coalescer::handle_change`]), sleeps until
//! [`Coalescer::poll_timeout`], and sends what [`Coalescer::poll_flush`]
//! returns, each item's latest object.

use std::time::{Duration, Instant};

/// What changed about an item since it was last sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// Measurements only (RTT, jitter, loss, load; a node's table version).
    Measurement,
    /// Anything else (a link's state, a relay's session).
    State,
}

/// How fast changes go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Least time between two flushes.
    pub flush_gap: Duration,
    /// Least time between two sends of one item for measurements alone.
    pub measurement_gap: Duration,
}

/// The contract's pace (docs/map.md): at most 4 flushes a second, and
/// measurements of one link at most once a second.
pub const PACE: Pace = Pace {
    flush_gap: Duration::from_millis(250),
    measurement_gap: Duration::from_secs(1),
};

#[derive(Debug, Clone, Copy, Default)]
struct Item {
    pending: Option<Change>,
    sent: Option<Instant>,
}

/// See the module's documentation. Items are indexes `0..len`.
#[derive(Debug, Clone)]
pub struct Coalescer {
    pace: Pace,
    /// The next flush may not happen before this.
    next_flush: Instant,
    items: Vec<Item>,
}

impl Coalescer {
    /// `len` items, none pending; a flush may happen at once.
    pub fn new(len: usize, pace: Pace, now: Instant) -> Self {
        Coalescer {
            pace,
            next_flush: now,
            items: vec![Item::default(); len],
        }
    }

    /// Item `item` changed (out-of-range items are ignored).
    pub fn handle_change(&mut self, item: usize, change: Change) {
        if let Some(it) = self.items.get_mut(item) {
            it.pending = it.pending.max(Some(change));
        }
    }

    fn due(&self, it: &Item) -> Option<Instant> {
        Some(match it.pending? {
            Change::State => self.next_flush,
            Change::Measurement => it.sent.map_or(self.next_flush, |s| {
                (s + self.pace.measurement_gap).max(self.next_flush)
            }),
        })
    }

    /// When a flush will next have something to send; `None` if nothing is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.items.iter().filter_map(|it| self.due(it)).min()
    }

    /// The items to send at `now` (in index order; empty if none is due). They
    /// count as sent.
    pub fn poll_flush(&mut self, now: Instant) -> Vec<usize> {
        if now < self.next_flush {
            return Vec::new();
        }
        let due: Vec<usize> = (0..self.items.len())
            .filter(|&i| self.due(&self.items[i]).is_some_and(|t| t <= now))
            .collect();
        if due.is_empty() {
            return due;
        }
        for &i in &due {
            self.items[i] = Item {
                pending: None,
                sent: Some(now),
            };
        }
        self.next_flush = now + self.pace.flush_gap;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_state_change_goes_out_at_once_then_flushes_are_250_ms_apart() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(3, PACE, t0);
        assert_eq!(c.poll_timeout(), None);
        assert!(c.poll_flush(t0).is_empty(), "nothing pending");
        c.handle_change(1, Change::State);
        assert_eq!(c.poll_timeout(), Some(t0));
        assert_eq!(c.poll_flush(t0), vec![1]);
        // A burst right after: all of it waits for the next slot, and goes together.
        c.handle_change(0, Change::State);
        c.handle_change(2, Change::State);
        c.handle_change(0, Change::State);
        assert_eq!(c.poll_timeout(), Some(t0 + ms(250)));
        assert!(c.poll_flush(t0 + ms(100)).is_empty());
        assert_eq!(c.poll_flush(t0 + ms(250)), vec![0, 2]);
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn measurements_of_one_item_go_out_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(2, PACE, t0);
        c.handle_change(0, Change::Measurement);
        assert_eq!(c.poll_flush(t0), vec![0], "never sent: at once");
        c.handle_change(0, Change::Measurement);
        c.handle_change(1, Change::Measurement);
        assert_eq!(c.poll_timeout(), Some(t0 + ms(250)), "item 1 is due");
        assert_eq!(c.poll_flush(t0 + ms(250)), vec![1]);
        assert_eq!(
            c.poll_timeout(),
            Some(t0 + ms(1000)),
            "item 0 a second after its send"
        );
        assert!(c.poll_flush(t0 + ms(999)).is_empty());
        assert_eq!(c.poll_flush(t0 + ms(1000)), vec![0]);
    }

    #[test]
    fn a_state_change_overtakes_a_waiting_measurement() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(1, PACE, t0);
        c.handle_change(0, Change::Measurement);
        assert_eq!(c.poll_flush(t0), vec![0]);
        c.handle_change(0, Change::Measurement);
        assert_eq!(c.poll_timeout(), Some(t0 + ms(1000)));
        c.handle_change(0, Change::State);
        assert_eq!(c.poll_timeout(), Some(t0 + ms(250)));
        c.handle_change(0, Change::Measurement);
        assert_eq!(c.poll_flush(t0 + ms(300)), vec![0], "still a state change");
    }

    #[test]
    fn under_a_storm_there_are_never_more_than_four_flushes_a_second() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(50, PACE, t0);
        let (mut flushes, mut sends) = (0, vec![Vec::new(); 50]);
        // Every item changes every 10 ms for 10 s, a state change every 7th time.
        for step in 0..1000u64 {
            let now = t0 + ms(10 * step);
            for i in 0..50 {
                let change = if (step + i as u64) % 7 == 0 {
                    Change::State
                } else {
                    Change::Measurement
                };
                c.handle_change(i, change);
            }
            let sent = c.poll_flush(now);
            if !sent.is_empty() {
                flushes += 1;
                for i in sent {
                    sends[i].push(now);
                }
            }
        }
        assert!(flushes <= 41, "{flushes} flushes in 10 s");
        assert!(
            flushes >= 39,
            "{flushes} flushes in 10 s: changes wait no longer than needed"
        );
        assert!(
            sends.iter().all(|s| s.len() >= 30),
            "state changes go out in the next flush"
        );
    }

    #[test]
    fn out_of_range_items_are_ignored() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(1, PACE, t0);
        c.handle_change(5, Change::State);
        assert_eq!(c.poll_timeout(), None);
    }
}
