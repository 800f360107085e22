//! Reload: puts a re-read config in force while the relay runs, changing only
//! what differs. Services and links that stay keep running, with their flows;
//! new ones come up; removed ones go. Certificates and the CA are re-read on
//! every reload (rotation needs no restart). The node id and the QUIC and admin
//! addresses cannot change without a restart: a config that changes them is
//! refused and the running one stays.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use anyhow::bail;
use ipnet::IpNet;
use topology::{Protocol, Service, Topology};

use crate::config::RelayConfig;
use crate::fwd::ForwardingTable;
use crate::node::{self, Live, RelayHandle};
use crate::peers::CLOSE_NOT_A_PEER;

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Services whose ingress or egress is this node, by name.
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    /// Present before and after but configured differently: restarted, so
    /// their flows start anew.
    pub services_changed: Vec<String>,
    /// Neighbors, by node id.
    pub links_added: Vec<String>,
    pub links_removed: Vec<String>,
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
        list("services", "+", &self.services_added);
        list("services", "-", &self.services_removed);
        list("services", "~", &self.services_changed);
        list("links", "+", &self.links_added);
        list("links", "-", &self.links_removed);
        if self.certificate_changed {
            parts.push("new certificate".to_string());
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// How a service looks from one node, in node ids rather than indices (which
/// shift when nodes are added), so two topologies' services compare.
#[derive(Debug, PartialEq)]
struct ServiceView<'a> {
    protocol: Protocol,
    ingress: &'a str,
    listen: std::net::SocketAddr,
    egress: &'a str,
    target: std::net::SocketAddr,
    allow: &'a [IpNet],
}

/// The services ending at `cfg`'s node, by name.
fn services_here(cfg: &RelayConfig) -> BTreeMap<&str, (&Service, ServiceView<'_>)> {
    let t: &Topology = &cfg.topology;
    t.services
        .iter()
        .filter(|s| s.ingress_node == cfg.node || s.egress_node == cfg.node)
        .map(|s| {
            let view = ServiceView {
                protocol: s.protocol,
                ingress: &t.node(s.ingress_node).id,
                listen: s.listen,
                egress: &t.node(s.egress_node).id,
                target: s.target,
                allow: &s.allow,
            };
            (s.name.as_str(), (s, view))
        })
        .collect()
}

impl RelayHandle {
    /// Puts `new` in force, changing only what differs from the running config.
    /// Every new ingress socket is bound before anything changes: if one cannot
    /// be, the reload is refused and the running config stays whole.
    pub async fn reload(&mut self, new: RelayConfig) -> anyhow::Result<ReloadSummary> {
        let shared = self.shared.clone();
        let old = shared.cfg();
        if new.node_id() != old.node_id() {
            bail!(
                "the node id changed from {} to {}: restart the relay to apply it",
                old.node_id(),
                new.node_id()
            );
        }
        if new.listen != old.listen {
            bail!(
                "the QUIC address changed from {} to {}: restart the relay to apply it",
                old.listen,
                new.listen
            );
        }
        if new.admin != old.admin {
            bail!("the admin address changed: restart the relay to apply it");
        }

        let (before, after) = (services_here(&old), services_here(&new));
        let mut summary = ReloadSummary::default();
        let mut restart = Vec::new(); // changed services, stopped then started anew
        for (name, (service, view)) in &after {
            match before.get(name) {
                None => summary.services_added.push(name.to_string()),
                Some((_, old_view)) if old_view != view => {
                    summary.services_changed.push(name.to_string());
                    restart.push(*service);
                }
                Some(_) => {}
            }
        }
        for (name, (service, _)) in &before {
            if !after.contains_key(name) {
                summary.services_removed.push(name.to_string());
                restart.push(*service);
            }
        }
        let is_ingress_here = |s: &&Service| s.ingress_node == new.node;
        // Counters of services that stay carry on; new ones start at zero.
        let counters = shared.services().rebuilt(&new.topology, new.node);
        // New services bind now; a changed one may reuse its old address, so it
        // binds after its old socket is closed, below.
        let fresh = node::bind_services(
            &new,
            &counters,
            after
                .iter()
                .filter(|(name, _)| !before.contains_key(*name))
                .map(|(_, (s, _))| *s)
                .filter(is_ingress_here),
        )
        .await?;

        let old_neighbors = shared.neighbors();
        let new_neighbors = node::neighbors_of(&new);
        let had = |id: &str, list: &[(u32, String)]| list.iter().any(|(_, n)| n == id);
        summary.links_added = new_neighbors
            .iter()
            .filter(|(_, id)| !had(id, &old_neighbors))
            .map(|(_, id)| id.clone())
            .collect();
        let removed_links: Vec<(u32, String)> = old_neighbors
            .iter()
            .filter(|(_, id)| !had(id, &new_neighbors))
            .cloned()
            .collect();
        summary.links_removed = removed_links.iter().map(|(_, id)| id.clone()).collect();
        summary.certificate_changed = new.identity.cert_chain != old.identity.cert_chain;

        // TLS: re-read on every reload; the server accepts the new neighbors only.
        shared
            .policy
            .set(new_neighbors.iter().map(|(_, id)| id.clone()));
        let (server, client) = node::tls_configs(&new, &shared.policy)?;
        self.endpoint.set_server_config(Some(server));

        // Stop the ingress of removed and changed services, and forget their
        // egress flows (closing each flow's socket).
        let mut udp_ingress: std::collections::HashMap<_, _> = (*shared.udp_ingress()).clone();
        {
            let mut stops = shared.stops.lock().unwrap_or_else(|p| p.into_inner());
            for service in &restart {
                if let Some(stop) = stops.services.remove(&service.key) {
                    stop.cancel();
                }
                udp_ingress.remove(&service.key);
                shared.udp_egress.forget_service(service.key);
            }
        }
        // Let the stopped tasks drop their sockets before changed services rebind.
        tokio::task::yield_now().await;
        let bind_restarted = || {
            node::bind_services(
                &new,
                &counters,
                restart
                    .iter()
                    .filter_map(|s| after.get(s.name.as_str()).map(|(s, _)| *s))
                    .filter(is_ingress_here),
            )
        };
        let mut restarted = bind_restarted().await;
        if restarted.is_err() {
            // The old socket may still be closing: one more try after a pause.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            restarted = bind_restarted().await;
        }

        let mut udp_new = fresh.udp;
        let mut tcp_new = fresh.tcp;
        let mut addrs = fresh.addrs;
        let restart_error = match restarted {
            Ok(b) => {
                udp_new.extend(b.udp);
                tcp_new.extend(b.tcp);
                addrs.extend(b.addrs);
                None
            }
            Err(e) => Some(e),
        };
        udp_ingress.extend(udp_new.iter().map(|(k, v)| (*k, v.clone())));
        let live = Live {
            neighbors: new_neighbors.clone(),
            udp_ingress,
            services: counters,
            client,
        };
        let topology_routes = shared
            .table_version
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0;
        let table = ForwardingTable::from_topology(&new.topology, new.node);
        shared.set_config(new, live);
        if topology_routes {
            // Without a controller table yet, routes follow the topology in force.
            shared.set_table(table);
        }

        for name in summary
            .services_removed
            .iter()
            .chain(&summary.services_changed)
        {
            self.ingress_addrs.remove(name);
        }
        self.ingress_addrs.extend(addrs);
        node::serve_services(&shared, &mut self.tasks, udp_new.into_values(), tcp_new);

        for (key, id) in &removed_links {
            if let Some(stop) = shared
                .stops
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .links
                .remove(key)
            {
                stop.cancel();
            }
            if let Some(conn) = shared.peers.connected(*key) {
                conn.close(CLOSE_NOT_A_PEER.into(), b"link removed from the topology");
            }
            tracing::info!(peer = %id, "link removed by reload");
        }
        for neighbor in new_neighbors
            .into_iter()
            .filter(|(_, id)| summary.links_added.contains(id))
        {
            node::dial_neighbor(&shared, &mut self.tasks, &self.endpoint, neighbor);
        }
        shared.links_changed.notify_one();
        if let Some(e) = restart_error {
            bail!(
                "reload applied except a changed service, now down: {e:#}; {summary} (fix the config and reload again)"
            );
        }
        Ok(summary)
    }

    /// Reads the config in force (for callers comparing before a reload).
    pub fn config(&self) -> Arc<RelayConfig> {
        self.shared.cfg()
    }
}
