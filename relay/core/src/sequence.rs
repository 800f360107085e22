//! What a flow's sequence numbers say at its receiving end: whether a datagram
//! is the first copy of its number, a duplicate (the other copy of a protected
//! datagram, or a network duplicate), or too late to tell; and how many
//! numbers were lost or arrived out of order.
//!
//! The window remembers the last [`WINDOW`] numbers up to the highest seen,
//! as a bitmap. A number still unseen once [`LOSS_HORIZON`] higher ones have
//! arrived is lost; if it comes after all it is [`Arrival::Late`] (kept, and
//! counted apart: a loss counter never goes back). Sequence numbers wrap:
//! "ahead" means less than 2³¹ ahead, as in TCP. A number further behind than
//! the window is [`Arrival::Restart`]: taken as the sender starting over (a
//! relay that restarted numbers its flows from 0), so the window starts again
//! there and the datagram is kept; a real straggler that old is rare enough to
//! cost only a miscount.

/// How many sequence numbers behind the highest the window remembers. At
/// 50 datagrams/s (audio) that is 20 s; at 1,000/s (HD video) 1 s: far more
/// than the delay difference between two paths.
pub const WINDOW: u32 = 1024;
const WORDS: usize = WINDOW as usize / 64;
/// How far behind the highest an unseen number may be before it counts as
/// lost: more reordering than two paths of a protected service produce (at
/// 1,000 datagrams/s, 64 ms of delay difference), and soon enough that a
/// 50/s audio stream's loss shows within 1.3 s.
pub const LOSS_HORIZON: u32 = 64;

/// What one arrival is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The highest number yet: in order (possibly after a gap).
    InOrder,
    /// Below the highest, not seen before: reordered, still a first copy.
    Reordered,
    /// Not seen before but already counted lost (past [`LOSS_HORIZON`]):
    /// kept, and counted as late.
    Late,
    /// Seen before: the other copy, or a network duplicate.
    Duplicate,
    /// Older than the window: the sender started over (see the module).
    Restart,
}

impl Arrival {
    /// Whether to keep the datagram: its first copy, or a sender's new start
    /// (a receiver of two copies keeps these and drops the rest).
    pub fn is_first(self) -> bool {
        !matches!(self, Arrival::Duplicate)
    }
}

/// An arrival, and how many numbers it pushed out of the window unseen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub arrival: Arrival,
    pub newly_lost: u64,
}

/// The receiving end's view of one flow's sequence numbers.
#[derive(Debug, Clone, Default)]
pub struct SeqWindow {
    /// The highest number seen; `None` before the first arrival.
    highest: Option<u32>,
    /// Bit `i` (word `i / 64`, bit `i % 64`): number `highest - i` was seen.
    seen: [u64; WORDS],
}

impl SeqWindow {
    /// Takes in an arrival of `seq`.
    pub fn arrive(&mut self, seq: u32) -> Verdict {
        let Some(highest) = self.highest else {
            self.start(seq);
            return Verdict {
                arrival: Arrival::InOrder,
                newly_lost: 0,
            };
        };
        let ahead = seq.wrapping_sub(highest);
        if ahead != 0 && ahead < 1 << 31 {
            let newly_lost = self.slide(ahead);
            self.highest = Some(seq);
            self.set(0);
            return Verdict {
                arrival: Arrival::InOrder,
                newly_lost,
            };
        }
        let behind = highest.wrapping_sub(seq);
        if behind >= WINDOW {
            let newly_lost = self.unseen();
            self.start(seq);
            return Verdict {
                arrival: Arrival::Restart,
                newly_lost,
            };
        }
        let arrival = if self.get(behind) {
            Arrival::Duplicate
        } else {
            self.set(behind);
            if behind >= LOSS_HORIZON {
                Arrival::Late
            } else {
                Arrival::Reordered
            }
        };
        Verdict {
            arrival,
            newly_lost: 0,
        }
    }

    /// Numbers below the highest not seen and not yet counted lost (within
    /// [`LOSS_HORIZON`]): lost if the flow ends now (counted when a flow is
    /// forgotten).
    pub fn unseen(&self) -> u64 {
        match self.highest {
            None => 0,
            Some(_) => (1..LOSS_HORIZON).filter(|&i| !self.get(i)).count() as u64,
        }
    }

    /// The first arrival: numbers below it still in reach (the flow just
    /// started, some of its first datagrams overtaken) are unseen; a flow met
    /// further on (this relay restarted) counts nothing before it as lost.
    fn start(&mut self, seq: u32) {
        self.highest = Some(seq);
        self.seen = [u64::MAX; WORDS];
        if seq < WINDOW {
            for i in 1..=seq {
                self.clear(i);
            }
        }
    }

    /// Moves the window `by` numbers up; returns how many unseen numbers
    /// crossed [`LOSS_HORIZON`] (now lost).
    fn slide(&mut self, by: u32) -> u64 {
        // Unseen numbers within the horizon that move past it, and numbers
        // skipped that land past it at once.
        let crossing = (LOSS_HORIZON.saturating_sub(by)..LOSS_HORIZON)
            .filter(|&i| !self.get(i))
            .count() as u64;
        let lost = crossing + u64::from(by.saturating_sub(LOSS_HORIZON));
        if by >= WINDOW {
            self.seen = [0; WORDS];
            return lost;
        }
        let (words, bits) = ((by / 64) as usize, by % 64);
        for w in (0..WORDS).rev() {
            let from = w.checked_sub(words);
            let high = from.map_or(0, |f| self.seen[f]);
            let low = from
                .and_then(|f| f.checked_sub(1))
                .map_or(0, |f| self.seen[f]);
            self.seen[w] = if bits == 0 {
                high
            } else {
                (high << bits) | (low >> (64 - bits))
            };
        }
        lost
    }

    fn get(&self, i: u32) -> bool {
        self.seen[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: u32) {
        self.seen[(i / 64) as usize] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: u32) {
        self.seen[(i / 64) as usize] &= !(1 << (i % 64));
    }
}

#[cfg(test)]
#[path = "sequence_tests.rs"]
mod tests;
