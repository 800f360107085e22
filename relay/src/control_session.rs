//! The relay's sessions with the controllers: one per controller of the
//! topology, each reporting links and receiving route tables. With several
//! controllers (high availability) only the elected leader pushes tables, but
//! every controller hears every report, so a standby's link-state database is
//! warm when it takes over. A table is put in force at once (table, version and
//! term as one value) and acknowledged, unless fencing refuses it: a table of
//! a term below the one in force is an old leader's (see
//! `relay_core::routes::RoutesInForce::updated`), refused, counted and logged
//! (rate-limited).
//!
//! Without a controller the relay keeps forwarding on the last table it had
//! (and still fails over locally).
//!
//! Each session reads through a framed reader whose buffer lives with the
//! session, so a table that arrives in pieces while reports go out is never
//! cut: see `control_protocol::framing`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use control_protocol::{
    ControlCodec, ControllerMessage, RelayMessage, TableUpdate, MAX_CONTROLLER_MESSAGE,
    MAX_RELAY_MESSAGE, PROTOCOL_VERSION,
};
use daemon::throttle::Throttle;
use daemon::OwnedTask;
use futures_util::{SinkExt as _, StreamExt as _};
use quinn::Endpoint;
use rand::Rng as _;
use relay_core::backoff::Backoff;
use relay_core::placed::Placed;
use relay_core::routes::{next_hop_changes, NextHopMoves, Refused};
use relay_core::segment::Segment;
use relay_core::Route;
use tokio::sync::watch;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{debug, info, warn, Instrument};

use crate::context::Context;
use crate::metrics::QualityTotals;

/// How often a relay reports its links even when nothing changed.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// How soon a reload that adds, moves or removes a controller applies.
const RECONCILE_INTERVAL: Duration = Duration::from_secs(1);

/// Refused tables are logged at most this often (with the count held back).
static REFUSALS: Throttle = Throttle::new(Duration::from_secs(10));

type Reader = FramedRead<quinn::RecvStream, ControlCodec<ControllerMessage, RelayMessage>>;
type Writer = FramedWrite<quinn::SendStream, ControlCodec<ControllerMessage, RelayMessage>>;

fn codec() -> ControlCodec<ControllerMessage, RelayMessage> {
    ControlCodec::new(MAX_CONTROLLER_MESSAGE, MAX_RELAY_MESSAGE)
}

/// One controller to keep a session with: its id (the name in its
/// certificate) and the address to dial.
type Target = (String, SocketAddr);

/// The controllers of the config in force. `controller_addr` (lab, tests)
/// replaces the first one's address.
fn targets(ctx: &Context) -> Vec<Target> {
    let live = ctx.live();
    let cfg = &live.cfg;
    cfg.topology
        .controllers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let addr = match (i, cfg.controller_addr) {
                (0, Some(addr)) => addr,
                _ => c.addr,
            };
            (c.id.clone(), addr)
        })
        .collect()
}

/// Keeps a session with every controller of the topology until shutdown: one
/// task per controller, each reconnecting on its own with a jittered backoff.
/// A reload's change to the controllers applies within a second. Link changes
/// reach every session (the relay's one `links_changed` waker is fanned out
/// here).
pub async fn controller_loop(ctx: Arc<Context>, endpoint: Endpoint) {
    let (changed, _) = watch::channel(0u64);
    let mut sessions: BTreeMap<Target, OwnedTask> = BTreeMap::new();
    loop {
        let wanted = targets(&ctx);
        sessions.retain(|t, task| wanted.contains(t) && !task.is_finished());
        for target in wanted {
            if sessions.contains_key(&target) {
                continue;
            }
            let task = ctx.tasks.spawn_owned(
                "controller session",
                keep_session(
                    ctx.clone(),
                    endpoint.clone(),
                    target.clone(),
                    changed.subscribe(),
                ),
            );
            sessions.insert(target, task);
        }
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return,
            _ = ctx.links_changed.notified() => changed.send_modify(|n| *n += 1),
            _ = tokio::time::sleep(RECONCILE_INTERVAL) => {}
        }
    }
}

/// Keeps a session with one controller until shutdown (or until its owner
/// drops it), reconnecting with a jittered backoff.
async fn keep_session(
    ctx: Arc<Context>,
    endpoint: Endpoint,
    (id, addr): Target,
    mut links_changed: watch::Receiver<u64>,
) {
    let tuning = ctx.live.load().cfg.tuning.clone();
    let mut backoff = Backoff::new(tuning.reconnect_min, tuning.reconnect_max);
    let span = tracing::info_span!("controller", controller = %id, %addr);
    loop {
        let live = ctx.live();
        let setup = live.cfg.tuning.setup_timeout;
        let client = live.client.clone();
        let session = async {
            let connecting = endpoint
                .connect_with(client, addr, &id)
                .map_err(|e| e.to_string())?;
            let conn = tokio::time::timeout(setup, connecting)
                .await
                .map_err(|_| "handshake timed out".to_string())?
                .map_err(|e| e.to_string())?;
            info!("connected to controller");
            run_session(&ctx, &id, conn, &mut links_changed).await
        }
        .instrument(span.clone());
        let result = tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return,
            r = session => r,
        };
        match result {
            Ok(()) => backoff.reset(),
            Err(e) => warn!(controller = %id, %addr, "controller session ended: {e}"),
        }
        let wait = backoff.next_wait(rand::rng().random::<f64>());
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn run_session(
    ctx: &Arc<Context>,
    controller: &str,
    conn: quinn::Connection,
    links_changed: &mut watch::Receiver<u64>,
) -> Result<(), String> {
    let setup = ctx.live.load().cfg.tuning.setup_timeout;
    let (send, recv) = tokio::time::timeout(setup, conn.open_bi())
        .await
        .map_err(|_| "no control stream in time".to_string())?
        .map_err(|e| e.to_string())?;
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
    links_changed.mark_unchanged();
    let mut ticker = tokio::time::interval(REPORT_INTERVAL);
    // Reports carry what arrived since the previous one, from now on.
    let mut last = HashMap::new();
    ctx.service_reports(&mut last);
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
                    match apply(ctx, controller, update) {
                        Ok(()) => writer
                            .send(RelayMessage::Applied { version })
                            .await
                            .map_err(|e| e.to_string())?,
                        Err(why) => refused(ctx, controller, why),
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("controller closed the session".into()),
            },
            changed = links_changed.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                send_report(ctx, &mut writer, &mut last).await?;
            }
            _ = ticker.tick() => send_report(ctx, &mut writer, &mut last).await?,
        }
    }
}

async fn send_report(
    ctx: &Context,
    writer: &mut Writer,
    last: &mut HashMap<u32, QualityTotals>,
) -> Result<(), String> {
    let links = ctx.link_reports();
    let draining = ctx.admission.is_draining();
    let services = ctx.service_reports(last);
    let demand = ctx.demand_reports();
    writer
        .send(RelayMessage::Links {
            links,
            draining,
            services,
            demand,
        })
        .await
        .map_err(|e| e.to_string())
}

/// The placed paths of a route entry as the datapath keeps them; a path too
/// long for a segment is left out (its flows share the other paths).
fn placed_split(
    paths: &[control_protocol::PlacedPath],
    segment: impl Fn(&[String]) -> Option<Segment>,
) -> Option<Placed> {
    let split: Vec<(Segment, u32)> = paths
        .iter()
        .filter_map(|p| Some((segment(&p.hops)?, p.weight)))
        .collect();
    Placed::new(&split)
}

/// Counts a refused table and logs it (at most once per interval).
fn refused(ctx: &Context, controller: &str, why: Refused) {
    ctx.metrics.count_refused(why);
    if let Some(held_back) = REFUSALS.allow() {
        warn!(
            controller,
            reason = why.as_str(),
            held_back,
            "{why}; the routes in force stay"
        );
    }
}

/// Puts a table from a controller in force with its version and term, at
/// once, and logs the reroute: every destination whose next hop moved. A
/// table that fencing refuses changes nothing.
fn apply(ctx: &Context, controller: &str, update: TableUpdate) -> Result<(), Refused> {
    let key = topology::wire_key;
    let segment = |hops: &[String]| {
        let keys: Vec<u32> = hops.iter().map(|h| key(h)).collect();
        Segment::new(&keys)
    };
    let set: Vec<(u32, Route)> = update
        .set
        .iter()
        .map(|r| {
            (
                key(&r.dst),
                Route {
                    primary: key(&r.primary),
                    backup: r.backup.as_deref().map(key),
                    repair: r.repair.as_deref().and_then(segment),
                    second: r.second.as_deref().and_then(segment),
                    placed: placed_split(&r.placed, segment),
                },
            )
        })
        .collect();
    let remove: Vec<u32> = update.remove.iter().map(|d| key(d)).collect();
    let mut refusal = None;
    let installed = ctx.forwarder.install_with(|current| {
        match current.updated(
            update.term,
            update.version,
            update.full,
            set.clone(),
            remove.clone(),
        ) {
            Ok(new) => {
                refusal = None;
                Some(new)
            }
            Err(why) => {
                refusal = Some(why);
                None
            }
        }
    });
    if let Some(why) = refusal {
        return Err(why);
    }
    let moves = installed
        .map(|(old, new)| next_hop_changes(&old.table, &new.table))
        .unwrap_or_default();
    let changes = update.set.len() + update.remove.len();
    if moves.is_empty() {
        debug!(
            controller,
            version = update.version,
            term = update.term,
            full = update.full,
            changes,
            "route table applied; no next hop moved"
        );
    } else {
        let live = ctx.live.load();
        info!(
            controller,
            version = update.version,
            term = update.term,
            full = update.full,
            changes,
            cause = "controller push",
            moved = moves.len(),
            next_hops = %NextHopMoves::new(&live.cfg.topology, &moves),
            "reroute: route table applied"
        );
    }
    Ok(())
}
