//! Datagrams quinn dropped from a link's receive queue, counted.
//!
//! quinn queues the datagrams a connection receives until the link's actor
//! reads them; when the queue is full it drops the oldest, silently. That
//! happens when this relay reads slower than the peer sends (it is short of
//! CPU). quinn counts every DATAGRAM frame it receives
//! (`stats().frame_rx.datagram`) and the actor counts what it reads, but the
//! difference also holds what is still queued, which nobody can see. At a
//! moment the queue is empty it holds nothing: every frame counted before then
//! was read or dropped. So the drops are at least `frames − read`, with
//! `frames` taken from the counters before the queue was found empty; counting
//! that lower bound never counts a datagram that is later read, and it is
//! exact once the link goes quiet. Plain code: counts in, new drops out.

/// Reads and drops of one connection's received datagrams.
#[derive(Debug, Default)]
pub struct ReceiveQueue {
    /// Datagrams the actor read (media, probes and echoes alike).
    read: u64,
    /// quinn's count of datagram frames received, at the latest look not yet
    /// followed by an empty queue.
    received_at_look: Option<u64>,
    /// Drops counted so far.
    dropped: u64,
}

impl ReceiveQueue {
    /// The actor read one datagram.
    pub fn read(&mut self) {
        self.read += 1;
    }

    /// quinn's count of datagram frames received, read now.
    pub fn looked(&mut self, received: u64) {
        self.received_at_look = Some(received);
    }

    /// The queue was found empty (a read would wait): returns the drops
    /// found since the last call.
    pub fn found_empty(&mut self) -> u64 {
        let Some(received) = self.received_at_look.take() else {
            return 0;
        };
        let dropped = received.saturating_sub(self.read);
        let new = dropped.saturating_sub(self.dropped);
        self.dropped += new;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_what_was_received_before_the_queue_emptied_and_never_read() {
        let mut q = ReceiveQueue::default();
        // 10 frames arrived; quinn dropped 3 of them; the actor read 7.
        q.looked(10);
        for _ in 0..7 {
            q.read();
        }
        assert_eq!(q.found_empty(), 3);
        // Counted once: an empty queue again without a new look says nothing new.
        assert_eq!(q.found_empty(), 0);
    }

    #[test]
    fn what_is_still_queued_at_a_look_is_not_counted_as_dropped() {
        let mut q = ReceiveQueue::default();
        // 100 frames counted while 40 are still queued: 60 read so far.
        for _ in 0..60 {
            q.read();
        }
        q.looked(100);
        // Frames arriving after the look are read too before the queue empties.
        for _ in 0..50 {
            q.read();
        }
        assert_eq!(q.found_empty(), 0, "all 100 (and 10 more) were read");
        // Later, 20 more frames of which 5 were dropped.
        q.looked(130);
        for _ in 0..15 {
            q.read();
        }
        assert_eq!(q.found_empty(), 5);
    }

    #[test]
    fn a_look_taken_while_datagrams_queue_gives_a_lower_bound_made_exact_later() {
        let mut q = ReceiveQueue::default();
        // 1,000 frames received, 300 dropped, 200 still queued at the look.
        for _ in 0..500 {
            q.read();
        }
        q.looked(1_000);
        for _ in 0..200 {
            q.read();
        }
        assert_eq!(q.found_empty(), 300);
        // The link goes quiet: a look after everything was read adds nothing.
        q.looked(1_000);
        assert_eq!(q.found_empty(), 0);
    }
}
