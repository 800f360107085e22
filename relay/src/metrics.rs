//! The relay's counters, in one typed struct: packets and bytes through the
//! forwarding plane, every drop by reason, reroutes, per-service traffic, and
//! per-link traffic totals that survive reconnects. Label sets stay bounded:
//! per link, per service, per drop reason, never per flow.
//!
//! Everything here is cheap to update (relaxed atomics, no lock per packet);
//! [`crate::exposition`] turns it into the Prometheus exposition at scrape time.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

use serde::Serialize;
use topology::{NodeIdx, Topology};

use control_protocol::{ServiceReport, DELAY_BUCKETS_MS};
use daemon::exposition::AtomicHistogram;
use relay_core::routes::Refused;
use relay_core::sequence::{Arrival, Verdict};
use relay_core::wire::FLAG_SECOND_PATH;
use relay_core::DropReason;
use relay_core::Header;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Per neighbour, how often its link went up and down.
    pub link_transitions: LinkTransitions,
    /// Per neighbour, what its link carries away from here.
    pub link_rates: LinkRates,
    /// Per destination relay (by node key), the placeable traffic this relay
    /// sends toward it (see `Context::demand_reports`).
    pub demand_rates: LinkRates,
    /// Datagrams handed to a peer link (originated or transit).
    pub datagrams_sent: AtomicU64,
    /// Datagrams received from peer links.
    pub datagrams_received: AtomicU64,
    /// Datagrams delivered to a local service socket (egress target or ingress client).
    pub datagrams_delivered: AtomicU64,
    /// Of `datagrams_sent`, those that went to a backup next hop.
    pub sent_via_backup: AtomicU64,
    /// Of `datagrams_sent`, those this node repaired around a dead next hop.
    pub sent_via_repair: AtomicU64,
    /// Of `datagrams_sent`, those this node originated on a placed path.
    pub sent_on_placed_path: AtomicU64,
    /// Of `datagrams_sent`, placed datagrams whose next hop on their path was
    /// down here, sent on by the table instead.
    pub left_placed_path: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_delivered: AtomicU64,
    /// TCP sessions accepted at an ingress, and streams carried in transit or at egress.
    pub tcp_sessions: AtomicU64,
    pub streams_relayed: AtomicU64,
    /// TCP sessions closed at their ingress after the idle timeout.
    pub tcp_idle_closed: AtomicU64,
    /// Times a TCP session ending here took a new stream after its path broke.
    pub tcp_resumed: AtomicU64,
    /// TCP sessions ending here that could not resume, by [`ResumeFailure`].
    tcp_resume_failures: [AtomicU64; ResumeFailure::ALL.len()],
    /// Session bytes sent again after a path broke (ingress and egress).
    pub tcp_retransmitted_bytes: AtomicU64,
    /// Peer connections refused (bad certificate, not a neighbor, handshake failure).
    pub peers_refused: AtomicU64,
    /// Incoming peer handshakes that ended without a refusal: the peer closed
    /// the connection (the duplicate-dial race, a shutdown), reset it, or the
    /// handshake timed out.
    pub peer_handshakes_abandoned: AtomicU64,
    /// Destinations whose primary next hop a newly installed table changed.
    pub reroutes: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
    /// Controller tables refused by fencing, by reason (`Refused::ALL`).
    tables_refused: [AtomicU64; Refused::ALL.len()],
}

/// A point-in-time copy of the counters, for status output and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub datagrams_delivered: u64,
    pub sent_via_backup: u64,
    pub sent_via_repair: u64,
    pub sent_on_placed_path: u64,
    pub left_placed_path: u64,
    pub bytes_sent: u64,
    pub bytes_delivered: u64,
    pub tcp_sessions: u64,
    pub streams_relayed: u64,
    pub tcp_idle_closed: u64,
    pub tcp_resumed: u64,
    pub tcp_resume_failures: BTreeMap<&'static str, u64>,
    pub tcp_retransmitted_bytes: u64,
    pub peers_refused: u64,
    pub peer_handshakes_abandoned: u64,
    pub reroutes: u64,
    pub drops: BTreeMap<&'static str, u64>,
    /// Controller tables refused by fencing, by reason: `stale_term` (an old
    /// leader's) or `diff_of_new_term`.
    pub tables_refused: BTreeMap<&'static str, u64>,
}

impl Counters {
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.as_str()).copied().unwrap_or(0)
    }

    pub fn total_drops(&self) -> u64 {
        self.drops.values().sum()
    }
}

impl Metrics {
    /// A controller table not put in force (fencing).
    pub fn count_refused(&self, why: Refused) {
        let i = Refused::ALL
            .iter()
            .position(|r| *r == why.as_str())
            .unwrap_or(0);
        self.tables_refused[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_drop(&self, reason: DropReason) {
        self.count_drops(reason, 1);
    }

    pub fn count_drops(&self, reason: DropReason, n: u64) {
        self.drops[index(reason)].fetch_add(n, Ordering::Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A TCP session ending here gave up resuming.
    pub fn count_resume_failure(&self, why: ResumeFailure) {
        let i = ResumeFailure::ALL
            .iter()
            .position(|r| *r == why)
            .unwrap_or(0);
        self.tcp_resume_failures[i].fetch_add(1, Ordering::Relaxed);
    }

    /// A datagram of `bytes` handed to a local service socket.
    pub fn count_delivered(&self, bytes: usize) {
        Metrics::add(&self.datagrams_delivered, 1);
        Metrics::add(&self.bytes_delivered, bytes as u64);
    }

    pub fn snapshot(&self) -> Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            datagrams_sent: get(&self.datagrams_sent),
            datagrams_received: get(&self.datagrams_received),
            datagrams_delivered: get(&self.datagrams_delivered),
            sent_via_backup: get(&self.sent_via_backup),
            sent_via_repair: get(&self.sent_via_repair),
            sent_on_placed_path: get(&self.sent_on_placed_path),
            left_placed_path: get(&self.left_placed_path),
            bytes_sent: get(&self.bytes_sent),
            bytes_delivered: get(&self.bytes_delivered),
            tcp_sessions: get(&self.tcp_sessions),
            streams_relayed: get(&self.streams_relayed),
            tcp_idle_closed: get(&self.tcp_idle_closed),
            tcp_resumed: get(&self.tcp_resumed),
            tcp_resume_failures: ResumeFailure::ALL
                .iter()
                .zip(&self.tcp_resume_failures)
                .map(|(r, n)| (r.as_str(), get(n)))
                .collect(),
            tcp_retransmitted_bytes: get(&self.tcp_retransmitted_bytes),
            peers_refused: get(&self.peers_refused),
            peer_handshakes_abandoned: get(&self.peer_handshakes_abandoned),
            reroutes: get(&self.reroutes),
            drops: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), get(&self.drops[index(*r)])))
                .collect(),
            tables_refused: Refused::ALL
                .iter()
                .zip(&self.tables_refused)
                .map(|(r, n)| (*r, get(n)))
                .collect(),
        }
    }
}

/// Why a TCP session whose path broke did not resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeFailure {
    /// No new path within the resume timeout.
    Timeout,
    /// The egress no longer held the session (it expired, or the egress restarted).
    UnknownSession,
    /// The routes in force have no route to the far end (the controller
    /// found it unreachable: it is down, or cut off).
    Unreachable,
}

impl ResumeFailure {
    pub const ALL: [ResumeFailure; 3] = [
        ResumeFailure::Timeout,
        ResumeFailure::UnknownSession,
        ResumeFailure::Unreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResumeFailure::Timeout => "timeout",
            ResumeFailure::UnknownSession => "unknown_session",
            ResumeFailure::Unreachable => "unreachable",
        }
    }
}

fn index(reason: DropReason) -> usize {
    DropReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}

// ---------------------------------------------------------------- services

/// One service's traffic at this relay, seen from its local side: `received`
/// is what local sockets handed to the overlay (clients at the ingress, the
/// target's replies at the egress), `delivered` what the overlay handed to them.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    pub received_packets: AtomicU64,
    pub received_bytes: AtomicU64,
    pub delivered_packets: AtomicU64,
    pub delivered_bytes: AtomicU64,
    /// TCP sessions open now (ingress or egress end here).
    pub tcp_open: AtomicU64,
    /// Of the UDP datagrams that came through the overlay to this end (the
    /// egress, or replies at the ingress), by their sequence numbers: lost
    /// (not come once 64 higher numbers had), reordered, duplicates (for a
    /// protected service, the other copy: dropped), late (came after being
    /// counted lost).
    pub seq_lost: AtomicU64,
    pub seq_reordered: AtomicU64,
    pub seq_duplicates: AtomicU64,
    pub seq_late: AtomicU64,
    /// One-way delay of the first copies that reached this end, from the
    /// sender's timestamp in the header: meaningful where the relays' clocks
    /// are synchronised (NTP, PTP, one machine). A timestamp ahead of this
    /// relay's clock is not measured.
    pub one_way_delay: DelayHistogram,
    /// Protected datagrams whose first copy to arrive came by the second path.
    pub second_path_first: AtomicU64,
    /// Protected datagrams sent here on one path only: no second path, or
    /// its first link down.
    pub single_path_sends: AtomicU64,
}

impl ServiceCounters {
    /// A datagram (or, with `packets` 0, stream bytes) taken in from a local socket.
    pub fn received(&self, packets: u64, bytes: u64) {
        self.received_packets.fetch_add(packets, Ordering::Relaxed);
        self.received_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A datagram (or, with `packets` 0, stream bytes) handed to a local socket.
    pub fn delivered(&self, packets: u64, bytes: u64) {
        self.delivered_packets.fetch_add(packets, Ordering::Relaxed);
        self.delivered_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A datagram from the overlay, as its flow's sequence window judged it,
    /// at `now_us` (this relay's wall clock).
    pub fn arrived(&self, header: &Header, v: Verdict, now_us: u64) {
        let second_path = header.flags & FLAG_SECOND_PATH != 0;
        if v.arrival.is_first() {
            if let Some(delay) = now_us.checked_sub(header.timestamp_us) {
                self.one_way_delay.observe(delay);
            }
        }
        let add = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        if v.newly_lost > 0 {
            self.seq_lost.fetch_add(v.newly_lost, Ordering::Relaxed);
        }
        match v.arrival {
            Arrival::InOrder => {}
            Arrival::Reordered => add(&self.seq_reordered),
            Arrival::Duplicate => add(&self.seq_duplicates),
            Arrival::Late => add(&self.seq_late),
            // The sender started over: nothing was lost or late.
            Arrival::Restart => {}
        }
        if second_path && v.arrival.is_first() {
            add(&self.second_path_first);
        }
    }

    /// The arrival counters now, for the controller's report.
    pub fn quality_totals(&self) -> QualityTotals {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        QualityTotals {
            received: load(&self.delivered_packets),
            lost: load(&self.seq_lost),
            reordered: load(&self.seq_reordered),
            duplicates: load(&self.seq_duplicates),
            delays: self.one_way_delay.counts(),
        }
    }

    /// Counts a TCP session as open until the guard drops.
    pub fn open_session(&self) -> OpenSession<'_> {
        self.tcp_open.fetch_add(1, Ordering::Relaxed);
        OpenSession(self)
    }
}

/// An open TCP session of a service; closing it (dropping) uncounts it.
#[derive(Debug)]
pub struct OpenSession<'a>(&'a ServiceCounters);

impl Drop for OpenSession<'_> {
    fn drop(&mut self) {
        self.0.tcp_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counters for every service whose ingress or egress is this node, created at
/// start from the topology (so the label set is the topology's services) and
/// never resized: lookups take no lock.
#[derive(Debug, Default)]
pub struct ServiceMetrics {
    /// Sorted by service key.
    by_key: Vec<(u32, String, Arc<ServiceCounters>)>,
}

impl ServiceMetrics {
    pub fn new(topology: &Topology, me: NodeIdx) -> Self {
        ServiceMetrics::default().rebuilt(topology, me)
    }

    /// The counters for a reloaded topology: services that stay keep theirs (so
    /// counters never go backwards), new ones start at zero, removed ones go.
    pub fn rebuilt(&self, topology: &Topology, me: NodeIdx) -> Self {
        let mut by_key: Vec<(u32, String, Arc<ServiceCounters>)> = topology
            .services
            .iter()
            .filter(|s| s.ingress_node == me || s.egress_node == me)
            .map(|s| {
                let counters = self.get(s.key).unwrap_or_default();
                (s.key, s.name.clone(), counters)
            })
            .collect();
        by_key.sort_by_key(|(key, _, _)| *key);
        ServiceMetrics { by_key }
    }

    /// The counters of the service with wire key `key`, if it ends at this node.
    pub fn get(&self, key: u32) -> Option<Arc<ServiceCounters>> {
        self.by_key
            .binary_search_by_key(&key, |(k, _, _)| *k)
            .ok()
            .map(|i| self.by_key[i].2.clone())
    }

    /// (key, name, counters) of every service, by key.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &str, &ServiceCounters)> {
        self.by_key.iter().map(|(k, n, c)| (*k, n.as_str(), &**c))
    }
}

/// A service's one-way delay histogram, seconds, in the buckets of
/// `control_protocol::DELAY_BUCKETS_MS`: served in `/metrics` and summed
/// into the controller's reports.
#[derive(Debug, Clone)]
pub struct DelayHistogram(pub AtomicHistogram);

impl Default for DelayHistogram {
    fn default() -> Self {
        DelayHistogram(AtomicHistogram::new(DELAY_BUCKETS_MS.map(|ms| ms / 1000.0)))
    }
}

impl DelayHistogram {
    pub fn observe(&self, delay_us: u64) {
        self.0.observe(delay_us as f64 / 1e6);
    }

    fn counts(&self) -> [u64; DELAY_BUCKETS_MS.len() + 1] {
        let counts = self.0.counts();
        std::array::from_fn(|i| counts.get(i).copied().unwrap_or(0))
    }
}

/// A service's arrival counters at one moment, to report what changed since.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QualityTotals {
    pub received: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicates: u64,
    pub delays: [u64; DELAY_BUCKETS_MS.len() + 1],
}

impl QualityTotals {
    /// What grew from `earlier` to `self`, as a report of `service`; `None`
    /// when nothing arrived or was lost in between.
    pub fn report_since(&self, earlier: &QualityTotals, service: &str) -> Option<ServiceReport> {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        let report = ServiceReport {
            service: service.to_string(),
            received: d(self.received, earlier.received),
            lost: d(self.lost, earlier.lost),
            reordered: d(self.reordered, earlier.reordered),
            duplicates: d(self.duplicates, earlier.duplicates),
            delay_buckets: self
                .delays
                .iter()
                .zip(&earlier.delays)
                .map(|(n, t)| d(*n, *t))
                .collect(),
        };
        (report.received + report.lost > 0).then_some(report)
    }
}

// ---------------------------------------------------------------- links

/// What each link carries away from this relay (or what goes to each
/// destination), Mbit/s, by node key: an exponentially weighted mean of the
/// rate between successive readings of a byte total (the reports to the
/// controller, about every second), weight 0.5 on the newest.
#[derive(Debug, Default)]
pub struct LinkRates {
    by_peer: Mutex<HashMap<u32, Rate>>,
}

#[derive(Debug, Clone, Copy)]
struct Rate {
    at: std::time::Instant,
    bytes: u64,
    mbps: Option<f64>,
}

impl LinkRates {
    /// Takes in `tx_bytes` (the link's total sent so far) at `now`; returns the
    /// smoothed rate, once two readings are at least 100 ms apart.
    pub fn update(&self, peer: u32, tx_bytes: u64, now: std::time::Instant) -> Option<f64> {
        let mut m = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        let r = m.entry(peer).or_insert(Rate {
            at: now,
            bytes: tx_bytes,
            mbps: None,
        });
        let dt = now.saturating_duration_since(r.at).as_secs_f64();
        if dt >= 0.1 {
            let sample = tx_bytes.saturating_sub(r.bytes) as f64 * 8.0 / dt / 1e6;
            r.mbps = Some(r.mbps.map_or(sample, |m| 0.5 * m + 0.5 * sample));
            (r.at, r.bytes) = (now, tx_bytes);
        }
        r.mbps
    }

    /// The last smoothed rate toward `peer`.
    pub fn of(&self, peer: u32) -> Option<f64> {
        let m = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&peer).and_then(|r| r.mbps)
    }
}

/// How often each link changed state, per neighbour key: (ups, downs). A
/// flap shorter than a scrape still moves both.
#[derive(Debug, Default)]
pub struct LinkTransitions {
    by_peer: Mutex<HashMap<u32, (u64, u64)>>,
}

impl LinkTransitions {
    pub fn went(&self, peer: u32, up: bool) {
        // A poisoned lock still holds consistent counts (one add per call).
        let mut m = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(peer).or_default();
        if up {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }

    /// (ups, downs) of the link to `peer`.
    pub fn of(&self, peer: u32) -> (u64, u64) {
        let m = self.by_peer.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&peer).copied().unwrap_or_default()
    }
}

/// Traffic on one link: UDP datagrams and their bytes each way, as QUIC sent
/// and received them (probes, acks and retransmissions included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkTraffic {
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
}

impl std::ops::Add for LinkTraffic {
    type Output = LinkTraffic;
    fn add(self, o: LinkTraffic) -> LinkTraffic {
        LinkTraffic {
            tx_packets: self.tx_packets + o.tx_packets,
            tx_bytes: self.tx_bytes + o.tx_bytes,
            rx_packets: self.rx_packets + o.rx_packets,
            rx_bytes: self.rx_bytes + o.rx_bytes,
        }
    }
}

/// A connection whose traffic can be read: quinn's, or a fake in tests.
pub trait Metered: Clone {
    /// Identifies the connection (quinn's `stable_id`).
    fn id(&self) -> usize;
    fn traffic(&self) -> LinkTraffic;
}

impl Metered for quinn::Connection {
    fn id(&self) -> usize {
        self.stable_id()
    }

    fn traffic(&self) -> LinkTraffic {
        let s = self.stats();
        LinkTraffic {
            tx_packets: s.udp_tx.datagrams,
            tx_bytes: s.udp_tx.bytes,
            rx_packets: s.udp_rx.datagrams,
            rx_bytes: s.udp_rx.bytes,
        }
    }
}

#[derive(Debug)]
struct Tally<C> {
    /// Final totals of the connections this link had before `current`.
    closed: LinkTraffic,
    /// The connection seen at the latest reading, kept so its final totals can
    /// be read once it is replaced (a closed quinn connection keeps its stats).
    current: Option<C>,
}

/// Per-link traffic totals that never go backwards although each reconnect
/// starts a QUIC connection with fresh statistics: when a reading finds a new
/// connection, the previous one's final totals are added to the link's base.
///
/// Traffic of a connection that came and went entirely between two readings is
/// not seen (an undercount, never a decrease). Readings happen at scrape time.
#[derive(Debug)]
pub struct LinkTotals<C = quinn::Connection> {
    links: Mutex<HashMap<u32, Tally<C>>>,
}

impl<C> Default for LinkTotals<C> {
    fn default() -> Self {
        LinkTotals {
            links: Mutex::new(HashMap::new()),
        }
    }
}

impl<C: Metered> LinkTotals<C> {
    /// The totals of the link to `peer`, whose connection now is `live`.
    pub fn read(&self, peer: u32, live: Option<&C>) -> LinkTraffic {
        // Each update below is a few field assignments; a poisoned lock is consistent.
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        let tally = links.entry(peer).or_insert(Tally {
            closed: LinkTraffic::default(),
            current: None,
        });
        let replaced = match (&tally.current, live) {
            (Some(old), Some(new)) => old.id() != new.id(),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if replaced {
            if let Some(old) = tally.current.take() {
                tally.closed = tally.closed + old.traffic();
            }
        }
        if let Some(new) = live {
            tally.current = Some(new.clone());
        }
        tally.closed + live.map(Metered::traffic).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_by_reason() {
        let m = Metrics::default();
        m.count_drop(DropReason::TtlExpired);
        m.count_drop(DropReason::TtlExpired);
        m.count_drop(DropReason::Malformed);
        let c = m.snapshot();
        assert_eq!(c.drop_count(DropReason::TtlExpired), 2);
        assert_eq!(c.drop_count(DropReason::Malformed), 1);
        assert_eq!(c.drop_count(DropReason::NoRoute), 0);
        assert_eq!(c.total_drops(), 3);
        assert_eq!(c.drops.len(), DropReason::ALL.len());
    }

    #[test]
    fn service_counters_exist_for_services_ending_here_only() {
        let mut yaml = String::from("version: 1\nnodes:\n");
        for (i, id) in ["aaa", "bbb", "ccc"].iter().enumerate() {
            yaml += &format!(
                "  - {{ id: {id}, city: C{i}, country: US, region: t, lat: {}, lon: -100, addr: \"127.0.0.1:{}\" }}\n",
                10 + i,
                1 + i
            );
        }
        yaml += "links:\n  - { between: [aaa, bbb], kind: terrestrial }\n  - { between: [bbb, ccc], kind: terrestrial }\nservices:\n";
        for (name, proto, ingress, egress) in [
            ("ab", "udp", "aaa", "bbb"),
            ("cb", "tcp", "ccc", "bbb"),
            ("ac", "udp", "aaa", "ccc"),
        ] {
            yaml += &format!(
                "  - name: {name}\n    protocol: {proto}\n    ingress: {{ node: {ingress}, listen: \"127.0.0.1:0\" }}\n    egress: {{ node: {egress}, target: \"127.0.0.1:9\" }}\n"
            );
        }
        let topo = topology::parse("t.yaml", &yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let at = |id: &str| topo.node_idx(id).expect("node");
        let names = |m: &ServiceMetrics| {
            let mut n: Vec<String> = m.iter().map(|(_, n, _)| n.to_string()).collect();
            n.sort();
            n
        };
        assert_eq!(names(&ServiceMetrics::new(&topo, at("aaa"))), ["ab", "ac"]);
        assert_eq!(names(&ServiceMetrics::new(&topo, at("bbb"))), ["ab", "cb"]);
        let m = ServiceMetrics::new(&topo, at("bbb"));
        let key = topology::wire_key("cb");
        let c = m.get(key).expect("cb ends at bbb");
        assert!(
            m.get(topology::wire_key("ac")).is_none(),
            "ac only transits"
        );
        c.received(1, 100);
        c.received(0, 50);
        c.delivered(2, 10);
        {
            let _a = c.open_session();
            let _b = c.open_session();
            assert_eq!(c.tcp_open.load(Ordering::Relaxed), 2);
        }
        assert_eq!(c.tcp_open.load(Ordering::Relaxed), 0);
        assert_eq!(c.received_packets.load(Ordering::Relaxed), 1);
        assert_eq!(c.received_bytes.load(Ordering::Relaxed), 150);
        assert_eq!(c.delivered_packets.load(Ordering::Relaxed), 2);
        assert_eq!(c.delivered_bytes.load(Ordering::Relaxed), 10);
    }

    /// A connection whose totals the test sets.
    #[derive(Debug, Clone)]
    struct Fake(usize, std::sync::Arc<Mutex<LinkTraffic>>);

    impl Fake {
        fn new(id: usize) -> Fake {
            Fake(id, Default::default())
        }
        fn set(&self, tx: u64, rx: u64) {
            *self.1.lock().expect("lock") = LinkTraffic {
                tx_packets: tx,
                tx_bytes: tx * 100,
                rx_packets: rx,
                rx_bytes: rx * 100,
            };
        }
    }

    impl Metered for Fake {
        fn id(&self) -> usize {
            self.0
        }
        fn traffic(&self) -> LinkTraffic {
            *self.1.lock().expect("lock")
        }
    }

    #[test]
    fn link_totals_never_go_backwards_across_reconnects() {
        let totals: LinkTotals<Fake> = LinkTotals::default();
        assert_eq!(totals.read(7, None), LinkTraffic::default());
        let first = Fake::new(1);
        first.set(10, 5);
        assert_eq!(totals.read(7, Some(&first)).tx_packets, 10);
        // Traffic after the last reading still counts: the final totals are read
        // from the closed connection when the link is next seen.
        first.set(12, 6);
        let down = totals.read(7, None);
        assert_eq!((down.tx_packets, down.rx_packets), (12, 6));
        let second = Fake::new(2);
        second.set(3, 1);
        let up = totals.read(7, Some(&second));
        assert_eq!((up.tx_packets, up.rx_bytes), (15, 700));
        // A replacement seen without a gap in between.
        second.set(4, 2);
        let third = Fake::new(3);
        third.set(1, 0);
        let t = totals.read(7, Some(&third));
        assert_eq!((t.tx_packets, t.rx_packets, t.tx_bytes), (17, 8, 1700));
        // Other links are separate.
        assert_eq!(totals.read(8, Some(&Fake::new(9))), LinkTraffic::default());
        assert_eq!(totals.read(7, Some(&third)), t);
    }
}
