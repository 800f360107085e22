//! The datagram path and the state it reads per packet: [`forwarder`] decides
//! and sends toward neighbours over the links in [`link_registry`];
//! [`udp_ingress`] and [`udp_egress`] are the two ends of UDP services;
//! [`socket`] is their socket type; [`send_queue`] bounds what media may wait
//! in a link's send queue.

pub mod forwarder;
pub mod link_registry;
pub mod send_queue;
pub mod socket;
pub mod udp_egress;
pub mod udp_ingress;
