//! What a benchmark reads from `/proc` about processes and the kernel: a
//! process's RSS, open files and CPU ticks; the kernel memory sockets take
//! outside any process's RSS; the open-files limit and ephemeral port range.
//! Linux only. Include with `#[path = "support/procfs.rs"] mod procfs;`.

#![allow(dead_code)] // not every bench uses every reading

use std::process::Command;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Resident set size (`VmRSS`), bytes.
    pub rss: u64,
    /// Open file descriptors.
    pub fds: usize,
    /// CPU time, user plus system, in clock ticks (see [`clock_ticks`]).
    pub ticks: u64,
}

pub fn sample(pid: u32) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in proc status");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // The command name is in parentheses and may hold spaces: split after it,
    // where field 3 (state) comes first; utime and stime are fields 14 and 15.
    let rest: Vec<&str> = stat[stat.rfind(')').expect("comm in proc stat") + 2..]
        .split(' ')
        .collect();
    let field = |n: usize| rest[n - 3].parse::<u64>().expect("numeric stat field");
    Sample {
        rss: rss_kb * 1024,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("proc fd")
            .count(),
        ticks: field(14) + field(15),
    }
}

/// CPU percent of one core between two samples `secs` apart.
pub fn cpu_percent(from: Sample, to: Sample, secs: f64) -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let per_second = *TICKS.get_or_init(clock_ticks);
    to.ticks.saturating_sub(from.ticks) as f64 / per_second / secs * 100.0
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux if that fails).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Kernel memory that sockets take outside any RSS. Host-wide, so other work
/// on the machine adds noise to a difference of two readings.
#[derive(Debug, Clone, Copy)]
pub struct Kernel {
    /// Bytes in the slab caches a UDP socket allocates from: the socket, its
    /// inode, its open files and its epoll registration (active objects × size).
    pub slab: u64,
    /// `/proc/net/sockstat` UDP `inuse`: UDP sockets.
    pub udp_inuse: u64,
    /// `/proc/net/sockstat` UDP `mem`: pages charged to UDP sockets (queued
    /// datagrams and each socket's reserve), counted against `net.ipv4.udp_mem`.
    pub udp_pages: u64,
}

pub fn kernel() -> Kernel {
    const CACHES: [&str; 5] = [
        "UDP",
        "sock_inode_cache",
        "filp",
        "eventpoll_epi",
        "eventpoll_pwq",
    ];
    // Readable by root only; without it the slab figure is 0.
    let slabinfo = std::fs::read_to_string("/proc/slabinfo").unwrap_or_default();
    let slab = slabinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let active: u64 = f.get(1)?.parse().ok()?;
            let size: u64 = f.get(3)?.parse().ok()?;
            CACHES.contains(&f[0]).then_some(active * size)
        })
        .sum();
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").expect("sockstat");
    let udp: Vec<u64> = sockstat
        .lines()
        .find_map(|l| l.strip_prefix("UDP: "))
        .expect("UDP line in sockstat")
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    Kernel {
        slab,
        udp_inuse: udp[0],
        udp_pages: udp[1],
    }
}

/// This process's soft limit on open files (children inherit it).
pub fn open_files_limit() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("proc limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .expect("open files limit")
}

/// `net.ipv4.ip_local_port_range` (inclusive) and how many UDP sockets are
/// bound now (IPv4 and IPv6), so roughly how many ephemeral ports are free.
pub fn udp_ports() -> ((usize, usize), usize) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .expect("ip_local_port_range");
    let r: Vec<usize> = range
        .split_whitespace()
        .map(|p| p.parse().expect("port"))
        .collect();
    let bound = ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .map(|f| std::fs::read_to_string(f).map_or(0, |t| t.lines().count().saturating_sub(1)))
        .sum();
    ((r[0], r[1]), bound)
}

/// CPU time one task (thread) has run, in nanoseconds: the first field of
/// `/proc/<pid>/task/<tid>/schedstat`, or user plus system ticks from its
/// `stat` where the kernel keeps no schedstat. 0 once the task is gone.
pub fn task_cpu_ns(pid: u32, tid: &str) -> u64 {
    let dir = format!("/proc/{pid}/task/{tid}");
    if let Some(ns) = std::fs::read_to_string(format!("{dir}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
    {
        return ns;
    }
    let Ok(stat) = std::fs::read_to_string(format!("{dir}/stat")) else {
        return 0;
    };
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
    let field = |n: usize| {
        rest.get(n - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let per_second = *TICKS.get_or_init(clock_ticks);
    ((field(14) + field(15)) as f64 * 1e9 / per_second) as u64
}

/// CPU nanoseconds of every thread of process `pid` (0 if it is gone).
pub fn process_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .map(|t| task_cpu_ns(pid, &t.file_name().to_string_lossy()))
        .sum()
}

/// CPU nanoseconds of this process's threads whose name (`comm`) starts with
/// `prefix`: how benchmarks charge CPU to the part of themselves they measure
/// (a named runtime's workers, named forwarder threads). A thread that has
/// exited no longer counts, so take both readings while the threads live.
pub fn own_threads_cpu_ns(prefix: &str) -> u64 {
    let pid = std::process::id();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .map(|t| task_cpu_ns(pid, &t.file_name().to_string_lossy()))
        .sum()
}

/// The kernel's count of UDP datagrams dropped because a socket's receive
/// buffer was full (all sockets on the host; `/proc/net/snmp`).
pub fn udp_rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}
