//! The relay's session with the controller: report links, receive route tables,
//! apply them atomically and acknowledge. Without a controller the relay keeps
//! forwarding on the last table it had (and still fails over locally).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use quinn::Endpoint;
use tracing::{debug, info, warn, Instrument};

use crate::control::{self, ControllerMessage, RelayMessage, TableUpdate};
use crate::fwd::{ForwardingTable, Route};
use crate::node::Shared;

/// How often a relay reports its links even when nothing changed.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps a session with one of the topology's controllers until shutdown.
pub async fn controller_loop(shared: Arc<Shared>, endpoint: Endpoint) {
    let mut backoff = shared.cfg().tuning.reconnect_min;
    let mut attempt = 0usize;
    loop {
        // Read each attempt, so a reload that adds, moves or removes a
        // controller applies from the next connection.
        let cfg = shared.cfg();
        let tuning = cfg.tuning.clone();
        let controllers = &cfg.topology.controllers;
        if controllers.is_empty() {
            tokio::select! {
                biased;
                _ = shared.cancel.cancelled() => return,
                _ = tokio::time::sleep(tuning.reconnect_max) => continue,
            }
        }
        let target = controllers[attempt % controllers.len()].clone();
        attempt += 1;
        let addr = cfg.controller_addr.unwrap_or(target.addr);
        let span = tracing::info_span!("controller", controller = %target.id, %addr);
        let session = async {
            let connecting = endpoint
                .connect_with(shared.client_config(), addr, &target.id)
                .map_err(|e| e.to_string())?;
            let conn = tokio::time::timeout(tuning.setup_timeout, connecting)
                .await
                .map_err(|_| "handshake timed out".to_string())?
                .map_err(|e| e.to_string())?;
            info!("connected to controller");
            run_session(&shared, conn).await
        }
        .instrument(span);
        let result = tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            r = session => r,
        };
        match result {
            Ok(()) => backoff = tuning.reconnect_min,
            Err(e) => warn!(controller = %target.id, %addr, "controller session ended: {e}"),
        }
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(tuning.reconnect_max);
    }
}

async fn run_session(shared: &Arc<Shared>, conn: quinn::Connection) -> Result<(), String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let hello = RelayMessage::Hello {
        node: shared.node_id().to_string(),
        table_version: shared.table_version.load(Ordering::Relaxed),
    };
    control::write(&mut send, &hello)
        .await
        .map_err(|e| e.to_string())?;
    let mut ticker = tokio::time::interval(REPORT_INTERVAL);
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => {
                conn.close(0u32.into(), b"relay shutting down");
                return Ok(());
            }
            m = control::read::<ControllerMessage, _>(&mut recv) => match m.map_err(|e| e.to_string())? {
                Some(ControllerMessage::Table(update)) => {
                    let version = update.version;
                    apply(shared, update);
                    control::write(&mut send, &RelayMessage::Applied { version }).await.map_err(|e| e.to_string())?;
                }
                None => return Err("controller closed the session".into()),
            },
            _ = shared.links_changed.notified() => send_report(shared, &mut send).await?,
            _ = ticker.tick() => send_report(shared, &mut send).await?,
        }
    }
}

async fn send_report(shared: &Arc<Shared>, send: &mut quinn::SendStream) -> Result<(), String> {
    let links = shared.link_reports();
    let draining = shared.is_draining();
    control::write(send, &RelayMessage::Links { links, draining })
        .await
        .map_err(|e| e.to_string())
}

/// Installs a table from the controller, replacing the one in force at once,
/// and logs the reroute: every destination whose next hop moved.
fn apply(shared: &Arc<Shared>, update: TableUpdate) {
    let key = topology::wire_key;
    let set = update.set.iter().map(|r| {
        (
            key(&r.dst),
            Route {
                primary: key(&r.primary),
                backup: r.backup.as_deref().map(key),
            },
        )
    });
    let remove = update.remove.iter().map(|d| key(d));
    let old = shared.table();
    let table = old.updated(update.full, set, remove);
    let moves = next_hop_changes(&old, &table);
    shared.set_table(table);
    shared
        .table_version
        .store(update.version, Ordering::Relaxed);
    let changes = update.set.len() + update.remove.len();
    if moves.is_empty() {
        debug!(
            version = update.version,
            full = update.full,
            changes,
            "route table applied; no next hop moved"
        );
    } else {
        info!(
            version = update.version,
            full = update.full,
            changes,
            cause = "controller push",
            moved = moves.len(),
            next_hops = %NextHopMoves::new(&shared.cfg().topology, &moves),
            "reroute: route table applied"
        );
    }
}

/// A destination whose next hop moved: (destination, old, new) as node keys;
/// `None` is no next hop (no route, or dropped for want of a live link).
pub(crate) type NextHopMove = (u32, Option<u32>, Option<u32>);

/// Destinations whose primary next hop differs between two tables, in key order.
pub(crate) fn next_hop_changes(old: &ForwardingTable, new: &ForwardingTable) -> Vec<NextHopMove> {
    let dsts: std::collections::BTreeSet<u32> = old
        .routes()
        .chain(new.routes())
        .map(|(dst, _)| dst)
        .collect();
    dsts.into_iter()
        .filter_map(|dst| {
            let before = old.route(dst).map(|r| r.primary);
            let after = new.route(dst).map(|r| r.primary);
            (before != after).then_some((dst, before, after))
        })
        .collect()
}

/// Next-hop moves for a log line, by node id: `lax: tyo → sea, pdx: tyo → -`.
/// Long lists are cut after [`NextHopMoves::SHOWN`] with a count of the rest.
pub(crate) struct NextHopMoves<'a> {
    topology: &'a topology::Topology,
    moves: &'a [NextHopMove],
}

impl<'a> NextHopMoves<'a> {
    const SHOWN: usize = 16;

    pub(crate) fn new(topology: &'a topology::Topology, moves: &'a [NextHopMove]) -> Self {
        NextHopMoves { topology, moves }
    }

    fn name(&self, key: Option<u32>) -> String {
        match key {
            None => "-".to_string(),
            Some(k) => self
                .topology
                .node_by_key(k)
                .map_or_else(|| format!("{k:#x}"), |i| self.topology.node(i).id.clone()),
        }
    }
}

impl std::fmt::Display for NextHopMoves<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (dst, old, new)) in self.moves.iter().take(Self::SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let dst = self.name(Some(*dst));
            write!(f, "{dst}: {} → {}", self.name(*old), self.name(*new))?;
        }
        if self.moves.len() > Self::SHOWN {
            write!(f, ", and {} more", self.moves.len() - Self::SHOWN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn table(routes: &[(u32, u32)]) -> ForwardingTable {
        let routes: BTreeMap<u32, Route> = routes
            .iter()
            .map(|&(dst, primary)| {
                (
                    dst,
                    Route {
                        primary,
                        backup: None,
                    },
                )
            })
            .collect();
        ForwardingTable::new(1, routes)
    }

    #[test]
    fn next_hop_changes_lists_moved_added_and_removed_destinations_only() {
        let old = table(&[(10, 2), (20, 2), (30, 3)]);
        let new = table(&[(10, 2), (20, 3), (40, 4)]);
        assert_eq!(
            next_hop_changes(&old, &new),
            vec![
                (20, Some(2), Some(3)),
                (30, Some(3), None),
                (40, None, Some(4))
            ]
        );
        assert!(next_hop_changes(&new, &new).is_empty());
    }

    #[test]
    fn moves_are_shown_by_node_id_and_long_lists_are_cut() {
        let yaml = "version: 1\nnodes:\n\
            \x20 - { id: aaa, city: A, country: JP, region: asia, lat: 35.6, lon: 139.6, addr: \"127.0.0.1:1\" }\n\
            \x20 - { id: bbb, city: B, country: US, region: na, lat: 34.0, lon: -118.2, addr: \"127.0.0.1:2\" }\n\
            links:\n  - { between: [aaa, bbb], kind: undersea }\n";
        let topo = topology::parse("t.yaml", yaml).expect("topology");
        let (a, b) = (topology::wire_key("aaa"), topology::wire_key("bbb"));
        let moves = [(b, Some(b), None), (a, None, Some(b))];
        assert_eq!(
            NextHopMoves::new(&topo, &moves).to_string(),
            "bbb: bbb → -, aaa: - → bbb"
        );
        let many: Vec<NextHopMove> = (0..20).map(|_| (a, Some(a), Some(b))).collect();
        let shown = NextHopMoves::new(&topo, &many).to_string();
        assert_eq!(shown.matches("aaa: aaa → bbb").count(), 16, "{shown}");
        assert!(shown.ends_with(", and 4 more"), "{shown}");
    }
}
