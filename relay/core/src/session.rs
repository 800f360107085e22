//! One TCP session end to end between its ingress and egress relays (sans-IO):
//! byte offsets, acknowledgements, the bounded buffer of bytes the far relay
//! has not acknowledged, and the resume handshake that carries a session over
//! a new path when its stream breaks.
//!
//! A session is carried by one QUIC stream per hop at a time (an *attempt*).
//! Transit relays splice streams without looking inside; the two ends speak the
//! records of [`crate::session_wire`] over them. When an attempt breaks (a
//! reset from any hop, the link under it going down) the ingress opens a new
//! stream with the next attempt number and both ends carry on from where the
//! other stopped, so the classroom client and the service's target see neither
//! a reset nor a lost or repeated byte.
//!
//! Rules, in one place:
//! - **Offsets.** Each direction counts its bytes from 0; its FIN takes the
//!   offset after the last byte. DATA records say the offset of their first
//!   byte. A receiver takes bytes only at the offset it expects next, drops
//!   bytes it already has (a retransmission overlapping what arrived), and
//!   treats a gap as a protocol error: a stream is reliable and in order, so a
//!   gap is a bug, never loss.
//! - **Acknowledgements** (ACK records, cumulative) are sent after every batch
//!   of input that moved `received`; bytes are acknowledged once the receiving
//!   relay holds them. The sender keeps every byte from the lowest unacknowledged
//!   offset in a buffer of at most [`SessionConfig::buffer`] bytes; when it is
//!   full, [`Session::local_room`] is 0 and the driver stops reading the local
//!   socket (backpressure to the client or the target).
//! - **Resume.** Every attempt starts with a HELLO each way: the ingress's
//!   (token, attempt, what it has received) on the stream it opens; the
//!   egress's answer with what it has received. Each side then resends from the
//!   offset the other says it has: the egress from the ingress's HELLO at once,
//!   the ingress from its lowest unacknowledged offset at once (not waiting a
//!   round trip for the egress's HELLO; the egress drops what it already has)
//!   and skipping ahead when that HELLO arrives. The egress takes an attempt
//!   only if it is newer than the one it has, and only with the session's token
//!   (chosen at random by the ingress, so a restarted ingress reusing a session
//!   id cannot take over another session).
//! - **End.** When a side's FIN is acknowledged and it has the other side's
//!   FIN, it is *complete*: it sends its last ACK, finishes its send side of the
//!   stream, and is done when the other side's send side finishes too (which
//!   that side does only once complete). A complete side whose path breaks
//!   resumes like any other, so the last ACK cannot be lost. A CLOSE record
//!   ends a session abnormally (a local reset, a refused target, an unknown
//!   session, idleness, shutdown): its receiver resets its local socket.
//! - **Giving up.** From the moment an attempt breaks, the session has
//!   [`SessionConfig::resume_timeout`] to complete a HELLO exchange on a new one;
//!   then it ends as [`End::GaveUp`] (or [`End::Done`] if it was complete).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::session_wire::{self as wire, Record, RecordError, MAX_DATA};
pub use crate::session_wire::{CloseReason, Hello};

/// Capacity an emptied send buffer keeps; a larger one is freed.
const KEEP_EMPTY: usize = 64 * 1024;

/// A session's bounds and timers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Bytes of one direction kept until the far relay acknowledges them.
    /// Default 1 MiB: above the bandwidth × round trip a signalling session
    /// needs across the Pacific (~200 ms), small enough that thousands of
    /// sessions fit. The buffer grows only as bytes wait.
    pub buffer: usize,
    /// How long a session whose path broke may take to resume. Default 20 s.
    pub resume_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            buffer: 1 << 20,
            resume_timeout: Duration::from_secs(20),
        }
    }
}

/// Which end of the session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Holds the classroom client's connection and opens every stream.
    Ingress,
    /// Holds the target connection and takes the streams the ingress opens.
    Egress,
}

/// How a session ended: what the driver does with its local socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Both directions finished and acknowledged: close the local socket normally.
    Done,
    /// The far end closed the session abnormally: reset the local socket.
    PeerClosed(CloseReason),
    /// This end closed it (CLOSE sent if a stream was there): reset the local socket.
    Closed(CloseReason),
    /// No path came back in time: reset the local socket.
    GaveUp,
}

/// The far end broke the protocol; the session cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SessionError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("data at offset {got} where {expected} was expected (a gap)")]
    Gap { expected: u64, got: u64 },
    #[error("data or FIN that contradicts the FIN already received")]
    PastFin,
    #[error("acknowledgement of offset {acked}, only {sent} ever sent")]
    AckBeyondSent { acked: u64, sent: u64 },
    #[error("a record before the attempt's HELLO")]
    BeforeHello,
    #[error("a HELLO where none was expected")]
    UnexpectedHello,
    #[error("a HELLO for another session or attempt")]
    WrongHello,
}

/// Why the egress refuses a stream for a session it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AcceptError {
    #[error("the session has ended")]
    Ended,
    #[error("the stream names another session (token mismatch)")]
    Token,
    #[error("attempt {got} is not newer than attempt {current}")]
    Stale { got: u32, current: u32 },
    #[error("the ingress claims {claimed} received, only {sent} ever sent")]
    Received { claimed: u64, sent: u64 },
}

/// A stream the ingress is to open: its attempt number, and whether it opens
/// the session (no HELLO exchange has completed yet, so the egress may not
/// hold it) or resumes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub attempt: u32,
    pub opens: bool,
}

/// One session end (see the module docs).
#[derive(Debug)]
pub struct Session {
    role: Role,
    token: u64,
    cfg: SessionConfig,
    attempt: u32,
    /// A stream carries the session now.
    attached: bool,
    /// Our HELLO is still to be sent on this attempt.
    hello_due: bool,
    /// Both HELLOs of this attempt are known.
    greeted: bool,
    ever_greeted: bool,
    /// When the session gives up if no attempt is greeted first.
    deadline: Option<Instant>,
    // Outbound: the local socket's bytes toward the far end.
    /// Bytes at offsets `out_base..`, none of them acknowledged.
    out: VecDeque<u8>,
    out_base: u64,
    acked: u64,
    /// The next offset to send on this attempt.
    next: u64,
    /// One past the highest offset ever sent (on any attempt).
    high: u64,
    local_eof: bool,
    // Inbound: the far end's bytes toward the local socket.
    received: u64,
    peer_fin: bool,
    ack_due: bool,
    close_due: Option<CloseReason>,
    ended: Option<End>,
    retransmitted: u64,
}

impl Session {
    pub fn new(role: Role, token: u64, cfg: SessionConfig) -> Session {
        Session {
            role,
            token,
            cfg,
            attempt: 0,
            attached: false,
            hello_due: false,
            greeted: false,
            ever_greeted: false,
            deadline: None,
            out: VecDeque::new(),
            out_base: 0,
            acked: 0,
            next: 0,
            high: 0,
            local_eof: false,
            received: 0,
            peer_fin: false,
            ack_due: false,
            close_due: None,
            ended: None,
            retransmitted: 0,
        }
    }

    pub fn token(&self) -> u64 {
        self.token
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub fn is_attached(&self) -> bool {
        self.attached
    }

    /// A HELLO exchange has completed once: the egress holds the session, so
    /// the ingress's next stream resumes it rather than opening it.
    pub fn ever_greeted(&self) -> bool {
        self.ever_greeted
    }

    /// The current attempt's HELLOs are exchanged: the session runs on it.
    pub fn is_greeted(&self) -> bool {
        self.greeted
    }

    pub fn ended(&self) -> Option<End> {
        self.ended
    }

    /// Bytes of the local side waiting for the far end's acknowledgement.
    pub fn buffered(&self) -> usize {
        self.out.len()
    }

    /// Bytes sent again after a path broke, over the session's life.
    pub fn retransmitted(&self) -> u64 {
        self.retransmitted
    }

    /// Bytes the local side handed in, and bytes received from the far end.
    pub fn carried(&self) -> (u64, u64) {
        let data_in = self.received - u64::from(self.peer_fin);
        (self.data_end(), data_in)
    }

    /// The far end's FIN arrived: once the driver has written every byte
    /// delivered so far, it half-closes the local socket.
    pub fn peer_finished(&self) -> bool {
        self.peer_fin
    }

    /// Both directions finished and acknowledged.
    pub fn is_complete(&self) -> bool {
        self.local_eof && self.acked > self.data_end() && self.peer_fin
    }

    fn data_end(&self) -> u64 {
        self.out_base + self.out.len() as u64
    }

    // ------------------------------------------------------------ local side

    /// How many more bytes the local socket may hand in now (0: stop reading).
    pub fn local_room(&self) -> usize {
        if self.ended.is_some() || self.local_eof {
            return 0;
        }
        self.cfg.buffer.saturating_sub(self.out.len())
    }

    /// Bytes read from the local socket; returns how many were taken (at most
    /// [`Session::local_room`]).
    pub fn push_local(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.local_room());
        self.out.extend(&bytes[..n]);
        n
    }

    /// The local socket ended its direction (FIN): the far end gets a FIN after
    /// every byte.
    pub fn local_eof(&mut self) {
        if self.ended.is_none() {
            self.local_eof = true;
        }
    }

    /// Ends the session abnormally from this side: a CLOSE goes out on the
    /// stream if there is one, and the session ends as [`End::Closed`].
    pub fn close(&mut self, reason: CloseReason) {
        if self.ended.is_some() {
            return;
        }
        if self.attached {
            self.close_due = Some(reason);
        } else {
            self.ended = Some(End::Closed(reason));
        }
    }

    /// Ends the session without a stream to say so on (the far end cannot be
    /// reached any more): [`End::GaveUp`], or [`End::Done`] if it was complete.
    pub fn give_up(&mut self) {
        if self.ended.is_none() {
            self.ended = Some(self.give_up_end());
        }
    }

    fn give_up_end(&self) -> End {
        if self.is_complete() {
            End::Done
        } else {
            End::GaveUp
        }
    }

    // ------------------------------------------------------------ attempts

    /// The ingress starts a new attempt on a stream it is opening: the old
    /// stream, if any, is abandoned. `None` once the session has ended.
    pub fn begin_attempt(&mut self) -> Option<Attempt> {
        if self.ended.is_some() || self.role != Role::Ingress {
            return None;
        }
        self.attempt = self.attempt.saturating_add(1);
        self.start_attempt();
        self.greeted = false;
        Some(Attempt {
            attempt: self.attempt,
            opens: !self.ever_greeted,
        })
    }

    /// The egress takes a stream the ingress opened, given the HELLO it
    /// started with; the stream it had, if any, is abandoned.
    pub fn accept(&mut self, hello: &Hello) -> Result<(), AcceptError> {
        if self.ended.is_some() {
            return Err(AcceptError::Ended);
        }
        if hello.token != self.token {
            return Err(AcceptError::Token);
        }
        if hello.attempt <= self.attempt {
            return Err(AcceptError::Stale {
                got: hello.attempt,
                current: self.attempt,
            });
        }
        if hello.received > self.high {
            return Err(AcceptError::Received {
                claimed: hello.received,
                sent: self.high,
            });
        }
        self.attempt = hello.attempt;
        self.start_attempt();
        self.greeted();
        self.release(hello.received);
        Ok(())
    }

    fn start_attempt(&mut self) {
        self.attached = true;
        self.hello_due = true;
        self.ack_due = false;
        self.next = self.acked;
    }

    fn greeted(&mut self) {
        self.greeted = true;
        self.ever_greeted = true;
        self.deadline = None;
    }

    /// The stream broke (a reset, a lost connection, the link under it down).
    pub fn detach(&mut self, now: Instant) {
        if !self.attached {
            return;
        }
        self.attached = false;
        self.greeted = false;
        self.hello_due = false;
        if let Some(reason) = self.close_due.take() {
            self.ended.get_or_insert(End::Closed(reason));
        }
        if self.ended.is_none() && self.deadline.is_none() {
            self.deadline = Some(now + self.cfg.resume_timeout);
        }
    }

    /// The far end finished its send side of the stream: the session is done
    /// if it is complete, else the stream broke.
    pub fn handle_peer_finished(&mut self, now: Instant) {
        if self.ended.is_some() {
            return;
        }
        if self.is_complete() && self.greeted {
            self.ended = Some(End::Done);
        } else {
            self.detach(now);
        }
    }

    /// Whether the driver should finish its send side of the stream now: the
    /// session is complete and everything it had to say is said.
    pub fn wants_finish(&self) -> bool {
        self.attached
            && self.greeted
            && self.is_complete()
            && !self.ack_due
            && !self.hello_due
            && self.ended.is_none()
    }

    /// When [`Session::handle_timeout`] must be called, if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.ended.is_some() || self.greeted {
            return None;
        }
        self.deadline
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|d| now >= d) {
            self.ended = Some(self.give_up_end());
        }
    }

    // ------------------------------------------------------------ the stream

    /// Takes records from the stream. Bytes for the local socket are appended
    /// to `deliver`. Returns how much of `input` was consumed (whole records;
    /// the rest is an incomplete record to be completed by later input).
    pub fn handle_input(
        &mut self,
        input: &[u8],
        deliver: &mut Vec<u8>,
    ) -> Result<usize, SessionError> {
        let mut at = 0;
        while self.attached && self.ended.is_none() {
            let Some((record, n)) = wire::decode(&input[at..])? else {
                break;
            };
            at += n;
            self.handle_record(record, deliver)?;
        }
        Ok(at)
    }

    fn handle_record(
        &mut self,
        record: Record<'_>,
        deliver: &mut Vec<u8>,
    ) -> Result<(), SessionError> {
        if let Record::Hello(h) = record {
            if self.role == Role::Egress || self.greeted {
                return Err(SessionError::UnexpectedHello);
            }
            if h.token != self.token || h.attempt != self.attempt {
                return Err(SessionError::WrongHello);
            }
            self.check_ack(h.received)?;
            self.greeted();
            self.release(h.received);
            return Ok(());
        }
        if !self.greeted && !matches!(record, Record::Close(_)) {
            return Err(SessionError::BeforeHello);
        }
        match record {
            Record::Hello(_) => {}
            Record::Data { offset, bytes } => {
                let end = offset + bytes.len() as u64;
                // After the FIN only retransmissions of bytes before it may come.
                if self.peer_fin && end >= self.received {
                    return Err(SessionError::PastFin);
                }
                if offset > self.received {
                    return Err(SessionError::Gap {
                        expected: self.received,
                        got: offset,
                    });
                }
                if end > self.received {
                    let skip = (self.received - offset) as usize;
                    deliver.extend_from_slice(&bytes[skip..]);
                    self.received = end;
                    self.ack_due = true;
                }
            }
            Record::Ack { received } => {
                self.check_ack(received)?;
                self.release(received);
            }
            Record::Fin { offset } => {
                if self.peer_fin {
                    if offset + 1 != self.received {
                        return Err(SessionError::PastFin);
                    }
                } else if offset < self.received {
                    return Err(SessionError::PastFin);
                } else if offset > self.received {
                    return Err(SessionError::Gap {
                        expected: self.received,
                        got: offset,
                    });
                } else {
                    self.peer_fin = true;
                    self.received += 1;
                    self.ack_due = true;
                }
            }
            Record::Close(reason) => {
                self.ended = Some(if self.is_complete() {
                    End::Done
                } else {
                    End::PeerClosed(reason)
                });
            }
        }
        Ok(())
    }

    fn check_ack(&self, received: u64) -> Result<(), SessionError> {
        if received > self.high {
            return Err(SessionError::AckBeyondSent {
                acked: received,
                sent: self.high,
            });
        }
        Ok(())
    }

    /// The far end has every offset below `received`: forget those bytes.
    fn release(&mut self, received: u64) {
        self.acked = self.acked.max(received);
        let upto = self.acked.min(self.data_end());
        let drop = (upto.saturating_sub(self.out_base)) as usize;
        self.out.drain(..drop);
        self.out_base += drop as u64;
        self.next = self.next.max(self.acked);
        // A burst's buffer is not kept for the rest of a long quiet session.
        if self.out.is_empty() && self.out.capacity() > KEEP_EMPTY {
            self.out = VecDeque::new();
        }
    }

    /// Appends the records to send on the stream now to `out`, about `max`
    /// bytes at most (one DATA record may pass it). Returns whether it wrote any.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>, max: usize) -> bool {
        if !self.attached || self.ended.is_some() {
            return false;
        }
        let start = out.len();
        if let Some(reason) = self.close_due.take() {
            wire::encode(&Record::Close(reason), out);
            self.ended = Some(End::Closed(reason));
            return true;
        }
        if self.hello_due {
            let hello = Hello {
                token: self.token,
                attempt: self.attempt,
                received: self.received,
            };
            wire::encode(&Record::Hello(hello), out);
            self.hello_due = false;
            self.ack_due = false;
        }
        if self.ack_due {
            wire::encode(
                &Record::Ack {
                    received: self.received,
                },
                out,
            );
            self.ack_due = false;
        }
        let end = self.data_end();
        while self.next < end && out.len() - start < max {
            let len = (end - self.next).min(MAX_DATA as u64) as usize;
            wire::data_head(self.next, len, out);
            let from = (self.next - self.out_base) as usize;
            let (a, b) = self.out.as_slices();
            let (a, b) = if from >= a.len() {
                (&b[from - a.len()..], &[][..])
            } else {
                (&a[from..], b)
            };
            let take_a = a.len().min(len);
            out.extend_from_slice(&a[..take_a]);
            out.extend_from_slice(&b[..len - take_a]);
            if self.next < self.high {
                self.retransmitted += self.high.min(self.next + len as u64) - self.next;
            }
            self.next += len as u64;
            self.high = self.high.max(self.next);
        }
        if self.local_eof && self.next == end && out.len() - start < max {
            wire::encode(&Record::Fin { offset: end }, out);
            self.next = end + 1;
            self.high = self.high.max(self.next);
        }
        out.len() > start
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
