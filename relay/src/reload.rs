//! Reload: puts a re-read config in force while the relay runs, changing only
//! what differs (the diff is `relay_core::reload_plan`). Services and links that
//! stay keep running, with their flows; new ones come up; removed ones go.
//! Certificates and the CA are re-read on every reload (rotation needs no
//! restart). The node id and the QUIC and admin addresses cannot change without
//! a restart: a config that changes them is refused and the running one stays.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::bail;
use relay_core::reload_plan::{ReloadPlan, ReloadSummary, Side};
use relay_core::{ForwardingTable, RoutesInForce};

use crate::config::RelayConfig;
use crate::datapath::link_registry::CLOSE_NOT_A_PEER;
use crate::live::LiveConfig;
use crate::runtime::{self, RelayHandle};

impl RelayHandle {
    /// Puts `new` in force, changing only what differs from the running config.
    /// Every new ingress socket is bound before anything changes: if one cannot
    /// be, the reload is refused and the running config stays whole.
    pub async fn reload(&mut self, new: RelayConfig) -> anyhow::Result<ReloadSummary> {
        let ctx = self.ctx.clone();
        let live = ctx.live();
        let old = &live.cfg;
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
        let (before, after) = (
            Side {
                topology: &old.topology,
                node: old.node,
            },
            Side {
                topology: &new.topology,
                node: new.node,
            },
        );
        let plan = ReloadPlan::between(before, after);
        let summary = ReloadSummary {
            certificate_changed: new.identity.cert_chain != old.identity.cert_chain,
            plan: plan.clone(),
        };
        let new_services = after.services_here();
        let ingress_here = |names: &mut dyn Iterator<Item = &str>| -> Vec<&topology::Service> {
            names
                .filter_map(|n| new_services.get(n).copied())
                .filter(|s| s.ingress_node == new.node)
                .collect()
        };
        // Counters of services that stay carry on; new ones start at zero.
        let counters = live.services.rebuilt(&new.topology, new.node);
        // New services bind now; a changed one may reuse its old address, so it
        // binds after its old socket is closed, below.
        let fresh = runtime::bind_services(
            &new,
            &counters,
            ingress_here(&mut plan.services_added.iter().map(String::as_str)),
        )
        .await?;

        // TLS: re-read on every reload; the server accepts the new neighbours only.
        let new_neighbors = after.neighbors();
        ctx.policy
            .set(new_neighbors.iter().map(|(_, id)| id.clone()));
        let (server, client) = runtime::tls_configs(&new, &ctx.policy)?;
        self.endpoint.set_server_config(Some(server));

        // Stop the ingress of removed and changed services, and forget their
        // egress flows (closing each flow's socket).
        let stopping: Vec<u32> = before
            .services_here()
            .iter()
            .filter(|(name, _)| plan.services_stopping().any(|s| s == **name))
            .map(|(_, s)| s.key)
            .collect();
        let mut udp_ingress: HashMap<_, _> = live.udp_ingress.clone();
        {
            let mut stops = ctx.stops();
            for key in &stopping {
                if let Some(stop) = stops.services.remove(key) {
                    stop.cancel();
                }
                udp_ingress.remove(key);
                ctx.egress.forget_service(*key);
            }
        }
        // Let the stopped tasks drop their sockets before changed services rebind.
        tokio::task::yield_now().await;
        let changed = || ingress_here(&mut plan.services_changed.iter().map(String::as_str));
        let mut restarted = runtime::bind_services(&new, &counters, changed()).await;
        if restarted.is_err() {
            // The old socket may still be closing: one more try after a pause.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            restarted = runtime::bind_services(&new, &counters, changed()).await;
        }
        let (mut udp_new, mut tcp_new, mut addrs) = (fresh.udp, fresh.tcp, fresh.addrs);
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
        let topology_table = ForwardingTable::from_topology(&new.topology, new.node);
        ctx.admission
            .set_max_flows(new.tuning.max_flows_per_service);
        let new = Arc::new(new);
        ctx.live.store(Arc::new(LiveConfig {
            cfg: new.clone(),
            neighbors: new_neighbors.clone(),
            udp_ingress,
            services: counters,
            client,
        }));
        // Without a controller table yet, routes follow the topology in force.
        // Checked and replaced as one step: a controller table arriving now wins.
        ctx.forwarder.install_with(|current| {
            current
                .is_topology_routes()
                .then(|| RoutesInForce::from_topology(topology_table.clone()))
        });

        for name in plan.services_stopping() {
            self.ingress_addrs.remove(name);
        }
        self.ingress_addrs.extend(addrs);
        runtime::serve_services(&ctx, &self.tasks, udp_new.into_values(), tcp_new);

        let removed: BTreeSet<&str> = plan.links_removed.iter().map(String::as_str).collect();
        for (key, id) in before.neighbors() {
            if !removed.contains(id.as_str()) {
                continue;
            }
            if let Some(stop) = ctx.stops().links.remove(&key) {
                stop.cancel();
            }
            if let Some(conn) = ctx.links.connected(key) {
                conn.close(CLOSE_NOT_A_PEER.into(), b"link removed from the topology");
            }
            tracing::info!(peer = %id, "link removed by reload");
        }
        for neighbor in new_neighbors
            .into_iter()
            .filter(|(_, id)| plan.links_added.contains(id))
        {
            runtime::dial_neighbor(&ctx, &self.tasks, &self.endpoint, neighbor);
        }
        ctx.links_changed.notify_one();
        if let Some(e) = restart_error {
            bail!(
                "reload applied except a changed service, now down: {e:#}; {summary} (fix the config and reload again)"
            );
        }
        Ok(summary)
    }
}
