//! The controller's config file (`controller.yaml`): raw schema with defaults and
//! the compile step into a checked [`ControllerConfig`]. Loading binds no port.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use daemon::config_file::{
    admin_addr, decode_root, load_identity_and_ca, load_topology, parse_addr, read_file,
    single_error,
};
use daemon::tls::Identity;
use serde::Deserialize;
use topology::doc::Doc;
use topology::{ConfigErrors, Topology};

use crate::placing::PlacementConfig;
use crate::routing::StabilityConfig;

/// `controller.yaml` as written. Relative paths are relative to the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControllerConfig {
    /// This controller's id: one of the topology's `controllers[].id`, and the
    /// name in its certificate. Required.
    id: String,
    /// Path of the fleet's topology file. Required.
    topology: String,
    /// QUIC listen address. Default: this controller's `addr` in the topology.
    #[serde(default)]
    listen: Option<String>,
    /// Certificate, key (mode 0600) and fleet CA, as for relays. Required.
    cert: String,
    key: String,
    ca: String,
    /// Admin HTTP API. Default `127.0.0.1:9000`; `off` disables it.
    #[serde(default)]
    admin: Option<String>,
    /// Route stability. Default: see each field.
    #[serde(default)]
    stability: Option<RawStability>,
    /// Placement of measured demand on paths. Default: see each field.
    #[serde(default)]
    placement: Option<RawPlacement>,
    /// High availability: elect one leader among the topology's controllers
    /// through etcd. Default: absent, this controller leads alone for ever
    /// (one controller per fleet).
    #[serde(default)]
    etcd: Option<RawEtcd>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    /// etcd client endpoints, `host:port` or `http://host:port`. Required,
    /// at least one (list every member of the etcd cluster).
    endpoints: Vec<String>,
    /// The election's name (a key prefix) in etcd; every controller of one
    /// fleet must give the same. Default `/overlay/controller-leader`.
    #[serde(default)]
    prefix: Option<String>,
    /// Seconds a leader's lease lives without a keep-alive: how long a dead
    /// leader keeps the fleet without one. Default 3; 2 to 60.
    #[serde(default)]
    lease_ttl_s: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStability {
    /// A link's cost changes only when it moves by more than this fraction... (default 0.10)
    #[serde(default)]
    relative: Option<f64>,
    /// ...and by more than this many ms (default 5)...
    #[serde(default)]
    absolute_ms: Option<u64>,
    /// ...for at least this long (default 3000 ms).
    #[serde(default)]
    hold_ms: Option<u64>,
    /// A link that failed is not reused until up this long (default 10000 ms).
    #[serde(default)]
    hold_down_ms: Option<u64>,
    /// A new link's lower measurements apply at once for this long (default 2000 ms).
    #[serde(default)]
    settle_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlacement {
    /// Place demand at all (default true); false: traffic follows the routes.
    #[serde(default)]
    enabled: Option<bool>,
    /// How often placement runs (default 5000 ms; 500 to 600000).
    #[serde(default)]
    interval_ms: Option<u64>,
    /// Highest planned share of a link direction's capacity (default 0.8).
    #[serde(default)]
    ceiling: Option<f64>,
    /// The unit demand is placed in, kbit/s (default 100).
    #[serde(default)]
    unit_kbps: Option<u64>,
    /// Most units one run may move (default 1000).
    #[serde(default)]
    max_moves: Option<u64>,
}

pub const DEFAULT_ADMIN: &str = "127.0.0.1:9000";
pub const DEFAULT_ETCD_PREFIX: &str = "/overlay/controller-leader";
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(3);

/// Where and how the controllers of a fleet elect their leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// Whole seconds, as etcd grants them.
    pub lease_ttl: Duration,
}

impl EtcdConfig {
    /// Endpoints with the defaults for the rest.
    pub fn new(endpoints: Vec<String>) -> EtcdConfig {
        EtcdConfig {
            endpoints,
            prefix: DEFAULT_ETCD_PREFIX.to_string(),
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }
}

/// A checked controller configuration.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub id: String,
    pub topology: Arc<Topology>,
    pub listen: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub identity: Identity,
    pub roots: Arc<rustls::RootCertStore>,
    pub stability: StabilityConfig,
    /// How measured demand is placed on paths.
    pub placement: PlacementConfig,
    /// Leader election through etcd; `None`: this controller leads alone.
    pub etcd: Option<EtcdConfig>,
}

impl ControllerConfig {
    /// For the lab and tests: the topology's first controller, default stability.
    pub fn new(
        topology: Arc<Topology>,
        id: &str,
        identity: Identity,
        roots: Arc<rustls::RootCertStore>,
    ) -> Self {
        let listen = topology
            .controllers
            .iter()
            .find(|c| c.id == id)
            .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)), |c| c.addr);
        ControllerConfig {
            id: id.to_string(),
            topology,
            listen,
            admin: None,
            identity,
            roots,
            stability: StabilityConfig::default(),
            placement: PlacementConfig::default(),
            etcd: None,
        }
    }

    pub fn load(path: &Path) -> Result<ControllerConfig, ConfigErrors> {
        read_file(path, Self::parse)
    }

    pub fn parse(file: &str, text: &str, base: &Path) -> Result<ControllerConfig, ConfigErrors> {
        let (mut doc, raw) = decode_root::<RawControllerConfig>(file, text)?;
        let topology = load_topology(&mut doc, base, &raw.topology);
        let in_topology = topology
            .as_ref()
            .and_then(|t| t.controllers.iter().find(|c| c.id == raw.id).cloned());
        if topology.is_some() && in_topology.is_none() {
            let known: Vec<String> = topology
                .iter()
                .flat_map(|t| t.controllers.iter().map(|c| c.id.clone()))
                .collect();
            doc.error(
                "id",
                format!(
                    "no controller `{}` in the topology's `controllers:` (it has: {})",
                    raw.id,
                    known.join(", ")
                ),
            );
        }
        let listen = match &raw.listen {
            Some(text) => parse_addr(&mut doc, "listen", text),
            None => in_topology.as_ref().map(|c| c.addr),
        };
        let admin = admin_addr(&mut doc, raw.admin.as_deref(), DEFAULT_ADMIN);
        let (identity, roots) =
            load_identity_and_ca(&mut doc, base, (&raw.cert, &raw.key, &raw.ca), &raw.id);
        let mut stability = StabilityConfig::default();
        if let Some(s) = raw.stability {
            if let Some(r) = s.relative {
                if !(r.is_finite() && (0.0..=10.0).contains(&r)) {
                    doc.error("stability.relative", "give a fraction such as 0.10");
                }
                stability.relative = r;
            }
            if let Some(ms) = s.absolute_ms {
                stability.absolute = Duration::from_millis(ms);
            }
            if let Some(ms) = s.hold_ms {
                stability.hold = Duration::from_millis(ms);
            }
            if let Some(ms) = s.hold_down_ms {
                stability.hold_down = Duration::from_millis(ms);
            }
            if let Some(ms) = s.settle_ms {
                stability.settle = Duration::from_millis(ms);
            }
        }
        let placement = placement_config(&mut doc, raw.placement);
        let etcd = raw.etcd.and_then(|e| etcd_config(&mut doc, e));
        doc.finish()?;
        match (topology, listen, identity, roots) {
            (Some(topology), Some(listen), Some(identity), Some(roots)) => Ok(ControllerConfig {
                id: raw.id,
                topology,
                listen,
                admin,
                identity,
                roots,
                stability,
                placement,
                etcd,
            }),
            _ => Err(single_error(file, "incomplete config")),
        }
    }
}

/// Checks the `placement:` section, recording each problem on its key.
fn placement_config(doc: &mut Doc, raw: Option<RawPlacement>) -> PlacementConfig {
    let mut p = PlacementConfig::default();
    let Some(raw) = raw else { return p };
    if let Some(on) = raw.enabled {
        p.enabled = on;
    }
    if let Some(ms) = raw.interval_ms {
        if !(500..=600_000).contains(&ms) {
            doc.error(
                "placement.interval_ms",
                "give 500 to 600000 ms, such as 5000",
            );
        }
        p.interval = Duration::from_millis(ms);
    }
    if let Some(c) = raw.ceiling {
        if !(c.is_finite() && c > 0.0 && c <= 1.0) {
            doc.error(
                "placement.ceiling",
                "give a share above 0 and at most 1, such as 0.8",
            );
        }
        p.ceiling = c;
    }
    if let Some(u) = raw.unit_kbps {
        if u == 0 {
            doc.error("placement.unit_kbps", "give at least 1 kbit/s, such as 100");
        }
        p.unit_kbps = u;
    }
    if let Some(m) = raw.max_moves {
        p.max_moves = m;
    }
    p
}

/// Checks the `etcd:` section, recording each problem on its key.
fn etcd_config(doc: &mut Doc, raw: RawEtcd) -> Option<EtcdConfig> {
    let mut ok = true;
    if raw.endpoints.is_empty() {
        doc.error(
            "etcd.endpoints",
            "give at least one etcd endpoint, such as `10.0.0.11:2379`",
        );
        ok = false;
    }
    for (i, e) in raw.endpoints.iter().enumerate() {
        let bare = e.strip_prefix("http://").unwrap_or(e).trim_end_matches('/');
        let port = bare.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
        if e.starts_with("https://") {
            doc.error(
                &format!("etcd.endpoints[{i}]"),
                format!("`{e}`: TLS to etcd is not supported yet; give `http://host:port` on a private network"),
            );
            ok = false;
        } else if bare.is_empty() || bare.contains('/') || !matches!(port, Some(Ok(p)) if p > 0) {
            doc.error(
                &format!("etcd.endpoints[{i}]"),
                format!(
                    "`{e}` is not an etcd endpoint; expected host:port such as `10.0.0.11:2379`"
                ),
            );
            ok = false;
        }
    }
    let prefix = raw
        .prefix
        .unwrap_or_else(|| DEFAULT_ETCD_PREFIX.to_string());
    if prefix.is_empty() || prefix.len() > 256 {
        doc.error(
            "etcd.prefix",
            "give a key prefix of 1 to 256 bytes, such as `/overlay/controller-leader`",
        );
        ok = false;
    }
    let ttl = raw.lease_ttl_s.unwrap_or(DEFAULT_LEASE_TTL.as_secs());
    if !(2..=60).contains(&ttl) {
        doc.error(
            "etcd.lease_ttl_s",
            format!("{ttl} is out of range; give 2 to 60 seconds (etcd's minimum is 2; a dead leader is replaced within about this long)"),
        );
        ok = false;
    }
    ok.then(|| EtcdConfig {
        endpoints: raw
            .endpoints
            .iter()
            .map(|e| {
                if e.starts_with("http://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect(),
        prefix,
        lease_ttl: Duration::from_secs(ttl),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA, a certificate for `ctl-1` and a topology naming it, in `dir`.
    fn fleet_files(dir: &Path) {
        pki::init_ca(&dir.join("ca"), false).expect("ca");
        pki::issue(&dir.join("ca"), "ctl-1", &dir.join("certs"), false).expect("issue");
        std::fs::write(
            dir.join("topology.yaml"),
            "version: 1\ncontrollers:\n  - { id: ctl-1, addr: \"127.0.0.1:7000\" }\n  - { id: ctl-2, addr: \"127.0.0.1:7001\" }\nnodes:\n\
             \x20 - { id: aaa, city: A, country: JP, region: asia, lat: 35.6, lon: 139.6, addr: \"127.0.0.1:1\" }\n\
             \x20 - { id: bbb, city: B, country: US, region: na, lat: 34.0, lon: -118.2, addr: \"127.0.0.1:2\" }\n\
             links:\n  - { between: [aaa, bbb], kind: undersea }\n",
        )
        .expect("write");
    }

    const HEAD: &str = "id: ctl-1\ntopology: topology.yaml\ncert: certs/ctl-1.pem\nkey: certs/ctl-1.key\nca: ca/ca.pem\n";

    #[test]
    fn a_placement_section_sets_its_keys_and_bad_values_name_theirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        fleet_files(dir.path());
        let cfg = ControllerConfig::parse("c.yaml", HEAD, dir.path()).expect("parses");
        assert_eq!(cfg.placement, PlacementConfig::default());
        let text = format!(
            "{HEAD}placement: {{ enabled: false, interval_ms: 2000, ceiling: 0.7, unit_kbps: 50, max_moves: 10 }}\n"
        );
        let cfg = ControllerConfig::parse("c.yaml", &text, dir.path()).expect("parses");
        assert_eq!(
            cfg.placement,
            PlacementConfig {
                enabled: false,
                interval: Duration::from_secs(2),
                ceiling: 0.7,
                unit_kbps: 50,
                max_moves: 10,
                ..PlacementConfig::default()
            }
        );
        let bad = format!("{HEAD}placement: {{ interval_ms: 10, ceiling: 1.5, unit_kbps: 0 }}\n");
        let e = ControllerConfig::parse("c.yaml", &bad, dir.path())
            .expect_err("refused")
            .to_string();
        for key in [
            "placement.interval_ms",
            "placement.ceiling",
            "placement.unit_kbps",
        ] {
            assert!(e.contains(key), "{key} missing from: {e}");
        }
    }

    #[test]
    fn without_an_etcd_section_a_controller_leads_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        fleet_files(dir.path());
        let cfg = ControllerConfig::parse("c.yaml", HEAD, dir.path()).expect("parses");
        assert_eq!(cfg.etcd, None);
    }

    #[test]
    fn an_etcd_section_gets_defaults_and_normalised_endpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        fleet_files(dir.path());
        let text =
            format!("{HEAD}etcd:\n  endpoints: [\"10.0.0.11:2379\", \"http://10.0.0.12:2379\"]\n");
        let cfg = ControllerConfig::parse("c.yaml", &text, dir.path()).expect("parses");
        assert_eq!(
            cfg.etcd,
            Some(EtcdConfig {
                endpoints: vec![
                    "http://10.0.0.11:2379".into(),
                    "http://10.0.0.12:2379".into()
                ],
                prefix: DEFAULT_ETCD_PREFIX.into(),
                lease_ttl: Duration::from_secs(3),
            })
        );
        let text = format!(
            "{HEAD}etcd:\n  endpoints: [\"127.0.0.1:2379\"]\n  prefix: /fleet-a/leader\n  lease_ttl_s: 5\n"
        );
        let etcd = ControllerConfig::parse("c.yaml", &text, dir.path())
            .expect("parses")
            .etcd
            .expect("etcd");
        assert_eq!(
            (etcd.prefix.as_str(), etcd.lease_ttl),
            ("/fleet-a/leader", Duration::from_secs(5))
        );
    }

    #[test]
    fn every_problem_of_an_etcd_section_is_reported_on_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        fleet_files(dir.path());
        let text = format!(
            "{HEAD}etcd:\n  endpoints:\n    - \"10.0.0.11\"\n    - \"https://10.0.0.12:2379\"\n  prefix: \"\"\n  lease_ttl_s: 1\n"
        );
        let errors = ControllerConfig::parse("c.yaml", &text, dir.path())
            .expect_err("refused")
            .to_string();
        for expected in [
            "c.yaml:8: etcd.endpoints[0]: `10.0.0.11` is not an etcd endpoint",
            "c.yaml:9: etcd.endpoints[1]: `https://10.0.0.12:2379`: TLS to etcd is not supported",
            "c.yaml:10: etcd.prefix:",
            "c.yaml:11: etcd.lease_ttl_s: 1 is out of range",
        ] {
            assert!(errors.contains(expected), "{expected:?} in:\n{errors}");
        }
        let text = format!("{HEAD}etcd:\n  endpoints: []\n  ttl: 3\n");
        let errors = ControllerConfig::parse("c.yaml", &text, dir.path())
            .expect_err("refused")
            .to_string();
        assert!(
            errors.contains("c.yaml:8: etcd.ttl: unknown field `ttl`"),
            "{errors}"
        );
    }
}
