//! Why a packet or stream was dropped: every drop a relay makes is counted
//! under one of these reasons.

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// Too short, wrong version or unknown kind.
    Malformed,
    /// TTL ran out: a loop, or a path longer than any sane one.
    TtlExpired,
    /// No route to the destination (unknown node).
    NoRoute,
    /// The next hop and its backup are both unreachable right now.
    PeerDown,
    /// Larger than the path can carry.
    TooBig,
    /// A bounded queue was full.
    QueueFull,
    /// Source address not in the service's allow list.
    NotAllowed,
    /// The service's flow table is full.
    FlowLimit,
    /// Addressed to a service or flow this node does not have.
    UnknownFlow,
    /// The socket or connection refused the packet.
    SendFailed,
    /// A new flow arrived while the relay drains (stops): it takes none.
    Draining,
    /// The link's send queue held as much media as the link sends in 10 ms:
    /// more was offered than the link (or this relay) carries. The link
    /// itself is fine.
    Overload,
    /// A link's receive queue (quinn's) was full: this relay read the link
    /// slower than the peer sent, so quinn dropped the oldest queued
    /// datagrams. The relay is short of CPU; the link itself is fine.
    ReceiveOverflow,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
        DropReason::Malformed,
        DropReason::TtlExpired,
        DropReason::NoRoute,
        DropReason::PeerDown,
        DropReason::TooBig,
        DropReason::QueueFull,
        DropReason::NotAllowed,
        DropReason::FlowLimit,
        DropReason::UnknownFlow,
        DropReason::SendFailed,
        DropReason::Draining,
        DropReason::Overload,
        DropReason::ReceiveOverflow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::TtlExpired => "ttl_expired",
            DropReason::NoRoute => "no_route",
            DropReason::PeerDown => "peer_down",
            DropReason::TooBig => "too_big",
            DropReason::QueueFull => "queue_full",
            DropReason::NotAllowed => "not_allowed",
            DropReason::FlowLimit => "flow_limit",
            DropReason::UnknownFlow => "unknown_flow",
            DropReason::SendFailed => "send_failed",
            DropReason::Draining => "draining",
            DropReason::Overload => "overload",
            DropReason::ReceiveOverflow => "receive_overflow",
        }
    }
}
