//! Sans-IO shaping of one direction of a link: loss, cut, delay, jitter, no reordering and
//! a bounded in-flight queue. No sockets, no tokio, no clock reads: `now` is an argument.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::params::{LinkParams, MAX_DELAY, MAX_JITTER, MAX_QUEUE_WAIT};

/// Bounds of the in-flight queue of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Most packets in flight at once. Default: 4096.
    pub max_packets: usize,
    /// Most payload bytes in flight at once. Default: 8 MiB.
    pub max_bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            max_packets: 4096,
            max_bytes: 8 << 20,
        }
    }
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Random loss.
    Loss,
    /// The link was cut when the packet arrived.
    Cut,
    /// The in-flight queue was full.
    QueueFull,
    /// The link's rate queue was full (see `LinkParams::rate_kbps`).
    Congestion,
}

/// What happens to a packet handed to [`Shaper::handle_packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Queued; [`Shaper::poll_transmit`] releases it at this instant unless the link is cut
    /// before then.
    DeliverAt(Instant),
    /// Gone, and counted.
    Drop(DropReason),
}

/// Counters of one shaper. `received == released + dropped_* + in flight`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShaperStats {
    /// Packets handed to [`Shaper::handle_packet`].
    pub received: u64,
    /// Packets released by [`Shaper::poll_transmit`].
    pub released: u64,
    /// Packets lost at random.
    pub dropped_loss: u64,
    /// Packets dropped because the link was cut on arrival or before their delivery time.
    pub dropped_cut: u64,
    /// Packets dropped because the in-flight queue was full.
    pub dropped_queue_full: u64,
    /// Packets dropped at the tail of a rate-limited link's queue.
    pub dropped_congestion: u64,
}

struct InFlight<P> {
    seq: u64,
    deliver_at: Instant,
    size: usize,
    packet: P,
}

/// One direction of an emulated link. `P` is whatever the caller needs to send the packet
/// on; the shaper only looks at the `size` given with it.
pub struct Shaper<P> {
    rng: SmallRng,
    limits: QueueLimits,
    queue: VecDeque<InFlight<P>>,
    queued_bytes: usize,
    last_deliver_at: Option<Instant>,
    /// When a rate-limited link has finished sending what is queued.
    busy_until: Option<Instant>,
    next_seq: u64,
    /// Packets with a lower sequence number were in flight when the link was cut.
    doomed_below: u64,
    stats: ShaperStats,
}

impl<P> fmt::Debug for Shaper<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shaper")
            .field("limits", &self.limits)
            .field("in_flight", &self.queue.len())
            .field("queued_bytes", &self.queued_bytes)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<P> Shaper<P> {
    /// A shaper with the default queue limits and a deterministic RNG.
    pub fn new(seed: u64) -> Self {
        Self::with_limits(seed, QueueLimits::default())
    }

    /// A shaper with the given queue limits and a deterministic RNG.
    pub fn with_limits(seed: u64, limits: QueueLimits) -> Self {
        Shaper {
            rng: SmallRng::seed_from_u64(seed),
            limits,
            queue: VecDeque::new(),
            queued_bytes: 0,
            last_deliver_at: None,
            busy_until: None,
            next_seq: 0,
            doomed_below: 0,
            stats: ShaperStats::default(),
        }
    }

    /// Decides the fate of a packet of `size` bytes arriving at `now` under `params`,
    /// queueing it if it is to be delivered.
    pub fn handle_packet(
        &mut self,
        now: Instant,
        params: &LinkParams,
        size: usize,
        packet: P,
    ) -> Verdict {
        self.stats.received += 1;
        if params.cut {
            self.stats.dropped_cut += 1;
            return Verdict::Drop(DropReason::Cut);
        }
        // `random` is in [0, 1), so loss 1.0 drops everything; NaN compares false.
        if params.loss > 0.0 && self.rng.random::<f64>() < params.loss {
            self.stats.dropped_loss += 1;
            return Verdict::Drop(DropReason::Loss);
        }
        if self.queue.len() >= self.limits.max_packets
            || self.queued_bytes.saturating_add(size) > self.limits.max_bytes
        {
            self.stats.dropped_queue_full += 1;
            return Verdict::Drop(DropReason::QueueFull);
        }
        // A rate-limited link sends one packet after another: this one leaves
        // once the queue ahead of it has, unless that wait is past the buffer.
        let mut leaves = now;
        if let Some(kbps) = params.rate_kbps.filter(|&r| r > 0) {
            let start = self.busy_until.map_or(now, |b| b.max(now));
            if start.saturating_duration_since(now) > MAX_QUEUE_WAIT {
                self.stats.dropped_congestion += 1;
                return Verdict::Drop(DropReason::Congestion);
            }
            // size bytes at kbps kbit/s: size * 8 / kbps ms = size * 8,000 / kbps µs.
            let sending = Duration::from_micros((size as u64).saturating_mul(8_000) / kbps);
            leaves = start + sending;
            self.busy_until = Some(leaves);
        }
        let offset = self.sample_offset(params);
        // The offset is at most MAX_DELAY + MAX_JITTER, so this cannot overflow in practice.
        let mut deliver_at = leaves.checked_add(offset).unwrap_or(leaves);
        // Never overtake the packet before: one direction is a FIFO.
        if let Some(last) = self.last_deliver_at {
            deliver_at = deliver_at.max(last);
        }
        self.last_deliver_at = Some(deliver_at);
        self.queue.push_back(InFlight {
            seq: self.next_seq,
            deliver_at,
            size,
            packet,
        });
        self.next_seq += 1;
        self.queued_bytes += size;
        Verdict::DeliverAt(deliver_at)
    }

    /// The link was cut: every packet now in flight vanishes at its delivery time, even if
    /// the link is restored before then.
    pub fn handle_cut(&mut self) {
        self.doomed_below = self.next_seq;
    }

    /// When the next packet is due, if any is in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Delivery times never decrease along the queue, so the front is the earliest.
        self.queue.front().map(|p| p.deliver_at)
    }

    /// The next packet due at `now`, in arrival order. Due packets of a cut link are
    /// dropped and counted on the way.
    pub fn poll_transmit(&mut self, now: Instant, params: &LinkParams) -> Option<P> {
        while self.queue.front().is_some_and(|p| p.deliver_at <= now) {
            let entry = self.queue.pop_front()?;
            self.queued_bytes -= entry.size;
            if params.cut || entry.seq < self.doomed_below {
                self.stats.dropped_cut += 1;
                continue;
            }
            self.stats.released += 1;
            return Some(entry.packet);
        }
        None
    }

    /// Packets and payload bytes in flight.
    pub fn in_flight(&self) -> (usize, usize) {
        (self.queue.len(), self.queued_bytes)
    }

    /// The counters so far.
    pub fn stats(&self) -> ShaperStats {
        self.stats
    }

    /// `delay + U[-jitter, +jitter]`, clamped to `[0, MAX_DELAY + MAX_JITTER]`.
    fn sample_offset(&mut self, params: &LinkParams) -> Duration {
        let delay = params.delay.min(MAX_DELAY);
        let jitter = params.jitter.min(MAX_JITTER);
        if jitter.is_zero() {
            return delay;
        }
        // Both are at most 60 s, far below i64::MAX nanoseconds.
        let jitter_ns = i64::try_from(jitter.as_nanos()).unwrap_or(i64::MAX);
        let delay_ns = i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX);
        let sample = self.rng.random_range(-jitter_ns..=jitter_ns);
        let total = delay_ns.saturating_add(sample);
        Duration::from_nanos(u64::try_from(total).unwrap_or(0))
    }
}

#[cfg(test)]
#[path = "shaper_tests.rs"]
mod tests;
