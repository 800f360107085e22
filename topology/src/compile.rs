//! Compiles a topology file into a validated [`Topology`], collecting every error.
//!
//! Stage one decodes each YAML mapping into its raw struct (`raw.rs`) on its own, so
//! one bad entry does not hide the next; stage two checks meaning: ids, references,
//! ranges, duplicates, addresses and connectivity.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde_yaml::Value;

use crate::countries::is_iso_alpha2;
use crate::doc::Doc;
use crate::error::ConfigErrors;
use crate::geo::{expected_delay_us, great_circle_km};
use crate::model::{
    closest_id, wire_key, Controller, Link, LinkKind, Node, NodeIdx, Protocol, Service, Topology,
};
use crate::raw::{
    RawController, RawEgress, RawIngress, RawLink, RawLinkKind, RawNode, RawProtocol, RawService,
    RawTopology,
};

/// The schema version this build reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Longest node id accepted.
const MAX_ID_LEN: usize = 16;
/// Upper bound for a stated link delay: anything longer is a typo (ms instead of µs?).
const MAX_DELAY_MS: f64 = 10_000.0;
/// An example address for messages (TEST-NET-1, never dialled).
const EXAMPLE_ADDR: &str = "192.0.2.10:4433";

/// Parses and validates topology text. `source` names the file in messages.
pub fn parse(source: &str, text: &str) -> Result<Topology, ConfigErrors> {
    let (doc, value) = Doc::parse(source, text)?;
    let mut cx = Compiler { doc };
    let topology = cx.compile(value);
    cx.doc.finish()?;
    // compile() returns None only after recording why, so this is not reached empty.
    topology.ok_or(ConfigErrors {
        diagnostics: Vec::new(),
    })
}

struct Compiler {
    doc: Doc,
}

/// What is known about a node id while checking references.
struct NodeSeen {
    path: String,
    lat: f64,
    lon: f64,
}

impl Compiler {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.doc.error(path, message);
    }

    fn line(&self, path: &str) -> usize {
        self.doc.line(path)
    }

    fn decode<T: serde::de::DeserializeOwned>(&mut self, value: Value, path: &str) -> Option<T> {
        self.doc.decode(value, path)
    }

    fn compile(&mut self, value: Value) -> Option<Topology> {
        if value.is_null() {
            self.error(
                "",
                "the file is empty; expected a mapping with `version`, `nodes` and `links`",
            );
            return None;
        }
        let raw: RawTopology = self.decode(value, "")?;
        if raw.version != SCHEMA_VERSION {
            self.error(
                "version",
                format!(
                    "unsupported version {}; this build reads version {SCHEMA_VERSION}",
                    raw.version
                ),
            );
        }
        if raw.nodes.is_empty() {
            self.error(
                "nodes",
                "no nodes; a topology needs at least one node under `nodes:`",
            );
        }

        let nodes = self.nodes(raw.nodes);
        self.check_wire_keys(
            nodes
                .iter()
                .map(|(p, n)| (format!("{p}.id"), n.id.as_str())),
            "node id",
        );
        let seen: HashMap<String, NodeSeen> = nodes
            .iter()
            .map(|(path, n)| {
                (
                    n.id.clone(),
                    NodeSeen {
                        path: path.clone(),
                        lat: n.lat,
                        lon: n.lon,
                    },
                )
            })
            .collect();
        let errors_before_links = self.doc.error_count();
        let links = self.links(raw.links, &seen);
        let links_clean = self.doc.error_count() == errors_before_links;
        let services = self.services(raw.services, &seen);
        let service_paths: Vec<(String, &str)> = services
            .iter()
            .map(|s| (s.path.clone(), s.name.as_str()))
            .collect();
        self.check_wire_keys(service_paths.into_iter(), "service name");
        let controllers = self.controllers(raw.controllers, &seen);

        let mut sorted: Vec<Node> = nodes.into_iter().map(|(_, n)| n).collect();
        sorted.sort_by(|x, y| x.id.cmp(&y.id));
        let by_id: HashMap<String, NodeIdx> = sorted
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), NodeIdx(i as u32)))
            .collect();
        let by_key: HashMap<u32, NodeIdx> = sorted
            .iter()
            .enumerate()
            .map(|(i, n)| (wire_key(&n.id), NodeIdx(i as u32)))
            .collect();
        let idx = |id: &str| by_id.get(id).copied();

        let links: Vec<Link> = links
            .into_iter()
            .filter_map(|l| {
                Some(Link {
                    a: idx(&l.a)?,
                    b: idx(&l.b)?,
                    kind: l.kind,
                    name: l.name,
                    capacity_mbps: l.capacity_mbps,
                    distance_km: l.distance_km,
                    delay_us: l.delay_us,
                    delay_stated: l.delay_stated,
                })
            })
            .collect();
        if links_clean && !sorted.is_empty() {
            self.check_connected(&sorted, &links, &seen);
        }
        let services = services
            .into_iter()
            .filter_map(|s| {
                Some(Service {
                    key: wire_key(&s.name),
                    name: s.name,
                    protocol: s.protocol,
                    ingress_node: idx(&s.ingress_node)?,
                    listen: s.listen,
                    egress_node: idx(&s.egress_node)?,
                    target: s.target,
                    allow: s.allow,
                    protect: s.protect,
                    budget_us: s.budget_us,
                })
            })
            .collect();

        Some(Topology {
            source: self.doc.file().to_string(),
            nodes: sorted,
            links,
            services,
            controllers,
            by_id,
            by_key,
        })
    }

    fn nodes(&mut self, entries: Vec<Value>) -> Vec<(String, Node)> {
        let mut out: Vec<(String, Node)> = Vec::new();
        let mut first_id: HashMap<String, String> = HashMap::new();
        let mut first_addr: HashMap<SocketAddr, (String, String)> = HashMap::new();
        for (i, v) in entries.into_iter().enumerate() {
            let p = format!("nodes[{i}]");
            let Some(raw) = self.decode::<RawNode>(v, &p) else {
                continue;
            };
            let mut ok = true;
            if !is_valid_id(&raw.id) {
                ok = false;
                self.error(
                    &format!("{p}.id"),
                    format!(
                        "`{}` is not a valid node id; expected a short lowercase code like `sha`: \
                         a letter, then letters, digits or '-', at most {MAX_ID_LEN} characters",
                        raw.id
                    ),
                );
            } else if let Some(first) = first_id.get(&raw.id) {
                ok = false;
                let msg = format!(
                    "duplicate node id `{}` (first defined at line {}); node ids must be unique",
                    raw.id,
                    self.line(first)
                );
                self.error(&format!("{p}.id"), msg);
            } else {
                first_id.insert(raw.id.clone(), p.clone());
            }
            for (key, text) in [("city", &raw.city), ("region", &raw.region)] {
                if text.trim().is_empty() {
                    ok = false;
                    self.error(
                        &format!("{p}.{key}"),
                        format!("`{key}` is empty; give a name"),
                    );
                }
            }
            if !is_iso_alpha2(&raw.country) {
                ok = false;
                let upper = raw.country.to_ascii_uppercase();
                let msg = if upper != raw.country && is_iso_alpha2(&upper) {
                    format!(
                        "country codes are upper case: write `{upper}`, not `{}`",
                        raw.country
                    )
                } else {
                    format!(
                        "`{}` is not an ISO 3166-1 alpha-2 country code; expected two capital \
                         letters such as `CN`, `JP` or `US`",
                        raw.country
                    )
                };
                self.error(&format!("{p}.country"), msg);
            }
            if !(raw.lat.is_finite() && (-90.0..=90.0).contains(&raw.lat)) {
                ok = false;
                self.error(
                    &format!("{p}.lat"),
                    format!(
                        "latitude {} is out of range; expected -90 to 90 degrees",
                        raw.lat
                    ),
                );
            }
            if !(raw.lon.is_finite() && (-180.0..=180.0).contains(&raw.lon)) {
                ok = false;
                self.error(
                    &format!("{p}.lon"),
                    format!(
                        "longitude {} is out of range; expected -180 to 180 degrees",
                        raw.lon
                    ),
                );
            }
            let addr = self.socket_addr(&format!("{p}.addr"), &raw.addr);
            if let Some(addr) = addr {
                if let Some((other, other_path)) = first_addr.get(&addr) {
                    ok = false;
                    let msg = format!(
                        "address {addr} is already used by node `{other}` (line {}); each node \
                         needs its own",
                        self.line(other_path)
                    );
                    self.error(&format!("{p}.addr"), msg);
                } else {
                    first_addr.insert(addr, (raw.id.clone(), format!("{p}.addr")));
                }
            }
            // A node whose id is usable is kept, so links to it do not cascade into
            // "unknown node" errors; the topology is refused anyway if `ok` is false.
            if is_valid_id(&raw.id) && first_id.get(&raw.id) == Some(&p) {
                let _ = ok;
                out.push((
                    p,
                    Node {
                        id: raw.id,
                        city: raw.city,
                        country: raw.country,
                        region: raw.region,
                        lat: raw.lat,
                        lon: raw.lon,
                        addr: addr.unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                    },
                ));
            }
        }
        out
    }

    fn links(&mut self, entries: Vec<Value>, seen: &HashMap<String, NodeSeen>) -> Vec<LinkDraft> {
        let mut out = Vec::new();
        let mut first_pair: HashMap<(String, String), String> = HashMap::new();
        for (i, v) in entries.into_iter().enumerate() {
            let p = format!("links[{i}]");
            let Some(raw) = self.decode::<RawLink>(v, &p) else {
                continue;
            };
            let mut ok = true;
            if raw.between.len() != 2 {
                self.error(
                    &format!("{p}.between"),
                    format!(
                        "expected exactly two node ids, like `[sha, pdx]`; found {}",
                        raw.between.len()
                    ),
                );
                continue;
            }
            for (j, id) in raw.between.iter().enumerate() {
                if !seen.contains_key(id) {
                    ok = false;
                    let hint = match closest_id(id, seen.keys().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "declare it under `nodes:` first".to_string(),
                    };
                    self.error(
                        &format!("{p}.between[{j}]"),
                        format!("no node `{id}`; {hint}"),
                    );
                }
            }
            let (a, b) = (raw.between[0].clone(), raw.between[1].clone());
            if a == b {
                self.error(
                    &format!("{p}.between"),
                    format!("a link must join two different nodes; both ends are `{a}`"),
                );
                continue;
            }
            let pair = if a < b {
                (a.clone(), b.clone())
            } else {
                (b.clone(), a.clone())
            };
            if let Some(first) = first_pair.get(&pair) {
                let msg = format!(
                    "duplicate link between `{a}` and `{b}` (first at line {}); one link per pair \
                     of nodes",
                    self.line(first)
                );
                self.error(&format!("{p}.between"), msg);
                continue;
            }
            first_pair.insert(pair, p.clone());
            if let Some(d) = raw.delay_ms {
                if !(d.is_finite() && d > 0.0 && d < MAX_DELAY_MS) {
                    ok = false;
                    self.error(
                        &format!("{p}.delay_ms"),
                        format!(
                            "delay_ms {d} is not a usable one-way delay; expected milliseconds \
                             above 0 and below {MAX_DELAY_MS}"
                        ),
                    );
                }
            }
            if raw.capacity_mbps == Some(0) {
                ok = false;
                self.error(
                    &format!("{p}.capacity_mbps"),
                    "capacity_mbps is 0; give the capacity in Mbit/s, or leave it out",
                );
            }
            if raw.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
                ok = false;
                self.error(
                    &format!("{p}.name"),
                    "`name` is empty; give a name or leave it out",
                );
            }
            if !ok {
                continue;
            }
            let (Some(na), Some(nb)) = (seen.get(&a), seen.get(&b)) else {
                continue;
            };
            let kind = match raw.kind {
                RawLinkKind::Undersea => LinkKind::Undersea,
                RawLinkKind::Terrestrial => LinkKind::Terrestrial,
                RawLinkKind::Internet => LinkKind::Internet,
            };
            let distance_km = great_circle_km(na.lat, na.lon, nb.lat, nb.lon);
            let (delay_us, delay_stated) = match raw.delay_ms {
                Some(ms) => (((ms * 1000.0).round() as u64).max(1), true),
                None => (expected_delay_us(kind, distance_km), false),
            };
            out.push(LinkDraft {
                a,
                b,
                kind,
                name: raw.name,
                capacity_mbps: raw.capacity_mbps,
                distance_km,
                delay_us,
                delay_stated,
            });
        }
        out
    }

    fn services(
        &mut self,
        entries: Vec<Value>,
        seen: &HashMap<String, NodeSeen>,
    ) -> Vec<ServiceDraft> {
        let mut out = Vec::new();
        let mut first_name: HashMap<String, String> = HashMap::new();
        // UDP and TCP ports are separate spaces: a service of each may share one.
        let mut first_listen: HashMap<(String, bool, SocketAddr), (String, String)> =
            HashMap::new();
        for (i, v) in entries.into_iter().enumerate() {
            let p = format!("services[{i}]");
            let Some(raw) = self.decode::<RawService>(v, &p) else {
                continue;
            };
            let RawService {
                name,
                protocol,
                ingress,
                egress,
                allow,
                protect,
                budget_ms,
            } = raw;
            let RawIngress {
                node: ingress_node,
                listen,
            } = ingress;
            let RawEgress {
                node: egress_node,
                target,
            } = egress;
            let mut ok = true;
            if name.trim().is_empty() {
                ok = false;
                self.error(
                    &format!("{p}.name"),
                    "`name` is empty; give the service a name",
                );
            } else if let Some(first) = first_name.get(&name) {
                ok = false;
                let msg = format!(
                    "duplicate service name `{name}` (first at line {}); names must be unique",
                    self.line(first)
                );
                self.error(&format!("{p}.name"), msg);
            } else {
                first_name.insert(name.clone(), format!("{p}.name"));
            }
            for (key, id) in [
                ("ingress.node", &ingress_node),
                ("egress.node", &egress_node),
            ] {
                if !seen.contains_key(id) {
                    ok = false;
                    let hint = match closest_id(id, seen.keys().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "it must be one of the ids under `nodes:`".to_string(),
                    };
                    self.error(&format!("{p}.{key}"), format!("no node `{id}`; {hint}"));
                }
            }
            if ingress_node == egress_node {
                ok = false;
                self.error(
                    &format!("{p}.egress.node"),
                    format!(
                        "ingress and egress are both `{ingress_node}`; a service must cross the \
                         overlay to another node"
                    ),
                );
            }
            let listen = self.socket_addr(&format!("{p}.ingress.listen"), &listen);
            let target = self.socket_addr(&format!("{p}.egress.target"), &target);
            // Port 0 means "any free port" (tests, the lab): never a clash.
            if let Some(addr) = listen.filter(|a| a.port() != 0) {
                let key = (
                    ingress_node.clone(),
                    matches!(protocol, RawProtocol::Udp),
                    addr,
                );
                if let Some((other, other_path)) = first_listen.get(&key) {
                    ok = false;
                    let msg = format!(
                        "listen address {addr} on node `{ingress_node}` is already used by service \
                         `{other}` (line {})",
                        self.line(other_path)
                    );
                    self.error(&format!("{p}.ingress.listen"), msg);
                } else {
                    first_listen.insert(key, (name.clone(), format!("{p}.ingress.listen")));
                }
            }
            let mut nets = Vec::new();
            for (j, text) in allow.iter().enumerate() {
                match parse_net(text) {
                    Some(net) => nets.push(net),
                    None => {
                        ok = false;
                        self.error(
                            &format!("{p}.allow[{j}]"),
                            format!(
                                "`{text}` is not a network; expected CIDR like `198.51.100.0/24` \
                                 or a single address"
                            ),
                        );
                    }
                }
            }
            if protect && matches!(protocol, RawProtocol::Tcp) {
                ok = false;
                self.error(
                    &format!("{p}.protect"),
                    "`protect` is for UDP services (a TCP session already survives a path change); remove it",
                );
            }
            if budget_ms == Some(0) {
                ok = false;
                self.error(
                    &format!("{p}.budget_ms"),
                    "a budget of 0 ms cannot be met; give the one-way budget in ms, e.g. 200",
                );
            }
            let (Some(listen), Some(target), true) = (listen, target, ok) else {
                continue;
            };
            out.push(ServiceDraft {
                path: format!("{p}.name"),
                name,
                protocol: match protocol {
                    RawProtocol::Udp => Protocol::Udp,
                    RawProtocol::Tcp => Protocol::Tcp,
                },
                ingress_node,
                listen,
                egress_node,
                target,
                allow: nets,
                protect,
                budget_us: budget_ms.map_or(crate::model::DEFAULT_BUDGET_US, |ms| {
                    ms.saturating_mul(1000)
                }),
            });
        }
        out
    }

    fn controllers(
        &mut self,
        entries: Vec<Value>,
        nodes: &HashMap<String, NodeSeen>,
    ) -> Vec<Controller> {
        let mut out = Vec::new();
        let mut first: HashMap<String, String> = HashMap::new();
        for (i, v) in entries.into_iter().enumerate() {
            let p = format!("controllers[{i}]");
            let Some(raw) = self.decode::<RawController>(v, &p) else {
                continue;
            };
            if raw.id.trim().is_empty() {
                self.error(
                    &format!("{p}.id"),
                    "`id` is empty; give the name in its certificate",
                );
                continue;
            }
            if let Some(f) = first.get(&raw.id) {
                let msg = format!(
                    "duplicate controller id `{}` (first at line {})",
                    raw.id,
                    self.line(f)
                );
                self.error(&format!("{p}.id"), msg);
                continue;
            }
            if nodes.contains_key(&raw.id) {
                // A certificate names its holder; one name for a relay and the
                // controller would let one certificate pass for both roles.
                let msg = format!(
                    "controller id `{}` is also a node id; give the controller a name of its own (e.g. `controller-1`)",
                    raw.id
                );
                self.error(&format!("{p}.id"), msg);
                continue;
            }
            first.insert(raw.id.clone(), format!("{p}.id"));
            if let Some(addr) = self.socket_addr(&format!("{p}.addr"), &raw.addr) {
                out.push(Controller { id: raw.id, addr });
            }
        }
        out
    }

    fn socket_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(
                    path,
                    format!(
                        "`{text}` is not an address; expected ip:port such as `{EXAMPLE_ADDR}` or \
                         `[2001:db8::1]:4433`"
                    ),
                );
                None
            }
        }
    }

    /// Node ids and service names travel on the wire as 32-bit keys; two names with
    /// the same key would be confused, so that is an error (vanishingly rare).
    fn check_wire_keys<'n>(&mut self, names: impl Iterator<Item = (String, &'n str)>, what: &str) {
        let mut first: HashMap<u32, &str> = HashMap::new();
        for (path, name) in names {
            if let Some(other) = first.insert(wire_key(name), name) {
                self.error(
                    &path,
                    format!(
                        "{what} `{name}` has the same wire key as `{other}`; rename one of them"
                    ),
                );
            }
        }
    }

    /// Reports each group of nodes that cannot reach the largest group.
    fn check_connected(
        &mut self,
        nodes: &[Node],
        links: &[Link],
        seen: &HashMap<String, NodeSeen>,
    ) {
        let mut parent: Vec<usize> = (0..nodes.len()).collect();
        fn find(p: &mut [usize], mut x: usize) -> usize {
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        for l in links {
            let (ra, rb) = (find(&mut parent, l.a.get()), find(&mut parent, l.b.get()));
            parent[ra.max(rb)] = ra.min(rb);
        }
        let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
        for i in 0..nodes.len() {
            let root = find(&mut parent, i);
            groups.entry(root).or_default().push(i);
        }
        if groups.len() <= 1 {
            return;
        }
        let mut groups: Vec<Vec<usize>> = groups.into_values().collect();
        // Largest first; ties by the smallest member, so the message is stable.
        groups.sort_by(|x, y| y.len().cmp(&x.len()).then(x[0].cmp(&y[0])));
        let main = groups[0].len();
        for group in &groups[1..] {
            let ids: Vec<String> = group
                .iter()
                .map(|&i| format!("`{}`", nodes[i].id))
                .collect();
            let first = &nodes[group[0]].id;
            let path = seen.get(first).map(|s| s.path.clone()).unwrap_or_default();
            let msg = format!(
                "the graph is not connected: {} cannot reach the other {main} node{}; add a link \
                 joining {} to the rest",
                ids.join(", "),
                if main == 1 { "" } else { "s" },
                if group.len() == 1 { "it" } else { "them" },
            );
            let line = self.doc.line(&path);
            self.doc.error_at(line, "links", msg);
        }
    }
}

/// A link that passed its own checks, before node ids become indices.
struct LinkDraft {
    a: String,
    b: String,
    kind: LinkKind,
    name: Option<String>,
    capacity_mbps: Option<u64>,
    distance_km: f64,
    delay_us: u64,
    delay_stated: bool,
}

/// A service that passed its own checks, before node ids become indices.
struct ServiceDraft {
    path: String,
    name: String,
    protocol: Protocol,
    ingress_node: String,
    listen: SocketAddr,
    egress_node: String,
    target: SocketAddr,
    allow: Vec<IpNet>,
    protect: bool,
    budget_us: u64,
}

/// A node id: a lowercase letter, then lowercase letters, digits or '-'.
pub fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= MAX_ID_LEN
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}
