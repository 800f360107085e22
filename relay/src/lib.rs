//! The relay daemon: QUIC peer links, probes, forwarding, service ingress and egress.
//! Built in its own issue; the crate exists so the workspace layout is complete.
