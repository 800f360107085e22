//! The lab's fleet: one relay per node of the topology, in this process, on
//! loopback, with every link passing through a link emulator that applies the
//! link's own one-way delay (plus a little jitter).

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use relay::emulator::{EmulatedLink, LinkParams};
use relay::pki::TestCa;
use relay::{RelayConfig, RelayHandle};
use topology::Topology;

/// A running lab fleet.
pub struct LabFleet {
    pub topology: Arc<Topology>,
    pub relays: BTreeMap<String, RelayHandle>,
    /// Emulated links, keyed by the link's index in the topology.
    pub links: Vec<EmulatedLink>,
}

/// The emulator parameters for a link: its expected delay, jitter of 1% of it.
pub fn link_params(delay_us: u64, loss: f64) -> anyhow::Result<LinkParams> {
    let delay = Duration::from_micros(delay_us);
    Ok(LinkParams::new(delay, delay / 100, loss)?)
}

impl LabFleet {
    /// Binds every relay, starts one emulator per link, starts every relay.
    pub async fn start(topology: Arc<Topology>, loss: f64) -> anyhow::Result<LabFleet> {
        let mut sockets = Vec::new();
        for _ in &topology.nodes {
            sockets.push(UdpSocket::bind("127.0.0.1:0").context("binding a relay socket")?);
        }
        let addrs: Vec<_> = sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<_, _>>()?;

        let mut links = Vec::new();
        for (i, l) in topology.links.iter().enumerate() {
            let params = link_params(l.delay_us, loss)?;
            let link =
                EmulatedLink::start(addrs[l.a.get()], addrs[l.b.get()], params, i as u64 + 1)
                    .await
                    .context("starting a link emulator")?;
            links.push(link);
        }

        let ca = TestCa::new();
        let roots = Arc::new(ca.roots());
        let mut relays = BTreeMap::new();
        for (i, socket) in sockets.into_iter().enumerate() {
            let idx = topology::NodeIdx(i as u32);
            let id = topology.node(idx).id.clone();
            let mut cfg = RelayConfig::new(topology.clone(), idx, ca.issue(&id), roots.clone());
            cfg.listen = addrs[i];
            cfg.tuning.reconnect_max = Duration::from_secs(1);
            for (l, link) in topology.links.iter().zip(&links) {
                if l.a == idx {
                    cfg.dial.insert(topology.node_key(l.b), link.front_for_a());
                } else if l.b == idx {
                    cfg.dial.insert(topology.node_key(l.a), link.front_for_b());
                }
            }
            let relay = relay::start(cfg, socket, None)
                .await
                .with_context(|| format!("starting relay {id}"))?;
            relays.insert(id, relay);
        }
        Ok(LabFleet {
            topology,
            relays,
            links,
        })
    }

    /// How many links are up on both ends.
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

    /// Waits until every link is up, or `limit` passes.
    pub async fn wait_links_up(&self, limit: Duration) -> anyhow::Result<()> {
        let started = tokio::time::Instant::now();
        while self.links_up() < self.topology.links.len() {
            if started.elapsed() > limit {
                anyhow::bail!(
                    "only {} of {} links came up within {limit:?}",
                    self.links_up(),
                    self.topology.links.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Stops every relay at once (each drains its links for at most 3 s).
    pub async fn shutdown(self) {
        let mut stopping = tokio::task::JoinSet::new();
        for (_, r) in self.relays {
            stopping.spawn(r.shutdown());
        }
        while stopping.join_next().await.is_some() {}
        drop(self.links);
    }
}
