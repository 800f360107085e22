//! The forwarding table and the next-hop decision.
//!
//! A table maps each destination node to a primary next hop, where one exists a
//! repair segment around that next hop (see `topology::repair` and
//! [`crate::segment`]), and where one exists a loop-free backup. When the
//! primary is down a datagram is repaired along the segment (the segment covers
//! every single link or node failure the graph survives); without a segment it
//! takes the backup. It is immutable once built: the relay swaps in a whole new
//! table (the topology's at start, then the controller's), so a packet is always
//! decided against one consistent table.

use std::collections::BTreeMap;

use topology::paths::{Graph, Metric, Routes};
use topology::repair::RepairTable;
use topology::{NodeIdx, Topology};

use crate::drop_reason::DropReason;
use crate::placed::Placed;
use crate::segment::{Segment, FLAG_REPAIRED};
use crate::wire::Header;

/// Next hops for one destination, as node wire keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub primary: u32,
    pub backup: Option<u32>,
    /// Where to send a datagram when the primary is down: the nodes after this
    /// one, each a neighbour of the one before.
    pub repair: Option<Segment>,
    /// For a protected service's traffic to this destination: the second
    /// path its second copy takes (see `topology::disjoint`), disjoint from
    /// the first. `None` for every other destination.
    pub second: Option<Segment>,
    /// The controller's split of traffic from this node to the destination
    /// over placed paths (see [`crate::placed`]); `None`: the table's route.
    pub placed: Option<Placed>,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The packet is for this node.
    Deliver,
    /// Send to the neighbor `next_hop` with this (already decremented) TTL.
    Forward {
        next_hop: u32,
        ttl: u8,
        via_backup: bool,
    },
    /// The primary is down: mark the datagram repaired, write `segment` into it
    /// and send it to the segment's first node (whose link is up).
    Repair {
        segment: Segment,
        ttl: u8,
    },
    Drop(DropReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingTable {
    me: u32,
    /// Keyed by destination node key; ordered so status output is stable.
    routes: BTreeMap<u32, Route>,
}

impl ForwardingTable {
    pub fn new(me: u32, routes: BTreeMap<u32, Route>) -> Self {
        ForwardingTable { me, routes }
    }

    /// Routes from the topology's expected delays, with repair segments: the
    /// table a relay starts with. Every relay computes the same routes from the
    /// same topology, which is what the segments' release nodes rely on.
    pub fn from_topology(t: &Topology, me: NodeIdx) -> Self {
        let graph = Graph::from_topology(t);
        let metric = Metric::expected_delay(t);
        let routes = Routes::compute(&graph, &metric);
        let repairs = RepairTable::compute(&graph, &metric, &routes, me).ok();
        let seconds = topology::disjoint::second_paths(
            t,
            &graph,
            &metric,
            |src| src == me,
            |at, dst| routes.get(at, dst).primary,
        );
        let segment_of = |hops: &[NodeIdx]| {
            let keys: Vec<u32> = hops.iter().map(|&n| t.node_key(n)).collect();
            Segment::new(&keys)
        };
        let mut table = BTreeMap::new();
        for d in 0..t.nodes.len() as u32 {
            let dst = NodeIdx(d);
            let e = routes.get(me, dst);
            if let Some(primary) = e.primary {
                let repair = repairs
                    .as_ref()
                    .and_then(|r| r.get(dst))
                    .and_then(|p| segment_of(p.hops()));
                let second = seconds.get(&(me, dst)).and_then(|p| segment_of(p.hops()));
                table.insert(
                    t.node_key(dst),
                    Route {
                        primary: t.node_key(primary.node),
                        backup: e.backup.map(|b| t.node_key(b.node)),
                        repair,
                        second,
                        placed: None,
                    },
                );
            }
        }
        ForwardingTable::new(t.node_key(me), table)
    }

    pub fn me(&self) -> u32 {
        self.me
    }

    pub fn route(&self, dst: u32) -> Option<&Route> {
        self.routes.get(&dst)
    }

    pub fn routes(&self) -> impl Iterator<Item = (u32, &Route)> {
        self.routes.iter().map(|(k, r)| (*k, r))
    }

    /// Decides a received packet's fate. `peer_up(key)` tells whether the link to
    /// neighbor `key` can carry traffic now; when the primary cannot, a packet
    /// not yet repaired is repaired (or takes the backup), a repaired one is
    /// dropped.
    pub fn decide(&self, h: &Header, peer_up: impl FnMut(u32) -> bool) -> Decision {
        if h.ttl == 0 {
            return Decision::Drop(DropReason::TtlExpired);
        }
        if h.dst == self.me {
            return Decision::Deliver;
        }
        self.next_hop_for(h.dst, h.ttl, h.flags & FLAG_REPAIRED != 0, peer_up)
    }

    /// Where a packet this node originates (ttl = initial) or forwards goes next.
    pub fn next_hop(&self, dst: u32, ttl: u8, peer_up: impl FnMut(u32) -> bool) -> Decision {
        self.next_hop_for(dst, ttl, false, peer_up)
    }

    /// Next hops for what cannot carry a repair segment (a stream): the primary,
    /// else the loop-free backup, else nothing.
    pub fn next_hop_without_repair(
        &self,
        dst: u32,
        ttl: u8,
        mut peer_up: impl FnMut(u32) -> bool,
    ) -> Decision {
        match self.next_hop(dst, ttl, &mut peer_up) {
            Decision::Repair { ttl, .. } => match self.routes.get(&dst).and_then(|r| r.backup) {
                Some(b) if peer_up(b) => Decision::Forward {
                    next_hop: b,
                    ttl,
                    via_backup: true,
                },
                _ => Decision::Drop(DropReason::PeerDown),
            },
            other => other,
        }
    }

    /// Next hops for a packet, `repaired` once already: such a packet takes the
    /// primary or nothing (a second failure is outside what repair covers, and
    /// a second repair could loop).
    pub fn next_hop_for(
        &self,
        dst: u32,
        ttl: u8,
        repaired: bool,
        mut peer_up: impl FnMut(u32) -> bool,
    ) -> Decision {
        let ttl = ttl.saturating_sub(1);
        if ttl == 0 {
            return Decision::Drop(DropReason::TtlExpired);
        }
        let Some(route) = self.routes.get(&dst) else {
            return Decision::Drop(DropReason::NoRoute);
        };
        if peer_up(route.primary) {
            return Decision::Forward {
                next_hop: route.primary,
                ttl,
                via_backup: false,
            };
        }
        if repaired {
            return Decision::Drop(DropReason::PeerDown);
        }
        if let Some(segment) = route.repair {
            if peer_up(segment.first()) {
                return Decision::Repair { segment, ttl };
            }
        }
        match route.backup {
            Some(b) if peer_up(b) => Decision::Forward {
                next_hop: b,
                ttl,
                via_backup: true,
            },
            _ => Decision::Drop(DropReason::PeerDown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Kind, INITIAL_TTL};

    fn header(dst: u32, ttl: u8) -> Header {
        Header {
            kind: Kind::Media,
            ttl,
            flags: 0,
            dst,
            src: 9,
            service: 1,
            flow: 1,
            seq: 0,
            timestamp_us: 0,
        }
    }

    fn table() -> ForwardingTable {
        let mut routes = BTreeMap::new();
        routes.insert(
            20,
            Route {
                primary: 2,
                backup: Some(3),
                repair: None,
                second: None,
                placed: None,
            },
        );
        routes.insert(
            30,
            Route {
                primary: 3,
                backup: None,
                repair: None,
                second: None,
                placed: None,
            },
        );
        ForwardingTable::new(1, routes)
    }

    #[test]
    fn delivers_locally_and_forwards_with_one_less_ttl() {
        let t = table();
        assert_eq!(t.decide(&header(1, 5), |_| true), Decision::Deliver);
        assert_eq!(
            t.decide(&header(20, 5), |_| true),
            Decision::Forward {
                next_hop: 2,
                ttl: 4,
                via_backup: false
            }
        );
    }

    #[test]
    fn ttl_zero_and_one_never_leave() {
        let t = table();
        assert_eq!(
            t.decide(&header(20, 0), |_| true),
            Decision::Drop(DropReason::TtlExpired)
        );
        assert_eq!(
            t.decide(&header(1, 0), |_| true),
            Decision::Drop(DropReason::TtlExpired)
        );
        assert_eq!(
            t.decide(&header(20, 1), |_| true),
            Decision::Drop(DropReason::TtlExpired)
        );
        assert_eq!(t.decide(&header(1, 1), |_| true), Decision::Deliver);
    }

    #[test]
    fn unknown_destination_is_no_route() {
        assert_eq!(
            table().decide(&header(99, INITIAL_TTL), |_| true),
            Decision::Drop(DropReason::NoRoute)
        );
    }

    #[test]
    fn falls_back_to_the_backup_when_the_primary_is_down() {
        let t = table();
        assert_eq!(
            t.decide(&header(20, 5), |p| p != 2),
            Decision::Forward {
                next_hop: 3,
                ttl: 4,
                via_backup: true
            }
        );
        assert_eq!(
            t.decide(&header(20, 5), |_| false),
            Decision::Drop(DropReason::PeerDown)
        );
        assert_eq!(
            t.decide(&header(30, 5), |p| p != 3),
            Decision::Drop(DropReason::PeerDown)
        );
    }

    #[test]
    fn built_from_the_world_topology() {
        let world = topology::world().expect("valid");
        let sha = world.node_idx("sha").expect("sha");
        let t = ForwardingTable::from_topology(&world, sha);
        assert_eq!(
            t.routes().count(),
            world.nodes.len() - 1,
            "a route to every other node"
        );
        let lax = topology::wire_key("lax");
        let first = t.route(lax).expect("route to lax").primary;
        let neighbors: Vec<u32> = world
            .links
            .iter()
            .filter_map(|l| l.other(sha))
            .map(|n| world.node_key(n))
            .collect();
        assert!(neighbors.contains(&first), "the next hop is a neighbor");
    }
}

impl ForwardingTable {
    /// A new table: this one with `set` entries added or replaced and `remove`
    /// entries dropped; with `full`, only `set` (the controller's whole table).
    /// A new split is laid over the one in force for its destination, so
    /// that flows change path only where the split makes them (see
    /// [`Placed::keeping`]).
    pub fn updated(
        &self,
        full: bool,
        set: impl IntoIterator<Item = (u32, Route)>,
        remove: impl IntoIterator<Item = u32>,
    ) -> ForwardingTable {
        let mut routes = if full {
            BTreeMap::new()
        } else {
            self.routes.clone()
        };
        for dst in remove {
            routes.remove(&dst);
        }
        routes.extend(set.into_iter().map(|(dst, mut route)| {
            let before = self.routes.get(&dst).and_then(|r| r.placed.as_ref());
            if let (Some(new), Some(before)) = (route.placed, before) {
                route.placed = Some(new.keeping(before));
            }
            (dst, route)
        }));
        routes.remove(&self.me);
        ForwardingTable {
            me: self.me,
            routes,
        }
    }
}

#[cfg(test)]
mod update_tests {
    use super::*;

    /// Through the table update, as a relay installs the controller's
    /// tables: a new split keeps the flows of a path that stays in it.
    #[test]
    fn a_new_split_keeps_the_flows_of_the_paths_it_keeps() {
        let seg = |hops: &[u32]| Segment::new(hops).expect("segment");
        let (a, b, c) = (seg(&[2, 9]), seg(&[3, 9]), seg(&[4, 9]));
        let route = |placed: &[(Segment, u32)]| Route {
            primary: 2,
            backup: None,
            repair: None,
            second: None,
            placed: Placed::new(placed),
        };
        let t = ForwardingTable::new(1, BTreeMap::from([(9, route(&[(a, 13), (b, 15)]))]));
        let on = |t: &ForwardingTable, f: u32| {
            *t.route(9)
                .and_then(|r| r.placed.as_ref())
                .expect("split")
                .pick(1, 1, f)
        };
        for full in [false, true] {
            let next = t.updated(full, [(9, route(&[(c, 10), (b, 16)]))], []);
            let stayed = (0..1_000)
                .filter(|&f| on(&t, f) == b)
                .all(|f| on(&next, f) == b);
            assert!(stayed, "b's flows stay on b (full table: {full})");
        }
    }

    #[test]
    fn updates_add_change_remove_and_replace() {
        let mut routes = BTreeMap::new();
        routes.insert(
            20,
            Route {
                primary: 2,
                backup: None,
                repair: None,
                second: None,
                placed: None,
            },
        );
        routes.insert(
            30,
            Route {
                primary: 3,
                backup: None,
                repair: None,
                second: None,
                placed: None,
            },
        );
        let t = ForwardingTable::new(1, routes);
        let diff = t.updated(
            false,
            [
                (
                    20,
                    Route {
                        primary: 3,
                        backup: Some(2),
                        repair: None,
                        second: None,
                        placed: None,
                    },
                ),
                (
                    40,
                    Route {
                        primary: 2,
                        backup: None,
                        repair: None,
                        second: None,
                        placed: None,
                    },
                ),
            ],
            [30],
        );
        assert_eq!(
            diff.route(20),
            Some(&Route {
                primary: 3,
                backup: Some(2),
                repair: None,
                second: None,
                placed: None,
            })
        );
        assert_eq!(
            diff.route(40),
            Some(&Route {
                primary: 2,
                backup: None,
                repair: None,
                second: None,
                placed: None,
            })
        );
        assert_eq!(diff.route(30), None);
        let full = t.updated(
            true,
            [(
                50,
                Route {
                    primary: 2,
                    backup: None,
                    repair: None,
                    second: None,
                    placed: None,
                },
            )],
            [],
        );
        assert_eq!(full.routes().count(), 1);
        // A route to ourselves is never installed.
        assert_eq!(
            t.updated(
                false,
                [(
                    1,
                    Route {
                        primary: 2,
                        backup: None,
                        repair: None,
                        second: None,
                        placed: None,
                    }
                )],
                []
            )
            .route(1),
            None
        );
    }
}
