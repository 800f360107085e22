//! Bulk transfers for the TCP tests: deterministic bytes written one way and
//! hashed the other, with every read's time kept so a test can find the
//! longest stall (a path cut, a relay killed) and say how long it was.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub const TEN_MB: usize = 10 * 1024 * 1024;

/// Deterministic pseudo-random bytes (xorshift), different per seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn sha(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// What one side of a transfer has read so far, and when.
#[derive(Debug, Default)]
pub struct Progress {
    pub bytes: AtomicUsize,
    reads: Mutex<Vec<Instant>>,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::default()
    }

    pub fn read_so_far(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` bytes were read (or `limit` passes).
    pub async fn wait_for(&self, n: usize, limit: Duration) {
        let started = Instant::now();
        while self.read_so_far() < n {
            assert!(
                started.elapsed() < limit,
                "only {} of {n} bytes within {limit:?}",
                self.read_so_far()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The longest time between two reads (or from `since` to the first read
    /// after it) at or after `since`: the stall a fault at `since` caused.
    pub fn longest_gap_since(&self, since: Instant) -> Duration {
        let reads = self.reads.lock().expect("lock");
        let mut prev = since;
        let mut gap = Duration::ZERO;
        for t in reads.iter().filter(|t| **t >= since) {
            gap = gap.max(t.duration_since(prev));
            prev = *t;
        }
        gap
    }
}

/// Writes `data` in chunks then half-closes, while reading everything the
/// other way (recorded in `progress`). Returns (bytes read, their SHA-256).
pub async fn exchange(
    stream: TcpStream,
    data: Vec<u8>,
    progress: Arc<Progress>,
) -> (usize, Vec<u8>) {
    let (mut r, mut w) = stream.into_split();
    let writer = async move {
        for chunk in data.chunks(64 * 1024) {
            w.write_all(chunk).await.expect("write");
        }
        w.shutdown().await.expect("half-close");
    };
    let reader = async move {
        let mut hash = Sha256::new();
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf).await.expect("read: no reset");
            if n == 0 {
                return (total, hash.finalize().to_vec());
            }
            total += n;
            hash.update(&buf[..n]);
            progress.bytes.store(total, Ordering::Relaxed);
            progress.reads.lock().expect("lock").push(Instant::now());
        }
    };
    let ((), got) = tokio::join!(writer, reader);
    got
}
