//! Unit tests of the sans-IO shaper.

use super::*;

const MS: Duration = Duration::from_millis(1);

fn params(delay_ms: u32, jitter_ms: u32, loss: f64) -> LinkParams {
    LinkParams::new(delay_ms * MS, jitter_ms * MS, loss).expect("valid params")
}

/// Releases everything due at `now`.
fn drain(shaper: &mut Shaper<u32>, now: Instant, p: &LinkParams) -> Vec<u32> {
    std::iter::from_fn(|| shaper.poll_transmit(now, p)).collect()
}

#[test]
fn zero_jitter_applies_the_delay_exactly() {
    let t0 = Instant::now();
    let p = params(25, 0, 0.0);
    let mut s = Shaper::new(1);
    for i in 0..100u32 {
        let now = t0 + i * 3 * MS / 2;
        assert_eq!(
            s.handle_packet(now, &p, 100, i),
            Verdict::DeliverAt(now + 25 * MS)
        );
    }
    assert_eq!(s.poll_timeout(), Some(t0 + 25 * MS));
    // Just before the first is due nothing comes out; at its time exactly, it does.
    assert_eq!(
        s.poll_transmit(t0 + 25 * MS - Duration::from_nanos(1), &p),
        None
    );
    assert_eq!(s.poll_transmit(t0 + 25 * MS, &p), Some(0));
    assert_eq!(s.poll_transmit(t0 + 25 * MS, &p), None);
    let rest = drain(&mut s, t0 + Duration::from_secs(10), &p);
    assert_eq!(rest, (1..100).collect::<Vec<_>>());
    assert_eq!(s.stats().released, 100);
    assert_eq!(s.in_flight(), (0, 0));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn jitter_stays_in_bounds_and_never_reorders() {
    let t0 = Instant::now();
    let p = params(20, 15, 0.0);
    let mut s = Shaper::new(7);
    let mut last = t0;
    let mut offsets = Vec::new();
    let mut out = Vec::new();
    for i in 0..5_000u32 {
        // Packets every 0.2 ms: far closer than the jitter, so reordering would show.
        let now = t0 + i * MS / 5;
        let Verdict::DeliverAt(at) = s.handle_packet(now, &p, 10, i) else {
            panic!("packet {i} dropped without loss");
        };
        let offset = at - now;
        assert!(offset >= 5 * MS && offset <= 35 * MS, "offset {offset:?}");
        assert!(at >= last, "packet {i} would overtake the one before");
        last = at;
        offsets.push(offset);
        out.extend(drain(&mut s, now, &p));
    }
    // The jitter is real: offsets spread over most of the window.
    let min = offsets.iter().min().copied().unwrap_or_default();
    let max = offsets.iter().max().copied().unwrap_or_default();
    assert!(max - min > 25 * MS, "spread {min:?}..{max:?}");
    out.extend(drain(&mut s, t0 + Duration::from_secs(10), &p));
    assert_eq!(
        out,
        (0..5_000).collect::<Vec<_>>(),
        "delivered out of order"
    );
}

#[test]
fn jitter_larger_than_delay_clamps_at_zero() {
    let t0 = Instant::now();
    let p = params(1, 10, 0.0);
    let mut s = Shaper::new(3);
    let mut saw_zero = false;
    for i in 0..1_000u32 {
        let now = t0 + i * 20 * MS;
        let Verdict::DeliverAt(at) = s.handle_packet(now, &p, 1, i) else {
            panic!("dropped");
        };
        assert!(at >= now && at <= now + 11 * MS);
        saw_zero |= at == now;
    }
    assert!(saw_zero, "negative samples should clamp to a zero delay");
}

#[test]
fn loss_matches_its_probability() {
    let t0 = Instant::now();
    let p = params(0, 0, 0.3);
    let unbounded = QueueLimits {
        max_packets: usize::MAX,
        max_bytes: usize::MAX,
    };
    let mut s = Shaper::with_limits(42, unbounded);
    let mut lost = 0;
    for i in 0..10_000u32 {
        match s.handle_packet(t0, &p, 1, i) {
            Verdict::Drop(DropReason::Loss) => lost += 1,
            Verdict::DeliverAt(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((2_700..=3_300).contains(&lost), "lost {lost} of 10000");
    assert_eq!(s.stats().dropped_loss, lost);
    assert_eq!(drain(&mut s, t0, &p).len() as u64, 10_000 - lost);
}

#[test]
fn same_seed_same_fate() {
    let t0 = Instant::now();
    let p = params(10, 5, 0.5);
    let run = |seed| {
        let mut s = Shaper::new(seed);
        (0..200u32)
            .map(|i| s.handle_packet(t0, &p, 1, i))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9), run(10));
}

#[test]
fn cut_drops_everything_and_restore_resumes() {
    let t0 = Instant::now();
    let open = params(10, 0, 0.0);
    let cut = LinkParams { cut: true, ..open };
    let mut s = Shaper::new(1);
    for i in 0..50u32 {
        assert_eq!(
            s.handle_packet(t0, &cut, 1, i),
            Verdict::Drop(DropReason::Cut)
        );
    }
    assert_eq!(s.stats().dropped_cut, 50);
    assert_eq!(s.in_flight(), (0, 0));

    // Restored: packets flow again.
    assert_eq!(
        s.handle_packet(t0, &open, 1, 50),
        Verdict::DeliverAt(t0 + 10 * MS)
    );
    assert_eq!(drain(&mut s, t0 + 10 * MS, &open), vec![50]);
    let stats = s.stats();
    assert_eq!(
        (stats.received, stats.released, stats.dropped_cut),
        (51, 1, 50)
    );
}

#[test]
fn packets_in_flight_at_a_cut_vanish_even_if_restored_before_due() {
    let t0 = Instant::now();
    let p = params(10, 0, 0.0);
    let mut s = Shaper::new(1);
    for i in 0..3u32 {
        s.handle_packet(t0, &p, 1, i);
    }
    s.handle_cut();
    // Restored (params not cut) before they are due: they still vanish, at their time.
    assert_eq!(drain(&mut s, t0 + 5 * MS, &p), Vec::<u32>::new());
    assert_eq!(
        s.stats().dropped_cut,
        0,
        "dropped at delivery time, not before"
    );
    s.handle_packet(t0 + MS, &p, 1, 3);
    assert_eq!(drain(&mut s, t0 + 11 * MS, &p), vec![3]);
    assert_eq!(s.stats().dropped_cut, 3);
}

#[test]
fn due_packets_of_a_cut_link_are_dropped() {
    let t0 = Instant::now();
    let open = params(10, 0, 0.0);
    let cut = LinkParams { cut: true, ..open };
    let mut s = Shaper::new(1);
    s.handle_packet(t0, &open, 1, 0u32);
    assert_eq!(s.poll_transmit(t0 + 10 * MS, &cut), None);
    assert_eq!(s.stats().dropped_cut, 1);
    assert_eq!(s.in_flight(), (0, 0));
}

#[test]
fn queue_bounds_are_enforced() {
    let t0 = Instant::now();
    let p = params(10, 0, 0.0);
    let limits = QueueLimits {
        max_packets: 4,
        max_bytes: 1_000,
    };
    let mut s = Shaper::with_limits(1, limits);
    for i in 0..4u32 {
        assert!(matches!(
            s.handle_packet(t0, &p, 10, i),
            Verdict::DeliverAt(_)
        ));
    }
    assert_eq!(
        s.handle_packet(t0, &p, 10, 4),
        Verdict::Drop(DropReason::QueueFull)
    );
    assert_eq!(s.in_flight(), (4, 40));
    drain(&mut s, t0 + 10 * MS, &p);

    // Byte bound: 600 + 600 > 1000.
    assert!(matches!(
        s.handle_packet(t0 + 10 * MS, &p, 600, 5),
        Verdict::DeliverAt(_)
    ));
    assert_eq!(
        s.handle_packet(t0 + 10 * MS, &p, 600, 6),
        Verdict::Drop(DropReason::QueueFull)
    );
    assert_eq!(s.stats().dropped_queue_full, 2);

    // The defaults are the documented ones.
    let d = QueueLimits::default();
    assert_eq!((d.max_packets, d.max_bytes), (4096, 8 * 1024 * 1024));
    let mut s = Shaper::new(1);
    let over = (0..5_000u32)
        .filter(|&i| s.handle_packet(t0, &p, 1, i) == Verdict::Drop(DropReason::QueueFull))
        .count();
    assert_eq!(over, 5_000 - 4_096);
}

#[test]
fn unchecked_bad_params_do_not_panic() {
    let t0 = Instant::now();
    let mut s = Shaper::new(1);
    let nan = LinkParams {
        loss: f64::NAN,
        ..LinkParams::CLEAN
    };
    assert_eq!(s.handle_packet(t0, &nan, 1, 0u32), Verdict::DeliverAt(t0));
    let huge = LinkParams {
        delay: Duration::MAX,
        jitter: Duration::MAX,
        loss: 7.0,
        cut: false,
        rate_kbps: None,
    };
    assert_eq!(
        s.handle_packet(t0, &huge, 1, 1),
        Verdict::Drop(DropReason::Loss)
    );
    let huge = LinkParams { loss: 0.0, ..huge };
    let Verdict::DeliverAt(at) = s.handle_packet(t0, &huge, 1, 2) else {
        panic!("dropped");
    };
    assert!(at <= t0 + MAX_DELAY + MAX_JITTER);
}

#[test]
fn a_rate_limited_link_queues_then_drops_at_the_tail() {
    let t0 = Instant::now();
    // 8 Mbit/s: a 1,000-byte packet takes 1 ms to send.
    let p = LinkParams {
        rate_kbps: Some(8_000),
        ..params(10, 0, 0.0)
    };
    let mut s = Shaper::new(1);
    // A burst of 60 at once: the k-th leaves after k ms, then 10 ms of delay;
    // once the queue ahead is past 50 ms, the rest are dropped.
    let verdicts: Vec<Verdict> = (0..60u32)
        .map(|i| s.handle_packet(t0, &p, 1_000, i))
        .collect();
    for (k, v) in verdicts.iter().enumerate().take(51) {
        assert_eq!(
            *v,
            Verdict::DeliverAt(t0 + (k as u32 + 1) * MS + 10 * MS),
            "packet {k}"
        );
    }
    assert!(verdicts[51..]
        .iter()
        .all(|v| *v == Verdict::Drop(DropReason::Congestion)));
    assert_eq!(s.stats().dropped_congestion, 9);
    // Within the rate nothing waits: one packet per 2 ms on a 1 ms/packet link.
    let mut s = Shaper::new(1);
    for i in 0..100u32 {
        let now = t0 + i * 2 * MS;
        assert_eq!(
            s.handle_packet(now, &p, 1_000, i),
            Verdict::DeliverAt(now + MS + 10 * MS)
        );
    }
    assert!(LinkParams {
        rate_kbps: Some(0),
        ..LinkParams::CLEAN
    }
    .validate()
    .is_err());
}
