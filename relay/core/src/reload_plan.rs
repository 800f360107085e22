//! What a reload changes at one relay, as a pure diff of the config in force
//! and the new one: services added, removed or changed (restarted), links
//! added or removed. Services and nodes are compared by name and id, never by
//! index, since indexes shift when a topology gains or reorders nodes.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use ipnet::IpNet;
use topology::{NodeIdx, Protocol, Service, Topology};

/// What a reload changes, by service name and neighbour id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Services whose ingress or egress is this node, by name.
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    /// Present before and after but configured differently: restarted, so
    /// their flows start anew.
    pub services_changed: Vec<String>,
    /// Neighbours, by node id.
    pub links_added: Vec<String>,
    pub links_removed: Vec<String>,
}

/// One side of a reload: a topology and this relay's node in it.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    pub topology: &'a Topology,
    pub node: NodeIdx,
}

/// How a service looks from one node, in node ids rather than indices, so two
/// topologies' services compare.
#[derive(Debug, PartialEq)]
struct ServiceView<'a> {
    protocol: Protocol,
    ingress: &'a str,
    listen: SocketAddr,
    egress: &'a str,
    target: SocketAddr,
    allow: &'a [IpNet],
    protect: bool,
}

impl<'a> Side<'a> {
    /// The services ending at this node, by name.
    pub fn services_here(&self) -> BTreeMap<&'a str, &'a Service> {
        self.topology
            .services
            .iter()
            .filter(|s| s.ingress_node == self.node || s.egress_node == self.node)
            .map(|s| (s.name.as_str(), s))
            .collect()
    }

    fn view(&self, s: &'a Service) -> ServiceView<'a> {
        let t = self.topology;
        ServiceView {
            protocol: s.protocol,
            ingress: &t.node(s.ingress_node).id,
            listen: s.listen,
            egress: &t.node(s.egress_node).id,
            target: s.target,
            allow: &s.allow,
            protect: s.protect,
        }
    }

    /// This node's neighbours: (node key, node id), in the topology's link order.
    pub fn neighbors(&self) -> Vec<(u32, String)> {
        let t = self.topology;
        t.links
            .iter()
            .filter_map(|l| l.other(self.node))
            .map(|n| (t.node_key(n), t.node(n).id.clone()))
            .collect()
    }
}

impl ReloadPlan {
    /// The changes that take `old` to `new`.
    pub fn between(old: Side<'_>, new: Side<'_>) -> ReloadPlan {
        let (before, after) = (old.services_here(), new.services_here());
        let mut plan = ReloadPlan::default();
        for (name, service) in &after {
            match before.get(name) {
                None => plan.services_added.push(name.to_string()),
                Some(was) if old.view(was) != new.view(service) => {
                    plan.services_changed.push(name.to_string())
                }
                Some(_) => {}
            }
        }
        plan.services_removed = before
            .keys()
            .filter(|name| !after.contains_key(*name))
            .map(|n| n.to_string())
            .collect();
        let (had, has) = (old.neighbors(), new.neighbors());
        let known = |id: &str, list: &[(u32, String)]| list.iter().any(|(_, n)| n == id);
        plan.links_added = has
            .iter()
            .filter(|(_, id)| !known(id, &had))
            .map(|(_, id)| id.clone())
            .collect();
        plan.links_removed = had
            .iter()
            .filter(|(_, id)| !known(id, &has))
            .map(|(_, id)| id.clone())
            .collect();
        plan
    }

    /// Services to stop: removed ones and changed ones (which start again).
    pub fn services_stopping(&self) -> impl Iterator<Item = &str> {
        self.services_removed
            .iter()
            .chain(&self.services_changed)
            .map(String::as_str)
    }

    /// Services to start: new ones and changed ones.
    pub fn services_starting(&self) -> impl Iterator<Item = &str> {
        self.services_added
            .iter()
            .chain(&self.services_changed)
            .map(String::as_str)
    }
}

/// What a reload changed, as the relay logs it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub plan: ReloadPlan,
    /// The node certificate changed.
    pub certificate_changed: bool,
}

impl ReloadSummary {
    pub fn is_empty(&self) -> bool {
        *self == ReloadSummary::default()
    }
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "nothing changed");
        }
        let mut parts = Vec::new();
        let mut list = |what: &str, sign: &str, names: &[String]| {
            if !names.is_empty() {
                parts.push(format!("{what} {sign}{}", names.join(&format!(" {sign}"))));
            }
        };
        let p = &self.plan;
        list("services", "+", &p.services_added);
        list("services", "-", &p.services_removed);
        list("services", "~", &p.services_changed);
        list("links", "+", &p.links_added);
        list("links", "-", &p.links_removed);
        if self.certificate_changed {
            parts.push("new certificate".to_string());
        }
        write!(f, "{}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(nodes: &[&str], links: &[(&str, &str)], services: &str) -> Topology {
        let mut y = String::from("version: 1\nnodes:\n");
        for (i, id) in nodes.iter().enumerate() {
            y += &format!(
                "  - {{ id: {id}, city: C{i}, country: US, region: t, lat: {}, lon: -100, addr: \"127.0.0.1:{}\" }}\n",
                10 + i,
                1 + i
            );
        }
        y += "links:\n";
        for (a, b) in links {
            y += &format!("  - {{ between: [{a}, {b}], kind: terrestrial }}\n");
        }
        if !services.is_empty() {
            y += "services:\n";
            y += services;
        }
        topology::parse("t.yaml", &y).unwrap_or_else(|e| panic!("{e}\n{y}"))
    }

    fn udp(name: &str, from: &str, to: &str, port: u16) -> String {
        format!("  - {{ name: {name}, protocol: udp, ingress: {{ node: {from}, listen: \"127.0.0.1:{port}\" }}, egress: {{ node: {to}, target: \"127.0.0.1:9\" }} }}\n")
    }

    #[test]
    fn reordered_nodes_change_nothing_and_real_changes_are_named() {
        let old = topo(
            &["aaa", "bbb", "ccc"],
            &[("aaa", "bbb"), ("bbb", "ccc")],
            &(udp("keep", "aaa", "ccc", 1)
                + &udp("gone", "aaa", "bbb", 2)
                + &udp("moved", "aaa", "bbb", 3)),
        );
        // Same services, nodes in another order: indexes all shift.
        let same = topo(
            &["ccc", "bbb", "aaa"],
            &[("bbb", "ccc"), ("aaa", "bbb")],
            &(udp("keep", "aaa", "ccc", 1)
                + &udp("gone", "aaa", "bbb", 2)
                + &udp("moved", "aaa", "bbb", 3)),
        );
        let side = |t: &'static Topology| Side {
            topology: t,
            node: t.node_idx("aaa").expect("aaa"),
        };
        let (old, same) = (Box::leak(Box::new(old)), Box::leak(Box::new(same)));
        assert_eq!(
            ReloadPlan::between(side(old), side(same)),
            ReloadPlan::default()
        );

        let new = Box::leak(Box::new(topo(
            &["aaa", "bbb", "ccc", "ddd"],
            &[("aaa", "ddd"), ("bbb", "ccc"), ("ccc", "ddd")],
            &(udp("keep", "aaa", "ccc", 1)
                + &udp("moved", "aaa", "bbb", 4)
                + &udp("new", "aaa", "ddd", 5)),
        )));
        let plan = ReloadPlan::between(side(old), side(new));
        assert_eq!(plan.services_added, ["new"]);
        assert_eq!(plan.services_removed, ["gone"]);
        assert_eq!(plan.services_changed, ["moved"]);
        assert_eq!(plan.links_added, ["ddd"]);
        assert_eq!(plan.links_removed, ["bbb"]);
        let summary = ReloadSummary {
            plan,
            certificate_changed: true,
        };
        assert_eq!(
            summary.to_string(),
            "services +new; services -gone; services ~moved; links +ddd; links -bbb; new certificate"
        );
        assert_eq!(ReloadSummary::default().to_string(), "nothing changed");
    }
}
