//! A non-blocking UDP socket received from through tokio and sent on directly.
//!
//! Sending through tokio's `try_send` fails with WouldBlock until the reactor
//! has reported the socket writable once, which drops the first packet of
//! every new flow; a direct send's WouldBlock means a really full buffer. The
//! direct send borrows the same descriptor (no duplicate: an egress flow costs
//! one open file, not two).

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::net::UdpSocket;

#[derive(Debug)]
pub struct SplitSocket {
    pub recv: UdpSocket,
    /// The socket's inode, to find the kernel's drops on it
    /// ([`daemon::sock_drops`]); `None` where `/proc` does not say.
    inode: Option<u64>,
}

impl SplitSocket {
    pub fn new(socket: std::net::UdpSocket) -> std::io::Result<Self> {
        socket.set_nonblocking(true)?;
        let inode = daemon::sock_drops::socket_inode(&socket);
        Ok(SplitSocket {
            recv: UdpSocket::from_std(socket)?,
            inode,
        })
    }

    pub fn inode(&self) -> Option<u64> {
        self.inode
    }

    /// Sends now, or fails with WouldBlock if the send buffer is full.
    pub fn send_to(&self, payload: &[u8], to: SocketAddr) -> std::io::Result<usize> {
        socket2::SockRef::from(&self.recv).send_to(payload, &to.into())
    }

    /// [`SplitSocket::send_to`] on a connected socket.
    pub fn send(&self, payload: &[u8]) -> std::io::Result<usize> {
        socket2::SockRef::from(&self.recv).send(payload)
    }
}

/// Microseconds since the Unix epoch, for the header's send timestamp.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// `now` for `relay_core`, from tokio's clock (which tests can pause).
pub fn core_now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
