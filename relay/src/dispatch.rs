//! The datagram forwarding path: decode, decide, then forward to a peer or
//! deliver to a local service. Never awaits: a packet that cannot go on at once
//! is dropped and counted.

use bytes::Bytes;

use crate::fwd::{Decision, DropReason};
use crate::metrics::Metrics;
use crate::node::Shared;
use crate::udp;
use crate::wire::{Header, Kind};

/// Handles one datagram received from a peer link.
pub fn on_datagram(shared: &std::sync::Arc<Shared>, packet: Bytes) {
    Metrics::add(&shared.metrics.datagrams_received, 1);
    let (header, payload) = match Header::decode(&packet) {
        Ok(decoded) => decoded,
        Err(_) => return shared.metrics.drop(DropReason::Malformed),
    };
    match header.kind {
        Kind::Media => {}
        // Probes belong to link monitoring; they are never forwarded.
        Kind::Probe | Kind::ProbeReply => return,
        Kind::StreamOpen => return shared.metrics.drop(DropReason::Malformed),
    }
    let table = shared.table();
    match shared.decide_with(|up| table.decide(&header, up)) {
        (Decision::Deliver, _) if header.is_reply() => udp::deliver_reply(shared, &header, payload),
        (Decision::Deliver, _) => udp::deliver_to_target(shared, &header, payload),
        (
            Decision::Forward {
                ttl, via_backup, ..
            },
            Some(conn),
        ) => {
            let mut out = packet.to_vec();
            Header::set_ttl_in_place(&mut out, ttl);
            shared.send_on(&conn, Bytes::from(out), via_backup);
        }
        (Decision::Forward { .. }, None) => shared.metrics.drop(DropReason::PeerDown),
        (Decision::Drop(reason), _) => shared.metrics.drop(reason),
    }
}
