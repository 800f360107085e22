//! Tests of the session core: a model of two session ends joined by streams
//! that break at random points, checked against the reference (each direction's
//! bytes come out exactly as they went in), and the edge cases one by one.

use super::*;
use crate::session_wire::{decode, encode, Record};
use proptest::prelude::*;

/// One end of the model, with its local socket's bytes.
struct Side {
    s: Option<Session>,
    /// Everything its local socket will hand in.
    input: Vec<u8>,
    pushed: usize,
    eof_asked: bool,
    /// What the session delivered to its local socket.
    got: Vec<u8>,
    /// Stream bytes received on the current attempt, not yet taken.
    inbuf: Vec<u8>,
    /// The peer finished its send side of this attempt's stream (after `pipe`).
    peer_finished: bool,
    /// How much of `got` the reference check has seen.
    checked: usize,
}

impl Side {
    fn new(input: Vec<u8>, s: Option<Session>) -> Side {
        Side {
            s,
            input,
            pushed: 0,
            eof_asked: false,
            got: Vec::new(),
            inbuf: Vec::new(),
            peer_finished: false,
            checked: 0,
        }
    }

    fn push(&mut self, n: usize) {
        let Some(s) = self.s.as_mut() else { return };
        let end = self.pushed + n.min(self.input.len() - self.pushed);
        self.pushed += s.push_local(&self.input[self.pushed..end]);
        if self.eof_asked && self.pushed == self.input.len() {
            s.local_eof();
        }
    }
}

/// Two ends, the current attempt's two pipes, and time.
struct Model {
    a: Side,
    b: Side,
    /// Bytes in flight on the current attempt, A→B and B→A.
    ab: Vec<u8>,
    ba: Vec<u8>,
    /// B has taken the current attempt.
    b_on: bool,
    now: Instant,
    cfg: SessionConfig,
}

const TOKEN: u64 = 0x5eed;

impl Model {
    fn new(a_len: usize, b_len: usize, buffer: usize) -> Model {
        let cfg = SessionConfig {
            buffer,
            resume_timeout: Duration::from_secs(3600),
        };
        let mut a = Session::new(Role::Ingress, TOKEN, cfg.clone());
        let first = a.begin_attempt().expect("attempt");
        assert!(first.opens && first.attempt == 1);
        Model {
            a: Side::new(pattern(1, a_len), Some(a)),
            b: Side::new(pattern(2, b_len), None),
            ab: Vec::new(),
            ba: Vec::new(),
            b_on: false,
            now: Instant::now(),
            cfg,
        }
    }

    fn a(&mut self) -> &mut Session {
        self.a.s.as_mut().expect("the ingress exists")
    }

    fn send(&mut self, from_a: bool) {
        if from_a {
            let a = self.a.s.as_mut().expect("a");
            a.poll_transmit(&mut self.ab, 4096);
            // The driver finishes its send side when asked to, and when done.
            if a.wants_finish() || a.ended() == Some(End::Done) {
                self.b.peer_finished = true;
            }
        } else if let Some(b) = self.b.s.as_mut() {
            if self.b_on {
                b.poll_transmit(&mut self.ba, 4096);
                if b.wants_finish() || b.ended() == Some(End::Done) {
                    self.a.peer_finished = true;
                }
            } else {
                // Still on a stream the ingress abandoned: lost.
                b.poll_transmit(&mut Vec::new(), 4096);
            }
        }
    }

    /// Moves up to `n` bytes A→B (or B→A) and lets the receiver take them.
    fn carry(&mut self, to_b: bool, n: usize) {
        let now = self.now;
        if to_b {
            let n = n.min(self.ab.len());
            self.b.inbuf.extend(self.ab.drain(..n));
            if !self.b_on && !self.egress_takes_stream() {
                return;
            }
            let Some(b) = self.b.s.as_mut() else { return };
            let used = b
                .handle_input(&self.b.inbuf, &mut self.b.got)
                .expect("the ingress speaks the protocol");
            self.b.inbuf.drain(..used);
            if self.ab.is_empty() && self.b.inbuf.is_empty() && self.b.peer_finished {
                self.b.peer_finished = false;
                b.handle_peer_finished(now);
            }
        } else {
            let n = n.min(self.ba.len());
            self.a.inbuf.extend(self.ba.drain(..n));
            let a = self.a.s.as_mut().expect("a");
            let used = a
                .handle_input(&self.a.inbuf, &mut self.a.got)
                .expect("the egress speaks the protocol");
            self.a.inbuf.drain(..used);
            if self.ba.is_empty() && self.a.inbuf.is_empty() && self.a.peer_finished {
                self.a.peer_finished = false;
                a.handle_peer_finished(now);
            }
        }
    }

    /// What the egress's stream handler does with a new stream: read its
    /// HELLO, create the session (first stream) or hand it the stream, or
    /// answer CLOSE for a session it no longer holds. Whether B took it.
    fn egress_takes_stream(&mut self) -> bool {
        let Some((Record::Hello(hello), n)) = decode(&self.b.inbuf).expect("valid") else {
            assert!(
                self.b.inbuf.len() < wire::HELLO_LEN,
                "a stream starts with HELLO"
            );
            return false;
        };
        self.b.inbuf.drain(..n);
        let b = self
            .b
            .s
            .get_or_insert_with(|| Session::new(Role::Egress, hello.token, self.cfg.clone()));
        match b.accept(&hello) {
            Ok(()) => {
                self.b_on = true;
                true
            }
            Err(AcceptError::Ended) => {
                encode(&Record::Close(CloseReason::UnknownSession), &mut self.ba);
                self.b.inbuf.clear();
                false
            }
            Err(e) => panic!("egress refused attempt: {e}"),
        }
    }

    /// The path breaks: everything in flight is lost; the ingress notices and
    /// opens a new stream at once; the egress notices now or only when the new
    /// stream reaches it.
    fn cut(&mut self, b_notices: bool) {
        let now = self.now;
        self.ab.clear();
        self.ba.clear();
        self.a.inbuf.clear();
        self.b.inbuf.clear();
        self.a.peer_finished = false;
        self.b.peer_finished = false;
        self.b_on = false;
        let a = self.a();
        a.detach(now);
        a.begin_attempt();
        if b_notices {
            if let Some(b) = self.b.s.as_mut() {
                b.detach(now);
            }
        }
    }

    /// The reference: what each end delivered is a prefix of what the other
    /// end's local socket handed in (checked incrementally), and no buffer
    /// passed its bound.
    fn check(&mut self) {
        fn delivered(from: &Side, to: &mut Side) {
            let (seen, got) = (to.checked, to.got.len());
            assert!(got <= from.input.len(), "more bytes delivered than sent");
            assert!(
                from.input[seen..got] == to.got[seen..],
                "a byte delivered out of place at offset {seen}..{got}"
            );
            to.checked = got;
        }
        delivered(&self.a, &mut self.b);
        delivered(&self.b, &mut self.a);
        for s in [&self.a.s, &self.b.s].into_iter().flatten() {
            assert!(s.buffered() <= self.cfg.buffer, "buffer past its bound");
        }
    }

    fn ended(&self) -> bool {
        let done = |s: &Option<Session>| s.as_ref().and_then(|s| s.ended()).is_some();
        done(&self.a.s) && done(&self.b.s)
    }

    /// No more cuts: everything goes through until both ends are done. An
    /// egress left on a stream the ingress abandoned notices the stream is
    /// dead; an end waiting for a resume that never comes times out.
    fn finish(&mut self) {
        self.a.eof_asked = true;
        self.b.eof_asked = true;
        let mut quiet = 0;
        while !self.ended() {
            let before = self.progress();
            if !self.b_on {
                if let Some(b) = self.b.s.as_mut() {
                    b.detach(self.now);
                }
            }
            self.a.push(usize::MAX);
            self.b.push(usize::MAX);
            self.send(true);
            self.send(false);
            self.carry(true, usize::MAX);
            self.carry(false, usize::MAX);
            self.check();
            quiet = if self.progress() == before {
                quiet + 1
            } else {
                0
            };
            if quiet > 3 {
                self.now += self.cfg.resume_timeout;
                for s in [&mut self.a.s, &mut self.b.s].into_iter().flatten() {
                    s.handle_timeout(self.now);
                }
                assert!(quiet < 10, "stuck: no progress and no timeout");
            }
        }
    }

    /// Everything that moves when the model makes progress.
    fn progress(&self) -> (usize, usize, usize, usize, Option<End>, Option<End>) {
        let end = |s: &Option<Session>| s.as_ref().and_then(|s| s.ended());
        (
            self.a.got.len(),
            self.b.got.len(),
            self.a.pushed,
            self.b.pushed + self.ab.len() + self.ba.len(),
            end(&self.a.s),
            end(&self.b.s),
        )
    }
}

/// Deterministic bytes, different per seed.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Push { a: bool, n: usize },
    Send { a: bool },
    Carry { to_b: bool, n: usize },
    Cut { b_notices: bool },
    Eof { a: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<bool>(), 1usize..20_000).prop_map(|(a, n)| Op::Push { a, n }),
        4 => any::<bool>().prop_map(|a| Op::Send { a }),
        6 => (any::<bool>(), 1usize..30_000).prop_map(|(to_b, n)| Op::Carry { to_b, n }),
        1 => any::<bool>().prop_map(|b_notices| Op::Cut { b_notices }),
        1 => any::<bool>().prop_map(|a| Op::Eof { a }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Random cuts at random points: each direction's bytes come out whole, in
    /// order, once; buffers stay within their bound; both ends finish cleanly.
    #[test]
    fn bytes_survive_random_cuts_exactly_once(
        a_len in 0usize..100_000,
        b_len in 0usize..100_000,
        buffer in 256usize..40_000,
        ops in prop::collection::vec(op(), 0..300),
    ) {
        let mut m = Model::new(a_len, b_len, buffer);
        for op in ops {
            match op {
                Op::Push { a: true, n } => m.a.push(n),
                Op::Push { a: false, n } => m.b.push(n),
                Op::Send { a } => m.send(a),
                Op::Carry { to_b, n } => m.carry(to_b, n),
                Op::Cut { b_notices } => m.cut(b_notices),
                Op::Eof { a: true } => m.a.eof_asked = true,
                Op::Eof { a: false } => m.b.eof_asked = true,
            }
            m.now += Duration::from_millis(1);
            m.check();
        }
        m.finish();
        prop_assert_eq!(m.a.s.as_ref().and_then(|s| s.ended()), Some(End::Done));
        prop_assert_eq!(m.b.s.as_ref().and_then(|s| s.ended()), Some(End::Done));
        prop_assert!(m.b.got == m.a.input, "ingress → egress: {} of {} bytes", m.b.got.len(), m.a.input.len());
        prop_assert!(m.a.got == m.b.input, "egress → ingress: {} of {} bytes", m.a.got.len(), m.b.input.len());
    }
}

/// A connected pair after the HELLO exchange, with no cut.
fn connected(buffer: usize) -> Model {
    let mut m = Model::new(0, 0, buffer);
    m.send(true);
    m.carry(true, usize::MAX);
    m.send(false);
    m.carry(false, usize::MAX);
    assert!(m.a().is_greeted());
    m
}

#[test]
fn a_full_buffer_stops_the_local_reader_until_acknowledged() {
    let mut m = connected(1000);
    m.a.input = pattern(3, 5000);
    m.a.push(5000);
    assert_eq!(m.a.pushed, 1000, "only the buffer's worth taken");
    assert_eq!(m.a().local_room(), 0);
    m.send(true);
    m.carry(true, usize::MAX);
    assert_eq!(m.b.got.len(), 1000, "sent before acknowledged");
    assert_eq!(m.a().local_room(), 0, "still waiting for the ACK");
    m.send(false);
    m.carry(false, usize::MAX);
    assert_eq!(m.a().local_room(), 1000, "the ACK freed the buffer");
    assert_eq!(m.a().buffered(), 0);
}

#[test]
fn after_a_cut_only_unacknowledged_bytes_are_sent_again_and_counted() {
    let mut m = connected(100_000);
    m.a.input = pattern(4, 30_000);
    m.a.push(30_000);
    for _ in 0..4 {
        m.send(true);
    }
    // 20 000 bytes arrive and are acknowledged; the rest is lost in the cut.
    m.carry(true, 20_000 + 2 * 11);
    m.send(false);
    m.carry(false, usize::MAX);
    let acked_before = m.b.got.len();
    m.cut(true);
    assert_eq!(m.a().attempt(), 2);
    m.finish();
    assert_eq!(m.b.got, m.a.input);
    let resent = m.a().retransmitted();
    assert_eq!(
        resent,
        30_000 - acked_before as u64,
        "exactly the unacknowledged bytes"
    );
}

#[test]
fn the_egress_resends_from_what_the_ingress_says_it_has() {
    let mut m = connected(100_000);
    m.b.input = pattern(5, 40_000);
    m.b.push(40_000);
    for _ in 0..4 {
        m.send(false);
    }
    // The ingress gets 16 KiB + a bit but its ACK is lost in the cut.
    m.carry(false, 17_000);
    let got = m.a.got.len() as u64;
    m.cut(true);
    m.finish();
    assert_eq!(m.a.got, m.b.input);
    let resent = m.b.s.as_ref().expect("b").retransmitted();
    assert_eq!(resent, 40_000 - got, "nothing the ingress had was resent");
}

#[test]
fn a_close_from_the_far_end_resets_this_one() {
    let mut m = connected(1000);
    m.b.s.as_mut().expect("b").close(CloseReason::Reset);
    m.send(false);
    assert_eq!(
        m.b.s.as_ref().and_then(|s| s.ended()),
        Some(End::Closed(CloseReason::Reset))
    );
    m.carry(false, usize::MAX);
    assert_eq!(m.a().ended(), Some(End::PeerClosed(CloseReason::Reset)));
}

#[test]
fn a_close_without_a_stream_ends_at_once() {
    let mut s = Session::new(Role::Ingress, 1, SessionConfig::default());
    s.begin_attempt();
    s.detach(Instant::now());
    s.close(CloseReason::Idle);
    assert_eq!(s.ended(), Some(End::Closed(CloseReason::Idle)));
    assert!(s.begin_attempt().is_none(), "no attempt after the end");
}

#[test]
fn the_egress_refuses_stale_attempts_and_other_tokens() {
    let mut b = Session::new(Role::Egress, 7, SessionConfig::default());
    let hello = |token, attempt| Hello {
        token,
        attempt,
        received: 0,
    };
    assert_eq!(b.accept(&hello(8, 1)), Err(AcceptError::Token));
    assert_eq!(b.accept(&hello(7, 2)), Ok(()));
    assert_eq!(
        b.accept(&hello(7, 2)),
        Err(AcceptError::Stale { got: 2, current: 2 })
    );
    assert_eq!(
        b.accept(&Hello {
            token: 7,
            attempt: 3,
            received: 1
        }),
        Err(AcceptError::Received {
            claimed: 1,
            sent: 0
        })
    );
    assert_eq!(b.accept(&hello(7, 5)), Ok(()));
}

#[test]
fn a_session_gives_up_after_the_resume_timeout_unless_greeted_again() {
    let cfg = SessionConfig {
        buffer: 1000,
        resume_timeout: Duration::from_secs(10),
    };
    let t0 = Instant::now();
    let mut b = Session::new(Role::Egress, 7, cfg.clone());
    b.accept(&Hello {
        token: 7,
        attempt: 1,
        received: 0,
    })
    .expect("accept");
    assert_eq!(b.poll_timeout(), None, "no deadline while it runs");
    b.detach(t0);
    assert_eq!(b.poll_timeout(), Some(t0 + cfg.resume_timeout));
    b.handle_timeout(t0 + Duration::from_secs(9));
    assert_eq!(b.ended(), None);
    b.handle_timeout(t0 + cfg.resume_timeout);
    assert_eq!(b.ended(), Some(End::GaveUp));

    // The ingress: failed attempts do not push the deadline back.
    let mut a = Session::new(Role::Ingress, 7, cfg.clone());
    a.begin_attempt();
    a.detach(t0);
    a.begin_attempt();
    a.detach(t0 + Duration::from_secs(5));
    assert_eq!(a.poll_timeout(), Some(t0 + cfg.resume_timeout));
    a.handle_timeout(t0 + cfg.resume_timeout);
    assert_eq!(a.ended(), Some(End::GaveUp));
}

#[test]
fn a_complete_session_whose_last_ack_is_lost_still_ends_cleanly() {
    let mut m = connected(1000);
    m.a.input = b"hello".to_vec();
    m.b.input = b"bye".to_vec();
    m.a.eof_asked = true;
    m.b.eof_asked = true;
    m.a.push(5);
    m.b.push(3);
    m.send(true);
    m.carry(true, usize::MAX);
    m.send(false);
    m.carry(false, usize::MAX);
    // The ingress is complete (its FIN acknowledged, the egress's FIN here)
    // and sends its last ACK, which the cut loses.
    assert!(m.a().is_complete());
    m.send(true);
    m.cut(true);
    m.finish();
    assert_eq!(m.a().ended(), Some(End::Done));
    assert_eq!(m.b.s.as_ref().and_then(|s| s.ended()), Some(End::Done));
    assert_eq!(
        (m.a.got.as_slice(), m.b.got.as_slice()),
        (&b"bye"[..], &b"hello"[..])
    );
}

#[test]
fn a_gap_or_a_record_before_hello_is_a_protocol_error() {
    let mut a = Session::new(Role::Ingress, 7, SessionConfig::default());
    a.begin_attempt();
    let mut input = Vec::new();
    encode(&Record::Ack { received: 0 }, &mut input);
    assert_eq!(
        a.handle_input(&input, &mut Vec::new()),
        Err(SessionError::BeforeHello)
    );
    let mut b = Session::new(Role::Egress, 7, SessionConfig::default());
    b.accept(&Hello {
        token: 7,
        attempt: 1,
        received: 0,
    })
    .expect("accept");
    input.clear();
    encode(
        &Record::Data {
            offset: 5,
            bytes: b"x",
        },
        &mut input,
    );
    assert_eq!(
        b.handle_input(&input, &mut Vec::new()),
        Err(SessionError::Gap {
            expected: 0,
            got: 5
        })
    );
}
