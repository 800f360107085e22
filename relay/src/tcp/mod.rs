//! TCP services over QUIC streams: each TCP connection is one QUIC stream per
//! hop, opened with a `StreamOpen` overlay header and then carrying raw bytes
//! both ways. [`ingress`] accepts classroom connections; [`stream`] takes a
//! stream from a peer and delivers it to the target or passes it on;
//! [`splice`] joins two byte streams.

pub mod ingress;
pub mod splice;
pub mod stream;

use relay_core::{Decision, DropReason, Header};

use crate::context::Context;

/// Opens a stream toward `header.dst` on the next hop the forwarder picks, and
/// sends the header with the decided TTL; bounded by the setup timeout.
pub(crate) async fn open_next_hop(
    ctx: &Context,
    mut header: Header,
) -> Result<(quinn::SendStream, quinn::RecvStream), DropReason> {
    let (ttl, conn) = match ctx.forwarder.next_hop_for_stream(header.dst, header.ttl) {
        (Decision::Forward { ttl, .. }, Some(conn)) => (ttl, conn),
        (Decision::Drop(reason), _) => return Err(reason),
        (Decision::Forward { .. } | Decision::Repair { .. }, None) => {
            return Err(DropReason::PeerDown)
        }
        (Decision::Repair { .. }, Some(_)) => return Err(DropReason::PeerDown),
        (Decision::Deliver, _) => return Err(DropReason::NoRoute),
    };
    header.ttl = ttl;
    let setup = ctx.live.load().cfg.tuning.setup_timeout;
    let open = async {
        let (mut send, recv) = conn.open_bi().await.map_err(|_| DropReason::PeerDown)?;
        send.write_all(&header.encode())
            .await
            .map_err(|_| DropReason::SendFailed)?;
        Ok((send, recv))
    };
    tokio::time::timeout(setup, open)
        .await
        .map_err(|_| DropReason::PeerDown)?
}
