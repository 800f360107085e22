//! Datagrams the kernel dropped on a UDP socket before the daemon could read
//! them (its receive buffer was full): the `drops` column of
//! `/proc/self/net/udp` and `udp6`, matched to a socket by its inode. No
//! `unsafe` (which `SO_RXQ_OVFL` and `recvmsg` would need), and readable
//! under the shipped units' `ProcSubset=pid` (`/proc/self/net` is the
//! process's own). Linux only; elsewhere nothing is found.

use std::collections::HashMap;
use std::os::fd::AsRawFd;

/// A socket's inode (`socket:[N]` in `/proc/self/fd`), the key of its line in
/// `/proc/self/net/udp`. Read once when the socket is made.
pub fn socket_inode(socket: &impl AsRawFd) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Drops by socket inode, for every UDP socket of this network namespace;
/// `None` if neither table can be read.
pub fn read_udp_drops() -> Option<HashMap<u64, u64>> {
    let mut drops = HashMap::new();
    let mut read_any = false;
    for table in ["/proc/self/net/udp", "/proc/self/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            read_any = true;
            drops.extend(parse_udp_table(&text));
        }
    }
    read_any.then_some(drops)
}

/// `(inode, drops)` of each socket line of a `/proc/net/udp`-format table:
/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops`.
pub fn parse_udp_table(text: &str) -> impl Iterator<Item = (u64, u64)> + '_ {
    text.lines().skip(1).filter_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let inode = fields.get(9)?.parse().ok()?;
        let drops = fields.get(12)?.parse().ok()?;
        Some((inode, drops))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_drops_by_inode() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  1234: 0100007F:1BD4 00000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 987654 2 0000000000000000 17\n\
  1235: 00000000:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 12 2 0000000000000000 0\n";
        let got: Vec<(u64, u64)> = parse_udp_table(table).collect();
        assert_eq!(got, [(987_654, 17), (12, 0)]);
        assert_eq!(parse_udp_table("header only\n").count(), 0);
    }

    /// A socket nobody reads, with a small buffer, sent more than it holds:
    /// the kernel's drops show up under its inode.
    #[test]
    fn a_full_receive_buffer_shows_as_drops_of_that_socket() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket2::SockRef::from(&rx)
            .set_recv_buffer_size(4096)
            .expect("small buffer");
        let inode = socket_inode(&rx).expect("an inode");
        let before = read_udp_drops().expect("table")[&inode];
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        for _ in 0..200 {
            let _ = tx.send_to(&[0u8; 1000], rx.local_addr().expect("addr"));
        }
        let after = read_udp_drops().expect("table")[&inode];
        assert!(after > before, "drops {before} → {after}");
    }
}
