//! Peer links: one QUIC connection per topology link. The live ones are in
//! `datapath::link_registry` (the forwarding path reads it per packet);
//! [`dial`] keeps dialing a neighbour whose link is down; [`accept`] admits
//! inbound connections (mutual TLS, then identity); [`actor`] runs one
//! connection (probes, datagrams, streams); [`failover`] logs what a link
//! going up or down moves; [`congestion`] is the links' congestion control;
//! [`receive_queue`] counts what quinn drops from a link's receive queue.

pub mod accept;
pub mod actor;
pub mod congestion;
pub mod dial;
pub mod failover;
pub mod receive_queue;
