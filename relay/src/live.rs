//! The config in force and what follows from it, as one value: a reload builds
//! a new [`LiveConfig`] and swaps it in whole, so a reader never sees the new
//! neighbours with the old services, or the new config with the old TLS.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::RelayConfig;
use crate::datapath::udp_ingress::UdpIngress;
use crate::metrics::ServiceMetrics;

#[derive(Debug)]
pub struct LiveConfig {
    pub cfg: Arc<RelayConfig>,
    /// This node's neighbours in the topology in force: (node key, node id).
    pub neighbors: Vec<(u32, String)>,
    /// The UDP services whose ingress is this node, by service key.
    pub udp_ingress: HashMap<u32, Arc<UdpIngress>>,
    /// Per-service counters of the services that end here.
    pub services: ServiceMetrics,
    /// TLS for dialing peers and the controller (a reload may rotate certificates).
    pub client: quinn::ClientConfig,
}

/// Where the config in force lives: read lock-free, replaced by a reload.
pub type Live = arc_swap::ArcSwap<LiveConfig>;
