//! The relay's session with the controller: report links, receive route tables,
//! put each in force at once (table and version as one value) and acknowledge.
//! Without a controller the relay keeps forwarding on the last table it had
//! (and still fails over locally).
//!
//! The session reads through a framed reader whose buffer lives with the
//! session, so a table that arrives in pieces while reports go out is never
//! cut: see `control_protocol::framing`.

use std::sync::Arc;
use std::time::Duration;

use control_protocol::{
    ControlCodec, ControllerMessage, RelayMessage, TableUpdate, MAX_CONTROLLER_MESSAGE,
    MAX_RELAY_MESSAGE, PROTOCOL_VERSION,
};
use futures_util::{SinkExt as _, StreamExt as _};
use quinn::Endpoint;
use rand::Rng as _;
use relay_core::backoff::Backoff;
use relay_core::routes::{next_hop_changes, NextHopMoves};
use relay_core::segment::Segment;
use relay_core::Route;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{debug, info, warn, Instrument};

use crate::context::Context;

/// How often a relay reports its links even when nothing changed.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

type Reader = FramedRead<quinn::RecvStream, ControlCodec<ControllerMessage, RelayMessage>>;
type Writer = FramedWrite<quinn::SendStream, ControlCodec<ControllerMessage, RelayMessage>>;

fn codec() -> ControlCodec<ControllerMessage, RelayMessage> {
    ControlCodec::new(MAX_CONTROLLER_MESSAGE, MAX_RELAY_MESSAGE)
}

/// Keeps a session with one of the topology's controllers until shutdown,
/// trying them in turn with a jittered backoff between attempts.
pub async fn controller_loop(ctx: Arc<Context>, endpoint: Endpoint) {
    let tuning = ctx.live.load().cfg.tuning.clone();
    let mut backoff = Backoff::new(tuning.reconnect_min, tuning.reconnect_max);
    let mut attempt = 0usize;
    loop {
        // Read each attempt, so a reload that adds, moves or removes a
        // controller applies from the next connection.
        let live = ctx.live();
        let cfg = &live.cfg;
        let controllers = &cfg.topology.controllers;
        if controllers.is_empty() {
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => return,
                _ = tokio::time::sleep(cfg.tuning.reconnect_max) => continue,
            }
        }
        let target = controllers[attempt % controllers.len()].clone();
        attempt += 1;
        let addr = cfg.controller_addr.unwrap_or(target.addr);
        let setup = cfg.tuning.setup_timeout;
        let client = live.client.clone();
        let span = tracing::info_span!("controller", controller = %target.id, %addr);
        let session = async {
            let connecting = endpoint
                .connect_with(client, addr, &target.id)
                .map_err(|e| e.to_string())?;
            let conn = tokio::time::timeout(setup, connecting)
                .await
                .map_err(|_| "handshake timed out".to_string())?
                .map_err(|e| e.to_string())?;
            info!("connected to controller");
            run_session(&ctx, conn).await
        }
        .instrument(span);
        let result = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return,
            r = session => r,
        };
        match result {
            Ok(()) => backoff.reset(),
            Err(e) => warn!(controller = %target.id, %addr, "controller session ended: {e}"),
        }
        let wait = backoff.next_wait(rand::rng().random::<f64>());
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn run_session(ctx: &Arc<Context>, conn: quinn::Connection) -> Result<(), String> {
    let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let (mut reader, mut writer): (Reader, Writer) = (
        FramedRead::new(recv, codec()),
        FramedWrite::new(send, codec()),
    );
    let hello = RelayMessage::Hello {
        node: ctx.me_id.clone(),
        table_version: ctx.forwarder.routes().version,
        protocol: PROTOCOL_VERSION,
    };
    writer.send(hello).await.map_err(|e| e.to_string())?;
    let mut ticker = tokio::time::interval(REPORT_INTERVAL);
    loop {
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => {
                conn.close(0u32.into(), b"relay shutting down");
                return Ok(());
            }
            m = reader.next() => match m {
                Some(Ok(ControllerMessage::Table(update))) => {
                    let version = update.version;
                    apply(ctx, update);
                    writer.send(RelayMessage::Applied { version }).await.map_err(|e| e.to_string())?;
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("controller closed the session".into()),
            },
            _ = ctx.links_changed.notified() => send_report(ctx, &mut writer).await?,
            _ = ticker.tick() => send_report(ctx, &mut writer).await?,
        }
    }
}

async fn send_report(ctx: &Context, writer: &mut Writer) -> Result<(), String> {
    let links = ctx.link_reports();
    let draining = ctx.admission.is_draining();
    writer
        .send(RelayMessage::Links { links, draining })
        .await
        .map_err(|e| e.to_string())
}

/// Puts a table from the controller in force with its version, at once, and
/// logs the reroute: every destination whose next hop moved.
fn apply(ctx: &Context, update: TableUpdate) {
    let key = topology::wire_key;
    let set: Vec<(u32, Route)> = update
        .set
        .iter()
        .map(|r| {
            (
                key(&r.dst),
                Route {
                    primary: key(&r.primary),
                    backup: r.backup.as_deref().map(key),
                    repair: r.repair.as_ref().and_then(|hops| {
                        let keys: Vec<u32> = hops.iter().map(|h| key(h)).collect();
                        Segment::new(&keys)
                    }),
                },
            )
        })
        .collect();
    let remove: Vec<u32> = update.remove.iter().map(|d| key(d)).collect();
    let installed = ctx.forwarder.install_with(|current| {
        Some(current.updated(update.version, update.full, set.clone(), remove.clone()))
    });
    let moves = installed
        .map(|(old, new)| next_hop_changes(&old.table, &new.table))
        .unwrap_or_default();
    let changes = update.set.len() + update.remove.len();
    if moves.is_empty() {
        debug!(
            version = update.version,
            full = update.full,
            changes,
            "route table applied; no next hop moved"
        );
    } else {
        let live = ctx.live.load();
        info!(
            version = update.version,
            full = update.full,
            changes,
            cause = "controller push",
            moved = moves.len(),
            next_hops = %NextHopMoves::new(&live.cfg.topology, &moves),
            "reroute: route table applied"
        );
    }
}
