//! Which incoming QUIC handshakes a daemon takes on. A handshake costs memory
//! and a signature before the peer has proved anything, so an unauthenticated
//! flood must not be able to buy unbounded amounts of either. Sans-IO: the
//! driver passes `now` and whether the client's address is validated.
//!
//! - While few handshakes are in progress and the rate allows, a new one is
//!   taken at once.
//! - Under load (past `retry_above` in progress, or the rate spent), a client
//!   whose address is not validated is sent a QUIC Retry (stateless: it costs
//!   the daemon no connection state; a real client answers it within a round
//!   trip, a spoofed one never does).
//! - A token bucket bounds handshakes per second from unknown addresses;
//!   beyond it a validated client's Initial is ignored. Known peers (a relay's
//!   neighbours, a controller's relays, by address) are not held to the rate,
//!   so a flood cannot keep a real neighbour out once it has answered a Retry.
//! - `max_in_flight` bounds handshakes in progress for everyone.

use std::time::{Duration, Instant};

/// The gate's limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateLimits {
    /// Handshakes in progress before unvalidated clients are sent a Retry.
    pub retry_above: usize,
    /// Handshakes in progress at most; more are ignored.
    pub max_in_flight: usize,
    /// Handshakes started per second, sustained.
    pub per_second: f64,
    /// Handshakes that may start at once after a quiet spell.
    pub burst: f64,
}

impl GateLimits {
    /// For a relay: a handful of neighbours, which reconnect rarely.
    pub const RELAY: GateLimits = GateLimits {
        retry_above: 16,
        max_in_flight: 128,
        per_second: 50.0,
        burst: 100.0,
    };
    /// For a controller: every relay of the fleet may connect at once.
    pub const CONTROLLER: GateLimits = GateLimits {
        retry_above: 256,
        max_in_flight: 4096,
        per_second: 1000.0,
        burst: 4000.0,
    };
}

/// What to do with one incoming handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Take it on; call [`HandshakeGate::finished`] when it ends either way.
    Accept,
    /// Ask the client to prove its address first (a stateless Retry).
    Retry,
    /// Too many in progress: drop the Initial.
    Busy,
    /// Over the rate: drop the Initial.
    RateLimited,
}

/// The gate's state (see the module docs).
#[derive(Debug, Clone)]
pub struct HandshakeGate {
    limits: GateLimits,
    tokens: f64,
    last: Option<Instant>,
    in_flight: usize,
}

impl HandshakeGate {
    pub fn new(limits: GateLimits) -> HandshakeGate {
        HandshakeGate {
            tokens: limits.burst,
            limits,
            last: None,
            in_flight: 0,
        }
    }

    /// Handshakes taken on and not finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Decides an incoming handshake at `now`. `validated`: the client's
    /// address is proven (it answered a Retry). `known`: the address is a
    /// known peer's.
    pub fn admit(&mut self, now: Instant, validated: bool, known: bool) -> Admit {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.limits.per_second).min(self.limits.burst);
        }
        self.last = Some(now);
        if self.in_flight >= self.limits.max_in_flight {
            return Admit::Busy;
        }
        let loaded = self.in_flight >= self.limits.retry_above || self.tokens < 1.0;
        if loaded && !validated {
            return Admit::Retry;
        }
        if !known {
            if self.tokens < 1.0 {
                return Admit::RateLimited;
            }
            self.tokens -= 1.0;
        }
        self.in_flight += 1;
        Admit::Accept
    }

    /// A handshake taken on has ended (done, failed or timed out).
    pub fn finished(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// How long until a token is back, for tests and logs.
    pub fn refill_in(&self) -> Duration {
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.limits.per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: GateLimits = GateLimits {
        retry_above: 2,
        max_in_flight: 4,
        per_second: 10.0,
        burst: 3.0,
    };

    #[test]
    fn few_handshakes_are_taken_then_unvalidated_ones_are_asked_to_retry() {
        let t = Instant::now();
        let mut g = HandshakeGate::new(SMALL);
        assert_eq!(g.admit(t, false, false), Admit::Accept);
        assert_eq!(g.admit(t, false, false), Admit::Accept);
        assert_eq!(g.admit(t, false, false), Admit::Retry);
        // A client that answered the Retry is taken while tokens last.
        assert_eq!(g.admit(t, true, false), Admit::Accept);
        assert_eq!(g.admit(t, true, false), Admit::RateLimited);
        assert_eq!(g.in_flight(), 3);
        g.finished();
        g.finished();
        g.finished();
        assert_eq!(
            g.admit(t, false, false),
            Admit::Retry,
            "the bucket is empty"
        );
        assert_eq!(g.admit(t, true, false), Admit::RateLimited);
        let later = t + Duration::from_millis(100);
        assert_eq!(
            g.admit(later, true, false),
            Admit::Accept,
            "one token back after 100 ms"
        );
    }

    #[test]
    fn a_known_peer_gets_in_while_strangers_spend_the_rate() {
        let t = Instant::now();
        let mut g = HandshakeGate::new(SMALL);
        for _ in 0..3 {
            g.admit(t, true, false);
            g.finished();
        }
        assert_eq!(
            g.admit(t, true, false),
            Admit::RateLimited,
            "strangers are held"
        );
        assert_eq!(
            g.admit(t, false, true),
            Admit::Retry,
            "a known address proves itself"
        );
        assert_eq!(g.admit(t, true, true), Admit::Accept, "then it is taken");
    }

    #[test]
    fn in_flight_is_bounded_whatever_the_rate() {
        let t = Instant::now();
        let mut g = HandshakeGate::new(GateLimits {
            burst: 100.0,
            ..SMALL
        });
        let taken = (0..50)
            .filter(|_| g.admit(t, true, true) == Admit::Accept)
            .count();
        assert_eq!(taken, 4);
        assert_eq!(g.admit(t, true, true), Admit::Busy);
    }

    /// A flood of 2,000 Initials in 10 s from unvalidated addresses that never
    /// finish costs at most `retry_above` connections at a time.
    #[test]
    fn a_flood_from_unvalidated_addresses_gets_retries_not_state() {
        let t0 = Instant::now();
        let mut g = HandshakeGate::new(GateLimits::RELAY);
        let mut accepted = 0;
        for i in 0..2_000u64 {
            let now = t0 + Duration::from_millis(i * 5);
            if g.admit(now, false, false) == Admit::Accept {
                accepted += 1;
            }
        }
        assert_eq!(accepted, GateLimits::RELAY.retry_above);
    }
}
