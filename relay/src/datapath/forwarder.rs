//! The forwarding path's shared part: the routes in force (table and version
//! swapped as one value), the live links and the counters. Link actors hand it
//! each datagram from a peer; the UDP ingress and the egress flows hand it each
//! datagram they originate. It decides through `relay_core` and sends to the
//! chosen neighbour without waiting: a packet that cannot go on at once is
//! dropped and counted. Deliveries to local sockets are handed back to the
//! caller, which owns those sockets.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use quinn::Connection;
use relay_core::datagram::{self, Action, Via};
use relay_core::routes::reroutes;
use relay_core::segment::{self, Segment};
use relay_core::wire::{FLAG_PROTECTED, FLAG_SECOND_PATH, HEADER_LEN};
use relay_core::{Decision, DropReason, Header, RoutesInForce};

use crate::datapath::link_registry::{Link, LinkRegistry};
use crate::datapath::send_queue::SEND_BUFFER;
use crate::metrics::Metrics;

/// What became of a datagram from a peer link, for its link actor.
#[derive(Debug)]
pub enum Inbound {
    /// Forwarded to a neighbour, or dropped and counted: nothing left to do.
    Handled,
    /// The neighbour probes the link: echo this sequence number.
    Probe(u32),
    /// The neighbour answered our probe with this sequence number.
    ProbeReply(u32),
    /// For the service's target: the payload goes out of the flow's socket.
    ToTarget(Header, Bytes),
    /// A reply for a client of a service whose ingress is here.
    ToClient(Header, Bytes),
}

#[derive(Debug)]
pub struct Forwarder {
    /// This node's wire key.
    pub me: u32,
    routes: ArcSwap<RoutesInForce>,
    links: Arc<LinkRegistry>,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    pub fn new(
        me: u32,
        routes: RoutesInForce,
        links: Arc<LinkRegistry>,
        metrics: Arc<Metrics>,
    ) -> Forwarder {
        Forwarder {
            me,
            routes: ArcSwap::from_pointee(routes),
            links,
            metrics,
        }
    }

    /// The routes in force (a cheap clone of an `Arc`).
    pub fn routes(&self) -> Arc<RoutesInForce> {
        self.routes.load_full()
    }

    /// Puts `new` in force at once: packets see the old routes or the new, never
    /// a mix, and never a table with another's version. Destinations whose
    /// primary next hop moved are counted as reroutes.
    pub fn install(&self, new: RoutesInForce) {
        self.install_with(|_| Some(new.clone()));
    }

    /// Puts `change(current)` in force if it gives a value, as one atomic step:
    /// a table installed meanwhile is never overwritten by a value computed
    /// from the one before it (`change` may run again on the newer one).
    /// Returns the routes replaced and the routes now in force, if it changed.
    pub fn install_with(
        &self,
        mut change: impl FnMut(&RoutesInForce) -> Option<RoutesInForce>,
    ) -> Option<(Arc<RoutesInForce>, Arc<RoutesInForce>)> {
        let mut installed = None;
        let old = self.routes.rcu(|current| match change(current) {
            Some(new) => {
                let new = Arc::new(new);
                installed = Some(new.clone());
                new
            }
            None => {
                installed = None;
                Arc::clone(current)
            }
        });
        let new = installed?;
        Metrics::add(&self.metrics.reroutes, reroutes(&old.table, &new.table));
        Some((old, new))
    }

    /// Decides a datagram from a peer link and carries out what is not a local
    /// delivery or a probe.
    pub fn on_datagram(&self, packet: Bytes) -> Inbound {
        let routes = self.routes.load();
        let links = self.links.current();
        let mut picked: Option<&Link> = None;
        let received = datagram::decide(&routes.table, &packet, |peer| {
            match links.get(&peer).filter(|l| l.is_usable()) {
                Some(l) => {
                    picked = Some(l);
                    true
                }
                None => false,
            }
        });
        let action = received.action;
        if let Action::AnswerProbe { seq } = action {
            return Inbound::Probe(seq);
        }
        if let Action::ProbeAnswered { seq } = action {
            return Inbound::ProbeReply(seq);
        }
        Metrics::add(&self.metrics.datagrams_received, 1);
        let Some(header) = received.header else {
            self.metrics.count_drop(DropReason::Malformed);
            return Inbound::Handled;
        };
        let payload = || packet.slice(received.payload_at..);
        match action {
            Action::Forward { ttl, via, .. } if received.off_segment => match picked {
                Some(link) => {
                    Metrics::add(&self.metrics.left_placed_path, 1);
                    let out = segment::strip(&packet, received.payload_at, ttl);
                    self.send_on(link, Bytes::from(out), via == Via::Backup);
                }
                None => self.metrics.count_drop(DropReason::PeerDown),
            },
            Action::Forward { ttl, via, .. } => match picked {
                Some(link) => {
                    let out = rewritten(packet.clone(), |p| {
                        Header::set_ttl_in_place(p, ttl);
                        if via == Via::Segment {
                            segment::advance_in_place(p);
                        }
                    });
                    self.send_on(link, out, via == Via::Backup);
                }
                None => self.metrics.count_drop(DropReason::PeerDown),
            },
            Action::Repair { segment, ttl } => match picked {
                Some(link) => self.repair(link, &packet, received.payload_at, &segment, ttl),
                None => self.metrics.count_drop(DropReason::PeerDown),
            },
            Action::DeliverToTarget => return Inbound::ToTarget(header, payload()),
            Action::DeliverReply => return Inbound::ToClient(header, payload()),
            Action::Drop(reason) => self.metrics.count_drop(reason),
            Action::AnswerProbe { .. } | Action::ProbeAnswered { .. } => {}
        }
        Inbound::Handled
    }

    /// Sends `packet` (payload from `payload_at`) around a dead next hop along
    /// `segment`, marked repaired, to the segment's first node over `link`.
    fn repair(&self, link: &Link, packet: &[u8], payload_at: usize, seg: &Segment, ttl: u8) {
        let out = segment::insert(packet, payload_at, seg, ttl);
        Metrics::add(&self.metrics.sent_via_repair, 1);
        self.send_on(link, Bytes::from(out), false);
    }

    /// Picks the next hop toward `dst` for a datagram this node originates: the
    /// decision, and the link to the neighbour it names.
    pub fn next_hop(&self, dst: u32, ttl: u8) -> (Decision, Option<Link>) {
        self.pick(dst, ttl, false)
    }

    /// The next hop for a stream: streams carry no repair segment, so around a
    /// dead primary they take the loop-free backup, or nothing.
    pub fn next_hop_for_stream(&self, dst: u32, ttl: u8) -> (Decision, Option<Connection>) {
        let (decision, link) = self.pick(dst, ttl, true);
        (decision, link.map(|l| l.conn))
    }

    fn pick(&self, dst: u32, ttl: u8, no_repair: bool) -> (Decision, Option<Link>) {
        let routes = self.routes.load();
        let links = self.links.current();
        let mut picked = None;
        let table = &routes.table;
        let up = |peer: u32| match links.get(&peer).filter(|l| l.is_usable()) {
            Some(l) => {
                picked = Some(l.clone());
                true
            }
            None => false,
        };
        let decision = if no_repair {
            table.next_hop_without_repair(dst, ttl, up)
        } else {
            table.next_hop(dst, ttl, up)
        };
        (decision, picked)
    }

    /// Sends a packet this node originates (UDP ingress, egress replies):
    /// along its flow's placed path when the controller split the traffic to
    /// its destination and that path's first link is up, else by the table.
    pub fn originate(&self, header: Header, payload: &[u8]) {
        let routes = self.routes.load();
        if let Some(placed) = routes
            .table
            .route(header.dst)
            .and_then(|r| r.placed.as_ref())
        {
            let path = placed.pick(header.src, header.service, header.flow);
            let links = self.links.current();
            if let Some(link) = links.get(&path.first()).filter(|l| l.is_usable()) {
                let plain = header.encode_with(payload);
                let ttl = header.ttl.saturating_sub(1);
                let out = segment::insert_placed(&plain, HEADER_LEN, path, ttl);
                Metrics::add(&self.metrics.sent_on_placed_path, 1);
                return self.send_on(link, Bytes::from(out), false);
            }
        }
        self.originate_by_table(header, payload)
    }

    /// Sends a packet this node originates by the table alone.
    fn originate_by_table(&self, mut header: Header, payload: &[u8]) {
        match self.next_hop(header.dst, header.ttl) {
            (
                Decision::Forward {
                    ttl, via_backup, ..
                },
                Some(link),
            ) => {
                header.ttl = ttl;
                self.send_on(&link, Bytes::from(header.encode_with(payload)), via_backup);
            }
            (Decision::Repair { segment, ttl }, Some(link)) => {
                let plain = header.encode_with(payload);
                self.repair(&link, &plain, HEADER_LEN, &segment, ttl);
            }
            (Decision::Drop(reason), _) => self.metrics.count_drop(reason),
            (Decision::Forward { .. } | Decision::Repair { .. }, None) => {
                self.metrics.count_drop(DropReason::PeerDown)
            }
            (Decision::Deliver, _) => self.metrics.count_drop(DropReason::NoRoute),
        }
    }

    /// Sends a protected service's datagram twice: along the routes in force,
    /// and along the route's second path (disjoint from the first), both
    /// marked protected so that the far end keeps the first copy. Returns
    /// whether the second copy went: not without a second path, or when its
    /// first link is down. The first copy keeps to the table even where the
    /// controller placed paths: the second path is disjoint from the table's.
    pub fn originate_protected(&self, mut header: Header, payload: &[u8]) -> bool {
        header.flags |= FLAG_PROTECTED;
        self.originate_by_table(header, payload);
        let routes = self.routes.load();
        let Some(second) = routes.table.route(header.dst).and_then(|r| r.second) else {
            return false;
        };
        let links = self.links.current();
        let Some(link) = links.get(&second.first()).filter(|l| l.is_usable()) else {
            return false;
        };
        header.flags |= FLAG_SECOND_PATH;
        let plain = header.encode_with(payload);
        let copy = segment::insert(&plain, HEADER_LEN, &second, header.ttl.saturating_sub(1));
        self.send_on(link, Bytes::from(copy), false);
        true
    }

    /// Hands an encoded packet to a neighbour's link without waiting: quinn
    /// queues it, or it is dropped and counted here. Media never fills quinn's
    /// send queue beyond the link's bound (see [`crate::datapath::send_queue`]):
    /// probes always find room, and quinn never has to drop a queued datagram
    /// on its own (which nobody would count).
    pub fn send_on(&self, link: &Link, packet: Bytes, via_backup: bool) {
        let conn = &link.conn;
        if conn
            .max_datagram_size()
            .is_none_or(|max| packet.len() > max)
        {
            return self.metrics.count_drop(DropReason::TooBig);
        }
        let queued = SEND_BUFFER.saturating_sub(conn.datagram_send_buffer_space());
        if queued + packet.len() > link.health.media_queue_limit() {
            return self.metrics.count_drop(DropReason::Overload);
        }
        let len = packet.len() as u64;
        match conn.send_datagram(packet) {
            Ok(()) => {
                Metrics::add(&self.metrics.datagrams_sent, 1);
                Metrics::add(&self.metrics.bytes_sent, len);
                if via_backup {
                    Metrics::add(&self.metrics.sent_via_backup, 1);
                }
            }
            Err(quinn::SendDatagramError::TooLarge) => self.metrics.count_drop(DropReason::TooBig),
            Err(quinn::SendDatagramError::ConnectionLost(_)) => {
                self.metrics.count_drop(DropReason::PeerDown)
            }
            Err(_) => self.metrics.count_drop(DropReason::SendFailed),
        }
    }
}

/// `packet` with `edit` applied to its bytes: in place when this is the only
/// reference to the buffer (the usual case for a datagram just read from
/// quinn), else on a copy.
pub fn rewritten(packet: Bytes, edit: impl FnOnce(&mut [u8])) -> Bytes {
    let mut owned = match packet.try_into_mut() {
        Ok(owned) => owned,
        Err(shared) => BytesMut::from(&shared[..]),
    };
    edit(&mut owned);
    owned.freeze()
}

/// `packet` with its TTL byte set to `ttl` (see [`rewritten`]).
pub fn with_ttl(packet: Bytes, ttl: u8) -> Bytes {
    rewritten(packet, |p| Header::set_ttl_in_place(p, ttl))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use relay_core::wire::{Kind, INITIAL_TTL};
    use relay_core::{ForwardingTable, Route};

    fn table(primary: u32) -> ForwardingTable {
        let mut routes = BTreeMap::new();
        routes.insert(
            7,
            Route {
                primary,
                backup: None,
                repair: None,
                second: None,
                placed: None,
            },
        );
        ForwardingTable::new(1, routes)
    }

    /// The defect: a reload checked "version is 0" and then overwrote the
    /// table, so a controller table arriving in between was lost (and the
    /// controller's later diffs applied to the wrong base). Here the
    /// controller's table lands exactly between the reload's check and its
    /// write: the write must see it and leave it alone.
    #[tokio::test]
    async fn a_controller_table_installed_during_a_reload_is_kept() {
        let tasks = daemon::Supervisor::new(tokio_util::sync::CancellationToken::new());
        let links = Arc::new(LinkRegistry::new("aaa", tasks.spawner()));
        let fwd = Forwarder::new(
            1,
            RoutesInForce::from_topology(table(2)),
            links,
            Arc::new(Metrics::default()),
        );
        let mut calls = 0;
        let reloaded = fwd.install_with(|current| {
            calls += 1;
            if calls == 1 {
                // The controller session installs its table now.
                fwd.install(RoutesInForce {
                    version: 5,
                    term: 0,
                    table: table(3),
                });
            }
            current
                .is_topology_routes()
                .then(|| RoutesInForce::from_topology(table(4)))
        });
        assert!(reloaded.is_none(), "the reload saw the controller's table");
        assert_eq!(calls, 2, "decided again on the newer routes");
        let now = fwd.routes();
        assert_eq!(now.version, 5);
        assert_eq!(now.table.route(7).map(|r| r.primary), Some(3));
    }

    fn packet() -> Vec<u8> {
        Header {
            kind: Kind::Media,
            ttl: INITIAL_TTL,
            flags: 0,
            dst: 2,
            src: 1,
            service: 3,
            flow: 4,
            seq: 5,
            timestamp_us: 6,
        }
        .encode_with(&[7u8; 1200])
    }

    /// The defect: every forwarded datagram was copied whole to change one byte.
    #[test]
    fn a_datagram_held_once_gets_its_ttl_rewritten_without_a_copy() {
        let unique = Bytes::from(packet());
        let before = unique.as_ptr();
        let out = with_ttl(unique, 9);
        assert_eq!(out.as_ptr(), before, "rewritten in place");
        let (h, payload) = Header::decode(&out).expect("decodes");
        assert_eq!(h.ttl, 9);
        assert_eq!(payload, &[7u8; 1200][..]);

        // Another holder keeps seeing its own bytes: the rewrite copies then.
        let shared = Bytes::from(packet());
        let other = shared.clone();
        let out = with_ttl(shared, 3);
        assert_ne!(out.as_ptr(), other.as_ptr());
        assert_eq!(Header::decode(&other).expect("decodes").0.ttl, INITIAL_TTL);
        assert_eq!(Header::decode(&out).expect("decodes").0.ttl, 3);
    }
}
