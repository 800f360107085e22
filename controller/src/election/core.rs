//! The election's sans-IO core: whether this controller leads at a given
//! `now`, with which term, and until when. The driver feeds it what etcd
//! answered (lease granted or confirmed, the leader etcd ranks first, lease
//! lost) with the time each request was *sent*; it reads the role and what
//! changed. No clock, no etcd here.
//!
//! The safety rule: a leader leads only until its lease's last confirmation
//! (the time the keep-alive that etcd answered was sent) plus the lease's TTL,
//! less a margin. etcd restarts the TTL when the keep-alive *arrives*, later
//! than it was sent, so this controller stops pushing before etcd can let the
//! lease expire and another controller win. While etcd does not answer, the
//! leader keeps leading until then, and then no one pushes.

use std::time::{Duration, Instant};

/// What a controller may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Pushes tables stamped with `term`, until `until` (`None`: for ever, a
    /// single controller without etcd).
    Leader { term: u64, until: Option<Instant> },
    /// Keeps its link state warm from the relays' reports; pushes nothing.
    Standby,
}

impl Role {
    /// The term to push with, if this role leads at `now`.
    pub fn leads_at(&self, now: Instant) -> Option<u64> {
        match *self {
            Role::Leader { term, until } if until.is_none_or(|u| now < u) => Some(term),
            _ => None,
        }
    }
}

/// A change of role, for the driver to log and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// This controller leads from now with `term`.
    Leading { term: u64 },
    /// It stopped leading `term`: its key is gone (`lapsed` false) or its lease
    /// went unconfirmed too long (`lapsed` true: etcd did not answer).
    Stopped { term: u64, lapsed: bool },
}

/// The current leader as etcd ranks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderSeen {
    /// The create revision of its election key: its term.
    pub term: u64,
    /// The lease its key is bound to.
    pub lease: i64,
    /// The value it campaigned with: its controller id.
    pub id: String,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    id: i64,
    /// When the last request that etcd answered with this lease alive for
    /// `ttl` was sent.
    confirmed: Instant,
    ttl: Duration,
}

/// The leadership state machine (see the module docs).
#[derive(Debug)]
pub struct Leadership {
    lease: Option<Lease>,
    /// Our key's term while etcd ranks it first.
    elected: Option<u64>,
    /// The highest term seen, own or observed.
    term: u64,
    leader: Option<String>,
    reachable: bool,
    /// The term we led with as last reported through `poll_change`.
    reported: Option<u64>,
    won: u64,
    lost: u64,
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership::new()
    }
}

impl Leadership {
    pub fn new() -> Leadership {
        Leadership {
            lease: None,
            elected: None,
            term: 0,
            leader: None,
            reachable: false,
            reported: None,
            won: 0,
            lost: 0,
        }
    }

    /// How long before the lease's TTL runs out a leader stops: a tenth of
    /// the TTL, at least 100 ms.
    pub fn margin(ttl: Duration) -> Duration {
        (ttl / 10).max(Duration::from_millis(100))
    }

    /// A new lease `id` of `ttl`, granted by a request sent at `sent`. Any
    /// earlier lease and election key are given up.
    pub fn handle_lease_granted(&mut self, id: i64, sent: Instant, ttl: Duration) {
        self.lease = Some(Lease {
            id,
            confirmed: sent,
            ttl,
        });
        self.elected = None;
        self.reachable = true;
    }

    /// etcd answered a keep-alive sent at `sent`: the lease lives on for
    /// `ttl` (zero: it has expired, see [`Leadership::handle_lease_lost`]).
    pub fn handle_keepalive(&mut self, sent: Instant, ttl: Duration) {
        self.reachable = true;
        if ttl.is_zero() {
            self.handle_lease_lost();
            return;
        }
        if let Some(lease) = &mut self.lease {
            lease.confirmed = lease.confirmed.max(sent);
            lease.ttl = ttl;
        }
    }

    /// etcd ranks `leader` first (`None`: no candidate at all). If that is
    /// our key, we are elected with its term; if we were and it is not, our
    /// key is gone.
    pub fn handle_leader(&mut self, leader: Option<LeaderSeen>) {
        self.reachable = true;
        let ours = self.lease.map(|l| l.id);
        match leader {
            Some(seen) => {
                self.term = self.term.max(seen.term);
                if ours == Some(seen.lease) {
                    self.elected = Some(seen.term);
                } else {
                    self.elected = None;
                }
                self.leader = Some(seen.id);
            }
            None => {
                self.elected = None;
                self.leader = None;
            }
        }
    }

    /// Our campaign on lease `lease` returned: our key, of create revision
    /// `term`, leads.
    pub fn handle_campaign_won(&mut self, lease: i64, term: u64, id: &str) {
        if self.lease.is_some_and(|l| l.id == lease) {
            self.elected = Some(term);
            self.term = self.term.max(term);
            self.leader = Some(id.to_string());
        }
    }

    /// etcd did not answer (a timeout, a broken connection). The role stays
    /// until the lease's deadline.
    pub fn handle_unreachable(&mut self) {
        self.reachable = false;
    }

    /// The lease has expired or was revoked: our key is gone with it.
    pub fn handle_lease_lost(&mut self) {
        self.lease = None;
        self.elected = None;
    }

    /// Whether etcd last ranked our key first (leading, or lapsed while etcd
    /// does not answer).
    pub fn is_elected(&self) -> bool {
        self.elected.is_some()
    }

    /// The lease this controller campaigns with.
    pub fn lease(&self) -> Option<i64> {
        self.lease.map(|l| l.id)
    }

    /// When leading stops unless etcd confirms the lease again.
    fn until(&self) -> Option<Instant> {
        let lease = self.lease?;
        self.elected?;
        Some(lease.confirmed + lease.ttl.saturating_sub(Self::margin(lease.ttl)))
    }

    /// The role at `now`.
    pub fn role(&self, now: Instant) -> Role {
        match (self.elected, self.until()) {
            (Some(term), Some(until)) if now < until => Role::Leader {
                term,
                until: Some(until),
            },
            _ => Role::Standby,
        }
    }

    /// When the role changes unless something else happens first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.until()
    }

    /// What changed since the last call, if anything; counts it.
    pub fn poll_change(&mut self, now: Instant) -> Option<Change> {
        let leading = self.role(now).leads_at(now);
        if leading == self.reported {
            return None;
        }
        let before = std::mem::replace(&mut self.reported, leading);
        match (before, leading) {
            (Some(term), None) => {
                self.lost += 1;
                Some(Change::Stopped {
                    term,
                    lapsed: self.elected.is_some(),
                })
            }
            (Some(_), Some(term)) => {
                // A new term without a gap seen in between: count both.
                self.lost += 1;
                self.won += 1;
                Some(Change::Leading { term })
            }
            (None, Some(term)) => {
                self.won += 1;
                Some(Change::Leading { term })
            }
            (None, None) => None,
        }
    }

    /// What to publish, at `now`.
    pub fn view(&self, now: Instant, me: &str) -> super::ElectionView {
        let role = self.role(now);
        super::ElectionView {
            role,
            term: self.term,
            leader: if role.leads_at(now).is_some() {
                Some(me.to_string())
            } else {
                self.leader.clone()
            },
            etcd_reachable: Some(self.reachable),
            won: self.won,
            lost: self.lost,
        }
    }
}
