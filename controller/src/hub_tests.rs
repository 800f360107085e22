//! The hub's pure parts: what counts as a change, and which timeline events
//! two consecutive views imply.

use std::time::{Duration, Instant};

use super::*;
use crate::api::tests::{all_reported_up, shared};
use crate::routing::RouteSelector;

fn link(state: &'static str) -> LinkInfo {
    LinkInfo {
        a: "aaa".into(),
        b: "bbb".into(),
        kind: "terrestrial".into(),
        name: None,
        state,
        since_s: Some(3.0),
        rtt_ms: Some(20.0),
        min_rtt_ms: Some(19.0),
        jitter_ms: Some(0.5),
        loss: 0.0,
        stale: false,
        expected_ms: 10.0,
        cost_in_force_ms: Some(10.0),
        capacity_mbps: Some(1000),
        load_ab_mbps: None,
        load_ba_mbps: None,
        utilisation_ab: None,
        utilisation_ba: None,
    }
}

#[test]
fn a_state_is_a_change_measurements_are_a_lesser_one_and_time_passing_is_none() {
    let old = link("up");
    assert_eq!(link_change(&old, &old), None);
    let later = LinkInfo {
        since_s: Some(9.0),
        ..old.clone()
    };
    assert_eq!(link_change(&old, &later), None, "since_s moves by itself");
    for new in [
        LinkInfo {
            rtt_ms: Some(21.0),
            ..old.clone()
        },
        LinkInfo {
            loss: 0.001,
            ..old.clone()
        },
        LinkInfo {
            load_ab_mbps: Some(5.0),
            utilisation_ab: Some(0.005),
            ..old.clone()
        },
    ] {
        assert_eq!(
            link_change(&old, &new),
            Some(Change::Measurement),
            "{new:?}"
        );
    }
    for new in [
        link("down"),
        link("degraded"),
        LinkInfo {
            stale: true,
            ..old.clone()
        },
        LinkInfo {
            cost_in_force_ms: None,
            ..old.clone()
        },
    ] {
        assert_eq!(link_change(&old, &new), Some(Change::State), "{new:?}");
    }
}

#[tokio::test]
async fn a_session_is_a_change_and_a_table_version_a_lesser_one() {
    let s = shared();
    let nodes = crate::api::nodes(&s);
    let old = nodes[0].clone();
    let applied = NodeInfo {
        table_version_applied: Some(3),
        ..old.clone()
    };
    let connected = NodeInfo {
        connected: true,
        connected_for_s: Some(1.0),
        ..applied.clone()
    };
    assert_eq!(node_change(&old, &old), None);
    assert_eq!(node_change(&old, &applied), Some(Change::Measurement));
    assert_eq!(node_change(&old, &connected), Some(Change::State));
    let later = NodeInfo {
        connected_for_s: Some(9.0),
        ..connected.clone()
    };
    assert_eq!(node_change(&connected, &later), None);
}

#[tokio::test]
async fn links_going_down_and_up_drains_and_reroutes_are_events_bring_up_is_not() {
    let s = shared();
    let topo = s.topology().clone();
    let start = (*s.view()).clone();
    let mut events = Events::new(&start);
    let kinds = |h: &[Happened]| h.iter().map(|h| (h.kind, h.link)).collect::<Vec<_>>();

    // Relays start: links reported down (not yet connected), then up: no news.
    let mut starting = start.clone();
    for l in &mut starting.links {
        l.view.up = false;
        l.view.stale = false;
    }
    assert!(events.handle_view(&topo, &start, &starting).is_empty());
    let mut up = start.clone();
    all_reported_up(&mut up);
    assert!(events.handle_view(&topo, &starting, &up).is_empty());

    // aaa–bbb goes down.
    let t = Instant::now();
    let mut down = up.clone();
    down.links[0].view.up = false;
    down.links[0].view.since = Some(t);
    let h = events.handle_view(&topo, &up, &down);
    assert_eq!(kinds(&h), [(EventKind::LinkDown, Some(LinkIdx(0)))]);
    assert_eq!(h[0].text, "aaa–bbb down");

    // Back up, held down.
    let mut back = down.clone();
    back.links[0].view.up = true;
    back.links[0].view.since = Some(t + Duration::from_secs(1));
    back.links[0].in_force = None;
    let h = events.handle_view(&topo, &down, &back);
    assert_eq!(kinds(&h), [(EventKind::LinkUp, Some(LinkIdx(0)))]);
    assert!(h[0].text.contains("held down"), "{}", h[0].text);

    // bbb–ddd (named) went down and up between two views.
    let mut flapped = back.clone();
    flapped.links[1].view.since = Some(t + Duration::from_secs(2));
    let h = events.handle_view(&topo, &back, &flapped);
    assert_eq!(
        kinds(&h),
        [
            (EventKind::LinkDown, Some(LinkIdx(1))),
            (EventKind::LinkUp, Some(LinkIdx(1)))
        ]
    );
    assert_eq!(h[0].text, "bbb–ddd (fast-line) down");

    // ccc drains, then stops draining.
    let mut draining = flapped.clone();
    draining.draining = vec![NodeIdx(2)];
    let h = events.handle_view(&topo, &flapped, &draining);
    assert_eq!(kinds(&h), [(EventKind::Drain, None)]);
    assert!(h[0].text.starts_with("ccc draining"), "{}", h[0].text);
    let h = events.handle_view(&topo, &draining, &flapped);
    assert!(h[0].text.starts_with("ccc drain ended"), "{}", h[0].text);

    // Measurements alone are not events.
    let mut noisy = flapped.clone();
    noisy.links[2].view.rtt = Some(Duration::from_millis(99));
    noisy.links[2].view.loss = 0.5;
    assert!(events.handle_view(&topo, &flapped, &noisy).is_empty());
}

#[test]
fn a_reroute_says_how_many_pairs_moved_and_off_which_link() {
    let topo = Arc::new(topology::parse("t.yaml", crate::api::tests::DIAMOND).expect("topology"));
    let mut selector = RouteSelector::new(topo.clone(), Default::default());
    let old = selector.routes().clone();
    let t = Instant::now();
    let views = (0..topo.links.len() as u32).map(|i| {
        let mut v = crate::linkstate::LinkView {
            up: true,
            stale: false,
            ..crate::linkstate::LinkView::UNKNOWN
        };
        if i == 0 {
            v.up = false;
            v.since = Some(t);
        }
        (LinkIdx(i), v)
    });
    assert!(selector.handle_link_views(views, t));
    let new = selector.routes().clone();
    assert_eq!(new.version, old.version + 1);
    // Every pair whose path crossed aaa–bbb moved, and no other.
    let n = topo.nodes.len() as u32;
    let crossed = (0..n)
        .flat_map(|s| (0..n).map(move |d| (NodeIdx(s), NodeIdx(d))))
        .filter(|(s, d)| old.walk(*s, *d).hops.iter().any(|h| h.link == LinkIdx(0)))
        .count();
    assert!(crossed >= 4, "aaa–bbb carried {crossed} pairs");
    let (text, link) = reroute(&topo, &old, &new);
    assert_eq!(
        text,
        format!("routes v2: {crossed} pairs moved off aaa–bbb")
    );
    assert_eq!(link, Some(LinkIdx(0)));
    let (text, link) = reroute(
        &topo,
        &old,
        &RouteTables {
            version: 3,
            ..old.clone()
        },
    );
    assert_eq!(text, "routes v3: backups changed, no path moved");
    assert_eq!(link, None);
}
