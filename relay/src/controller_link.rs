//! The relay's session with the controller: report links, receive route tables,
//! apply them atomically and acknowledge. Without a controller the relay keeps
//! forwarding on the last table it had (and still fails over locally).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use quinn::{ClientConfig, Endpoint};
use tracing::{info, warn};

use crate::control::{self, ControllerMessage, RelayMessage, TableUpdate};
use crate::fwd::Route;
use crate::node::Shared;

/// How often a relay reports its links even when nothing changed.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Keeps a session with one of the topology's controllers until shutdown.
pub async fn controller_loop(shared: Arc<Shared>, endpoint: Endpoint, client: ClientConfig) {
    let controllers = shared.cfg.topology.controllers.clone();
    if controllers.is_empty() {
        return;
    }
    let tuning = shared.cfg.tuning.clone();
    let mut backoff = tuning.reconnect_min;
    let mut attempt = 0usize;
    loop {
        let target = &controllers[attempt % controllers.len()];
        attempt += 1;
        let addr = shared.cfg.controller_addr.unwrap_or(target.addr);
        let session = async {
            let connecting = endpoint
                .connect_with(client.clone(), addr, &target.id)
                .map_err(|e| e.to_string())?;
            let conn = tokio::time::timeout(tuning.setup_timeout, connecting)
                .await
                .map_err(|_| "handshake timed out".to_string())?
                .map_err(|e| e.to_string())?;
            info!(controller = %target.id, %addr, "connected to controller");
            run_session(&shared, conn).await
        };
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
        node: shared.cfg.node_id().to_string(),
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
    control::write(send, &RelayMessage::Links { links })
        .await
        .map_err(|e| e.to_string())
}

/// Installs a table from the controller, replacing the one in force at once.
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
    let table = shared.table().updated(update.full, set, remove);
    shared.set_table(table);
    shared
        .table_version
        .store(update.version, Ordering::Relaxed);
    info!(
        version = update.version,
        full = update.full,
        changes = update.set.len() + update.remove.len(),
        "route table applied"
    );
}
