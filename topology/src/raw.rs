//! The topology file as written: serde structs with `deny_unknown_fields`, one per YAML
//! mapping. Nothing here is validated beyond types; see `compile.rs` for the checks.

use serde::Deserialize;
use serde_yaml::Value;

/// The whole file. Lists are kept as raw values so each entry is decoded, and its
/// errors reported, on its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTopology {
    /// Schema version. Required; the only version is `1`.
    pub version: u32,
    /// Controllers the relays report to. Default: none (relays run on the topology's
    /// best paths alone).
    #[serde(default)]
    pub controllers: Vec<Value>,
    /// Relay nodes. Required, at least one.
    pub nodes: Vec<Value>,
    /// Links between nodes. Default: none (valid only for a single node).
    #[serde(default)]
    pub links: Vec<Value>,
    /// Classroom services carried by the overlay. Default: none.
    #[serde(default)]
    pub services: Vec<Value>,
}

/// `controllers[]`: a controller endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawController {
    /// Name in the controller's certificate, e.g. `controller-lax`. Required.
    pub id: String,
    /// QUIC address relays dial, `ip:port`. Required.
    pub addr: String,
}

/// `nodes[]`: one relay node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    /// Short lowercase city code, unique, e.g. `sha`. Required.
    pub id: String,
    /// City name for people, e.g. `Shanghai`. Required.
    pub city: String,
    /// ISO 3166-1 alpha-2 country code, upper case, e.g. `CN`. Required.
    pub country: String,
    /// Region name for grouping, e.g. `asia-east`. Required.
    pub region: String,
    /// Latitude in degrees, -90..=90. Required.
    pub lat: f64,
    /// Longitude in degrees, -180..=180. Required.
    pub lon: f64,
    /// QUIC address other relays dial, `ip:port`. Required.
    pub addr: String,
}

/// `links[]`: a bidirectional link between two nodes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    /// The two node ids, e.g. `[sha, pdx]`. Required.
    pub between: Vec<String>,
    /// `undersea`, `terrestrial` or `internet`. Required.
    pub kind: RawLinkKind,
    /// Name of the line, e.g. the cable's. Default: none.
    #[serde(default)]
    pub name: Option<String>,
    /// Capacity in Mbit/s. Default: unknown.
    #[serde(default)]
    pub capacity_mbps: Option<u64>,
    /// Expected one-way delay in ms. Default: derived from great-circle distance.
    #[serde(default)]
    pub delay_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLinkKind {
    Undersea,
    Terrestrial,
    Internet,
}

/// `services[]`: a classroom service the overlay carries from ingress to egress.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    /// Unique name, e.g. `class-media`. Required.
    pub name: String,
    /// `udp` or `tcp`. Required. A `udp` service carries datagrams of up to
    /// about 1,380 bytes of payload (the relays' QUIC datagram room at the
    /// default 1400-byte initial MTU, less the 32-byte overlay header; path
    /// MTU discovery may raise it, a protected service's second copy has a
    /// little less). A larger datagram is not fragmented: the ingress relay
    /// drops it and counts it as `too_big`. The figure in force is
    /// `max_udp_payload_bytes` in the relay's `/api/v1/status`.
    pub protocol: RawProtocol,
    /// Where classroom servers send traffic. Required.
    pub ingress: RawIngress,
    /// Where the far relay delivers it. Required.
    pub egress: RawEgress,
    /// Source networks allowed at the ingress, CIDR or single address. Default: any.
    #[serde(default)]
    pub allow: Vec<String>,
    /// UDP only: send each datagram on two disjoint paths (node-disjoint where
    /// the graph allows, else link-disjoint); the egress keeps the first copy of
    /// each, so a single failure on either path loses nothing. Costs twice the
    /// service's bandwidth. Default false.
    #[serde(default)]
    pub protect: bool,
    /// One-way latency budget of the service's classes, in ms. Default 200.
    #[serde(default)]
    pub budget_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawProtocol {
    Udp,
    Tcp,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngress {
    /// Node that listens. Required.
    pub node: String,
    /// Listen address on that node, `ip:port`. Required.
    pub listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    /// Node that delivers. Required.
    pub node: String,
    /// Target address the egress node sends to, `ip:port`. Required.
    pub target: String,
}
