//! What the host's kernel must allow for a relay's sockets, checked at start.
//!
//! Socket buffer sizes for the sockets that carry a relay's aggregate traffic
//! (the QUIC endpoint and each UDP ingress). Linux's default receive buffer,
//! about 208 KiB, holds under 100 video datagrams: a few milliseconds of
//! scheduling delay at tens of thousands of packets/s overflow it, and the kernel
//! drops silently. The throughput benchmark measured exactly that.

use std::net::UdpSocket;

use tracing::warn;

/// Asks for `bytes` of receive and send buffer on `socket`. The kernel caps the
/// request at `net.core.rmem_max` / `wmem_max`; a cap below the request is
/// logged with the sysctl that lifts it, and the relay runs on what it got.
pub fn enlarge(socket: &UdpSocket, bytes: usize, what: &str) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(bytes);
    let _ = s.set_send_buffer_size(bytes);
    // Linux doubles what it grants (the kernel's bookkeeping share) and reports
    // the doubled size: halve it back to compare with the request.
    let got_recv = s.recv_buffer_size().unwrap_or(0) / 2;
    let got_send = s.send_buffer_size().unwrap_or(0) / 2;
    if got_recv < bytes {
        warn!(
            socket = what,
            wanted = bytes,
            got = got_recv,
            "receive buffer capped by the kernel; raise it with: sysctl -w net.core.rmem_max={bytes}"
        );
    }
    if got_send < bytes {
        warn!(
            socket = what,
            wanted = bytes,
            got = got_send,
            "send buffer capped by the kernel; raise it with: sysctl -w net.core.wmem_max={bytes}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_modest_request_is_granted() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let before = socket2::SockRef::from(&socket)
            .recv_buffer_size()
            .expect("size");
        // Hosts cap requests at different sizes; a quarter of the default is
        // under every cap, so the request must be granted exactly.
        let want = before / 4;
        enlarge(&socket, want, "test");
        let after = socket2::SockRef::from(&socket)
            .recv_buffer_size()
            .expect("size");
        assert!(after >= want, "asked {want}, got {after}");
        assert!(after < before, "the buffer was set, not left at {before}");
    }
}

/// The concurrent flows a relay is sized for (the fleet's peak classes).
pub const SIZED_FOR_FLOWS: usize = 35_000;

/// Warns when the host cannot hold as many UDP egress flows as the config
/// allows: each flow is one socket, so it takes one file descriptor and one
/// ephemeral port. Linux defaults (1024 descriptors, 28,232 ports) are far
/// below the 35,000 flows a relay is sized for.
pub fn check_flow_capacity(cfg: &crate::config::RelayConfig) {
    let egress_services = cfg
        .topology
        .services
        .iter()
        .filter(|s| s.egress_node == cfg.node && s.protocol == topology::Protocol::Udp)
        .count();
    if egress_services == 0 {
        return;
    }
    // What the config allows, up to the 35,000 flows a relay is sized for: the
    // default flow limit (100,000 per service) is a guard, not a plan.
    let wanted = cfg
        .tuning
        .max_flows_per_service
        .saturating_mul(egress_services)
        .min(SIZED_FOR_FLOWS);
    if let Some(ports) = ephemeral_ports() {
        if ports < wanted {
            warn!(
                ports,
                flows_allowed = wanted,
                "the ephemeral port range caps this relay at {ports} UDP egress flows; widen it: sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\""
            );
        }
    }
    if let Some(files) = open_files_limit() {
        if files < wanted as u64 {
            warn!(
                files,
                flows_allowed = wanted,
                "the open-files limit caps this relay at about {files} UDP egress flows; raise it (LimitNOFILE= in the unit, or ulimit -n)"
            );
        }
    }
}

/// How many ports `net.ipv4.ip_local_port_range` spans.
fn ephemeral_ports() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    parse_port_range(&text)
}

fn parse_port_range(text: &str) -> Option<usize> {
    let mut it = text.split_whitespace().map(str::parse::<usize>);
    let (low, high) = (it.next()?.ok()?, it.next()?.ok()?);
    Some(high.checked_sub(low)? + 1)
}

/// The soft limit on open files of this process (`/proc/self/limits`).
fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files(&text)
}

fn parse_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn host_limits_parse() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some(28_232));
        assert_eq!(parse_port_range("1024 65535"), Some(64_512));
        assert_eq!(parse_port_range("garbage"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            20000                20000                files\n";
        assert_eq!(parse_open_files(limits), Some(20_000));
        assert_eq!(
            parse_open_files("Max open files   unlimited unlimited files"),
            None
        );
    }
}
