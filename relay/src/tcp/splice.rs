//! Joins two byte streams both ways (TCP ↔ QUIC stream, QUIC ↔ QUIC) with
//! backpressure, half-close and reset propagation.
//!
//! Each direction copies through a fixed buffer, so a slow reader slows the
//! writer instead of growing memory. End of stream on one side becomes a
//! half-close (TCP FIN / QUIC FIN) on the other; an error or reset on either side
//! aborts both (TCP RST / QUIC RESET_STREAM + STOP_SENDING), and so does a
//! session with no byte either way for the idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// QUIC stream error code for an aborted relay stream.
pub const STREAM_ABORTED: u32 = 1;
/// QUIC stream error code: the egress could not connect to the target.
pub const STREAM_REFUSED: u32 = 2;

/// One end of a relayed byte stream.
#[derive(Debug)]
pub enum End {
    Tcp(TcpStream),
    Quic(quinn::SendStream, quinn::RecvStream),
}

#[derive(Debug)]
enum Reader {
    Tcp(OwnedReadHalf),
    Quic(quinn::RecvStream),
}

#[derive(Debug)]
enum Writer {
    /// `None` once aborted: the half was forgotten so that dropping it sends no FIN.
    Tcp(Option<OwnedWriteHalf>),
    Quic(quinn::SendStream),
}

impl End {
    fn split(self) -> (Reader, Writer) {
        match self {
            End::Tcp(s) => {
                let (r, w) = s.into_split();
                (Reader::Tcp(r), Writer::Tcp(Some(w)))
            }
            End::Quic(send, recv) => (Reader::Quic(recv), Writer::Quic(send)),
        }
    }
}

impl Reader {
    fn abort(&mut self, code: u32) {
        if let Reader::Quic(r) = self {
            let _ = r.stop(code.into());
        }
    }
}

impl Writer {
    fn abort(&mut self, code: u32) {
        match self {
            Writer::Quic(w) => {
                let _ = w.reset(code.into());
            }
            // Linger 0, and forget the write half (dropping it would send FIN):
            // closing the socket when the read half drops then sends only RST.
            // (set_linger is deprecated because a non-zero linger blocks on drop.)
            #[allow(deprecated)]
            Writer::Tcp(half) => {
                if let Some(w) = half.take() {
                    let _ = w.as_ref().set_linger(Some(Duration::ZERO));
                    w.forget();
                }
            }
        }
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Reader::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Reader::Quic(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "relayed stream aborted")
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(Some(w)) => Pin::new(w).poll_write(cx, buf),
            Writer::Tcp(None) => Poll::Ready(Err(aborted())),
            Writer::Quic(w) => Pin::new(w).poll_write(cx, buf).map_err(io::Error::from),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(Some(w)) => Pin::new(w).poll_flush(cx),
            Writer::Tcp(None) => Poll::Ready(Err(aborted())),
            Writer::Quic(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(Some(w)) => Pin::new(w).poll_shutdown(cx),
            Writer::Tcp(None) => Poll::Ready(Err(aborted())),
            Writer::Quic(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// When bytes last moved through a splice, either way.
#[derive(Debug)]
struct Activity {
    base: tokio::time::Instant,
    /// Nanoseconds after `base`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: tokio::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.base.elapsed().as_nanos() as u64;
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_nanos(self.last.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

/// A reader that records when it last gave bytes.
struct Watched<'a> {
    inner: &'a mut Reader,
    activity: &'a Activity,
}

impl AsyncRead for Watched<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        r
    }
}

/// Copies until end of stream, then half-closes the writer.
async fn pump(r: &mut Reader, w: &mut Writer, activity: &Activity) -> io::Result<u64> {
    let mut watched = Watched { inner: r, activity };
    let n = tokio::io::copy(&mut watched, w).await?;
    w.shutdown().await?;
    Ok(n)
}

/// Resolves once no byte has moved for `idle`.
async fn idle_watch(activity: &Activity, idle: Duration) {
    loop {
        let quiet = activity.idle_for();
        if quiet >= idle {
            return;
        }
        tokio::time::sleep(idle - quiet).await;
    }
}

/// Bytes carried each way by a finished splice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    pub a_to_b: u64,
    pub b_to_a: u64,
}

/// Relays bytes between `a` and `b` until both directions end. On an error or
/// reset in either direction, or when no byte has moved either way for `idle`,
/// both ends are aborted and the error returned (`TimedOut` for idleness).
pub async fn splice(a: End, b: End, idle: Duration) -> io::Result<Carried> {
    splice_until(a, b, idle, std::future::pending()).await
}

/// As [`splice`], and both ends are aborted when `stop` resolves
/// (`ConnectionAborted`): a transit relay's link under one of the streams
/// went down, or the relay is shutting down.
pub async fn splice_until(
    a: End,
    b: End,
    idle: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> io::Result<Carried> {
    let (mut ar, mut aw) = a.split();
    let (mut br, mut bw) = b.split();
    let activity = Activity::new();
    let result = tokio::select! {
        r = async {
            tokio::try_join!(
                pump(&mut ar, &mut bw, &activity),
                pump(&mut br, &mut aw, &activity)
            )
        } => r,
        _ = idle_watch(&activity, idle) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no byte either way for {idle:?}"),
        )),
        _ = stop => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "stopped")),
    };
    match result {
        Ok((a_to_b, b_to_a)) => Ok(Carried { a_to_b, b_to_a }),
        Err(e) => {
            ar.abort(STREAM_ABORTED);
            br.abort(STREAM_ABORTED);
            aw.abort(STREAM_ABORTED);
            bw.abort(STREAM_ABORTED);
            Err(e)
        }
    }
}

/// Refuses a relayed stream: resets its sending side and stops its receiving side.
pub fn refuse(mut send: quinn::SendStream, mut recv: quinn::RecvStream, code: u32) {
    let _ = send.reset(code.into());
    let _ = recv.stop(code.into());
}

/// Closes a client's TCP connection with RST (the overlay could not carry it).
#[allow(deprecated)] // linger 0 sends RST at once; only a non-zero linger blocks
pub fn reset_tcp(stream: TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}
