//! The routes in force at a relay, as one value: the forwarding table, the
//! version it came with (0 for the topology's own, then the controller's) and
//! the term of the controller that sent it. A relay keeps one
//! [`RoutesInForce`] and swaps it whole, so a packet never sees a table with
//! another table's version.
//!
//! Also here: how a table update from the controller turns into a new value
//! (or is refused: fencing by term, see [`RoutesInForce::updated`]), and which
//! destinations' next hops it moved (for the reroute log line).

use std::collections::BTreeSet;
use std::fmt;

use crate::table::{ForwardingTable, Route};

/// A forwarding table and the version it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutesInForce {
    /// 0: routes computed from the topology; else the controller's version.
    pub version: u64,
    /// The term of the controller whose table this is: the highest term this
    /// relay has accepted (0 before any, and for a single controller).
    pub term: u64,
    pub table: ForwardingTable,
}

/// Why a table update from a controller was not put in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its term is below the one in force: an old leader's table.
    StaleTerm { term: u64, in_force: u64 },
    /// A diff opening a new term: it is relative to a table this relay does
    /// not hold (a new leader's first table is always whole).
    DiffOfNewTerm { term: u64, in_force: u64 },
}

impl Refused {
    pub const ALL: [&'static str; 2] = ["stale_term", "diff_of_new_term"];

    /// The metric label of this refusal.
    pub fn as_str(&self) -> &'static str {
        match self {
            Refused::StaleTerm { .. } => Self::ALL[0],
            Refused::DiffOfNewTerm { .. } => Self::ALL[1],
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::StaleTerm { term, in_force } => write!(
                f,
                "table of term {term} refused: term {in_force} is in force (an old leader's table)"
            ),
            Refused::DiffOfNewTerm { term, in_force } => write!(
                f,
                "table of term {term} refused: a diff cannot open a new term (term {in_force} is in force)"
            ),
        }
    }
}

impl RoutesInForce {
    /// The topology's routes, before any controller table.
    pub fn from_topology(table: ForwardingTable) -> Self {
        RoutesInForce {
            version: 0,
            term: 0,
            table,
        }
    }

    /// Whether these are still the topology's own routes.
    pub fn is_topology_routes(&self) -> bool {
        self.version == 0
    }

    /// This value with a controller update of `term` applied: `full` replaces
    /// the whole table, otherwise `set` entries are added or replaced and
    /// `remove` ones dropped. Destinations and hops are node wire keys.
    ///
    /// Fencing: an update of a term below the one in force is refused, so is a
    /// diff that opens a higher term; a full table of a higher term raises the
    /// term in force.
    pub fn updated(
        &self,
        term: u64,
        version: u64,
        full: bool,
        set: impl IntoIterator<Item = (u32, Route)>,
        remove: impl IntoIterator<Item = u32>,
    ) -> Result<RoutesInForce, Refused> {
        let in_force = self.term;
        if term < in_force {
            return Err(Refused::StaleTerm { term, in_force });
        }
        if term > in_force && !full {
            return Err(Refused::DiffOfNewTerm { term, in_force });
        }
        Ok(RoutesInForce {
            version,
            term,
            table: self.table.updated(full, set, remove),
        })
    }
}

/// A destination whose next hop moved: (destination, old, new) as node keys;
/// `None` is no next hop (no route, or dropped for want of a live link).
pub type NextHopMove = (u32, Option<u32>, Option<u32>);

/// Destinations whose primary next hop differs between two tables, in key order.
pub fn next_hop_changes(old: &ForwardingTable, new: &ForwardingTable) -> Vec<NextHopMove> {
    let dsts: BTreeSet<u32> = old
        .routes()
        .chain(new.routes())
        .map(|(dst, _)| dst)
        .collect();
    dsts.into_iter()
        .filter_map(|dst| {
            let before = old.route(dst).map(|r| r.primary);
            let after = new.route(dst).map(|r| r.primary);
            (before != after).then_some((dst, before, after))
        })
        .collect()
}

/// How many destinations have a different primary next hop in `new` than in
/// `old`. Destinations that gain or lose their route are not reroutes: traffic
/// for them did not move from one neighbor to another.
pub fn reroutes(old: &ForwardingTable, new: &ForwardingTable) -> u64 {
    new.routes()
        .filter(|(dst, route)| old.route(*dst).is_some_and(|o| o.primary != route.primary))
        .count() as u64
}

/// Next-hop moves for a log line, by node id: `lax: tyo → sea, pdx: tyo → -`.
/// Long lists are cut after [`NextHopMoves::SHOWN`] with a count of the rest.
#[derive(Debug)]
pub struct NextHopMoves<'a> {
    topology: &'a topology::Topology,
    moves: &'a [NextHopMove],
}

impl<'a> NextHopMoves<'a> {
    pub const SHOWN: usize = 16;

    pub fn new(topology: &'a topology::Topology, moves: &'a [NextHopMove]) -> Self {
        NextHopMoves { topology, moves }
    }

    fn name(&self, key: Option<u32>) -> String {
        match key {
            None => "-".to_string(),
            Some(k) => self
                .topology
                .node_by_key(k)
                .map_or_else(|| format!("{k:#x}"), |i| self.topology.node(i).id.clone()),
        }
    }
}

impl fmt::Display for NextHopMoves<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (dst, old, new)) in self.moves.iter().take(Self::SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let dst = self.name(Some(*dst));
            write!(f, "{dst}: {} → {}", self.name(*old), self.name(*new))?;
        }
        if self.moves.len() > Self::SHOWN {
            write!(f, ", and {} more", self.moves.len() - Self::SHOWN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn table(routes: &[(u32, u32)]) -> ForwardingTable {
        let routes: BTreeMap<u32, Route> = routes
            .iter()
            .map(|&(dst, primary)| {
                (
                    dst,
                    Route {
                        primary,
                        backup: None,
                        repair: None,
                        second: None,
                        placed: None,
                    },
                )
            })
            .collect();
        ForwardingTable::new(1, routes)
    }

    #[test]
    fn an_update_carries_its_version_with_its_table() {
        let start = RoutesInForce::from_topology(table(&[(10, 2)]));
        assert!(start.is_topology_routes());
        let next = start
            .updated(
                0,
                7,
                false,
                [(
                    20,
                    Route {
                        primary: 3,
                        backup: None,
                        repair: None,
                        second: None,
                        placed: None,
                    },
                )],
                [],
            )
            .expect("term 0 follows term 0");
        assert_eq!(next.version, 7);
        assert_eq!(next.table.routes().count(), 2);
        assert!(!next.is_topology_routes());
    }

    #[test]
    fn a_table_of_an_older_term_is_refused_and_a_new_term_opens_with_a_full_table() {
        let route = |primary| Route {
            primary,
            backup: None,
            repair: None,
            second: None,
            placed: None,
        };
        let start = RoutesInForce::from_topology(table(&[(10, 2)]));
        // A new leader's diff has no base here; its full table has.
        assert_eq!(
            start.updated(5, 1, false, [(10, route(3))], []),
            Err(Refused::DiffOfNewTerm {
                term: 5,
                in_force: 0
            })
        );
        let t5 = start
            .updated(5, 1, true, [(10, route(3))], [])
            .expect("a higher term's full table");
        assert_eq!((t5.term, t5.version), (5, 1));
        // The same term goes on with diffs, whatever their version.
        let t5b = t5
            .updated(5, 2, false, [(20, route(2))], [])
            .expect("same term");
        assert_eq!(t5b.table.routes().count(), 2);
        // An old leader (term 3) is refused, whole or diff; term 0 too.
        for (term, full) in [(3, true), (3, false), (0, true)] {
            let refused = t5b.updated(term, 99, full, [(10, route(4))], []);
            assert_eq!(
                refused,
                Err(Refused::StaleTerm { term, in_force: 5 }),
                "term {term} full {full}"
            );
        }
        // A later leader takes over with a whole table of a lower version.
        let t9 = t5b
            .updated(9, 1, true, [(10, route(4))], [])
            .expect("term 9");
        assert_eq!((t9.term, t9.version), (9, 1));
        assert_eq!(t9.table.routes().count(), 1);
        assert_eq!(
            Refused::StaleTerm {
                term: 1,
                in_force: 2
            }
            .as_str(),
            "stale_term"
        );
    }

    #[test]
    fn next_hop_changes_lists_moved_added_and_removed_destinations_only() {
        let old = table(&[(10, 2), (20, 2), (30, 3)]);
        let new = table(&[(10, 2), (20, 3), (40, 4)]);
        assert_eq!(
            next_hop_changes(&old, &new),
            vec![
                (20, Some(2), Some(3)),
                (30, Some(3), None),
                (40, None, Some(4))
            ]
        );
        assert!(next_hop_changes(&new, &new).is_empty());
    }

    #[test]
    fn reroutes_count_destinations_whose_primary_moved() {
        let old = table(&[(20, 2), (30, 3), (40, 2), (50, 3)]);
        // 20 and 40 move, 30 stays, 50 loses its route, 60 gains one.
        let new = table(&[(20, 3), (30, 3), (40, 4), (60, 2)]);
        assert_eq!(reroutes(&old, &new), 2);
        assert_eq!(reroutes(&new, &old), 2);
        assert_eq!(reroutes(&old, &old), 0);
        // A backup change alone moves no traffic.
        let mut backup = BTreeMap::new();
        backup.insert(
            20,
            Route {
                primary: 2,
                backup: Some(3),
                repair: None,
                second: None,
                placed: None,
            },
        );
        let with_backup = ForwardingTable::new(1, backup);
        assert_eq!(reroutes(&table(&[(20, 2)]), &with_backup), 0);
    }

    #[test]
    fn moves_are_shown_by_node_id_and_long_lists_are_cut() {
        let yaml = "version: 1\nnodes:\n\
            \x20 - { id: aaa, city: A, country: JP, region: asia, lat: 35.6, lon: 139.6, addr: \"127.0.0.1:1\" }\n\
            \x20 - { id: bbb, city: B, country: US, region: na, lat: 34.0, lon: -118.2, addr: \"127.0.0.1:2\" }\n\
            links:\n  - { between: [aaa, bbb], kind: undersea }\n";
        let topo = topology::parse("t.yaml", yaml).expect("topology");
        let (a, b) = (topology::wire_key("aaa"), topology::wire_key("bbb"));
        let moves = [(b, Some(b), None), (a, None, Some(b))];
        assert_eq!(
            NextHopMoves::new(&topo, &moves).to_string(),
            "bbb: bbb → -, aaa: - → bbb"
        );
        let many: Vec<NextHopMove> = (0..20).map(|_| (a, Some(a), Some(b))).collect();
        let shown = NextHopMoves::new(&topo, &many).to_string();
        assert_eq!(shown.matches("aaa: aaa → bbb").count(), 16, "{shown}");
        assert!(shown.ends_with(", and 4 more"), "{shown}");
    }
}
