//! How much media a peer link's datagram send queue may hold.
//!
//! quinn sends queued datagrams as congestion control allows and, when its
//! queue is full, silently drops the oldest: nobody would count that loss. So
//! the forwarder refuses media before then (counted as `overload`), at a bound
//! set in time rather than bytes: what the connection drains in
//! [`MEDIA_QUEUE_DELAY`] at its congestion-controlled rate (window / RTT). On a
//! slow or congested line the queue stays short and media stays fresh; on a
//! fast link it is long enough to absorb the bursts a busy host makes when it
//! runs the relay late. (A fixed 256 KiB queue, 2 ms at loopback rates, cut
//! 1,200-byte throughput by a tenth through 1 hop and by a sixth to a quarter
//! through 2; see BENCHMARKS.md, section 10.)
//! [`PROBE_RESERVE`] bytes always stay free for probes and their echoes.

use std::time::Duration;

/// The size of every peer link's datagram send queue (quinn's
/// `datagram_send_buffer_size`), bytes.
pub const SEND_BUFFER: usize = 2 * 1024 * 1024;

/// Bytes of the send queue media may never take: room for probes and echoes.
pub const PROBE_RESERVE: usize = 16 * 1024;

/// How long media may wait in a link's send queue, at most.
pub const MEDIA_QUEUE_DELAY: Duration = Duration::from_millis(10);

/// The least media a link may queue whatever its rate (a link just up, or one
/// whose window is small, still takes a burst of ~50 full-size datagrams).
pub const MEDIA_QUEUE_FLOOR: usize = 64 * 1024;

/// The media bound of a connection whose congestion window is `cwnd` bytes
/// and whose RTT is `rtt`: what it sends in [`MEDIA_QUEUE_DELAY`], within
/// [`MEDIA_QUEUE_FLOOR`] and the queue less [`PROBE_RESERVE`].
pub fn media_queue_limit(cwnd: u64, rtt: Duration) -> usize {
    let rtt_us = rtt.as_micros().max(1);
    let drained = u128::from(cwnd) * MEDIA_QUEUE_DELAY.as_micros() / rtt_us;
    usize::try_from(drained)
        .unwrap_or(usize::MAX)
        .clamp(MEDIA_QUEUE_FLOOR, SEND_BUFFER - PROBE_RESERVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_is_ten_ms_at_the_windows_rate_within_floor_and_reserve() {
        let ms = Duration::from_millis;
        // A 150 ms line whose window carries 100 Mbit/s (1.875 MB in flight):
        // 10 ms of it is 125,000 bytes.
        assert_eq!(media_queue_limit(1_875_000, ms(150)), 125_000);
        // Loopback: a 1 MiB window every 200 µs drains the whole queue in 10 ms.
        let most = SEND_BUFFER - PROBE_RESERVE;
        assert_eq!(media_queue_limit(1 << 20, Duration::from_micros(200)), most);
        // A small window on a long line still takes a burst.
        assert_eq!(media_queue_limit(14_720, ms(300)), MEDIA_QUEUE_FLOOR);
        // Degenerate inputs stay within the bounds.
        assert_eq!(media_queue_limit(u64::MAX, Duration::ZERO), most);
        assert_eq!(media_queue_limit(0, ms(1)), MEDIA_QUEUE_FLOOR);
    }
}
