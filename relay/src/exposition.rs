//! The relay's Prometheus exposition (`GET /metrics`).
//!
//! A scrape reads what the relay keeps anyway (atomic counters, link health,
//! QUIC connection statistics), so nothing on the forwarding path knows about
//! Prometheus. Labels stay bounded: `peer` (a neighbor), `service` (a service
//! ending here), `reason` (a drop reason); every series also carries `node`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use daemon::exposition::Scrape;
use topology::NodeIdx;

use crate::context::Context;
use crate::datapath::link_registry::{Link, Measured};

fn seconds(ms: f64) -> f64 {
    ms / 1000.0
}

/// Reads the relay's state into a fresh registry.
pub fn scrape(shared: &Context) -> Scrape {
    let mut s = Scrape::new("overlay_relay", &[("node", &shared.me_id)]);
    links(&mut s, shared);
    services(&mut s, shared);
    forwarding(&mut s, shared);
    handshakes(&mut s, &shared.handshakes);
    socket_drops(&mut s, shared);
    s.daemon(env!("CARGO_PKG_VERSION"), &shared.live().cfg.identity);
    s
}

fn links(s: &mut Scrape, shared: &Context) {
    let connected: HashMap<u32, Link> = shared.links.snapshot().into_iter().collect();
    let open = |key: &u32| {
        connected
            .get(key)
            .filter(|l| l.conn.close_reason().is_none())
    };
    let live = shared.live();
    let neighbors = &live.neighbors;
    s.gauges(
        "link_up",
        "1 if the link to this neighbor carries traffic (connected and its probes pass), else 0",
        "peer",
        neighbors.iter().map(|(key, id)| {
            let up = open(key).is_some_and(|l| l.health.is_up());
            (id.clone(), if up { 1.0 } else { 0.0 })
        }),
    );
    let transitions: Vec<(String, (u64, u64))> = neighbors
        .iter()
        .map(|(key, id)| (id.clone(), shared.metrics.link_transitions.of(*key)))
        .collect();
    s.counters(
        "link_ups",
        "Times the link to this neighbor came up (probes passing), so flaps shorter than a scrape show",
        "peer",
        transitions.iter().map(|(id, t)| (id.clone(), t.0)),
    );
    s.counters(
        "link_downs",
        "Times the link to this neighbor went down (probes lost, or its connection closed)",
        "peer",
        transitions.iter().map(|(id, t)| (id.clone(), t.1)),
    );
    s.gauges(
        "link_transmit_mbps",
        "What this relay sends on the link, Mbit/s, smoothed over the reports to the controller (about 1 s); absent before two readings",
        "peer",
        neighbors.iter().filter_map(|(key, id)| {
            shared
                .metrics
                .link_rates
                .of(*key)
                .map(|r| (id.clone(), r))
        }),
    );
    let t = &live.cfg.topology;
    s.gauges(
        "demand_mbps",
        "What this relay sends into the overlay toward each destination relay that the controller places (unprotected UDP services, with the overlay's per-packet overhead), Mbit/s, smoothed like link_transmit_mbps",
        "dst",
        t.nodes.iter().enumerate().filter_map(|(i, n)| {
            let key = t.node_key(NodeIdx(i as u32));
            shared.metrics.demand_rates.of(key).map(|r| (n.id.clone(), r))
        }),
    );
    let measured: Vec<(String, Measured)> = neighbors
        .iter()
        .filter_map(|(key, id)| open(key).map(|l| (id.clone(), l.health.measured())))
        .collect();
    let figure = |pick: fn(&Measured) -> Option<f64>| {
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
    s.gauges(
        "link_congestion_window_bytes",
        "Bytes QUIC's congestion control lets the link have in flight now (connected links only); media beyond what this drains in 10 ms is dropped as overload",
        "peer",
        neighbors.iter().filter_map(|(key, id)| {
            open(key).map(|l| (id.clone(), l.conn.stats().path.cwnd as f64))
        }),
    );
    let traffic: Vec<(String, crate::metrics::LinkTraffic)> = neighbors
        .iter()
        .map(|(key, id)| {
            let conn = connected.get(key).map(|l| &l.conn);
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

fn services(s: &mut Scrape, shared: &Context) {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let live = shared.live();
    let services = &live.services;
    s.gauges(
        "service_flows",
        "Flows of the service open at this relay: UDP flows at its ingress or egress, and open TCP sessions",
        "service",
        services.iter().map(|(key, name, c)| {
            let udp_in = live.udp_ingress.get(&key).map_or(0, |i| i.flow_count());
            let udp_out = shared.egress.flow_count_of(key);
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
    s.histograms(
        "service_one_way_delay_seconds",
        "One-way delay of the service's datagrams from the sender's relay to this end (first copies), by the sender's timestamp: needs synchronised clocks",
        "service",
        services
            .iter()
            .map(|(_, name, c)| (name.to_string(), c.one_way_delay.0.clone())),
    );
    s.counters(
        "service_lost_packets",
        "UDP datagrams of the service that did not reach this end through the overlay, from sequence numbers: still missing once 64 higher numbers arrived, or when the flow ended (a protected service: both copies)",
        "service",
        each(|c| &c.seq_lost),
    );
    s.counters(
        "service_reordered_packets",
        "UDP datagrams of the service that reached this end after a higher sequence number",
        "service",
        each(|c| &c.seq_reordered),
    );
    s.counters(
        "service_duplicate_packets",
        "UDP datagrams of the service whose sequence number had already arrived here: for a protected service the second copy, dropped",
        "service",
        each(|c| &c.seq_duplicates),
    );
    s.counters(
        "service_late_packets",
        "UDP datagrams of the service that came after they were counted lost (64 or more numbers late), delivered all the same",
        "service",
        each(|c| &c.seq_late),
    );
    s.counters(
        "service_second_path_first_packets",
        "Datagrams of a protected service whose first copy to arrive here came by the second path",
        "service",
        each(|c| &c.second_path_first),
    );
    s.counters(
        "service_single_path_packets",
        "Datagrams of a protected service sent from here on one path only (no second path, or its first link down)",
        "service",
        each(|c| &c.single_path_sends),
    );
}

/// Incoming QUIC handshakes by outcome, as the handshake gate decided them.
pub fn handshakes(s: &mut Scrape, c: &daemon::quic::HandshakeCounters) {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    s.counters(
        "handshakes",
        "Incoming QUIC handshakes by outcome: accepted (taken on), retried (sent a Retry to prove the address), dropped (too many in progress or over the rate), failed (taken on, then failed or timed out)",
        "outcome",
        [
            ("accepted", load(&c.accepted)),
            ("retried", load(&c.retried)),
            ("dropped", load(&c.dropped)),
            ("failed", load(&c.failed)),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
}

/// The kernel's drops on the relay's UDP sockets (see [`crate::socket_drops`]).
fn socket_drops(s: &mut Scrape, shared: &Context) {
    let Some(series) = socket_drop_series(shared) else {
        return;
    };
    s.counters(
        "socket_drops",
        "Datagrams the kernel dropped on this relay's UDP sockets before the relay read them (receive buffer full: raise socket_buffer_bytes and net.core.rmem_max), by socket: quic (every peer link), ingress/<service>, egress/<service> (its flows' sockets)",
        "socket",
        series,
    );
}

/// The kernel's drops on the relay's UDP sockets by socket: `quic` (every
/// peer link), `ingress/<service>`, `egress/<service>` (the flows' sockets,
/// replies from targets). `None` where `/proc` cannot say.
pub fn socket_drop_series(shared: &Context) -> Option<Vec<(String, u64)>> {
    let drops = daemon::sock_drops::read_udp_drops()?;
    let of = |inode: Option<u64>| inode.and_then(|i| drops.get(&i)).copied().unwrap_or(0);
    let live = shared.live();
    let mut series = vec![("quic".to_string(), of(shared.quic_inode))];
    for (key, name, _) in live.services.iter() {
        if let Some(ingress) = live.udp_ingress.get(&key) {
            series.push((format!("ingress/{name}"), of(ingress.socket_inode())));
        }
    }
    let open: Vec<(u32, u64, u64)> = shared
        .egress
        .socket_inodes()
        .into_iter()
        .map(|(service, inode)| (service, inode, of(Some(inode))))
        .collect();
    let totals = shared
        .egress_drops
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .update(&open);
    for (key, name, _) in live.services.iter() {
        if let Some(n) = totals.get(&key) {
            series.push((format!("egress/{name}"), *n));
        }
    }
    Some(series)
}

fn forwarding(s: &mut Scrape, shared: &Context) {
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
        "datagrams_sent_via_repair",
        "Datagrams this relay repaired around a dead next hop (sent along a repair segment): local repair",
        c.sent_via_repair,
    );
    s.counter(
        "datagrams_sent_on_placed_path",
        "Datagrams this relay originated along a path the controller placed their flow on",
        c.sent_on_placed_path,
    );
    s.counter(
        "datagrams_left_placed_path",
        "Placed datagrams whose next hop on their path was down here: sent on by the table (and repaired if need be)",
        c.left_placed_path,
    );
    s.counter(
        "tcp_sessions",
        "TCP sessions accepted at a service ingress here",
        c.tcp_sessions,
    );
    s.counter(
        "tcp_sessions_idle_closed",
        "TCP sessions closed at their ingress because no byte moved either way for the idle timeout",
        c.tcp_idle_closed,
    );
    s.counter(
        "tcp_sessions_resumed",
        "Times a TCP session ending here (ingress or egress) took a new stream after its path broke",
        c.tcp_resumed,
    );
    s.counters(
        "tcp_sessions_resume_failures",
        "TCP sessions ending here that could not resume after their path broke, by reason: timeout (no path within tcp_resume_timeout_ms), unknown_session (the egress no longer held it), unreachable (no route to the far end)",
        "reason",
        c.tcp_resume_failures.iter().map(|(r, n)| (r.to_string(), *n)),
    );
    s.counter(
        "tcp_sessions_retransmitted_bytes",
        "TCP session bytes sent again over a new path because the old one broke before the far end acknowledged them",
        c.tcp_retransmitted_bytes,
    );
    s.counter(
        "streams_relayed",
        "Overlay streams taken from peers (transit or egress)",
        c.streams_relayed,
    );
    s.counter(
        "peers_refused",
        "Peer connections refused: a certificate this relay refused or that refused this relay's, a fleet node that is not a neighbor, a protocol error",
        c.peers_refused,
    );
    s.counter(
        "peer_handshakes_abandoned",
        "Incoming peer handshakes that ended without a refusal: the peer closed the connection (the duplicate-dial race when both ends dial at once, e.g. at a restart; a shutdown), reset it, or the handshake timed out",
        c.peer_handshakes_abandoned,
    );
    s.counter(
        "reroutes",
        "Destinations whose primary next hop changed when a new forwarding table was installed",
        c.reroutes,
    );
    let routes = shared.forwarder.routes();
    s.gauge(
        "table_version",
        "Version of the forwarding table in force: 0 for the topology's own, else the controller's",
        routes.version as f64,
    );
    s.gauge(
        "table_term",
        "Term of the controller leader whose table is in force: the highest accepted (0: none, or a single controller)",
        routes.term as f64,
    );
    s.counters(
        "tables_refused",
        "Controller tables refused by fencing: stale_term (an old leader's table, below the term in force) or diff_of_new_term",
        "reason",
        c.tables_refused.iter().map(|(r, n)| (r.to_string(), *n)),
    );
    s.gauge(
        "draining",
        "1 while the relay drains before it stops (routes move off it, no new flows), else 0",
        if shared.admission.is_draining() {
            1.0
        } else {
            0.0
        },
    );
}
