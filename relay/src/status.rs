//! What `GET /api/v1/status` returns: the relay's links, flows, routes and
//! counters as it sees them now.

use std::collections::HashMap;
use std::net::SocketAddr;

use serde::Serialize;
use topology::NodeIdx;

use crate::context::Context;
use crate::datapath::link_registry::{Link, Measured};
use crate::metrics::Counters;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub node: String,
    /// 0: the topology's own routes; else the controller's table version.
    pub table_version: u64,
    /// The controller leader's term of the table in force (0: none yet, or a
    /// single controller); tables of a lower term are refused.
    pub table_term: u64,
    /// Draining before a stop: routes move off this relay, no new flows.
    pub draining: bool,
    pub uptime_s: f64,
    pub quic_addr: SocketAddr,
    pub peers: Vec<PeerStatus>,
    /// The largest UDP payload a service datagram may carry from here now:
    /// the least over the links up of what a QUIC datagram holds less the
    /// overlay header (about 1,380 bytes with the default 1400-byte initial
    /// MTU; path MTU discovery may raise it). A larger datagram is dropped at
    /// its ingress and counted as `too_big`. `None` while no link is up.
    pub max_udp_payload_bytes: Option<usize>,
    pub flows: FlowStatus,
    pub routes: Vec<RouteStatus>,
    pub counters: Counters,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerStatus {
    pub id: String,
    /// `up` (probes pass), `probing` (connected, probes not passing), or `down`.
    pub state: &'static str,
    /// The probes' RTT, min RTT, jitter and loss.
    pub measured: Option<Measured>,
    pub connected_for_s: Option<f64>,
    pub dialed_by: Option<String>,
    /// The largest service payload this link carries now (see
    /// [`Status::max_udp_payload_bytes`]); `None` when not connected.
    pub max_udp_payload_bytes: Option<usize>,
}

/// What a QUIC datagram of `max_datagram` bytes leaves for a service's
/// payload: the overlay header comes out of it.
pub fn udp_payload_room(max_datagram: usize) -> usize {
    max_datagram.saturating_sub(relay_core::wire::HEADER_LEN)
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct FlowStatus {
    pub udp_ingress: usize,
    pub udp_egress: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteStatus {
    pub to: String,
    pub next_hop: String,
    pub backup: Option<String>,
}

/// Whether the relay is ready to carry traffic (`GET /healthz`): it is not
/// draining, and at least one of its links is up (probes pass), so what
/// arrives at its ingresses can leave. A relay with no neighbours in the
/// topology is ready once it runs. Not ready says why, e.g. `0 of 3 links up`.
/// The controller is not required: without it the relay routes on the
/// topology's own tables.
pub fn readiness(ctx: &Context) -> Result<(), String> {
    if ctx.admission.is_draining() {
        return Err("draining".into());
    }
    let live = ctx.live();
    let total = live.neighbors.len();
    let up = live
        .neighbors
        .iter()
        .filter(|(key, _)| ctx.links.is_up(*key))
        .count();
    if total > 0 && up == 0 {
        return Err(format!("0 of {total} links up"));
    }
    Ok(())
}

/// The relay's status now; `quic_addr` is where its endpoint listens.
pub fn status(ctx: &Context, quic_addr: SocketAddr) -> Status {
    let live = ctx.live();
    let topo = &live.cfg.topology;
    let name = |key: u32| {
        topo.node_by_key(key)
            .map_or_else(|| format!("{key:#x}"), |i: NodeIdx| topo.node(i).id.clone())
    };
    let links: HashMap<u32, Link> = ctx.links.snapshot().into_iter().collect();
    let mut peers: Vec<PeerStatus> = live
        .neighbors
        .iter()
        .map(
            |(key, id)| match links.get(key).filter(|l| l.conn.close_reason().is_none()) {
                Some(l) => PeerStatus {
                    id: id.clone(),
                    // Connected is not enough: traffic uses a link once its probes pass.
                    state: if l.health.is_up() { "up" } else { "probing" },
                    measured: Some(l.health.measured()),
                    connected_for_s: Some(l.since.elapsed().as_secs_f64()),
                    dialed_by: Some(if l.dialed_by_me {
                        ctx.me_id.clone()
                    } else {
                        id.clone()
                    }),
                    max_udp_payload_bytes: l.conn.max_datagram_size().map(udp_payload_room),
                },
                None => PeerStatus {
                    id: id.clone(),
                    state: "down",
                    measured: None,
                    connected_for_s: None,
                    dialed_by: None,
                    max_udp_payload_bytes: None,
                },
            },
        )
        .collect();
    peers.sort_by(|a, b| a.id.cmp(&b.id));
    let routes_in_force = ctx.forwarder.routes();
    let mut routes: Vec<RouteStatus> = routes_in_force
        .table
        .routes()
        .map(|(dst, r)| RouteStatus {
            to: name(dst),
            next_hop: name(r.primary),
            backup: r.backup.map(name),
        })
        .collect();
    routes.sort_by(|a, b| a.to.cmp(&b.to));
    Status {
        node: ctx.me_id.clone(),
        table_version: routes_in_force.version,
        table_term: routes_in_force.term,
        draining: ctx.admission.is_draining(),
        uptime_s: ctx.started.elapsed().as_secs_f64(),
        quic_addr,
        max_udp_payload_bytes: peers
            .iter()
            .filter(|p| p.state == "up")
            .filter_map(|p| p.max_udp_payload_bytes)
            .min(),
        peers,
        flows: FlowStatus {
            udp_ingress: live.udp_ingress.values().map(|i| i.flow_count()).sum(),
            udp_egress: ctx.egress.flow_count(),
        },
        routes,
        counters: ctx.metrics.snapshot(),
    }
}
