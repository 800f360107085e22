//! What the host must allow for a relay's UDP egress flows (one socket, so one
//! file descriptor and one ephemeral port, per flow), checked at start.

use tracing::warn;

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
    match port_range_verdict(ephemeral_ports(), wanted) {
        PortRange::Enough => {}
        PortRange::Caps(ports) => warn!(
            ports,
            flows_allowed = wanted,
            "the ephemeral port range caps this relay at {ports} UDP egress flows; widen it: sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\""
        ),
        PortRange::Unknown => warn!(
            flows_allowed = wanted,
            "cannot read net.ipv4.ip_local_port_range (/proc/sys is hidden, e.g. by ProcSubset=pid in the shipped units): the ephemeral port range was not checked; make sure it spans at least {wanted} ports (docs/deploy.md section 8)"
        ),
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

/// What the ephemeral port range means for the flows wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortRange {
    Enough,
    /// It spans only this many ports.
    Caps(usize),
    /// It could not be read: say so rather than stay silent.
    Unknown,
}

fn port_range_verdict(ports: Option<usize>, wanted: usize) -> PortRange {
    match ports {
        None => PortRange::Unknown,
        Some(p) if p < wanted => PortRange::Caps(p),
        Some(_) => PortRange::Enough,
    }
}

/// How many ports `net.ipv4.ip_local_port_range` spans (`None` if it cannot
/// be read: under the shipped units `ProcSubset=pid` hides `/proc/sys`).
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
    daemon::process_stats::max_open_files(text)
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

    #[test]
    fn a_port_range_that_cannot_be_read_is_said_not_checked() {
        assert_eq!(port_range_verdict(None, 35_000), PortRange::Unknown);
        assert_eq!(
            port_range_verdict(Some(28_232), 35_000),
            PortRange::Caps(28_232)
        );
        assert_eq!(port_range_verdict(Some(64_512), 35_000), PortRange::Enough);
    }
}
