//! Socket buffer sizes for the sockets that carry a daemon's aggregate traffic
//! (the QUIC endpoint, a relay's UDP ingress sockets). Linux's default receive buffer,
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
