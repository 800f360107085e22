//! The validated topology: nodes sorted by id and addressed by index, links, services.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use ipnet::IpNet;

/// Index of a node in `Topology::nodes` (nodes are sorted by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIdx(pub u32);

impl NodeIdx {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

/// Index of a link in `Topology::links`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkIdx(pub u32);

impl LinkIdx {
    pub fn get(self) -> usize {
        self.0 as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// A dedicated long-haul submarine line (the scarce trans-oceanic capacity).
    Undersea,
    /// A leased regional circuit (over land, or a short regional sea crossing).
    Terrestrial,
    /// A best-effort path over the public internet, kept as a backup.
    Internet,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Undersea => "undersea",
            LinkKind::Terrestrial => "terrestrial",
            LinkKind::Internet => "internet",
        }
    }
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Udp,
    Tcp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub city: String,
    pub country: String,
    pub region: String,
    pub lat: f64,
    pub lon: f64,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The endpoints, in the order the file gives them.
    pub a: NodeIdx,
    pub b: NodeIdx,
    pub kind: LinkKind,
    pub name: Option<String>,
    pub capacity_mbps: Option<u64>,
    /// Great-circle distance between the endpoints, km.
    pub distance_km: f64,
    /// Expected one-way delay, µs: stated in the file, or derived from the distance.
    pub delay_us: u64,
    /// Whether `delay_us` was stated in the file.
    pub delay_stated: bool,
}

impl Link {
    /// The far end of this link seen from `from`, if `from` is one of its ends.
    pub fn other(&self, from: NodeIdx) -> Option<NodeIdx> {
        if from == self.a {
            Some(self.b)
        } else if from == self.b {
            Some(self.a)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// `wire_key(name)`: how packets name the service.
    pub key: u32,
    pub name: String,
    pub protocol: Protocol,
    pub ingress_node: NodeIdx,
    pub listen: SocketAddr,
    pub egress_node: NodeIdx,
    pub target: SocketAddr,
    /// Allowed source networks; empty means any source.
    pub allow: Vec<IpNet>,
    /// Each datagram goes on two disjoint paths; the egress keeps the first copy.
    pub protect: bool,
    /// One-way latency budget of the service's classes, µs.
    pub budget_us: u64,
}

/// The latency budget of a service that states none: 200 ms one way.
pub const DEFAULT_BUDGET_US: u64 = 200_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    pub id: String,
    pub addr: SocketAddr,
}

/// A validated topology. Build one with [`crate::parse`] or [`crate::load`].
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    /// Where it was read from, for messages.
    pub source: String,
    /// Sorted by id; `NodeIdx` indexes this.
    pub nodes: Vec<Node>,
    pub links: Vec<Link>,
    pub services: Vec<Service>,
    pub controllers: Vec<Controller>,
    pub(crate) by_id: HashMap<String, NodeIdx>,
    pub(crate) by_key: HashMap<u32, NodeIdx>,
}

impl Topology {
    pub fn node(&self, idx: NodeIdx) -> &Node {
        &self.nodes[idx.get()]
    }

    pub fn link(&self, idx: LinkIdx) -> &Link {
        &self.links[idx.get()]
    }

    /// Looks a node up by its wire key (`wire_key(id)`).
    pub fn node_by_key(&self, key: u32) -> Option<NodeIdx> {
        self.by_key.get(&key).copied()
    }

    /// The wire key of a node.
    pub fn node_key(&self, idx: NodeIdx) -> u32 {
        wire_key(&self.node(idx).id)
    }

    /// Looks a service up by its wire key.
    pub fn service_by_key(&self, key: u32) -> Option<&Service> {
        self.services.iter().find(|s| s.key == key)
    }

    /// Looks a node up by id.
    pub fn node_idx(&self, id: &str) -> Option<NodeIdx> {
        self.by_id.get(id).copied()
    }

    /// Looks a node up by id, with an error that lists what exists when it does not.
    pub fn require_node(&self, id: &str) -> Result<NodeIdx, UnknownNode> {
        self.node_idx(id).ok_or_else(|| UnknownNode {
            id: id.to_string(),
            file: self.source.clone(),
            suggestion: closest_id(id, self.nodes.iter().map(|n| n.id.as_str())),
        })
    }

    /// The link joining two nodes, if any (there is at most one).
    pub fn link_between(&self, x: NodeIdx, y: NodeIdx) -> Option<LinkIdx> {
        self.links
            .iter()
            .position(|l| (l.a == x && l.b == y) || (l.a == y && l.b == x))
            .map(|i| LinkIdx(i as u32))
    }

    /// Distinct country codes, sorted.
    pub fn countries(&self) -> Vec<&str> {
        let mut c: Vec<&str> = self.nodes.iter().map(|n| n.country.as_str()).collect();
        c.sort_unstable();
        c.dedup();
        c
    }
}

/// The 32-bit key that stands for a node id or service name in packet headers:
/// FNV-1a of its bytes. Stable across topology versions (unlike an index), so
/// relays running different revisions of the file still agree on it.
pub fn wire_key(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A node id that the topology does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no node `{id}` in {file}{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
pub struct UnknownNode {
    pub id: String,
    pub file: String,
    pub suggestion: Option<String>,
}

/// The id among `known` closest to `id` by edit distance, if reasonably close.
pub(crate) fn closest_id<'a>(id: &str, known: impl Iterator<Item = &'a str>) -> Option<String> {
    known
        .map(|k| (edit_distance(id, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_keys_are_fnv1a() {
        // Published FNV-1a 32-bit test vectors.
        assert_eq!(wire_key(""), 0x811c_9dc5);
        assert_eq!(wire_key("a"), 0xe40c_292c);
        assert_eq!(wire_key("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn suggestions_pick_a_near_id() {
        let ids = ["sha", "sea", "sin", "lax"];
        assert_eq!(closest_id("shz", ids.into_iter()), Some("sha".into()));
        assert_eq!(closest_id("tokyo", ids.into_iter()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
