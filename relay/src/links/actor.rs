//! The actor of one peer connection: probes the link, answers the peer's
//! probes, reads datagrams and accepts streams until the connection ends or the
//! relay shuts down. Probe verdicts (with hysteresis) decide whether traffic may
//! use the link. Everything it logs, and its streams, run in a `peer` span
//! naming the peer node and its address; its streams are its own tasks, ended
//! with it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use quinn::Connection;
use relay_core::link_loss::LossWindow;
use relay_core::probe::{DownReason, LinkEvent, LinkProbe};
use relay_core::wire::Kind;
use relay_core::{DropReason, Header};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};

use crate::context::Context;
use crate::datapath::forwarder::Inbound;
use crate::datapath::link_registry::{LinkHealth, Measured, CLOSE_SHUTDOWN};
use crate::links::failover::log_failover;
use crate::links::receive_queue::ReceiveQueue;

/// Datagrams read in one go before the actor looks at its timer and streams
/// again.
const READ_BATCH: usize = 32;

/// How long a replacement connection may carry an inherited "up" before its own
/// probes must confirm it.
const INHERITED_UP_GRACE: Duration = Duration::from_secs(2);

/// Runs the connection `conn` to neighbour `id` (wire key `key`).
pub async fn run_link(
    ctx: Arc<Context>,
    key: u32,
    id: String,
    conn: Connection,
    health: Arc<LinkHealth>,
) {
    let span = tracing::info_span!("peer", peer = %id, remote = %conn.remote_address());
    // The peer is authenticated: let it open as many streams (TCP sessions) as
    // a link carries (none were allowed during the handshake).
    let streams = ctx.live.load().cfg.tuning.max_streams_per_link;
    conn.set_max_concurrent_bi_streams(quinn::VarInt::from_u32(streams));
    async {
        let mut probe = LinkProbe::new(
            ctx.live.load().cfg.tuning.probe.clone(),
            std::time::Instant::now(),
        );
        // Inherited "up" from a connection this one replaced: it must be confirmed
        // by this connection's own probes soon, or the link is down after all.
        let mut confirm_by = health
            .is_up()
            .then(|| std::time::Instant::now() + INHERITED_UP_GRACE);
        let mut streams: JoinSet<()> = JoinSet::new();
        let mut closed: Option<quinn::ConnectionError> = None;
        let mut quic = QuicWatch::new();
        loop {
            let wake = Instant::from_std(probe.poll_timeout());
            tokio::select! {
                biased;
                _ = ctx.cancel.cancelled() => {
                    conn.close(CLOSE_SHUTDOWN.into(), b"relay shutting down");
                    break;
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = std::time::Instant::now();
                    // Before judging probes: has the peer acknowledged our
                    // packets since we last looked? Then it heard what we sent
                    // about one round trip ago. Has it sent us anything? Then
                    // it is alive, and a missing echo may be queued behind that.
                    let seen = quic.look(&conn, &health, now);
                    if seen.heard {
                        probe.handle_heard(now.checked_sub(conn.rtt()).unwrap_or(now));
                    }
                    if let Some(at) = seen.received_after {
                        probe.handle_received(at);
                    }
                    probe.handle_timeout(now);
                    while let Some(seq) = probe.poll_transmit(now) {
                        let header = probe_header(Kind::Probe, key, ctx.me, seq);
                        let _ = conn.send_datagram(Bytes::copy_from_slice(&header.encode()));
                    }
                    after_probe(&ctx, key, &mut probe, &health, quic.loss.loss());
                    if let Some(deadline) = confirm_by {
                        if probe.is_up() {
                            confirm_by = None;
                        } else if now >= deadline {
                            confirm_by = None;
                            set_up(&ctx, key, &health, false);
                            ctx.link_downs.went_down(key);
                            warn!("link down: probes never passed on the replacement connection");
                            log_failover(&ctx, key, false);
                            ctx.links_changed.notify_one();
                        }
                    }
                }
                d = conn.read_datagram() => {
                    // This one, then what else is queued (a bounded batch, so
                    // the timer and the streams get their turn).
                    let mut next = Some(d);
                    let mut batch = 0;
                    while let Some(d) = next.take() {
                        match d {
                            Ok(packet) => {
                                quic.queue.read();
                                let wire_loss = quic.loss.loss();
                                on_datagram(&ctx, &conn, key, &mut probe, &health, packet, wire_loss);
                            }
                            Err(e) => {
                                closed = Some(e);
                                break;
                            }
                        }
                        batch += 1;
                        if batch < READ_BATCH {
                            next = conn.read_datagram().now_or_never();
                            if next.is_none() {
                                let dropped = quic.queue.found_empty();
                                if dropped > 0 {
                                    ctx.metrics.count_drops(DropReason::ReceiveOverflow, dropped);
                                }
                            }
                        }
                    }
                    if closed.is_some() {
                        break;
                    }
                }
                s = conn.accept_bi() => match s {
                    Ok((send, recv)) => {
                        let stream = crate::tcp::stream::relay_stream(ctx.clone(), key, send, recv);
                        streams.spawn(stream.in_current_span());
                    }
                    Err(e) => {
                        closed = Some(e);
                        break;
                    }
                },
                Some(done) = streams.join_next(), if !streams.is_empty() => {
                    if let Err(e) = done {
                        if e.is_panic() {
                            tracing::error!("relayed stream failed: {e}");
                        }
                    }
                }
            }
        }
        // A retired duplicate leaves quietly: the link lives on in its replacement.
        let current = ctx.links.remove(key, conn.stable_id());
        if current {
            ctx.link_downs.went_down(key);
        }
        if current && set_up(&ctx, key, &health, false) {
            match &closed {
                Some(error) => {
                    warn!("link down: connection closed: {error}");
                    log_failover(&ctx, key, false);
                }
                None => debug!("link closed: relay shutting down"),
            }
            ctx.links_changed.notify_one();
        } else if let Some(error) = &closed {
            if current {
                info!("connection closed before its probes passed: {error}");
            } else {
                debug!("duplicate connection closed: {error}");
            }
        }
    }
    .instrument(span)
    .await;
}

/// One datagram from the peer: forwarded by the forwarder, or a probe for this
/// actor, or a delivery to a local socket.
fn on_datagram(
    ctx: &Context,
    conn: &Connection,
    key: u32,
    probe: &mut LinkProbe,
    health: &LinkHealth,
    packet: Bytes,
    wire_loss: f64,
) {
    match ctx.forwarder.on_datagram(packet) {
        Inbound::Handled => {}
        Inbound::Probe(seq) => {
            let reply = probe_header(Kind::ProbeReply, key, ctx.me, seq);
            let _ = conn.send_datagram(Bytes::copy_from_slice(&reply.encode()));
        }
        Inbound::ProbeReply(seq) => {
            probe.handle_reply(seq, std::time::Instant::now());
            after_probe(ctx, key, probe, health, wire_loss);
        }
        Inbound::ToTarget(header, payload) => {
            let live = ctx.live.load();
            ctx.egress
                .deliver(&header, &payload, (&live.cfg, &live.services));
        }
        Inbound::ToClient(header, payload) => {
            match ctx.live.load().udp_ingress.get(&header.service) {
                Some(ingress) => ingress.deliver_reply(&header, &payload, &ctx.metrics),
                None => ctx.metrics.count_drop(DropReason::UnknownFlow),
            }
        }
    }
}

/// What the connection's own counters say, read at each probe tick: whether
/// the peer acknowledged our packets since the last look (it hears us),
/// whether any authenticated packet from it arrived since then (it is alive
/// and sending), the loss on the wire, and what quinn dropped from the
/// receive queue.
struct QuicWatch {
    acks: u64,
    frames: u64,
    last_look: Option<std::time::Instant>,
    loss: LossWindow,
    queue: ReceiveQueue,
}

/// What one look saw since the previous one.
struct Seen {
    /// New acknowledgements of our packets came.
    heard: bool,
    /// A packet from the peer arrived after this time (the previous look: a
    /// lower bound, as the counters carry no timestamps).
    received_after: Option<std::time::Instant>,
}

impl QuicWatch {
    fn new() -> QuicWatch {
        QuicWatch {
            acks: 0,
            frames: 0,
            last_look: None,
            loss: LossWindow::new(Duration::from_secs(5)),
            queue: ReceiveQueue::default(),
        }
    }

    /// Reads the counters and sets the link's media queue bound from the
    /// congestion window.
    fn look(&mut self, conn: &Connection, health: &LinkHealth, now: std::time::Instant) -> Seen {
        let stats = conn.stats();
        health.set_media_queue_limit(stats.path.cwnd, stats.path.rtt);
        self.loss
            .sample(now, stats.path.sent_packets, stats.path.lost_packets);
        // Frames are counted once their packet decrypted: only the peer sends them.
        let rx = &stats.frame_rx;
        self.queue.looked(rx.datagram);
        let frames = rx.acks + rx.datagram + rx.stream + rx.ping;
        let seen = Seen {
            heard: rx.acks > self.acks,
            received_after: self.last_look.filter(|_| frames > self.frames),
        };
        self.acks = rx.acks;
        self.frames = frames;
        self.last_look = Some(now);
        seen
    }
}

fn probe_header(kind: Kind, dst: u32, src: u32, seq: u32) -> Header {
    Header {
        kind,
        ttl: 1,
        flags: 0,
        dst,
        src,
        service: 0,
        flow: 0,
        seq,
        timestamp_us: 0,
    }
}

/// Publishes the probe's verdicts and figures: state edges flip the link's
/// health (the forwarding path reads it), are logged with the local failover
/// they cause, and wake the controller report. Runs in the link's `peer` span.
fn after_probe(
    ctx: &Context,
    peer: u32,
    probe: &mut LinkProbe,
    health: &LinkHealth,
    wire_loss: f64,
) {
    let stats = probe.stats();
    *health.measured.lock().unwrap_or_else(|p| p.into_inner()) = Measured {
        rtt_ms: stats.srtt.map(|d| d.as_secs_f64() * 1000.0),
        min_rtt_ms: stats.min_rtt.map(|d| d.as_secs_f64() * 1000.0),
        jitter_ms: stats.jitter.map(|d| d.as_secs_f64() * 1000.0),
        // Probes lost (not excused), or packets QUIC lost on the wire,
        // whichever says more.
        loss: stats.loss.max(wire_loss),
    };
    while let Some(event) = probe.poll_event() {
        match event {
            LinkEvent::Up => {
                // Only a fresh link is news: one that inherited "up" from the
                // connection it replaced was up all along.
                health.failed.store(false, Ordering::Relaxed);
                health.ever_up.store(true, Ordering::Relaxed);
                if set_up(ctx, peer, health, true) {
                    *health.up_since.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(std::time::Instant::now());
                    info!(
                        rtt_ms = stats.srtt.map(daemon::logging::log_ms),
                        "link up: probes answered"
                    );
                    log_failover(ctx, peer, true);
                }
            }
            LinkEvent::Down {
                reason: DownReason::ProbesLost { consecutive },
            } => {
                set_up(ctx, peer, health, false);
                health.failed.store(true, Ordering::Relaxed);
                ctx.link_downs.went_down(peer);
                warn!(
                    consecutive,
                    loss = daemon::logging::rounded(stats.loss, 4),
                    "link down: {consecutive} probes in a row lost"
                );
                log_failover(ctx, peer, false);
            }
        }
        ctx.links_changed.notify_one();
    }
}

/// Marks the link to `peer` up or down; counts and returns whether that
/// changed its state.
fn set_up(ctx: &Context, peer: u32, health: &LinkHealth, up: bool) -> bool {
    let changed = health.up.swap(up, Ordering::Relaxed) != up;
    if changed {
        ctx.metrics.link_transitions.went(peer, up);
    }
    changed
}
