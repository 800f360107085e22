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
fn a_gap_is_lost_once_it_leaves_the_window_and_a_late_copy_is_late() {
    let mut w = SeqWindow::default();
    assert_eq!(w.arrive(0).arrival, Arrival::InOrder);
    assert_eq!(w.arrive(3).arrival, Arrival::InOrder);
    assert_eq!(w.unseen(), 2, "1 and 2 are missing, still in reach");
    assert_eq!(w.arrive(2).arrival, Arrival::Reordered);
    assert_eq!(w.arrive(2).arrival, Arrival::Duplicate);
    let v = w.arrive(3 + WINDOW);
    assert_eq!(v.newly_lost, 1, "1 left the window unseen");
    assert_eq!(w.unseen(), WINDOW as u64 - 1, "4 to 1026 missing, in reach");
    let v = w.arrive(1);
    assert_eq!(v.arrival, Arrival::Late, "the sender started over");
    assert_eq!(
        v.newly_lost,
        WINDOW as u64 - 1,
        "what the old start still missed"
    );
    assert_eq!(
        w.arrive(2).arrival,
        Arrival::InOrder,
        "counted from the new start"
    );
    // A jump far past the window loses everything skipped.
    let mut w = SeqWindow::default();
    w.arrive(0);
    assert_eq!(w.arrive(10_000).newly_lost, 9_999 - u64::from(WINDOW - 1));
    assert_eq!(w.unseen(), u64::from(WINDOW - 1));
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
    /// every number, within the window's reach.
    #[test]
    fn verdicts_agree_with_a_model(steps in prop::collection::vec(-1_500i64..1_500, 1..400)) {
        let mut w = SeqWindow::default();
        let mut seen = HashSet::new();
        let mut highest: Option<i64> = None;
        let (mut lost, mut dropped_out) = (0u64, 0u64);
        // The first arrival is far from 0: numbers before it count as seen.
        let mut start = 1_000_000i64;
        let mut checked = start;
        for step in steps {
            let seq = highest.map_or(start, |h| (h + step).max(0));
            let v = w.arrive(seq as u32);
            lost += v.newly_lost;
            let expected = match highest {
                Some(h) if seq > h => Arrival::InOrder,
                None => Arrival::InOrder,
                Some(h) if h - seq >= i64::from(WINDOW) => Arrival::Late,
                Some(_) if seq < start || seen.contains(&seq) => Arrival::Duplicate,
                Some(_) => Arrival::Reordered,
            };
            prop_assert_eq!(v.arrival, expected, "seq {}", seq);
            if expected == Arrival::Late {
                // Starting over: what the old window missed is lost now.
                let h = highest.expect("late follows an arrival");
                let from = start.max(h - i64::from(WINDOW) + 1).max(checked);
                dropped_out += (from..=h).filter(|s| !seen.contains(s)).count() as u64;
                seen.clear();
                start = seq;
                checked = seq;
                highest = None;
            }
            if v.arrival.is_first() {
                seen.insert(seq);
            }
            let h = highest.map_or(seq, |h| h.max(seq));
            highest = Some(h);
            // The model's losses: numbers from the start that fell out unseen.
            while checked <= h - i64::from(WINDOW) {
                dropped_out += u64::from(!seen.contains(&checked));
                checked += 1;
            }
        }
        prop_assert_eq!(lost, dropped_out);
    }
}
