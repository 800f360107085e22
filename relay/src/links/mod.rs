//! Peer links: one QUIC connection per topology link. [`registry`] holds the
//! live ones; [`dial`] keeps dialing a neighbour whose link is down; [`accept`]
//! admits inbound connections (mutual TLS, then identity); [`actor`] runs one
//! connection (probes, datagrams, streams); [`failover`] logs what a link
//! going up or down moves.

pub mod accept;
pub mod actor;
pub mod dial;
pub mod failover;
pub mod registry;
