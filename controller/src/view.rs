//! What the controller knows, as a snapshot the compute task publishes after
//! each computation: every link's merged view and the cost routes give it, the
//! nodes draining, and the tables in force. The admin API, the metrics, the
//! live map's stream and the lab read it without waiting on a computation in
//! progress.

use std::sync::Arc;
use std::time::Instant;

use topology::paths::Cost;
use topology::{LinkIdx, NodeIdx};

use crate::linkstate::LinkView;
use crate::routing::RouteTables;

/// Above this probe loss (a fraction) an up link is shown `degraded`.
pub const DEGRADED_LOSS: f64 = 0.01;
/// Above this jitter (ms) an up link is shown `degraded`.
pub const DEGRADED_JITTER_MS: f64 = 10.0;

/// One link as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkStatus {
    /// Both ends' reports merged.
    pub view: LinkView,
    /// The damped cost routes use; `None` while down or held down.
    pub in_force: Option<Cost>,
    /// What a path over the link pays now (penalties for drains and held-down
    /// links included); `None` if unusable.
    pub cost: Option<Cost>,
    /// When [`LinkStatus::shown_state`] last changed; `None` if it has not
    /// since the controller started.
    pub state_since: Option<Instant>,
    /// Traffic a → b and b → a in Mbit/s, smoothed, as the sending relays
    /// last reported it; `None` without a fresh report.
    pub load_mbps: [Option<f64>; 2],
    /// Until when routing follows its measurements without a hold (its first
    /// seconds up; see `StabilityConfig::settle`). `None` if never up.
    pub settle_until: Option<Instant>,
}

impl LinkStatus {
    /// A link nobody has reported on.
    pub const UNKNOWN: LinkStatus = LinkStatus {
        view: LinkView::UNKNOWN,
        in_force: None,
        cost: None,
        state_since: None,
        load_mbps: [None, None],
        settle_until: None,
    };

    /// The routing state (what the metrics count): `up`, `down`,
    /// `held-down` (up again, not yet trusted), or `unknown`: no fresh report
    /// from either end (never reported since the controller started, or both
    /// ends out of touch). Routes still use an unknown link on the topology's
    /// (or the last report's) word, so that a controller that just started does
    /// not blackhole the fleet; but nobody has seen it up, so it is not counted
    /// as up.
    pub fn state(&self) -> &'static str {
        match (self.view.up, self.in_force) {
            (false, _) => "down",
            (true, None) => "held-down",
            (true, Some(_)) if self.view.stale => "unknown",
            (true, Some(_)) => "up",
        }
    }

    /// Up and in use, but with loss above [`DEGRADED_LOSS`] or jitter above
    /// [`DEGRADED_JITTER_MS`] (the values the API reports; no hysteresis, so
    /// the map's legend is true).
    pub fn is_degraded(&self) -> bool {
        let jitter_ms = self.view.jitter.map(|d| d.as_secs_f64() * 1000.0);
        self.state() == "up"
            && (self.view.loss > DEGRADED_LOSS || jitter_ms.is_some_and(|j| j > DEGRADED_JITTER_MS))
    }

    /// The state people see (the API's `state`): [`LinkStatus::state`], with
    /// `up` split into `up` and `degraded`.
    pub fn shown_state(&self) -> &'static str {
        if self.is_degraded() {
            "degraded"
        } else {
            self.state()
        }
    }
}

/// A consistent picture of the fleet at one computation.
#[derive(Debug, Clone)]
pub struct FleetView {
    /// By `LinkIdx`.
    pub links: Vec<LinkStatus>,
    /// Nodes draining (their links avoided), in index order.
    pub draining: Vec<NodeIdx>,
    pub tables: Arc<RouteTables>,
    /// How placement runs and where it falls short (its splits are in `tables`).
    pub placement: PlacementView,
}

/// Placement as of the last computation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlacementView {
    pub enabled: bool,
    pub runs: u64,
    pub unit_kbps: u64,
    pub ceiling: f64,
    pub shortfalls: crate::placing::Shortfalls,
}

impl FleetView {
    pub fn link(&self, link: LinkIdx) -> Option<&LinkStatus> {
        self.links.get(link.get())
    }

    /// Whether every link of the topology is in force (up, not held down).
    pub fn all_links_in_force(&self) -> bool {
        self.links.iter().all(|l| l.in_force.is_some())
    }

    /// Whether every link has been up past its settling time at `now`, so the
    /// costs in force are measurements the hold rules now guard.
    pub fn all_links_settled(&self, now: Instant) -> bool {
        self.links
            .iter()
            .all(|l| l.settle_until.is_some_and(|t| t <= now))
    }

    /// Carries each link's `state_since` over from `prev` (the view this one
    /// replaces), or sets it to `now` where the shown state changed. Without
    /// a previous view, a link's state is as old as its last up/down change.
    /// A link first heard of (from `unknown`, as after a controller restart)
    /// that is up has been up since its relays say it came up: the
    /// controller was not there to see it, they were.
    pub fn since(mut self, prev: Option<&FleetView>, now: Instant) -> FleetView {
        for (i, l) in self.links.iter_mut().enumerate() {
            let reported = l
                .view
                .up_since_reported
                .filter(|_| matches!(l.shown_state(), "up" | "degraded"));
            l.state_since = match prev.and_then(|p| p.links.get(i)) {
                Some(p) if p.shown_state() == l.shown_state() => p.state_since,
                Some(p) if p.shown_state() == "unknown" => reported.or(Some(now)),
                Some(_) => Some(now),
                None => l.view.since.or(reported),
            };
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn up(loss: f64, jitter_ms: Option<f64>) -> LinkStatus {
        LinkStatus {
            view: LinkView {
                up: true,
                loss,
                jitter: jitter_ms.map(|j| Duration::from_secs_f64(j / 1000.0)),
                stale: false,
                ..LinkView::UNKNOWN
            },
            in_force: Some(10_000),
            cost: Some(10_000),
            ..LinkStatus::UNKNOWN
        }
    }

    #[test]
    fn degraded_is_loss_over_one_percent_or_jitter_over_ten_ms_on_a_link_in_use() {
        assert_eq!(up(0.0, None).shown_state(), "up");
        assert_eq!(
            up(0.01, Some(10.0)).shown_state(),
            "up",
            "at the thresholds"
        );
        assert_eq!(up(0.0101, None).shown_state(), "degraded");
        assert_eq!(up(0.0, Some(10.5)).shown_state(), "degraded");
        let mut held = up(0.5, Some(50.0));
        held.in_force = None;
        assert_eq!(held.shown_state(), "held-down", "held down comes first");
        held.view.up = false;
        assert_eq!(held.shown_state(), "down", "down comes first");
        assert_eq!(held.state(), "down");
        assert_eq!(
            up(0.5, None).state(),
            "up",
            "the routing state has no degraded"
        );
    }

    #[test]
    fn a_link_without_a_fresh_report_is_unknown_not_up() {
        let mut never = up(0.0, None);
        never.view = LinkView::UNKNOWN;
        assert_eq!(never.state(), "unknown", "never reported");
        assert_eq!(never.shown_state(), "unknown");
        let mut silent = up(0.5, Some(50.0));
        silent.view.stale = true;
        assert_eq!(silent.shown_state(), "unknown", "both ends out of touch");
        assert!(!silent.is_degraded(), "old figures say nothing now");
        silent.view.up = false;
        assert_eq!(silent.state(), "down", "routes avoid it: so do people");
        let mut held = never;
        held.in_force = None;
        assert_eq!(held.state(), "held-down");
    }

    #[test]
    fn state_since_moves_only_when_the_shown_state_changes() {
        let t0 = Instant::now();
        let view = |links| FleetView {
            links,
            draining: Vec::new(),
            tables: Arc::new(RouteTables {
                version: 1,
                tables: Vec::new(),
            }),
            placement: PlacementView::default(),
        };
        let first = view(vec![up(0.0, None), up(0.0, None)]).since(None, t0);
        assert_eq!(first.links[0].state_since, None);
        // Measurements move (still up), and link 1 turns degraded.
        let t1 = t0 + Duration::from_secs(1);
        let second = view(vec![up(0.005, Some(3.0)), up(0.05, None)]).since(Some(&first), t1);
        assert_eq!(second.links[0].state_since, None);
        assert_eq!(second.links[1].state_since, Some(t1));
        let t2 = t1 + Duration::from_secs(1);
        let third = view(vec![up(0.0, None), up(0.06, None)]).since(Some(&second), t2);
        assert_eq!(third.links[1].state_since, Some(t1), "still degraded");
    }

    #[test]
    fn after_a_restart_a_link_is_up_since_its_relays_say() {
        let t0 = Instant::now();
        let view = |links| FleetView {
            links,
            draining: Vec::new(),
            tables: Arc::new(RouteTables {
                version: 1,
                tables: Vec::new(),
            }),
            placement: PlacementView::default(),
        };
        // Just started: nobody has reported.
        let mut never = up(0.0, None);
        never.view = LinkView::UNKNOWN;
        let first = view(vec![never, never]).since(None, t0);
        assert_eq!(first.links[0].state_since, None);
        // The first reports: link 0's relays have had it up for an hour; link
        // 1's relays do not say (older relays).
        let t1 = t0 + Duration::from_secs(1);
        let hour_ago = t1.checked_sub(Duration::from_secs(3600));
        let mut told = up(0.0, None);
        told.view.up_since_reported = hour_ago;
        let second = view(vec![told, up(0.0, None)]).since(Some(&first), t1);
        assert_eq!(second.links[0].state_since, hour_ago, "as the relays say");
        assert_eq!(second.links[1].state_since, Some(t1), "first heard of now");
        // Later reports move the relays' figure a little: the state stays as old.
        let t2 = t1 + Duration::from_secs(1);
        let mut again = told;
        again.view.up_since_reported = t2.checked_sub(Duration::from_secs(3599));
        let third = view(vec![again, up(0.0, None)]).since(Some(&second), t2);
        assert_eq!(third.links[0].state_since, hour_ago);
    }
}
