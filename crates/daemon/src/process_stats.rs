//! The process's own figures for `/metrics` (the `process_*` series every
//! Prometheus client library exports): CPU seconds, resident memory, open and
//! allowed file descriptors, read from `/proc/self` (Linux; elsewhere, and
//! where a file cannot be read, the figure is left out). The parsers are plain
//! functions of the files' text.

/// What `/proc/self` says about this process now; `None` where it could not be read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft limit on open descriptors (`RLIMIT_NOFILE`).
    pub max_fds: Option<u64>,
}

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU times: `USER_HZ`, 100
/// on every architecture this runs on (the kernel converts to it for user
/// space; asking `sysconf` would need `unsafe`, which the workspace forbids).
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    pub fn read() -> ProcessStats {
        let text = |path: &str| std::fs::read_to_string(path).ok();
        ProcessStats {
            cpu_seconds: text("/proc/self/stat").and_then(|s| cpu_seconds(&s)),
            resident_bytes: text("/proc/self/status").and_then(|s| resident_bytes(&s)),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                // The directory handle being read is one of them.
                .map(|d| d.count().saturating_sub(1) as u64),
            max_fds: text("/proc/self/limits").and_then(|s| max_open_files(&s)),
        }
    }
}

/// utime + stime (fields 14 and 15) of `/proc/<pid>/stat`, in seconds. The
/// command name (field 2) is in parentheses and may hold spaces: fields are
/// counted from after its closing parenthesis.
pub fn cpu_seconds(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // `after` starts at field 3 (state): utime is the 12th from there.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// `VmRSS:` of `/proc/<pid>/status`, in bytes.
pub fn resident_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(n * 1024),
        _ => None,
    }
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits`.
pub fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_status_and_limits_parse() {
        let stat = "4242 (relay (x) y) S 1 4242 4242 0 -1 4194560 5000 0 0 0 1234 566 0 0 20 0 9 0 1000 200000000 3000 18446744073709551615";
        assert_eq!(cpu_seconds(stat), Some(18.0));
        let status = "Name:\trelay\nVmPeak:\t  20000 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(resident_bytes(status), Some(12_345 * 1024));
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            65536                524288               files     \n";
        assert_eq!(max_open_files(limits), Some(65_536));
        assert_eq!(cpu_seconds("garbage"), None);
        assert_eq!(resident_bytes("Name: x\n"), None);
    }

    #[test]
    fn this_process_reads_its_own_figures() {
        let s = ProcessStats::read();
        if cfg!(target_os = "linux") {
            assert!(s.cpu_seconds.is_some_and(|c| c >= 0.0), "{s:?}");
            assert!(s.resident_bytes.is_some_and(|r| r > 1 << 20), "{s:?}");
            assert!(s.open_fds.is_some_and(|n| n >= 3), "{s:?}");
            assert!(
                s.max_fds.is_some_and(|n| n >= s.open_fds.unwrap_or(0)),
                "{s:?}"
            );
        }
    }
}
