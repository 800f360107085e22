//! One relay's session: identify it (its certificate, then its hello within a
//! deadline), pass its reports to the compute task, and, while this controller
//! leads, push its table (whole on the first report and at the start of each
//! term, then diffs), stamped with the leader's term. A standby only listens:
//! its link state stays warm for the day it leads. Reads go through a framed reader whose
//! buffer lives with the session, so a report arriving in pieces while a table
//! goes out is never cut.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use control_protocol::{
    ControlCodec, ControllerMessage, RelayMessage, RouteEntry, TableUpdate, MAX_CONTROLLER_MESSAGE,
    MAX_RELAY_MESSAGE,
};
use daemon::quic::Pending;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{debug, info, warn, Instrument};

use topology::{NodeIdx, Topology};

use crate::compute::Reports;
use crate::election::ElectionView;
use crate::routing::{diff, NodeTable, RouteTables};
use crate::shared::{Session, Shared};

/// A relay must say hello within this of its connection.
pub const HELLO_DEADLINE: Duration = Duration::from_secs(5);
/// How long a new session waits for the relay's first report before it pushes
/// a table anyway.
const FIRST_REPORT_WAIT: Duration = Duration::from_secs(2);

type Codec = ControlCodec<RelayMessage, ControllerMessage>;
type Reader = FramedRead<quinn::RecvStream, Codec>;
type Writer = FramedWrite<quinn::SendStream, Codec>;

fn codec() -> Codec {
    ControlCodec::new(MAX_RELAY_MESSAGE, MAX_CONTROLLER_MESSAGE)
}

static REFUSAL_WARNING: daemon::throttle::Throttle =
    daemon::throttle::Throttle::new(Duration::from_secs(10));

/// Runs the session of one incoming connection until it ends.
pub async fn session(shared: Arc<Shared>, pending: Pending) {
    let conn = match pending.wait().await {
        Ok(c) => c,
        Err(failed) => {
            if let Some(held) = REFUSAL_WARNING.allow() {
                warn!(remote = %failed.remote, repeats = held, "refused relay connection: {}", failed.reason);
            }
            return;
        }
    };
    let remote = conn.remote_address();
    let topo = shared.topology().clone();
    let Some(node) = daemon::tls::peer_node_id(&conn, topo.nodes.iter().map(|n| n.id.as_str()))
    else {
        conn.close(2u32.into(), b"not a node of this fleet");
        return warn!(%remote, "refused relay connection: certificate names no node of this fleet");
    };
    let Some(idx) = topo.node_idx(&node) else {
        return;
    };
    let span = tracing::info_span!("relay", node = %node);
    async {
        if let Err(e) = serve(&shared, &conn, &node, idx, remote).await {
            info!("session ended: {e}");
        }
        shared.forget_session(&node, conn.stable_id());
    }
    .instrument(span)
    .await;
}

async fn serve(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    node: &str,
    idx: NodeIdx,
    remote: SocketAddr,
) -> Result<(), String> {
    let (send, recv) = tokio::time::timeout(HELLO_DEADLINE, conn.accept_bi())
        .await
        .map_err(|_| format!("no control stream within {HELLO_DEADLINE:?}"))?
        .map_err(|e| e.to_string())?;
    let (mut reader, mut writer): (Reader, Writer) = (
        FramedRead::new(recv, codec()),
        FramedWrite::new(send, codec()),
    );
    let hello = tokio::time::timeout(HELLO_DEADLINE, reader.next())
        .await
        .map_err(|_| format!("no hello within {HELLO_DEADLINE:?}"))?;
    match hello {
        Some(Ok(RelayMessage::Hello { node: claimed, .. })) if claimed == node => {}
        Some(Err(e)) => return Err(e.to_string()),
        other => return Err(format!("expected hello from {node}, got {other:?}")),
    }
    shared.add_session(
        node,
        Session {
            remote,
            since: Instant::now(),
            applied: 0,
            conn_id: conn.stable_id(),
        },
    );
    info!(%remote, "relay connected");
    let mut tables = shared.tables_rx();
    let mut election = shared.election_rx();
    // Wait for this relay's first report (bounded) so a freshly started
    // controller does not push routes over links it has not heard about.
    let mut reported = false;
    let mut held: Option<Held> = None;
    let first_report = tokio::time::sleep(FIRST_REPORT_WAIT);
    tokio::pin!(first_report);
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return Ok(()),
            m = reader.next() => match m {
                Some(Ok(RelayMessage::Links { links, draining, services, demand })) => {
                    shared.quality.add(idx, services, std::time::Instant::now());
                    let first = !reported;
                    let (done, taken) = if first {
                        let (tx, rx) = oneshot::channel();
                        (Some(tx), Some(rx))
                    } else {
                        (None, None)
                    };
                    shared.report(Reports { from: idx, links, draining, demand, done });
                    if let Some(taken) = taken {
                        // The first table reflects this relay's own report.
                        let _ = tokio::time::timeout(FIRST_REPORT_WAIT, taken).await;
                        reported = true;
                        push(&mut writer, shared, &mut tables, &election, idx, &mut held).await?;
                    }
                }
                Some(Ok(RelayMessage::Applied { version })) => shared.applied(node, version),
                Some(Ok(RelayMessage::Hello { .. })) => return Err("a second hello".into()),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Ok(()),
            },
            _ = &mut first_report, if !reported => {
                reported = true;
                push(&mut writer, shared, &mut tables, &election, idx, &mut held).await?;
            }
            changed = tables.changed(), if reported => {
                if changed.is_err() {
                    return Ok(());
                }
                push(&mut writer, shared, &mut tables, &election, idx, &mut held).await?;
            }
            changed = election.changed(), if reported => {
                if changed.is_err() {
                    return Ok(());
                }
                election.borrow_and_update();
                push(&mut writer, shared, &mut tables, &election, idx, &mut held).await?;
            }
        }
    }
}

/// What this session has pushed to its relay in the term it leads with.
#[derive(Debug)]
struct Held {
    term: u64,
    version: u64,
    table: NodeTable,
}

/// Brings the relay up to date if this controller leads now: the whole table
/// at the start of a term, then a diff whenever the tables' version moves. A
/// standby (or a leader whose lease is not confirmed in time) pushes nothing,
/// and its next term starts with a whole table again.
async fn push(
    writer: &mut Writer,
    shared: &Shared,
    tables: &mut watch::Receiver<Arc<RouteTables>>,
    election: &watch::Receiver<ElectionView>,
    idx: NodeIdx,
    held: &mut Option<Held>,
) -> Result<(), String> {
    // Checked right before the write: leadership ends at the lease's deadline
    // even if the election task has not said so yet.
    let Some(term) = election.borrow().leads_at(Instant::now().into_std()) else {
        if held.take().is_some() {
            debug!("standby: pushing no tables");
        }
        return Ok(());
    };
    let current = tables.borrow_and_update().clone();
    let base = held.as_ref().filter(|h| h.term == term);
    if base.is_some_and(|h| h.version == current.version) {
        return Ok(());
    }
    let table = send_table(
        writer,
        shared.topology(),
        &current,
        term,
        idx,
        base.map(|h| &h.table),
    )
    .await?;
    *held = Some(Held {
        term,
        version: current.version,
        table,
    });
    Ok(())
}

/// Sends the table for `idx`: whole if the relay holds nothing from us in this
/// term, else the difference from what it holds. Returns the table it now holds.
async fn send_table(
    writer: &mut Writer,
    topo: &Topology,
    tables: &RouteTables,
    term: u64,
    idx: NodeIdx,
    held: Option<&NodeTable>,
) -> Result<NodeTable, String> {
    let new = tables.node(idx).clone();
    let update = match held {
        None => TableUpdate {
            version: tables.version,
            term,
            full: true,
            set: new
                .entries
                .iter()
                .map(|(d, e)| entry(topo, *d, e, new.placed.get(d)))
                .collect(),
            remove: Vec::new(),
        },
        Some(old) => {
            // Sent even when empty: the relay then reports the version it holds,
            // so operators can see which relays are current.
            let d = diff(old, &new);
            TableUpdate {
                version: tables.version,
                term,
                full: false,
                set: d
                    .to_add
                    .iter()
                    .chain(&d.to_change)
                    .map(|(dst, e)| entry(topo, *dst, e, new.placed.get(dst)))
                    .collect(),
                remove: d
                    .to_remove
                    .iter()
                    .map(|n| topo.node(*n).id.clone())
                    .collect(),
            }
        }
    };
    writer
        .send(ControllerMessage::Table(update))
        .await
        .map_err(|e| e.to_string())?;
    Ok(new)
}

fn entry(
    topo: &Topology,
    dst: NodeIdx,
    e: &crate::routing::TableEntry,
    placed: Option<&crate::placing::Split>,
) -> RouteEntry {
    let id = |n: &NodeIdx| topo.node(*n).id.clone();
    RouteEntry {
        dst: id(&dst),
        primary: id(&e.primary.node),
        backup: e.backup.map(|b| id(&b.node)),
        repair: e.repair.map(|p| p.hops().iter().map(id).collect()),
        second: e.second.map(|p| p.hops().iter().map(id).collect()),
        placed: placed.map_or_else(Vec::new, |split| {
            split
                .paths()
                .map(|(hops, weight)| control_protocol::PlacedPath {
                    hops: hops.iter().map(id).collect(),
                    weight,
                })
                .collect()
        }),
    }
}
