//! The relay's Prometheus exposition (`GET /metrics`), and the small toolkit the
//! controller's exposition shares: a registry built at each scrape, encoded in
//! Prometheus' classic text format.
//!
//! A scrape reads what the relay keeps anyway (atomic counters, link health,
//! QUIC connection statistics), so nothing on the forwarding path knows about
//! Prometheus. Labels stay bounded: `peer` (a neighbor), `service` (a service
//! ending here), `reason` (a drop reason); every series also carries `node`.
//!
//! Why the classic format: `prometheus-client` encodes OpenMetrics, where a
//! counter's `# HELP`/`# TYPE` name lacks the `_total` its samples carry.
//! Prometheus reads either, but `promtool check metrics` and other classic
//! parsers take the OpenMetrics form for a sample without metadata. So the
//! OpenMetrics text is rewritten into the classic form ([`to_classic`]) and served as
//! `text/plain; version=0.0.4`, which every Prometheus accepts.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use crate::http::Response;
use crate::node::Shared;
use crate::peers::Link;

/// The content type of Prometheus' classic text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One label's key and value, e.g. `("peer", "sha")`.
type Label = [(&'static str, String); 1];

/// A registry filled at scrape time from values read then.
#[derive(Debug)]
pub struct Scrape {
    registry: Registry,
}

impl Scrape {
    /// Metric names start with `prefix` (e.g. `overlay_relay`); every series
    /// carries the `labels` (e.g. the node's id).
    pub fn new(prefix: &str, labels: &[(&'static str, &str)]) -> Scrape {
        let labels = labels
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), Cow::Owned(v.to_string())));
        Scrape {
            registry: Registry::with_prefix_and_labels(prefix, labels),
        }
    }

    /// A counter; `name` without `_total` (the encoding adds it).
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        let c: Counter = Counter::default();
        c.inc_by(value);
        self.registry.register(name, help, c);
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        let g: Gauge<f64, AtomicU64> = Gauge::default();
        g.set(value);
        self.registry.register(name, help, g);
    }

    /// A counter per value of one label.
    pub fn counters(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl IntoIterator<Item = (String, u64)>,
    ) {
        let family: Family<Label, Counter> = Family::default();
        for (v, n) in values {
            family.get_or_create(&[(label, v)]).inc_by(n);
        }
        self.registry.register(name, help, family);
    }

    /// A gauge per value of one label; a label value may be absent (not measured).
    pub fn gauges(
        &mut self,
        name: &str,
        help: &str,
        label: &'static str,
        values: impl IntoIterator<Item = (String, f64)>,
    ) {
        let family: Family<Label, Gauge<f64, AtomicU64>> = Family::default();
        for (v, x) in values {
            family.get_or_create(&[(label, v)]).set(x);
        }
        self.registry.register(name, help, family);
    }

    /// Any other metric (e.g. a histogram kept between scrapes).
    pub fn metric(&mut self, name: &str, help: &str, metric: impl Metric) {
        self.registry.register(name, help, metric);
    }

    /// The exposition in the classic text format.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut open = String::new();
        encode(&mut open, &self.registry)?;
        Ok(to_classic(&open))
    }

    /// The HTTP response for `GET /metrics`.
    pub fn response(&self) -> Response {
        match self.encode() {
            Ok(body) => Response::with_content_type(200, CONTENT_TYPE, body),
            Err(e) => Response::error(500, &format!("cannot encode metrics: {e}")),
        }
    }
}

/// Rewrites `prometheus-client`'s OpenMetrics text into the classic format:
/// a counter's `# HELP`/`# TYPE` lines name it with `_total` like its samples,
/// `unknown` becomes `untyped`, and `# UNIT` and `# EOF` go. Samples of
/// counters, gauges and histograms read the same in both formats.
pub fn to_classic(open: &str) -> String {
    let mut out = String::with_capacity(open.len());
    // A family's HELP comes before its TYPE, which says whether to rename it.
    let mut help: Option<(&str, &str)> = None;
    for line in open.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, help.take());
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|r| r.split_once(' ')) {
            let (name, kind) = match kind {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), kind),
                "unknown" => (name.to_string(), "untyped"),
                _ => (name.to_string(), kind),
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        flush_help(&mut out, help.take());
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    flush_help(&mut out, help);
    out
}

fn flush_help(out: &mut String, help: Option<(&str, &str)>) {
    if let Some((name, text)) = help {
        out.push_str(&format!("# HELP {name} {text}\n"));
    }
}

fn seconds(ms: f64) -> f64 {
    ms / 1000.0
}

/// The relay's `GET /metrics` response.
pub fn response(shared: &Shared) -> Response {
    scrape(shared).response()
}

/// Reads the relay's state into a fresh registry.
pub fn scrape(shared: &Shared) -> Scrape {
    let mut s = Scrape::new("overlay_relay", &[("node", shared.node_id())]);
    links(&mut s, shared);
    services(&mut s, shared);
    forwarding(&mut s, shared);
    s
}

fn links(s: &mut Scrape, shared: &Shared) {
    let live: HashMap<u32, Link> = shared.peers.snapshot().into_iter().collect();
    let open = |key: &u32| live.get(key).filter(|l| l.conn.close_reason().is_none());
    let neighbors = &shared.neighbors();
    s.gauges(
        "link_up",
        "1 if the link to this neighbor carries traffic (connected and its probes pass), else 0",
        "peer",
        neighbors.iter().map(|(key, id)| {
            let up = open(key).is_some_and(|l| l.health.is_up());
            (id.clone(), if up { 1.0 } else { 0.0 })
        }),
    );
    let measured: Vec<(String, crate::peers::Measured)> = neighbors
        .iter()
        .filter_map(|(key, id)| open(key).map(|l| (id.clone(), l.health.measured())))
        .collect();
    let figure = |pick: fn(&crate::peers::Measured) -> Option<f64>| {
        measured
            .iter()
            .filter_map(move |(id, m)| pick(m).map(|v| (id.clone(), v)))
    };
    s.gauges(
        "link_rtt_seconds",
        "Smoothed round-trip time of the link's probes (connected links only)",
        "peer",
        figure(|m| m.rtt_ms.map(seconds)),
    );
    s.gauges(
        "link_min_rtt_seconds",
        "Lowest recent round-trip time of the link's probes (connected links only)",
        "peer",
        figure(|m| m.min_rtt_ms.map(seconds)),
    );
    s.gauges(
        "link_jitter_seconds",
        "Variation of the link's probe round-trip time (connected links only)",
        "peer",
        figure(|m| m.jitter_ms.map(seconds)),
    );
    s.gauges(
        "link_loss_ratio",
        "Fraction of the link's recent probes lost, 0 to 1 (connected links only)",
        "peer",
        figure(|m| Some(m.loss)),
    );
    let traffic: Vec<(String, crate::metrics::LinkTraffic)> = neighbors
        .iter()
        .map(|(key, id)| {
            let conn = live.get(key).map(|l| &l.conn);
            (id.clone(), shared.link_totals.read(*key, conn))
        })
        .collect();
    let each = |pick: fn(&crate::metrics::LinkTraffic) -> u64| {
        traffic.iter().map(move |(id, t)| (id.clone(), pick(t)))
    };
    let note =
        "as QUIC counts them (media, streams, probes, acks), summed over the link's connections";
    s.counters(
        "link_transmit_bytes",
        &format!("Bytes of UDP datagrams sent on the link, {note}"),
        "peer",
        each(|t| t.tx_bytes),
    );
    s.counters(
        "link_receive_bytes",
        &format!("Bytes of UDP datagrams received on the link, {note}"),
        "peer",
        each(|t| t.rx_bytes),
    );
    s.counters(
        "link_transmit_packets",
        &format!("UDP datagrams sent on the link, {note}"),
        "peer",
        each(|t| t.tx_packets),
    );
    s.counters(
        "link_receive_packets",
        &format!("UDP datagrams received on the link, {note}"),
        "peer",
        each(|t| t.rx_packets),
    );
}

fn services(s: &mut Scrape, shared: &Shared) {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let services = shared.services();
    s.gauges(
        "service_flows",
        "Flows of the service open at this relay: UDP flows at its ingress or egress, and open TCP sessions",
        "service",
        services.iter().map(|(key, name, c)| {
            let udp_in = shared.udp_ingress().get(&key).map_or(0, |i| i.flow_count());
            let udp_out = shared.udp_egress.flow_count_of(key);
            let flows = udp_in as u64 + udp_out as u64 + load(&c.tcp_open);
            (name.to_string(), flows as f64)
        }),
    );
    let each = |pick: fn(&crate::metrics::ServiceCounters) -> &AtomicU64| {
        services
            .iter()
            .map(move |(_, name, c)| (name.to_string(), load(pick(c))))
    };
    s.counters(
        "service_received_bytes",
        "Bytes the service's local side handed to the overlay here (clients at its ingress, the target's replies at its egress); TCP bytes count when a session ends",
        "service",
        each(|c| &c.received_bytes),
    );
    s.counters(
        "service_delivered_bytes",
        "Bytes the overlay handed to the service's local side here (the target at its egress, clients at its ingress); TCP bytes count when a session ends",
        "service",
        each(|c| &c.delivered_bytes),
    );
    s.counters(
        "service_received_packets",
        "UDP datagrams the service's local side handed to the overlay here",
        "service",
        each(|c| &c.received_packets),
    );
    s.counters(
        "service_delivered_packets",
        "UDP datagrams the overlay handed to the service's local side here",
        "service",
        each(|c| &c.delivered_packets),
    );
}

fn forwarding(s: &mut Scrape, shared: &Shared) {
    let c = shared.metrics.snapshot();
    s.counters(
        "drops",
        "Packets and streams dropped, by reason",
        "reason",
        c.drops.iter().map(|(r, n)| (r.to_string(), *n)),
    );
    s.counter(
        "datagrams_sent",
        "Datagrams handed to a peer link, originated here or in transit",
        c.datagrams_sent,
    );
    s.counter(
        "sent_bytes",
        "Bytes of the datagrams handed to peer links, overlay header included",
        c.bytes_sent,
    );
    s.counter(
        "datagrams_received",
        "Datagrams received from peer links, probes excluded",
        c.datagrams_received,
    );
    s.counter(
        "datagrams_delivered",
        "Datagrams delivered to a local service socket (egress target or ingress client)",
        c.datagrams_delivered,
    );
    s.counter(
        "delivered_bytes",
        "Payload bytes delivered to local service sockets",
        c.bytes_delivered,
    );
    s.counter(
        "datagrams_sent_via_backup",
        "Datagrams sent to a backup next hop because the primary was down: local failover",
        c.sent_via_backup,
    );
    s.counter(
        "tcp_sessions",
        "TCP sessions accepted at a service ingress here",
        c.tcp_sessions,
    );
    s.counter(
        "streams_relayed",
        "Overlay streams taken from peers (transit or egress)",
        c.streams_relayed,
    );
    s.counter(
        "peers_refused",
        "Peer connections refused (bad certificate, not a neighbor, handshake failure)",
        c.peers_refused,
    );
    s.counter(
        "reroutes",
        "Destinations whose primary next hop changed when a new forwarding table was installed",
        c.reroutes,
    );
    s.gauge(
        "table_version",
        "Version of the forwarding table in force: 0 for the topology's own, else the controller's",
        shared.table_version.load(Ordering::Relaxed) as f64,
    );
    s.gauge(
        "draining",
        "1 while the relay drains before it stops (routes move off it, no new flows), else 0",
        if shared.is_draining() { 1.0 } else { 0.0 },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_with_total_and_drops_openmetrics_only_lines() {
        let mut s = Scrape::new("t", &[("node", "aaa")]);
        s.counter("things", "Things done", 3);
        s.gauge("level", "A level", 0.5);
        s.counters("drops", "Drops", "reason", [("ttl".to_string(), 2)]);
        let h = prometheus_client::metrics::histogram::Histogram::new([0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        s.metric("wait_seconds", "Waits", h);
        let text = s.encode().expect("encodes");
        for want in [
            "# HELP t_things_total Things done.\n# TYPE t_things_total counter\nt_things_total{node=\"aaa\"} 3\n",
            "# HELP t_level A level.\n# TYPE t_level gauge\nt_level{node=\"aaa\"} 0.5\n",
            "# TYPE t_drops_total counter\nt_drops_total{node=\"aaa\",reason=\"ttl\"} 2\n",
            "# TYPE t_wait_seconds histogram\n",
            "t_wait_seconds_bucket{node=\"aaa\",le=\"0.1\"} 1\n",
            "t_wait_seconds_bucket{node=\"aaa\",le=\"+Inf\"} 2\n",
            "t_wait_seconds_count{node=\"aaa\"} 2\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
        assert!(!text.contains("# UNIT"), "{text}");
    }

    #[test]
    fn classic_rewrite_handles_units_unknown_and_stray_help() {
        let open = "# HELP a_seconds A.\n# TYPE a_seconds counter\n# UNIT a_seconds seconds\na_seconds_total 1\n\
                    # HELP b B.\n# TYPE b unknown\nb 2\n# HELP c C.\nc 3\n# EOF\n";
        assert_eq!(
            to_classic(open),
            "# HELP a_seconds_total A.\n# TYPE a_seconds_total counter\na_seconds_total 1\n\
             # HELP b B.\n# TYPE b untyped\nb 2\n# HELP c C.\nc 3\n"
        );
    }
}
