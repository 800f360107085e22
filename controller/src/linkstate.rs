//! The link-state database: relays' per-link reports merged into one view per link,
//! with freshness, state-change timestamps, and the cost a measured view implies.
//!
//! Sans-IO: no sockets, no clock. Every input carries its `now`; reports come in
//! through [`LinkStateDb::handle_report`], the passage of time through
//! [`LinkStateDb::handle_timeout`], and [`LinkStateDb::poll_timeout`] says when a
//! report next goes stale so a driver can sleep until then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use topology::paths::Cost;
use topology::{LinkIdx, NodeIdx, Topology};

/// How long a report counts once received, unless configured otherwise.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(5);

/// The cost one unit of loss (100 %) adds, µs: 1 % loss costs as much as 5 ms of delay.
pub const LOSS_PENALTY_US: u64 = 500_000;

/// Jitter up to this much (µs) costs nothing. A playout buffer absorbs a few ms at
/// its smallest depth, and below this the measured jitter is mostly the hosts'
/// scheduling noise: every link shows some, each its own, and pricing it moved
/// routes back and forth between equal paths (±10% jitter on a diamond of 10 and
/// 25 ms links measured 1–6 ms per link and moved primaries 6 times in a minute).
pub const JITTER_ALLOWANCE_US: u64 = 5_000;

/// What a relay measured on one of its links, from its end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkReport {
    /// The reporting relay; must be one of the link's ends.
    pub from: NodeIdx,
    pub link: LinkIdx,
    /// Whether the relay can use the link (its connection to the far end is alive).
    pub up: bool,
    /// Smoothed round-trip time, if measured yet.
    pub rtt: Option<Duration>,
    /// Lowest round-trip time seen recently.
    pub min_rtt: Option<Duration>,
    /// Variation of the round-trip time.
    pub jitter: Option<Duration>,
    /// Fraction of probes lost, in `0.0..=1.0`.
    pub loss: f64,
    /// While up: how long the reporting relay has had the link up, as of the
    /// report (`None` from relays that do not say).
    pub up_for: Option<Duration>,
}

/// Why a report was refused. Nothing in the database changes when one is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    #[error("report from node index {from}: the topology has only {nodes} nodes")]
    UnknownNode { from: u32, nodes: usize },
    #[error(
        "report from node `{node}` about link index {link}: the topology has only {links} links"
    )]
    UnknownLink {
        node: String,
        link: u32,
        links: usize,
    },
    #[error("report from node `{node}` about link {link} ({a}–{b}): `{node}` is not an end of that link")]
    NotAnEnd {
        node: String,
        link: u32,
        a: String,
        b: String,
    },
    #[error("report from node `{node}` about link {link} ({a}–{b}): loss {loss} is not a fraction in 0..=1")]
    BadLoss {
        node: String,
        link: u32,
        a: String,
        b: String,
        loss: f64,
    },
}

/// The merged state of one link, as of the database's latest `handle_*` call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkView {
    /// False if any fresh report says down. A link nobody has reported on yet is up:
    /// the topology says it exists, and a controller that just started must not
    /// blackhole the fleet.
    pub up: bool,
    /// Mean of the fresh reports' smoothed RTTs; `None` if none has one.
    pub rtt: Option<Duration>,
    /// Lowest of the fresh reports' minimum RTTs.
    pub min_rtt: Option<Duration>,
    /// Highest of the fresh reports' loss.
    pub loss: f64,
    /// Highest of the fresh reports' jitter.
    pub jitter: Option<Duration>,
    /// No fresh report from either end: the fields above are the last merged state.
    /// Losing contact with relays is not a link failure, so a stale link keeps it.
    pub stale: bool,
    /// When `up` last changed; `None` if it has not since the database started.
    pub since: Option<Instant>,
    /// When the link came up by the relays' own account: the later of the
    /// fresh up reports' `up_for` (the link is up from when both ends had it
    /// up). `None` while down or when no fresh report says. For people (how
    /// long a link has been up, across a controller restart); routing keeps
    /// to `since`, which only this database's own observations move.
    pub up_since_reported: Option<Instant>,
}

impl LinkView {
    pub const UNKNOWN: LinkView = LinkView {
        up: true,
        rtt: None,
        min_rtt: None,
        loss: 0.0,
        jitter: None,
        stale: true,
        since: None,
        up_since_reported: None,
    };
}

/// The latest report from one end of a link and when it arrived.
#[derive(Debug, Clone, Copy)]
struct EndReport {
    at: Instant,
    report: LinkReport,
}

#[derive(Debug, Clone)]
struct LinkEntry {
    /// The latest report from each end: `[from a, from b]`.
    ends: [Option<EndReport>; 2],
    /// Whether each end has ever reported the link up. An end that has not is
    /// still bringing the link up (its probes not yet passing): its "down" is no
    /// news while the other end reports the link up.
    ever_up: [bool; 2],
    view: LinkView,
}

/// Per-link reports from both ends, merged.
#[derive(Debug, Clone)]
pub struct LinkStateDb {
    topology: Arc<Topology>,
    stale_after: Duration,
    links: Vec<LinkEntry>,
    /// The latest `now` seen, for `poll_timeout`.
    now: Option<Instant>,
}

impl LinkStateDb {
    /// A database where reports stay fresh for [`DEFAULT_STALE_AFTER`].
    pub fn new(topology: Arc<Topology>) -> Self {
        Self::with_stale_after(topology, DEFAULT_STALE_AFTER)
    }

    /// A database where a report counts for `stale_after` after it arrives.
    pub fn with_stale_after(topology: Arc<Topology>, stale_after: Duration) -> Self {
        let entry = LinkEntry {
            ends: [None, None],
            ever_up: [false, false],
            view: LinkView::UNKNOWN,
        };
        LinkStateDb {
            links: vec![entry; topology.links.len()],
            topology,
            stale_after,
            now: None,
        }
    }

    pub fn topology(&self) -> &Arc<Topology> {
        &self.topology
    }

    pub fn stale_after(&self) -> Duration {
        self.stale_after
    }

    /// Records a report received at `now`, then brings every view up to `now`.
    pub fn handle_report(&mut self, report: LinkReport, now: Instant) -> Result<(), ReportError> {
        let end = self.check(&report)?;
        let entry = &mut self.links[report.link.get()];
        entry.ever_up[end] |= report.up;
        entry.ends[end] = Some(EndReport { at: now, report });
        self.refresh(now);
        Ok(())
    }

    /// Brings every view up to `now`: reports older than `stale_after` stop counting.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.refresh(now);
    }

    /// When a report that counts now goes stale (call `handle_timeout` then).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let now = self.now?;
        self.links
            .iter()
            .flat_map(|e| e.ends.iter().flatten())
            .map(|r| r.at + self.stale_after)
            .filter(|&t| t > now)
            .min()
    }

    /// The merged view of `link`. Panics if `link` is not a link of the topology.
    pub fn view(&self, link: LinkIdx) -> LinkView {
        self.links[link.get()].view
    }

    /// Every link with its merged view, in link order.
    pub fn links(&self) -> impl Iterator<Item = (LinkIdx, LinkView)> + '_ {
        self.links
            .iter()
            .enumerate()
            .map(|(i, e)| (LinkIdx(i as u32), e.view))
    }

    /// Validates a report; returns which end of its link sent it (0 = `a`, 1 = `b`).
    fn check(&self, r: &LinkReport) -> Result<usize, ReportError> {
        let t = &self.topology;
        let node =
            t.nodes
                .get(r.from.get())
                .map(|n| n.id.clone())
                .ok_or(ReportError::UnknownNode {
                    from: r.from.0,
                    nodes: t.nodes.len(),
                })?;
        let Some(link) = t.links.get(r.link.get()) else {
            return Err(ReportError::UnknownLink {
                node,
                link: r.link.0,
                links: t.links.len(),
            });
        };
        let a = t.node(link.a).id.clone();
        let b = t.node(link.b).id.clone();
        let end = if r.from == link.a {
            0
        } else if r.from == link.b {
            1
        } else {
            let link = r.link.0;
            return Err(ReportError::NotAnEnd { node, link, a, b });
        };
        if !(0.0..=1.0).contains(&r.loss) {
            let (link, loss) = (r.link.0, r.loss);
            return Err(ReportError::BadLoss {
                node,
                link,
                a,
                b,
                loss,
            });
        }
        Ok(end)
    }

    fn refresh(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |t| t.max(now)));
        for entry in &mut self.links {
            let old = entry.view;
            let fresh: Vec<(&EndReport, bool)> = entry
                .ends
                .iter()
                .zip(entry.ever_up)
                .filter_map(|(r, ever_up)| r.as_ref().map(|r| (r, ever_up)))
                .filter(|(r, _)| now.saturating_duration_since(r.at) < self.stale_after)
                .collect();
            let mut view = if fresh.is_empty() {
                LinkView { stale: true, ..old }
            } else {
                merge(&fresh, old.since)
            };
            if view.up != old.up {
                view.since = Some(now);
            }
            entry.view = view;
        }
    }
}

/// Merges fresh reports (at least one, each with whether its end was ever up):
/// down if an end that has been up says down, or if no end says up; mean RTT,
/// worst loss and jitter, best minimum RTT. (An end still bringing the link up
/// says down until its probes pass; taking that for a failure would hold the
/// link down for the whole hold-down when a fleet starts.)
fn merge(ends: &[(&EndReport, bool)], since: Option<Instant>) -> LinkView {
    let fresh: Vec<(&LinkReport, bool)> = ends.iter().map(|(e, up)| (&e.report, *up)).collect();
    let up = !fresh.iter().any(|(r, ever_up)| !r.up && *ever_up) && fresh.iter().any(|(r, _)| r.up);
    let up_since_reported = if up {
        ends.iter()
            .filter(|(e, _)| e.report.up)
            .filter_map(|(e, _)| e.at.checked_sub(e.report.up_for?))
            .max()
    } else {
        None
    };
    let fresh: Vec<&LinkReport> = fresh.iter().map(|(r, _)| *r).collect();
    let rtts: Vec<Duration> = fresh.iter().filter_map(|r| r.rtt).collect();
    let rtt = (!rtts.is_empty()).then(|| rtts.iter().sum::<Duration>() / rtts.len() as u32);
    LinkView {
        up,
        rtt,
        min_rtt: fresh.iter().filter_map(|r| r.min_rtt).min(),
        loss: fresh.iter().map(|r| r.loss).fold(0.0, f64::max),
        jitter: fresh.iter().filter_map(|r| r.jitter).max(),
        stale: false,
        since,
        up_since_reported,
    }
}

/// The cost of a link as measured, in µs of "effective one-way delay"; `None` if down.
///
/// ```text
/// cost = one_way + 2 × max(0, jitter − 5 ms) + loss × 500 ms        (at least 1)
/// one_way = min_rtt / 2 (else rtt / 2, else the topology's expected delay)
/// ```
///
/// The minimum RTT is the link's propagation floor; the smoothed RTT also carries
/// queueing and scheduling delay, which wanders with load and would move routes for
/// reasons that are not the link's. Variability is priced by the jitter term.
///
/// Live classroom media suffers from loss and jitter far more than from a few ms of
/// extra delay: a lost packet is a glitch or a retransmission a whole RTT late, and
/// jitter grows the receiver's playout buffer, which adds delay to every packet.
/// So jitter beyond [`JITTER_ALLOWANCE_US`] counts twice, and 1 % loss costs as much
/// as 5 ms of path delay: a path a little longer but clean beats a short one that
/// drops or wobbles.
pub fn measured_cost(view: &LinkView, expected_delay_us: u64) -> Option<Cost> {
    if !view.up {
        return None;
    }
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let one_way = view
        .min_rtt
        .or(view.rtt)
        .map_or(expected_delay_us, |r| micros(r) / 2);
    let jitter = view
        .jitter
        .map_or(0, micros)
        .saturating_sub(JITTER_ALLOWANCE_US);
    // Loss is validated to 0..=1 on the way in; clamp anyway so a NaN cannot leak.
    let loss = if view.loss.is_nan() {
        0.0
    } else {
        view.loss.clamp(0.0, 1.0)
    };
    let loss_cost = (loss * LOSS_PENALTY_US as f64).round() as u64;
    Some(
        one_way
            .saturating_add(jitter.saturating_mul(2))
            .saturating_add(loss_cost)
            .max(1),
    )
}

#[cfg(test)]
#[path = "linkstate_tests.rs"]
pub(crate) mod tests;
