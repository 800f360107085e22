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
use topology::{ConfigErrors, Topology};

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
}

pub const DEFAULT_ADMIN: &str = "127.0.0.1:9000";

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
        }
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
            }),
            _ => Err(single_error(file, "incomplete config")),
        }
    }
}
