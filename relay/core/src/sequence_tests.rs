//! The window against a plain model: every number ever seen in a set.

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

#[test]
fn two_copies_of_each_number_keep_the_first_and_lose_nothing() {
    let mut w = SeqWindow::default();
    let mut kept = 0;
    for seq in 0..5_000u32 {
        // The second path is 3 numbers behind the first.
        for s in [Some(seq), seq.checked_sub(3)].into_iter().flatten() {
            let v = w.arrive(s);
            assert_eq!(v.newly_lost, 0);
            kept += usize::from(v.arrival.is_first());
        }
    }
    assert_eq!(kept, 5_000);
    assert_eq!(w.unseen(), 0);
}

#[test]
fn a_gap_is_lost_past_the_horizon_and_a_copy_after_that_is_late() {
    let h = u64::from(LOSS_HORIZON);
    let mut w = SeqWindow::default();
    assert_eq!(w.arrive(0).arrival, Arrival::InOrder);
    assert_eq!(w.arrive(3).arrival, Arrival::InOrder);
    assert_eq!(w.unseen(), 2, "1 and 2 are missing, still in reach");
    assert_eq!(w.arrive(2).arrival, Arrival::Reordered);
    assert_eq!(w.arrive(2).arrival, Arrival::Duplicate);
    // 1 is LOSS_HORIZON behind once LOSS_HORIZON + 1 has come.
    assert_eq!(w.arrive(LOSS_HORIZON).newly_lost, 0);
    let v = w.arrive(LOSS_HORIZON + 1);
    assert_eq!(v.newly_lost, 1, "1 crossed the horizon unseen");
    assert_eq!(w.unseen(), h - 4, "4 to LOSS_HORIZON - 1 missing, in reach");
    let v = w.arrive(1);
    assert_eq!(
        (v.arrival, v.newly_lost),
        (Arrival::Late, 0),
        "kept, counted late"
    );
    assert_eq!(w.arrive(1).arrival, Arrival::Duplicate);
    // Far behind the window: the sender started over.
    let v = w.arrive(LOSS_HORIZON + 1 + WINDOW);
    assert_eq!(
        v.newly_lost,
        h - 4 + u64::from(WINDOW) - h,
        "the gap and what was missing"
    );
    let v = w.arrive(0);
    assert_eq!(v.arrival, Arrival::Restart);
    assert_eq!(
        w.arrive(1).arrival,
        Arrival::InOrder,
        "counted from the new start"
    );
    // A jump far past the window loses everything skipped.
    let mut w = SeqWindow::default();
    w.arrive(0);
    assert_eq!(w.arrive(10_000).newly_lost, 10_000 - h);
    assert_eq!(w.unseen(), h - 1);
}

#[test]
fn numbers_wrap() {
    let mut w = SeqWindow::default();
    w.arrive(u32::MAX - 1);
    assert_eq!(w.arrive(u32::MAX).arrival, Arrival::InOrder);
    assert_eq!(w.arrive(0).arrival, Arrival::InOrder);
    assert_eq!(w.arrive(u32::MAX).arrival, Arrival::Duplicate);
    assert_eq!(w.arrive(1).newly_lost, 0);
}

#[test]
fn a_flow_met_midway_counts_nothing_before_it_lost() {
    let mut w = SeqWindow::default();
    w.arrive(50_000);
    assert_eq!(w.unseen(), 0);
    assert_eq!(w.arrive(49_999).arrival, Arrival::Duplicate);
    let mut w = SeqWindow::default();
    w.arrive(5);
    assert_eq!(w.unseen(), 5, "0 to 4 may still come");
    assert_eq!(w.arrive(0).arrival, Arrival::Reordered);
}

proptest! {
    /// Arrivals drawn around a moving front (ahead, behind, repeats, gaps):
    /// each verdict and the total lost agree with a model that remembers
    /// every number.
    #[test]
    fn verdicts_agree_with_a_model(steps in prop::collection::vec(-1_500i64..1_500, 1..400)) {
        let (horizon, window) = (i64::from(LOSS_HORIZON), i64::from(WINDOW));
        let mut w = SeqWindow::default();
        let mut seen = HashSet::new();
        let mut highest: Option<i64> = None;
        let (mut lost, mut model_lost) = (0u64, 0u64);
        // The first arrival is far from 0: numbers before it count as seen.
        let mut start = 1_000_000i64;
        // Numbers below this were judged (lost or not) when they crossed the horizon.
        let mut judged = start;
        for step in steps {
            let seq = highest.map_or(start, |h| (h + step).max(0));
            let v = w.arrive(seq as u32);
            lost += v.newly_lost;
            let old = seq < start || seen.contains(&seq);
            let expected = match highest {
                None => Arrival::InOrder,
                Some(h) if seq > h => Arrival::InOrder,
                Some(h) if h - seq >= window => Arrival::Restart,
                Some(_) if old => Arrival::Duplicate,
                Some(h) if h - seq >= horizon => Arrival::Late,
                Some(_) => Arrival::Reordered,
            };
            prop_assert_eq!(v.arrival, expected, "seq {}", seq);
            if expected == Arrival::Restart {
                // Starting over: what was missing within the horizon is lost now.
                let h = highest.expect("a restart follows an arrival");
                model_lost += (judged.max(start)..=h).filter(|s| !seen.contains(s)).count() as u64;
                seen.clear();
                (start, judged, highest) = (seq, seq, None);
            }
            if v.arrival.is_first() {
                seen.insert(seq);
            }
            let h = highest.map_or(seq, |h| h.max(seq));
            highest = Some(h);
            while judged <= h - horizon {
                model_lost += u64::from(!seen.contains(&judged));
                judged += 1;
            }
        }
        prop_assert_eq!(lost, model_lost);
    }
}
