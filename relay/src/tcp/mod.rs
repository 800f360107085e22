//! TCP services over QUIC streams. Each TCP connection is a *session* end to
//! end between its ingress and egress relays (`relay_core::session`), carried
//! by one QUIC stream per hop at a time, opened with a `SessionOpen` overlay
//! header (a new stream after a path broke: `SessionResume`). Transit relays
//! splice the streams without looking inside.
//!
//! - [`ingress`] accepts classroom connections and starts their sessions;
//! - [`egress`] holds the sessions whose egress is here and takes their streams;
//! - [`session`] drives one end of a session (local socket, core, stream);
//! - [`stream`] takes a stream from a peer: passes it on, or hands it to the egress;
//! - [`splice`] joins two byte streams (transit, and the raw streams of an
//!   older ingress's `StreamOpen`);
//! - [`link_watch`] tells stream tasks when a link under a stream goes down.

pub mod egress;
pub mod ingress;
pub mod link_watch;
pub mod session;
pub mod splice;
pub mod stream;

use relay_core::{Decision, DropReason, Header};

use crate::context::Context;

/// Opens a stream toward `header.dst` on the next hop the forwarder picks, and
/// sends the header with the decided TTL; bounded by the setup timeout.
/// Returns the neighbour chosen and the stream.
pub(crate) async fn open_next_hop(
    ctx: &Context,
    mut header: Header,
) -> Result<(u32, quinn::SendStream, quinn::RecvStream), DropReason> {
    let (peer, ttl, conn) = match ctx.forwarder.next_hop_for_stream(header.dst, header.ttl) {
        (Decision::Forward { next_hop, ttl, .. }, Some(conn)) => (next_hop, ttl, conn),
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
        Ok((peer, send, recv))
    };
    tokio::time::timeout(setup, open)
        .await
        .map_err(|_| DropReason::PeerDown)?
}
