//! The datagram path: [`forwarder`] decides and sends toward neighbours;
//! [`udp_ingress`] and [`udp_egress`] are the two ends of UDP services;
//! [`expiry`] forgets idle flows; [`socket`] is their socket type.

pub mod expiry;
pub mod forwarder;
pub mod socket;
pub mod udp_egress;
pub mod udp_ingress;
