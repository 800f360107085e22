//! The live map's hub: one task per controller that follows the compute
//! task's publications (woken by `Published::views`) and the relays' sessions,
//! and turns what changed into the frames every stream sends: `links` and
//! `nodes` (paced by [`Coalescer`]) and `timeline` events (links down and up,
//! reroutes, drains). It reads the published snapshots only, so it never waits
//! on a computation; streams only copy its frames.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;
use topology::{LinkIdx, NodeIdx, Topology};

use crate::api::{self, LinkInfo, NodeInfo};
use crate::coalesce::{Change, Coalescer, PACE};
use crate::live::EventKind;
use crate::routing::RouteTables;
use crate::shared::Shared;
use crate::stream::frame;
use crate::view::FleetView;

/// What changed about a link since `old` was sent: its state (or anything
/// but measurements), its measurements only, or nothing. `since_s` moves by
/// itself and is not a change.
pub fn link_change(old: &LinkInfo, new: &LinkInfo) -> Option<Change> {
    let measured = |l: &LinkInfo| {
        [
            l.rtt_ms,
            l.min_rtt_ms,
            l.jitter_ms,
            Some(l.loss),
            l.load_ab_mbps,
            l.load_ba_mbps,
            l.utilisation_ab,
            l.utilisation_ba,
        ]
    };
    let rest = |l: &LinkInfo| LinkInfo {
        since_s: None,
        rtt_ms: None,
        min_rtt_ms: None,
        jitter_ms: None,
        loss: 0.0,
        load_ab_mbps: None,
        load_ba_mbps: None,
        utilisation_ab: None,
        utilisation_ba: None,
        ..l.clone()
    };
    if rest(old) != rest(new) {
        Some(Change::State)
    } else if measured(old) != measured(new) {
        Some(Change::Measurement)
    } else {
        None
    }
}

/// What changed about a node: its session (state), or the table version its
/// relay applied (which may ride along later), or nothing.
pub fn node_change(old: &NodeInfo, new: &NodeInfo) -> Option<Change> {
    let rest = |n: &NodeInfo| NodeInfo {
        connected_for_s: None,
        table_version_applied: None,
        ..n.clone()
    };
    if rest(old) != rest(new) {
        Some(Change::State)
    } else if old.table_version_applied != new.table_version_applied {
        Some(Change::Measurement)
    } else {
        None
    }
}

/// A timeline event found by comparing two views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Happened {
    pub kind: EventKind,
    pub text: String,
    pub link: Option<LinkIdx>,
}

/// Finds the timeline's events in consecutive views (sans-IO).
#[derive(Debug, Clone)]
pub struct Events {
    /// Whether each link has been reported up: a link's bring-up while its
    /// relays start is not news.
    seen_up: Vec<bool>,
}

fn link_name(topo: &Topology, l: LinkIdx) -> String {
    let link = topo.link(l);
    let ends = format!("{}–{}", topo.node(link.a).id, topo.node(link.b).id);
    match &link.name {
        Some(name) => format!("{ends} ({name})"),
        None => ends,
    }
}

impl Events {
    pub fn new(first: &FleetView) -> Events {
        Events {
            seen_up: first
                .links
                .iter()
                .map(|l| l.view.up && !l.view.stale)
                .collect(),
        }
    }

    /// What happened between `prev` and `next`, in order: links down and
    /// up, drains, then the reroute they caused.
    pub fn handle_view(
        &mut self,
        topo: &Topology,
        prev: &FleetView,
        next: &FleetView,
    ) -> Vec<Happened> {
        let mut out = Vec::new();
        let mut said = |kind, text: String, link| out.push(Happened { kind, text, link });
        for (i, (p, n)) in prev.links.iter().zip(&next.links).enumerate() {
            let l = LinkIdx(i as u32);
            let Some(seen) = self.seen_up.get_mut(i) else {
                continue;
            };
            if !*seen {
                *seen = n.view.up && !n.view.stale;
                continue;
            }
            let (was, is) = (p.view.up, n.view.up);
            // `since` moves with every up/down change: a change of it with the
            // same ends means it went both ways in between.
            let flapped = was == is && p.view.since != n.view.since;
            let down = || format!("{} down", link_name(topo, l));
            let up = |held: bool| {
                let what = format!("{} up", link_name(topo, l));
                if held {
                    format!("{what}, held down before routes use it again")
                } else {
                    what
                }
            };
            let held = n.in_force.is_none();
            match (was, is) {
                (true, false) => said(EventKind::LinkDown, down(), Some(l)),
                (false, true) => said(EventKind::LinkUp, up(held), Some(l)),
                (true, true) if flapped => {
                    said(EventKind::LinkDown, down(), Some(l));
                    said(EventKind::LinkUp, up(held), Some(l));
                }
                (false, false) if flapped => {
                    said(EventKind::LinkUp, up(false), Some(l));
                    said(EventKind::LinkDown, down(), Some(l));
                }
                _ => {}
            }
        }
        for n in next.draining.iter().filter(|n| !prev.draining.contains(n)) {
            let id = &topo.node(*n).id;
            said(
                EventKind::Drain,
                format!("{id} draining: routes avoid its links"),
                None,
            );
        }
        for n in prev.draining.iter().filter(|n| !next.draining.contains(n)) {
            let id = &topo.node(*n).id;
            said(
                EventKind::Drain,
                format!("{id} drain ended: its links carry routes again"),
                None,
            );
        }
        if next.tables.version != prev.tables.version {
            let (text, link) = reroute(topo, &prev.tables, &next.tables);
            said(EventKind::Reroute, text, link);
        }
        out
    }
}

/// A line about a change of tables: how many (source, destination) pairs
/// now take another path, and the link most of them left.
pub fn reroute(topo: &Topology, old: &RouteTables, new: &RouteTables) -> (String, Option<LinkIdx>) {
    let n = topo.nodes.len() as u32;
    let mut moved = 0usize;
    let mut left: BTreeMap<LinkIdx, usize> = BTreeMap::new();
    for s in (0..n).map(NodeIdx) {
        for d in (0..n).map(NodeIdx).filter(|&d| d != s) {
            let (a, b) = (old.walk(s, d).hops, new.walk(s, d).hops);
            if a == b {
                continue;
            }
            moved += 1;
            for h in a.iter().filter(|h| !b.iter().any(|x| x.link == h.link)) {
                *left.entry(h.link).or_default() += 1;
            }
        }
    }
    let v = new.version;
    let busiest = left
        .iter()
        .max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0)))
        .map(|(&l, &count)| (l, count));
    let pairs = |k: usize| {
        if k == 1 {
            "1 pair".to_string()
        } else {
            format!("{k} pairs")
        }
    };
    match busiest {
        _ if moved == 0 => (format!("routes v{v}: backups changed, no path moved"), None),
        Some((l, k)) if k == moved => (
            format!(
                "routes v{v}: {} moved off {}",
                pairs(moved),
                link_name(topo, l)
            ),
            Some(l),
        ),
        Some((l, k)) => (
            format!(
                "routes v{v}: {} moved, {k} of them off {}",
                pairs(moved),
                link_name(topo, l)
            ),
            Some(l),
        ),
        None => (format!("routes v{v}: {} moved", pairs(moved)), None),
    }
}

/// Runs the hub until the controller stops.
pub async fn run(shared: Arc<Shared>) {
    let topo = shared.topology().clone();
    let mut views = shared.published.views.subscribe();
    let mut sessions = shared.live.sessions_rx();
    let mut prev = shared.view();
    let mut events = Events::new(&prev);
    let mut sent_links = api::links(&shared);
    let mut sent_nodes = api::nodes(&shared);
    let start = Instant::now().into_std();
    let mut link_pace = Coalescer::new(sent_links.len(), PACE, start);
    let mut node_pace = Coalescer::new(sent_nodes.len(), PACE, start);
    loop {
        let due = [link_pace.poll_timeout(), node_pace.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .map(Instant::from_std);
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            r = views.changed() => {
                if r.is_err() {
                    return;
                }
                let next = shared.view();
                for h in events.handle_view(&topo, &prev, &next) {
                    let link = h.link.map(|l| {
                        let l = topo.link(l);
                        (topo.node(l.a).id.as_str(), topo.node(l.b).id.as_str())
                    });
                    shared.live.event(h.kind, h.text, link);
                }
                prev = next;
                for (i, (old, new)) in sent_links.iter().zip(&api::links(&shared)).enumerate() {
                    if let Some(c) = link_change(old, new) {
                        link_pace.handle_change(i, c);
                    }
                }
            }
            r = sessions.changed() => {
                if r.is_err() {
                    return;
                }
                for (i, (old, new)) in sent_nodes.iter().zip(&api::nodes(&shared)).enumerate() {
                    if let Some(c) = node_change(old, new) {
                        node_pace.handle_change(i, c);
                    }
                }
            }
            _ = sleep_until(due), if due.is_some() => {}
        }
        let now = Instant::now().into_std();
        let due = link_pace.poll_flush(now);
        if !due.is_empty() {
            let all = api::links(&shared);
            let changed: Vec<&LinkInfo> = due.iter().filter_map(|&i| all.get(i)).collect();
            shared.live.send(frame("links", &changed));
            for i in due {
                if let (Some(sent), Some(now)) = (sent_links.get_mut(i), all.get(i)) {
                    *sent = now.clone();
                }
            }
        }
        let due = node_pace.poll_flush(now);
        if !due.is_empty() {
            let all = api::nodes(&shared);
            let changed: Vec<&NodeInfo> = due.iter().filter_map(|&i| all.get(i)).collect();
            shared.live.send(frame("nodes", &changed));
            for i in due {
                if let (Some(sent), Some(now)) = (sent_nodes.get_mut(i), all.get(i)) {
                    *sent = now.clone();
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
