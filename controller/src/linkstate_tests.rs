//! Tests of the link-state database: merging, freshness, timestamps, bad reports and
//! the cost formula; also the small-topology builder the routing tests share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use topology::{LinkIdx, NodeIdx, Topology};

use super::*;

/// A valid topology with the given node ids and links `(a, b, delay_ms)`.
pub(crate) fn topology(nodes: &[&str], links: &[(&str, &str, f64)]) -> Arc<Topology> {
    let mut text = String::from("version: 1\nnodes:\n");
    for (i, id) in nodes.iter().enumerate() {
        text += &format!(
            "  - {{ id: {id}, city: C{i}, country: US, region: test, lat: {}, lon: {}, \
             addr: \"127.0.0.1:{}\" }}\n",
            i as f64 * 0.5,
            i as f64 * 0.5,
            7000 + i
        );
    }
    text += "links:\n";
    for (a, b, ms) in links {
        text += &format!("  - {{ between: [{a}, {b}], kind: terrestrial, delay_ms: {ms} }}\n");
    }
    match topology::parse("test.yaml", &text) {
        Ok(t) => Arc::new(t),
        Err(e) => panic!("test topology does not validate: {e}\n{text}"),
    }
}

/// A report of an up link with this RTT and nothing else measured.
pub(crate) fn up(from: NodeIdx, link: LinkIdx, rtt: Duration) -> LinkReport {
    LinkReport {
        from,
        link,
        up: true,
        rtt: Some(rtt),
        min_rtt: Some(rtt),
        jitter: None,
        loss: 0.0,
        up_for: None,
    }
}

pub(crate) fn down(from: NodeIdx, link: LinkIdx) -> LinkReport {
    LinkReport {
        from,
        link,
        up: false,
        rtt: None,
        min_rtt: None,
        jitter: None,
        loss: 1.0,
        up_for: None,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// a — b (10 ms), b — c (20 ms).
fn chain() -> (LinkStateDb, NodeIdx, NodeIdx, NodeIdx) {
    let t = topology(&["a", "b", "c"], &[("a", "b", 10.0), ("b", "c", 20.0)]);
    (LinkStateDb::new(t), NodeIdx(0), NodeIdx(1), NodeIdx(2))
}

#[test]
fn unreported_links_are_up_stale_and_cost_their_expected_delay() {
    let (db, ..) = chain();
    let v = db.view(LinkIdx(1));
    assert!(v.up && v.stale && v.since.is_none() && v.rtt.is_none());
    assert_eq!(measured_cost(&v, 20_000), Some(20_000));
    assert_eq!(db.links().count(), 2);
    assert_eq!(db.poll_timeout(), None);
}

#[test]
fn the_relays_say_since_when_a_link_is_up_the_later_end_counts() {
    let (mut db, a, b, _) = chain();
    let t0 = Instant::now() + Duration::from_secs(100);
    let l = LinkIdx(0);
    let mut ra = up(a, l, ms(20));
    ra.up_for = Some(Duration::from_secs(60));
    db.handle_report(ra, t0).unwrap();
    assert_eq!(
        db.view(l).up_since_reported,
        Some(t0 - Duration::from_secs(60))
    );
    let mut rb = up(b, l, ms(20));
    rb.up_for = Some(Duration::from_secs(10));
    db.handle_report(rb, t0 + ms(500)).unwrap();
    let v = db.view(l);
    assert_eq!(
        v.up_since_reported,
        Some(t0 + ms(500) - Duration::from_secs(10)),
        "up from when both ends had it up"
    );
    assert_eq!(v.since, None, "routing's own clock is not moved");
    db.handle_report(down(a, l), t0 + ms(600)).unwrap();
    assert_eq!(db.view(l).up_since_reported, None, "down: not up since");
}

#[test]
fn both_ends_merge_mean_rtt_worst_loss_and_jitter() {
    let (mut db, a, b, _) = chain();
    let t0 = Instant::now();
    let l = LinkIdx(0);
    let mut ra = up(a, l, ms(20));
    ra.jitter = Some(ms(1));
    ra.loss = 0.01;
    let mut rb = up(b, l, ms(30));
    rb.jitter = Some(ms(3));
    rb.min_rtt = Some(ms(18));
    db.handle_report(ra, t0).unwrap();
    db.handle_report(rb, t0 + ms(100)).unwrap();
    let v = db.view(l);
    assert!(v.up && !v.stale);
    assert_eq!(v.rtt, Some(ms(25)));
    assert_eq!(v.min_rtt, Some(ms(18)));
    assert_eq!(v.jitter, Some(ms(3)));
    assert_eq!(v.loss, 0.01);
    assert_eq!(v.since, None, "it was up all along");
    // The newer report from one end replaces that end's older one.
    db.handle_report(up(a, l, ms(40)), t0 + ms(200)).unwrap();
    assert_eq!(db.view(l).rtt, Some(ms(35)));
}

#[test]
fn either_end_seeing_down_makes_the_link_down_and_records_when() {
    let (mut db, a, b, _) = chain();
    let t0 = Instant::now();
    let l = LinkIdx(0);
    db.handle_report(up(a, l, ms(20)), t0).unwrap();
    db.handle_report(up(b, l, ms(20)), t0).unwrap();
    db.handle_report(down(b, l), t0 + ms(50)).unwrap();
    let v = db.view(l);
    assert!(!v.up);
    assert_eq!(v.since, Some(t0 + ms(50)));
    assert_eq!(measured_cost(&v, 10_000), None);
    // b sees it up again: up, with a new timestamp.
    db.handle_report(up(b, l, ms(20)), t0 + ms(900)).unwrap();
    assert!(db.view(l).up);
    assert_eq!(db.view(l).since, Some(t0 + ms(900)));
}

#[test]
fn silence_from_both_ends_keeps_the_last_state_but_marks_it_stale() {
    let (mut db, a, b, _) = chain();
    let t0 = Instant::now();
    let l = LinkIdx(0);
    db.handle_report(down(a, l), t0).unwrap();
    db.handle_report(down(b, l), t0 + ms(1000)).unwrap();
    assert_eq!(db.poll_timeout(), Some(t0 + DEFAULT_STALE_AFTER));
    db.handle_timeout(t0 + ms(5500));
    assert!(!db.view(l).stale, "b's report is still fresh");
    assert_eq!(db.poll_timeout(), Some(t0 + ms(6000)));
    db.handle_timeout(t0 + ms(6000));
    let v = db.view(l);
    assert!(v.stale && !v.up, "no contact is not a repair");
    assert_eq!(v.since, Some(t0));
    assert_eq!(db.poll_timeout(), None);
    // A later report makes it fresh again.
    db.handle_report(up(a, l, ms(20)), t0 + ms(7000)).unwrap();
    assert!(db.view(l).up && !db.view(l).stale);
}

#[test]
fn a_stale_down_report_stops_outvoting_a_fresh_up_one() {
    let (mut db, a, b, _) = chain();
    let t0 = Instant::now();
    let l = LinkIdx(0);
    db.handle_report(up(a, l, ms(20)), t0 - ms(10)).unwrap();
    db.handle_report(down(a, l), t0).unwrap();
    db.handle_report(up(b, l, ms(20)), t0 + ms(4000)).unwrap();
    assert!(!db.view(l).up);
    db.handle_report(up(b, l, ms(20)), t0 + ms(5000)).unwrap();
    assert!(db.view(l).up);
    assert_eq!(db.view(l).since, Some(t0 + ms(5000)));
}

#[test]
fn an_end_still_bringing_the_link_up_does_not_outvote_one_that_sees_it_up() {
    let (mut db, a, b, _) = chain();
    let t0 = Instant::now();
    let l = LinkIdx(0);
    // Both ends starting: neither has seen it up, so it is down.
    db.handle_report(down(a, l), t0).unwrap();
    db.handle_report(down(b, l), t0).unwrap();
    assert!(!db.view(l).up);
    // a's probes pass first; b's "down" only means its probes have not yet.
    db.handle_report(up(a, l, ms(20)), t0 + ms(300)).unwrap();
    db.handle_report(down(b, l), t0 + ms(350)).unwrap();
    assert!(db.view(l).up, "b has never seen it up: no failure");
    assert_eq!(db.view(l).since, Some(t0 + ms(300)));
    db.handle_report(up(b, l, ms(20)), t0 + ms(500)).unwrap();
    assert_eq!(db.view(l).since, Some(t0 + ms(300)), "no flap in between");
    // Once b has seen it up, its "down" is a failure.
    db.handle_report(down(b, l), t0 + ms(900)).unwrap();
    assert!(!db.view(l).up);
}

#[test]
fn a_custom_freshness_window_is_used() {
    let t = topology(&["a", "b"], &[("a", "b", 10.0)]);
    let mut db = LinkStateDb::with_stale_after(t, ms(500));
    let t0 = Instant::now();
    db.handle_report(up(NodeIdx(0), LinkIdx(0), ms(20)), t0)
        .unwrap();
    db.handle_timeout(t0 + ms(499));
    assert!(!db.view(LinkIdx(0)).stale);
    db.handle_timeout(t0 + ms(500));
    assert!(db.view(LinkIdx(0)).stale);
    assert_eq!(db.view(LinkIdx(0)).rtt, Some(ms(20)));
}

#[test]
fn bad_reports_are_refused_with_the_reason_and_change_nothing() {
    let (mut db, a, _, c) = chain();
    let t0 = Instant::now();
    let err = db.handle_report(up(c, LinkIdx(0), ms(5)), t0).unwrap_err();
    assert_eq!(
        err,
        ReportError::NotAnEnd {
            node: "c".into(),
            link: 0,
            a: "a".into(),
            b: "b".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "report from node `c` about link 0 (a–b): `c` is not an end of that link"
    );
    for loss in [f64::NAN, -0.1, 1.5, f64::INFINITY] {
        let mut r = up(a, LinkIdx(0), ms(5));
        r.loss = loss;
        let err = db.handle_report(r, t0).unwrap_err();
        assert!(matches!(err, ReportError::BadLoss { .. }), "{loss}: {err}");
        assert!(
            err.to_string().contains("is not a fraction in 0..=1"),
            "{err}"
        );
    }
    let err = db.handle_report(up(a, LinkIdx(7), ms(5)), t0).unwrap_err();
    assert!(matches!(
        err,
        ReportError::UnknownLink {
            link: 7,
            links: 2,
            ..
        }
    ));
    let err = db
        .handle_report(up(NodeIdx(9), LinkIdx(0), ms(5)), t0)
        .unwrap_err();
    assert!(matches!(
        err,
        ReportError::UnknownNode { from: 9, nodes: 3 }
    ));
    assert!(db.view(LinkIdx(0)).stale, "nothing was recorded");
    // Loss at the bounds is fine.
    for loss in [0.0, 1.0] {
        let mut r = up(a, LinkIdx(0), ms(5));
        r.loss = loss;
        db.handle_report(r, t0).unwrap();
    }
}

#[test]
fn cost_is_half_rtt_plus_twice_jitter_beyond_the_allowance_plus_loss_penalty() {
    let v = LinkView {
        up: true,
        rtt: Some(ms(40)),
        min_rtt: None,
        loss: 0.02,
        jitter: Some(ms(8)),
        stale: false,
        since: None,
        up_since_reported: None,
    };
    // 20 ms + 2 × (8 − 5) ms + 0.02 × 500 ms = 36 ms.
    assert_eq!(measured_cost(&v, 99_000), Some(36_000));
    let small_jitter = LinkView {
        jitter: Some(ms(5)),
        ..v
    };
    // Jitter within the allowance is free: 20 ms + 10 ms.
    assert_eq!(measured_cost(&small_jitter, 99_000), Some(30_000));
    let quiet = LinkView {
        rtt: None,
        jitter: None,
        loss: 0.0,
        ..v
    };
    assert_eq!(measured_cost(&quiet, 7_000), Some(7_000), "expected delay");
    assert_eq!(measured_cost(&quiet, 0), Some(1), "never below 1");
    let zero = LinkView {
        rtt: Some(Duration::ZERO),
        ..quiet
    };
    assert_eq!(measured_cost(&zero, 7_000), Some(1));
    assert_eq!(measured_cost(&LinkView { up: false, ..v }, 7_000), None);
}
