//! What the controller knows, as a snapshot the compute task publishes after
//! each computation: every link's merged view and the cost routes give it, and
//! the tables in force. The admin API, the metrics and the lab read it without
//! waiting on a computation in progress.

use std::sync::Arc;

use topology::paths::Cost;
use topology::LinkIdx;

use crate::linkstate::LinkView;
use crate::routing::RouteTables;

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
}

impl LinkStatus {
    /// The state operators see: `up`, `down`, or `held-down` (up again, not yet trusted).
    pub fn state(&self) -> &'static str {
        match (self.view.up, self.in_force) {
            (false, _) => "down",
            (true, None) => "held-down",
            (true, Some(_)) => "up",
        }
    }
}

/// A consistent picture of the fleet at one computation.
#[derive(Debug, Clone)]
pub struct FleetView {
    /// By `LinkIdx`.
    pub links: Vec<LinkStatus>,
    pub tables: Arc<RouteTables>,
}

impl FleetView {
    pub fn link(&self, link: LinkIdx) -> Option<&LinkStatus> {
        self.links.get(link.get())
    }

    /// Whether every link of the topology is in force (up, not held down).
    pub fn all_links_in_force(&self) -> bool {
        self.links.iter().all(|l| l.in_force.is_some())
    }
}
