//! An in-process fleet on loopback: one relay per node of a topology, every link
//! through a link emulator with the link's own delay, and optionally the
//! controller, or controllers run elsewhere (processes a test starts, for high
//! availability). The lab runs on it; so do the end-to-end tests.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use controller::{ControllerConfig, ControllerHandle};
use emulator::{EmulatedLink, LinkHandle, LinkParams};
use pki::TestCa;
use relay::{RelayConfig, RelayHandle};
use topology::Topology;

/// The controller's id inside a fleet.
pub const CONTROLLER_ID: &str = "controller";

/// How a fleet is set up.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Random loss on every emulated link, 0.0 to 1.0.
    pub loss: f64,
    /// Jitter on every link as a fraction of its delay (uniform ±).
    pub jitter: f64,
    /// Start a controller (and point every relay at it).
    pub controller: bool,
    /// Put every link through a link emulator (with the link's delay); without,
    /// relays talk directly over loopback (for measuring the relays themselves).
    pub emulate: bool,
    /// Adjusts each relay's config before it starts.
    pub tune_relay: fn(&mut RelayConfig),
    /// Adjusts the controller's config before it starts.
    pub tune_controller: fn(&mut ControllerConfig),
    /// Emulate each link's bandwidth: its `capacity_mbps` times this scale
    /// (links without a capacity stay unlimited); `None`: no bandwidth limits.
    /// The lab's `--capacity-scale`: a 2-core machine cannot carry a 20 Gbit/s
    /// line's worth of classes, but it can carry a line scaled to its classes.
    pub capacity_scale: Option<f64>,
    /// With `capacity_scale`: only undersea lines get a bandwidth; the other
    /// links stay unlimited (for the controller too).
    pub undersea_only: bool,
    /// Let the controller place measured traffic on paths (its default); off,
    /// traffic follows the routes alone (delay-only), for comparison.
    pub placement: bool,
    /// Controllers the fleet does not start (processes a test runs, say):
    /// they become the topology's `controllers:` and every relay keeps a
    /// session with each; their certificates come from [`Fleet::ca`]. When
    /// given, `controller` is ignored.
    pub external_controllers: Vec<topology::Controller>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            loss: 0.0,
            jitter: 0.01,
            controller: true,
            emulate: true,
            tune_relay: |_| {},
            tune_controller: |_| {},
            capacity_scale: None,
            undersea_only: false,
            placement: true,
            external_controllers: Vec::new(),
        }
    }
}

/// The emulator parameters for a link: its expected delay with the given jitter.
pub fn link_params(delay_us: u64, jitter: f64, loss: f64) -> anyhow::Result<LinkParams> {
    let delay = Duration::from_micros(delay_us);
    Ok(LinkParams::new(
        delay,
        delay.mul_f64(jitter.clamp(0.0, 1.0)),
        loss,
    )?)
}

/// A link's emulated bandwidth, kbit/s: `capacity_mbps × scale`, at least
/// 1 kbit/s; `None` when either is missing.
pub fn scaled_rate_kbps(capacity_mbps: Option<u64>, scale: Option<f64>) -> Option<u64> {
    let kbps = capacity_mbps? as f64 * 1000.0 * scale.filter(|s| s.is_finite() && *s > 0.0)?;
    Some((kbps.round() as u64).max(1))
}

/// The bandwidth `options` give link `l` in the emulator (and the controller
/// plans with): its capacity scaled, unless only undersea lines are limited
/// and it is not one.
pub fn link_rate_kbps(l: &topology::Link, options: &FleetOptions) -> Option<u64> {
    let limited = !options.undersea_only || l.kind == topology::LinkKind::Undersea;
    scaled_rate_kbps(l.capacity_mbps, options.capacity_scale.filter(|_| limited))
}

/// A running fleet.
pub struct Fleet {
    pub topology: Arc<Topology>,
    pub relays: BTreeMap<String, RelayHandle>,
    /// Emulated links, in the topology's link order.
    pub links: Vec<EmulatedLink>,
    pub controller: Option<ControllerHandle>,
    controller_addr: Option<SocketAddr>,
    ca: TestCa,
    options: FleetOptions,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("relays", &self.relays.len())
            .field("links", &self.links.len())
            .field("controller", &self.controller.is_some())
            .finish()
    }
}

impl Fleet {
    /// Binds every socket, starts the emulators, the controller (if asked) and
    /// every relay. Links come up in the background; see [`Fleet::wait_links_up`].
    pub async fn start(topology: Topology, options: FleetOptions) -> anyhow::Result<Fleet> {
        let mut topology = topology;
        let ca = TestCa::new();
        let controller_socket = if !options.external_controllers.is_empty() {
            topology.controllers = options.external_controllers.clone();
            None
        } else if options.controller {
            let socket = UdpSocket::bind("127.0.0.1:0").context("binding the controller socket")?;
            topology.controllers = vec![topology::Controller {
                id: CONTROLLER_ID.into(),
                addr: socket.local_addr()?,
            }];
            Some(socket)
        } else {
            topology.controllers.clear();
            None
        };
        let topology = Arc::new(topology);

        let mut sockets = Vec::new();
        for _ in &topology.nodes {
            sockets.push(UdpSocket::bind("127.0.0.1:0").context("binding a relay socket")?);
        }
        let addrs: Vec<_> = sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<_, _>>()?;
        let mut links = Vec::new();
        for (i, l) in topology
            .links
            .iter()
            .enumerate()
            .filter(|_| options.emulate)
        {
            let params = LinkParams {
                rate_kbps: link_rate_kbps(l, &options),
                ..link_params(l.delay_us, options.jitter, options.loss)?
            };
            let link =
                EmulatedLink::start(addrs[l.a.get()], addrs[l.b.get()], params, i as u64 + 1)
                    .await
                    .context("starting a link emulator")?;
            links.push(link);
        }

        let mut fleet = Fleet {
            topology: topology.clone(),
            relays: BTreeMap::new(),
            links,
            controller: None,
            controller_addr: None,
            ca,
            options,
        };
        if let Some(socket) = controller_socket {
            fleet.controller_addr = Some(socket.local_addr()?);
            fleet.start_controller_on(socket).await?;
        }
        let roots = Arc::new(fleet.ca.roots());
        for (i, socket) in sockets.into_iter().enumerate() {
            let idx = topology::NodeIdx(i as u32);
            let id = topology.node(idx).id.clone();
            let mut cfg =
                RelayConfig::new(topology.clone(), idx, fleet.ca.issue(&id), roots.clone());
            cfg.listen = addrs[i];
            cfg.tuning.reconnect_max = Duration::from_secs(1);
            // Dial each neighbor through its link's emulator, or (none) directly.
            if !fleet.options.emulate {
                for l in &topology.links {
                    if let Some(other) = l.other(idx) {
                        cfg.dial
                            .insert(topology.node_key(other), addrs[other.get()]);
                    }
                }
            }
            for (l, link) in topology.links.iter().zip(&fleet.links) {
                if l.a == idx {
                    cfg.dial.insert(topology.node_key(l.b), link.front_for_a());
                } else if l.b == idx {
                    cfg.dial.insert(topology.node_key(l.a), link.front_for_b());
                }
            }
            (fleet.options.tune_relay)(&mut cfg);
            let relay = relay::start(cfg, socket, None)
                .await
                .with_context(|| format!("starting relay {id}"))?;
            fleet.relays.insert(id, relay);
        }
        Ok(fleet)
    }

    async fn start_controller_on(&mut self, socket: UdpSocket) -> anyhow::Result<()> {
        let identity = self.ca.issue(CONTROLLER_ID);
        let mut cfg = ControllerConfig::new(
            self.topology.clone(),
            CONTROLLER_ID,
            identity,
            Arc::new(self.ca.roots()),
        );
        cfg.listen = socket.local_addr()?;
        // The controller places traffic on the bandwidth the emulator enforces.
        if let Some(scale) = self.options.capacity_scale {
            cfg.placement.capacity_scale = scale;
            cfg.placement.undersea_only = self.options.undersea_only;
        }
        cfg.placement.enabled = self.options.placement;
        (self.options.tune_controller)(&mut cfg);
        self.controller = Some(
            controller::start(cfg, socket, None)
                .await
                .context("starting the controller")?,
        );
        Ok(())
    }

    /// Stops the controller (relays keep forwarding on their last tables).
    pub async fn stop_controller(&mut self) {
        if let Some(c) = self.controller.take() {
            c.shutdown().await;
        }
    }

    /// Starts the controller again on its address; it rebuilds state from reports.
    pub async fn start_controller(&mut self) -> anyhow::Result<()> {
        let addr = self
            .controller_addr
            .context("this fleet has no controller")?;
        let socket =
            UdpSocket::bind(addr).with_context(|| format!("rebinding the controller on {addr}"))?;
        self.start_controller_on(socket).await
    }

    /// The fleet's CA (for certificates of daemons a test runs as processes).
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    pub fn relay(&self, id: &str) -> &RelayHandle {
        &self.relays[id]
    }

    /// The emulator handle of the link between `a` and `b` (None without emulation).
    pub fn link(&self, a: &str, b: &str) -> Option<LinkHandle> {
        let (a, b) = (self.topology.node_idx(a)?, self.topology.node_idx(b)?);
        let l = self.topology.link_between(a, b)?;
        self.links.get(l.get()).map(|link| link.handle())
    }

    /// How many links are up (probes passing) on both ends.
    pub fn links_up(&self) -> usize {
        let t = &self.topology;
        t.links
            .iter()
            .filter(|l| {
                let (a, b) = (&t.node(l.a).id, &t.node(l.b).id);
                self.relays[a].peer_up(b) && self.relays[b].peer_up(a)
            })
            .count()
    }

    /// [`Fleet::start`], then [`Fleet::wait_ready`] within `limit`.
    pub async fn start_ready(
        topology: Topology,
        options: FleetOptions,
        limit: Duration,
    ) -> anyhow::Result<Fleet> {
        let fleet = Fleet::start(topology, options).await?;
        fleet.wait_ready(limit).await?;
        Ok(fleet)
    }

    /// Waits until every link is up and, with a controller, every relay has a
    /// table from it; fails after `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        loop {
            let links_ok = self.links_up() == self.topology.links.len();
            // Every relay holds the controller's current tables (not an early,
            // emptier version pushed while links were still coming up).
            let tables_ok = match &self.controller {
                None => true,
                // ...and the controller has every link in force, so it has heard the
                // last "up" reports and its tables are the converged ones.
                Some(c) => {
                    let view = c.shared.view();
                    let version = view.tables.version;
                    let all_in_force = view.all_links_in_force();
                    // ...and past their first seconds, when measurements still
                    // move costs without a hold: ready means routes hold still.
                    let settled = view.all_links_settled(std::time::Instant::now());
                    all_in_force
                        && settled
                        && self
                            .relays
                            .values()
                            .all(|r| r.status().table_version == version)
                }
            };
            if links_ok && tables_ok {
                return Ok(());
            }
            if started.elapsed() > limit {
                anyhow::bail!("not ready within {limit:?}: {}", self.not_ready());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What keeps the fleet from being ready, by name: the links not up (and
    /// which end does not see them), and, with a controller, whether it has
    /// every link in force and which relays lack its current tables.
    pub fn not_ready(&self) -> String {
        let t = &self.topology;
        let down: Vec<String> = t
            .links
            .iter()
            .filter_map(|l| {
                let (a, b) = (&t.node(l.a).id, &t.node(l.b).id);
                let (ab, ba) = (self.relays[a].peer_up(b), self.relays[b].peer_up(a));
                match (ab, ba) {
                    (true, true) => None,
                    (false, false) => Some(format!("{a}–{b}")),
                    (false, true) => Some(format!("{a}–{b} (down at {a})")),
                    (true, false) => Some(format!("{a}–{b} (down at {b})")),
                }
            })
            .collect();
        let mut out = format!(
            "{} of {} links up",
            t.links.len() - down.len(),
            t.links.len()
        );
        if !down.is_empty() {
            out.push_str(&format!(" (not up: {})", list(&down)));
        }
        if let Some(c) = &self.controller {
            let view = c.shared.view();
            let version = view.tables.version;
            if !view.all_links_in_force() {
                out.push_str("; the controller does not have every link in force yet");
            }
            if !view.all_links_settled(std::time::Instant::now()) {
                out.push_str("; some links are still in their first seconds (costs settling)");
            }
            let behind: Vec<String> = self
                .relays
                .iter()
                .filter(|(_, r)| r.status().table_version != version)
                .map(|(id, _)| id.clone())
                .collect();
            if behind.is_empty() {
                out.push_str(&format!("; every relay has tables version {version}"));
            } else {
                out.push_str(&format!(
                    "; {} of {} relays lack the controller's tables version {version}: {}",
                    behind.len(),
                    self.relays.len(),
                    list(&behind)
                ));
            }
        }
        out
    }

    /// Stops every relay and the controller at once.
    pub async fn shutdown(mut self) {
        self.stop_controller().await;
        let mut stopping = tokio::task::JoinSet::new();
        for (_, r) in std::mem::take(&mut self.relays) {
            stopping.spawn(r.shutdown());
        }
        while stopping.join_next().await.is_some() {}
    }
}

/// Up to 10 names, then how many more.
fn list(names: &[String]) -> String {
    let shown = names
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match names.len() {
        n if n > 10 => format!("{shown} and {} more", n - 10),
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_links_emulated_bandwidth_is_its_capacity_scaled() {
        // A 20 Gbit/s line at 1/2,000 of its size: 10 Mbit/s.
        assert_eq!(scaled_rate_kbps(Some(20_000), Some(0.0005)), Some(10_000));
        assert_eq!(scaled_rate_kbps(Some(1), Some(1e-9)), Some(1), "never 0");
        assert_eq!(scaled_rate_kbps(None, Some(0.5)), None, "unknown capacity");
        assert_eq!(scaled_rate_kbps(Some(20_000), None), None, "no scale");
        assert_eq!(scaled_rate_kbps(Some(20_000), Some(f64::NAN)), None);
        assert_eq!(scaled_rate_kbps(Some(20_000), Some(-1.0)), None);
    }

    #[test]
    fn undersea_only_leaves_every_other_link_unlimited() {
        let world = topology::world().expect("the shipped world");
        let line = world
            .links
            .iter()
            .find(|l| l.kind == topology::LinkKind::Undersea);
        let land = world
            .links
            .iter()
            .find(|l| l.kind == topology::LinkKind::Terrestrial);
        let (line, land) = (
            line.expect("an undersea line"),
            land.expect("a terrestrial link"),
        );
        let mut options = FleetOptions {
            capacity_scale: Some(0.0001),
            ..FleetOptions::default()
        };
        assert_eq!(link_rate_kbps(line, &options), Some(2_000));
        assert!(link_rate_kbps(land, &options).is_some());
        options.undersea_only = true;
        assert_eq!(link_rate_kbps(line, &options), Some(2_000));
        assert_eq!(link_rate_kbps(land, &options), None);
    }
}
