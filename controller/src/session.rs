//! One relay's session: identify it (its certificate, then its hello within a
//! deadline), pass its reports to the compute task, and push its table (whole
//! on the first report, then diffs). Reads go through a framed reader whose
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
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};
use tracing::{info, warn, Instrument};

use topology::{NodeIdx, Topology};

use crate::compute::Reports;
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
    let mut rx = shared.tables_rx();
    // Wait for this relay's first report (bounded) so a freshly started
    // controller does not push routes over links it has not heard about.
    let mut held: Option<NodeTable> = None;
    let first_report = tokio::time::sleep(FIRST_REPORT_WAIT);
    tokio::pin!(first_report);
    loop {
        tokio::select! {
            biased;
            _ = shared.cancel.cancelled() => return Ok(()),
            m = reader.next() => match m {
                Some(Ok(RelayMessage::Links { links, draining })) => {
                    let first = held.is_none();
                    let (done, taken) = if first {
                        let (tx, rx) = oneshot::channel();
                        (Some(tx), Some(rx))
                    } else {
                        (None, None)
                    };
                    shared.report(Reports { from: idx, links, draining, done });
                    if let Some(taken) = taken {
                        // The first table reflects this relay's own report.
                        let _ = tokio::time::timeout(FIRST_REPORT_WAIT, taken).await;
                        let tables = rx.borrow_and_update().clone();
                        held = Some(send_table(&mut writer, shared.topology(), &tables, idx, None).await?);
                    }
                }
                Some(Ok(RelayMessage::Applied { version })) => shared.applied(node, version),
                Some(Ok(RelayMessage::Hello { .. })) => return Err("a second hello".into()),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Ok(()),
            },
            _ = &mut first_report, if held.is_none() => {
                let tables = rx.borrow_and_update().clone();
                held = Some(send_table(&mut writer, shared.topology(), &tables, idx, None).await?);
            }
            changed = rx.changed(), if held.is_some() => {
                if changed.is_err() {
                    return Ok(());
                }
                let tables = rx.borrow_and_update().clone();
                held = Some(send_table(&mut writer, shared.topology(), &tables, idx, held.as_ref()).await?);
            }
        }
    }
}

/// Sends the table for `idx`: whole if the relay holds nothing from us yet, else
/// the difference from what it holds. Returns the table it now holds.
async fn send_table(
    writer: &mut Writer,
    topo: &Topology,
    tables: &RouteTables,
    idx: NodeIdx,
    held: Option<&NodeTable>,
) -> Result<NodeTable, String> {
    let new = tables.node(idx).clone();
    let update = match held {
        None => TableUpdate {
            version: tables.version,
            full: true,
            set: new
                .entries
                .iter()
                .map(|(d, e)| entry(topo, *d, e))
                .collect(),
            remove: Vec::new(),
        },
        Some(old) => {
            // Sent even when empty: the relay then reports the version it holds,
            // so operators can see which relays are current.
            let d = diff(old, &new);
            TableUpdate {
                version: tables.version,
                full: false,
                set: d
                    .to_add
                    .iter()
                    .chain(&d.to_change)
                    .map(|(dst, e)| entry(topo, *dst, e))
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

fn entry(topo: &Topology, dst: NodeIdx, e: &crate::routing::TableEntry) -> RouteEntry {
    RouteEntry {
        dst: topo.node(dst).id.clone(),
        primary: topo.node(e.primary.node).id.clone(),
        backup: e.backup.map(|b| topo.node(b.node).id.clone()),
    }
}
