//! The messages of the relay↔controller protocol.
//!
//! relay → controller: `hello` (who I am, the protocol and the table version I
//! hold), `links` (my links' state and measurements, on change and
//! periodically), `applied` (the table version now in force).
//! controller → relay: `table` (the whole table when `full`, else a diff),
//! stamped with the sending leader's `term`.
//!
//! Fencing: with several controllers (high availability through an etcd
//! election) only the leader pushes tables, and each carries the leader's term
//! (a number etcd only ever increases). A relay puts a table in force only if
//! its term is at least the highest it has seen, so an old leader that wakes
//! up after a pause cannot overwrite a newer leader's tables. A single
//! controller without etcd, and a controller from before terms, sends term 0.
//!
//! Compatibility: fields added later carry `#[serde(default)]`, so a newer
//! daemon reads an older one's messages; `hello.protocol` names the version a
//! relay speaks (absent means 1).

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

fn protocol_v1() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RelayMessage {
    Hello {
        node: String,
        table_version: u64,
        /// The protocol version the relay speaks.
        #[serde(default = "protocol_v1")]
        protocol: u32,
    },
    Links {
        links: Vec<LinkReport>,
        /// The relay is draining (stopping): route transit traffic around it.
        #[serde(default)]
        draining: bool,
        /// What the services' datagrams arriving here measured since the last
        /// report (only services with traffic in that interval).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        services: Vec<ServiceReport>,
        /// What this relay sends into the overlay per destination relay:
        /// the placeable traffic (see [`DemandReport`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        demand: Vec<DemandReport>,
    },
    Applied {
        version: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControllerMessage {
    Table(TableUpdate),
}

/// One link as seen from the reporting relay's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkReport {
    pub peer: String,
    pub up: bool,
    pub rtt_ms: Option<f64>,
    pub min_rtt_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss: f64,
    /// What this relay sends on the link, Mbit/s, smoothed: every UDP
    /// datagram of the link's QUIC connection (media, streams, probes, acks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_mbps: Option<f64>,
    /// While `up`: seconds since this relay's end of the link came up, so a
    /// controller that starts later knows how long the link has been up.
    /// Absent while down, and from relays before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_for_s: Option<f64>,
}

/// Traffic this relay originates toward one destination relay, Mbit/s on the
/// overlay's links (payload plus the overlay's per-packet overhead), smoothed:
/// the datagrams of unprotected UDP services that enter here, their clients'
/// at an ingress and their targets' replies at an egress. The controller
/// places it on paths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemandReport {
    pub dst: String,
    pub mbps: f64,
}

/// The upper bounds of the one-way delay buckets, ms, that
/// [`ServiceReport::delay_buckets`] counts against (the last bucket, one more
/// than these, is everything above).
pub const DELAY_BUCKETS_MS: [f64; 16] = [
    2.0, 5.0, 10.0, 20.0, 50.0, 75.0, 100.0, 125.0, 150.0, 175.0, 200.0, 250.0, 300.0, 500.0,
    1000.0, 2000.0,
];

/// A service's datagrams that reached the reporting relay through the overlay
/// in one report interval: at the service's egress, the clients' datagrams;
/// at its ingress, the target's replies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub service: String,
    /// First copies taken in.
    pub received: u64,
    /// Sequence numbers given up as lost, reordered arrivals, second copies.
    pub lost: u64,
    pub reordered: u64,
    pub duplicates: u64,
    /// One-way delays, counted per bucket of [`DELAY_BUCKETS_MS`] (one more
    /// entry than it: above the last bound). Empty when nothing was timed.
    #[serde(default)]
    pub delay_buckets: Vec<u64>,
}

/// The `q` quantile (0 to 1) of delays counted in `buckets` (see
/// [`DELAY_BUCKETS_MS`]), ms: linear within the bucket it falls in; the open
/// last bucket answers its lower bound. `None` when nothing was counted.
pub fn delay_quantile_ms(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
    let mut below = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let lo = if i == 0 { 0.0 } else { DELAY_BUCKETS_MS[i - 1] };
            let Some(&hi) = DELAY_BUCKETS_MS.get(i) else {
                return Some(lo);
            };
            return Some(lo + (hi - lo) * (rank - below as f64) / n as f64);
        }
        below += n;
    }
    DELAY_BUCKETS_MS.last().copied()
}

/// A route table for one relay, whole or as a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableUpdate {
    pub version: u64,
    /// The term of the leader that sent it (0: a single controller, or one
    /// from before terms). A table of a lower term than the relay has seen is
    /// refused. Each new term starts with a `full` table.
    #[serde(default)]
    pub term: u64,
    /// When true, `set` is the whole table and anything not in it is removed.
    pub full: bool,
    pub set: Vec<RouteEntry>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    pub dst: String,
    pub primary: String,
    pub backup: Option<String>,
    /// The repair segment around the primary: node ids after this relay, the
    /// last the release node (see `topology::repair`). Absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<Vec<String>>,
    /// For a destination that protected services' traffic goes to: the
    /// second copy's path, node ids after this relay (see `topology::disjoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second: Option<Vec<String>>,
    /// The controller's split of this relay's traffic to `dst` over placed
    /// paths; empty: the traffic follows `primary`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placed: Vec<PlacedPath>,
}

/// One placed path to a destination and its share of the flows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedPath {
    /// Node ids after this relay, the last the destination.
    pub hops: Vec<String>,
    /// Relative to the other paths' weights (the classes placed on it).
    pub weight: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_quantiles_interpolate_within_their_bucket() {
        let mut b = vec![0u64; DELAY_BUCKETS_MS.len() + 1];
        assert_eq!(delay_quantile_ms(&b, 0.5), None);
        // 100 delays between 20 and 50 ms, 1 above 2 s.
        b[4] = 100;
        b[16] = 1;
        let p50 = delay_quantile_ms(&b, 0.5).expect("counted");
        assert!((p50 - 35.15).abs() < 0.1, "{p50}");
        assert_eq!(delay_quantile_ms(&b, 1.0), Some(2000.0));
        assert_eq!(delay_quantile_ms(&b, 0.0), Some(20.3));
    }

    #[test]
    fn a_report_from_before_service_reports_reads() {
        let old: RelayMessage =
            serde_json::from_str(r#"{"type":"links","links":[],"draining":false}"#)
                .expect("decodes");
        assert_eq!(
            old,
            RelayMessage::Links {
                links: vec![],
                draining: false,
                services: vec![],
                demand: vec![],
            }
        );
    }

    #[test]
    fn a_hello_without_a_protocol_is_version_1() {
        let hello: RelayMessage =
            serde_json::from_str(r#"{"type":"hello","node":"sha","table_version":3}"#)
                .expect("decodes");
        assert_eq!(
            hello,
            RelayMessage::Hello {
                node: "sha".into(),
                table_version: 3,
                protocol: 1
            }
        );
    }

    #[test]
    fn a_table_without_a_term_is_term_0() {
        let table: ControllerMessage = serde_json::from_str(
            r#"{"type":"table","version":4,"full":true,"set":[],"remove":[]}"#,
        )
        .expect("decodes");
        let ControllerMessage::Table(t) = table;
        assert_eq!((t.version, t.term), (4, 0));
    }

    #[test]
    fn messages_have_a_stable_json_form() {
        let json = serde_json::to_string(&RelayMessage::Applied { version: 7 }).expect("encodes");
        assert_eq!(json, r#"{"type":"applied","version":7}"#);
        let table = ControllerMessage::Table(TableUpdate {
            version: 2,
            term: 5,
            full: false,
            set: vec![RouteEntry {
                dst: "lax".into(),
                primary: "pdx".into(),
                backup: None,
                repair: None,
                second: None,
                placed: Vec::new(),
            }],
            remove: vec!["sea".into()],
        });
        let json = serde_json::to_string(&table).expect("encodes");
        assert_eq!(
            json,
            r#"{"type":"table","version":2,"term":5,"full":false,"set":[{"dst":"lax","primary":"pdx","backup":null}],"remove":["sea"]}"#
        );
    }
}
