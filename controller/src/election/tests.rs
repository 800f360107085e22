//! The election core against the timelines that matter: elected, confirmed,
//! etcd silent (leads until the lease's deadline, then no one), etcd back with
//! the lease alive (the same term again), the key lost, a new lease.

use std::time::{Duration, Instant};

use super::core::{Change, LeaderSeen, Leadership, Role};

const TTL: Duration = Duration::from_secs(3);

fn seen(term: u64, lease: i64, id: &str) -> Option<LeaderSeen> {
    Some(LeaderSeen {
        term,
        lease,
        id: id.into(),
    })
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn a_leader_leads_until_its_last_confirmation_plus_the_ttl_less_the_margin() {
    let t0 = Instant::now();
    let mut l = Leadership::new();
    assert_eq!(l.role(t0), Role::Standby);
    l.handle_lease_granted(7, t0, TTL);
    assert_eq!(l.role(t0), Role::Standby, "a lease is not an election");
    l.handle_leader(seen(42, 7, "a"));
    let deadline = t0 + TTL - Leadership::margin(TTL);
    assert_eq!(
        l.role(t0 + ms(10)),
        Role::Leader {
            term: 42,
            until: Some(deadline)
        }
    );
    assert_eq!(l.poll_change(t0), Some(Change::Leading { term: 42 }));
    assert_eq!(l.poll_change(t0), None, "reported once");
    // Keep-alives move the deadline on from the time each was sent.
    l.handle_keepalive(t0 + ms(1000), TTL);
    l.handle_leader(seen(42, 7, "a"));
    assert_eq!(l.poll_timeout(), Some(deadline + ms(1000)));
    // etcd stops answering: the leader keeps leading until the deadline...
    l.handle_unreachable();
    let last = deadline + ms(1000);
    assert_eq!(l.role(last - ms(1)).leads_at(last - ms(1)), Some(42));
    assert_eq!(l.poll_change(last - ms(1)), None);
    // ...and not a moment after.
    assert_eq!(l.role(last), Role::Standby);
    assert_eq!(
        l.poll_change(last),
        Some(Change::Stopped {
            term: 42,
            lapsed: true
        })
    );
    let view = l.view(last, "a");
    assert_eq!(view.etcd_reachable, Some(false));
    assert_eq!((view.won, view.lost), (1, 1));
}

#[test]
fn the_deadline_is_before_etcd_can_expire_the_lease() {
    // etcd expires a lease TTL after the keep-alive *arrived*, which is after
    // it was sent; the leader's deadline is a margin before even that.
    for ttl_s in [2u64, 3, 5, 10, 60] {
        let ttl = Duration::from_secs(ttl_s);
        let m = Leadership::margin(ttl);
        assert!(m >= ms(100) && m < ttl, "ttl {ttl_s}: margin {m:?}");
    }
}

#[test]
fn etcd_back_with_the_lease_alive_gives_the_same_term_again() {
    let t0 = Instant::now();
    let mut l = Leadership::new();
    l.handle_lease_granted(7, t0, TTL);
    l.handle_leader(seen(42, 7, "a"));
    assert!(l.poll_change(t0).is_some());
    let later = t0 + ms(10_000);
    assert_eq!(l.role(later), Role::Standby, "lapsed while etcd was away");
    assert!(matches!(
        l.poll_change(later),
        Some(Change::Stopped { lapsed: true, .. })
    ));
    // etcd is back and the lease survived (etcd renews leases on restart).
    l.handle_keepalive(later, TTL);
    l.handle_leader(seen(42, 7, "a"));
    assert_eq!(l.role(later + ms(1)).leads_at(later + ms(1)), Some(42));
    assert_eq!(l.poll_change(later), Some(Change::Leading { term: 42 }));
}

#[test]
fn a_key_no_longer_first_or_a_lost_lease_ends_leadership_at_once() {
    let t0 = Instant::now();
    let mut l = Leadership::new();
    l.handle_lease_granted(7, t0, TTL);
    l.handle_campaign_won(7, 42, "a");
    assert_eq!(l.role(t0).leads_at(t0), Some(42));
    assert!(l.poll_change(t0).is_some());
    // Someone deleted our key: another candidate is first now.
    l.handle_leader(seen(50, 8, "b"));
    assert_eq!(l.role(t0), Role::Standby);
    assert_eq!(
        l.poll_change(t0),
        Some(Change::Stopped {
            term: 42,
            lapsed: false
        })
    );
    let view = l.view(t0, "a");
    assert_eq!((view.term, view.leader.as_deref()), (50, Some("b")));

    // A keep-alive answered with TTL 0: the lease is gone.
    let mut l = Leadership::new();
    l.handle_lease_granted(9, t0, TTL);
    l.handle_leader(seen(60, 9, "a"));
    l.handle_keepalive(t0 + ms(500), Duration::ZERO);
    assert_eq!(l.role(t0 + ms(500)), Role::Standby);
    assert_eq!(l.lease(), None);
    // A campaign that returns for a lease given up means nothing.
    l.handle_campaign_won(9, 60, "a");
    assert_eq!(l.role(t0 + ms(500)), Role::Standby);
}

#[test]
fn a_new_lease_campaigns_afresh_and_terms_only_grow() {
    let t0 = Instant::now();
    let mut l = Leadership::new();
    l.handle_lease_granted(7, t0, TTL);
    l.handle_leader(seen(42, 7, "a"));
    l.handle_lease_granted(8, t0 + ms(100), TTL);
    assert_eq!(
        l.role(t0 + ms(100)),
        Role::Standby,
        "the old key is not ours"
    );
    l.handle_leader(seen(30, 5, "old"));
    assert_eq!(l.view(t0, "a").term, 42, "the highest term seen stays");
}

#[test]
fn a_sole_controller_leads_for_ever_with_term_0() {
    let view = super::ElectionView::sole("c");
    let far = Instant::now() + Duration::from_secs(10 * 365 * 86_400);
    assert_eq!(view.leads_at(far), Some(0));
    assert_eq!(
        super::ElectionView::starting().leads_at(Instant::now()),
        None
    );
}
