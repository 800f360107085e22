//! Where a placement falls short of its goals, and how to say so.

use topology::placement::Dir;
use topology::{LinkIdx, NodeIdx, Topology};

/// A link direction the placement in force plans past the ceiling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverCeiling {
    pub link: LinkIdx,
    pub dir: Dir,
    /// Planned load (background included) over capacity.
    pub utilisation: f64,
}

impl OverCeiling {
    /// The direction's (from, to).
    pub fn ends(&self, topo: &Topology) -> (NodeIdx, NodeIdx) {
        let l = topo.link(self.link);
        match self.dir {
            Dir::AtoB => (l.a, l.b),
            Dir::BtoA => (l.b, l.a),
        }
    }
}

/// Where the placement in force falls short of its goals (no placement
/// met them all): for the log, the API and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shortfalls {
    /// Worst first.
    pub over_ceiling: Vec<OverCeiling>,
    /// Demand on paths slower than its latency budget, kbit/s.
    pub over_budget_kbps: u64,
    /// Demand with no path at all, kbit/s.
    pub unplaced_kbps: u64,
    /// N−1: per undersea line whose loss the headroom cannot absorb, the
    /// demand at risk if it were cut (left with no path, or on a path
    /// crossing a link then past capacity), kbit/s.
    pub at_risk: Vec<(LinkIdx, u64)>,
}

impl Shortfalls {
    pub fn is_empty(&self) -> bool {
        self.over_ceiling.is_empty()
            && self.over_budget_kbps == 0
            && self.unplaced_kbps == 0
            && self.at_risk.is_empty()
    }

    /// What falls short, without how much: which link directions are past
    /// the ceiling, which lines lack headroom, whether demand is over budget
    /// or has no path. The log speaks when this changes (the figures move
    /// every run).
    pub fn kind(&self) -> (Vec<(LinkIdx, Dir)>, Vec<LinkIdx>, bool, bool) {
        let mut over: Vec<(LinkIdx, Dir)> =
            self.over_ceiling.iter().map(|o| (o.link, o.dir)).collect();
        over.sort();
        let mut lines: Vec<LinkIdx> = self.at_risk.iter().map(|&(l, _)| l).collect();
        lines.sort();
        (
            over,
            lines,
            self.over_budget_kbps > 0,
            self.unplaced_kbps > 0,
        )
    }

    /// A placement's shortfalls in words: which links past the ceiling, how
    /// much demand over budget or on no path.
    pub fn describe(&self, topo: &Topology) -> String {
        let s = self;
        let mut parts = Vec::new();
        if !s.over_ceiling.is_empty() {
            let links: Vec<String> = s
                .over_ceiling
                .iter()
                .take(5)
                .map(|o| {
                    let (from, to) = o.ends(topo);
                    format!(
                        "{}→{} {:.0}%",
                        topo.node(from).id,
                        topo.node(to).id,
                        100.0 * o.utilisation
                    )
                })
                .collect();
            let more = s.over_ceiling.len().saturating_sub(links.len());
            parts.push(format!(
                "{} link direction(s) planned past the ceiling: {}{}",
                s.over_ceiling.len(),
                links.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ));
        }
        if s.over_budget_kbps > 0 {
            parts.push(format!(
                "{:.1} Mbit/s of demand over its latency budget",
                s.over_budget_kbps as f64 / 1000.0
            ));
        }
        if !s.at_risk.is_empty() {
            let lines: Vec<String> = s
                .at_risk
                .iter()
                .map(|&(l, kbps)| {
                    format!(
                        "{} ({:.1} Mbit/s)",
                        line_name(topo, l),
                        kbps as f64 / 1000.0
                    )
                })
                .collect();
            parts.push(format!(
                "no headroom for the loss of {}: that much demand at risk if it were cut",
                lines.join(", ")
            ));
        }
        if s.unplaced_kbps > 0 {
            parts.push(format!(
                "{:.1} Mbit/s of demand with no path",
                s.unplaced_kbps as f64 / 1000.0
            ));
        }
        parts.join("; ")
    }
}

/// A link's name (the undersea lines have one), or `a–b`.
pub fn line_name(topo: &Topology, l: LinkIdx) -> String {
    let link = topo.link(l);
    link.name
        .clone()
        .unwrap_or_else(|| format!("{}–{}", topo.node(link.a).id, topo.node(link.b).id))
}
