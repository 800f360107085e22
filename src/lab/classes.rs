//! Synthetic classes: a student at an Asian city streams audio and video UDP
//! packets through the overlay (one service each: audio protected, video not) to
//! a teacher's server in North America, which echoes each one back. The teacher's
//! side measures one-way latency, loss and gaps per stream from the kind,
//! sequence number and send time carried in each packet.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Audio: 50 packets per second of 200 bytes (20 ms Opus frames plus headers).
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
pub const AUDIO_BYTES: usize = 200;
/// Video: a 1,200-byte packet every other audio tick (25 packets/s), both ways.
pub const VIDEO_BYTES: usize = 1200;
/// The first payload byte of a video packet (audio's is 0).
const VIDEO: u8 = 1;
/// Signalling: a small message every 500 ms over the class's TCP session.
pub const SIGNAL_INTERVAL: Duration = Duration::from_millis(500);
const SIGNAL_BYTES: usize = 64;
/// Bytes of the payload that carry (kind, seq, student's send time, teacher's
/// send time on the way back).
const STAMP: usize = 24;

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// One stream (audio or video) student → teacher: what was sent, what arrived,
/// and the longest silence between arrivals (counted once traffic flowed).
#[derive(Debug, Default, Clone)]
pub struct StreamStats {
    pub sent: u64,
    pub received: u64,
    pub last_arrival: Option<std::time::Instant>,
    pub longest_gap: Duration,
    /// The highest sequence number that arrived: packets sent after it may be
    /// in flight, those before it that did not arrive are lost.
    pub highest_seq: Option<u32>,
    /// Gaps of at least [`NOTED_GAP`] between arrivals: (when it ended, how
    /// long), the latest [`NOTED_GAPS`].
    pub gaps: std::collections::VecDeque<(std::time::Instant, Duration)>,
}

/// A silence this long is noted (twice the video interval).
pub const NOTED_GAP: Duration = Duration::from_millis(80);
const NOTED_GAPS: usize = 64;

impl StreamStats {
    /// Packets sent that never arrived (the egress keeps one copy of a protected
    /// packet, so arrivals never exceed sends).
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    /// Packets lost among those older than the newest arrival, and how many
    /// those were (packets still in flight are not counted either way).
    /// `every` is the stream's sequence step (1 for audio, 2 for video).
    pub fn settled(&self, every: u32) -> (u64, u64) {
        let Some(h) = self.highest_seq else {
            return (0, 0);
        };
        let expected = u64::from(h / every) + 1;
        (expected.saturating_sub(self.received), expected)
    }

    /// The longest noted gap that ended within `window` of `at`.
    pub fn gap_near(&self, at: std::time::Instant, window: Duration) -> Option<Duration> {
        self.gaps
            .iter()
            .filter(|(end, _)| {
                end.saturating_duration_since(at) <= window
                    && at.saturating_duration_since(*end) <= window
            })
            .map(|(_, gap)| *gap)
            .max()
    }

    fn arrived(&mut self, now: std::time::Instant, seq: u32) {
        self.received += 1;
        self.highest_seq = Some(self.highest_seq.map_or(seq, |h| h.max(seq)));
        if let Some(last) = self.last_arrival {
            let gap = now - last;
            self.longest_gap = self.longest_gap.max(gap);
            if gap >= NOTED_GAP {
                if self.gaps.len() == NOTED_GAPS {
                    self.gaps.pop_front();
                }
                self.gaps.push_back((now, gap));
            }
        }
        self.last_arrival = Some(now);
    }
}

/// What one class measured.
#[derive(Debug)]
pub struct ClassStats {
    pub sent: u64,
    pub received: u64,
    pub echoed: u64,
    /// One-way latency student → teacher, µs.
    pub one_way_us: Histogram<u64>,
    /// Round trip student → teacher → student, µs.
    pub round_trip_us: Histogram<u64>,
    /// One-way latency teacher → student (the teacher's media coming back), µs.
    pub back_us: Histogram<u64>,
    /// Signalling messages echoed intact over the class's TCP session, and
    /// sessions that broke (the lab opens a new one).
    pub signals_ok: u64,
    pub signal_breaks: u64,
    /// When the teacher last received a packet, and the longest silence so far
    /// (measured only once traffic flowed, so start-up is not counted).
    pub last_arrival: Option<std::time::Instant>,
    pub longest_gap: Duration,
    /// Per stream: audio (kind 0) and video (kind 1).
    pub audio: StreamStats,
    pub video: StreamStats,
}

/// A latency histogram in µs up to 60 s, 3 significant digits: bounded memory
/// whatever is recorded (larger values are clamped by `saturating_record`).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).unwrap_or_else(|_| unreachable!("valid bounds"))
}

impl ClassStats {
    fn new() -> Self {
        ClassStats {
            sent: 0,
            received: 0,
            echoed: 0,
            one_way_us: latency_histogram(),
            round_trip_us: latency_histogram(),
            back_us: latency_histogram(),
            signals_ok: 0,
            signal_breaks: 0,
            last_arrival: None,
            longest_gap: Duration::ZERO,
            audio: StreamStats::default(),
            video: StreamStats::default(),
        }
    }

    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - self.received.min(self.sent) as f64 / self.sent as f64
    }
}

/// One running class.
pub struct Class {
    pub name: String,
    pub student_city: String,
    pub teacher_city: String,
    pub stats: Arc<Mutex<ClassStats>>,
    /// The student's socket, the source of both media streams: its flow at
    /// each ingress.
    pub student_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Class {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The teacher's server: records and echoes each packet.
pub async fn teacher() -> std::io::Result<(UdpSocket, SocketAddr)> {
    let socket = UdpSocket::bind("127.0.0.1:0").await?;
    let addr = socket.local_addr()?;
    Ok((socket, addr))
}

impl Class {
    /// Starts streaming from a student socket to the audio and video ingresses
    /// `phase` from now, until dropped.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        name: String,
        student_city: String,
        teacher_city: String,
        teacher_socket: UdpSocket,
        audio_ingress: SocketAddr,
        video_ingress: SocketAddr,
        signal_listener: tokio::net::TcpListener,
        signal_ingress: SocketAddr,
        phase: Duration,
    ) -> std::io::Result<Class> {
        let stats = Arc::new(Mutex::new(ClassStats::new()));
        let student = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let student_addr = student.local_addr()?;

        let s = stats.clone();
        let teacher_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((n, from)) = teacher_socket.recv_from(&mut buf).await {
                if n < STAMP {
                    continue;
                }
                let sent_us = u64::from_be_bytes(buf[8..16].try_into().unwrap_or_default());
                {
                    let mut st = s.lock().unwrap_or_else(|p| p.into_inner());
                    st.received += 1;
                    let now = std::time::Instant::now();
                    if let Some(last) = st.last_arrival {
                        st.longest_gap = st.longest_gap.max(now - last);
                    }
                    st.last_arrival = Some(now);
                    let seq = u32::from_be_bytes(buf[4..8].try_into().unwrap_or_default());
                    if buf[0] == VIDEO {
                        st.video.arrived(now, seq);
                    } else {
                        st.audio.arrived(now, seq);
                    }
                    st.one_way_us
                        .saturating_record(now_us().saturating_sub(sent_us).max(1));
                }
                // The teacher's own media goes back the same way, stamped now.
                buf[16..24].copy_from_slice(&now_us().to_be_bytes());
                let _ = teacher_socket.send_to(&buf[..n], from).await;
            }
        });

        let s = stats.clone();
        let rx = student.clone();
        let echo_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok(n) = rx.recv(&mut buf).await {
                if n < STAMP {
                    continue;
                }
                let sent_us = u64::from_be_bytes(buf[8..16].try_into().unwrap_or_default());
                let back_us = u64::from_be_bytes(buf[16..24].try_into().unwrap_or_default());
                let mut st = s.lock().unwrap_or_else(|p| p.into_inner());
                st.echoed += 1;
                st.back_us
                    .saturating_record(now_us().saturating_sub(back_us).max(1));
                st.round_trip_us
                    .saturating_record(now_us().saturating_sub(sent_us).max(1));
            }
        });

        let s = stats.clone();
        let send_task = tokio::spawn(async move {
            let start = tokio::time::Instant::now() + phase;
            let mut ticker = tokio::time::interval_at(start, AUDIO_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut audio = vec![0u8; AUDIO_BYTES];
            let mut video = vec![0u8; VIDEO_BYTES];
            video[0] = VIDEO;
            for seq in 0u32.. {
                ticker.tick().await;
                let mut packets: Vec<(&mut Vec<u8>, SocketAddr)> =
                    vec![(&mut audio, audio_ingress)];
                if seq % 2 == 0 {
                    packets.push((&mut video, video_ingress));
                }
                for (packet, ingress) in packets {
                    packet[4..8].copy_from_slice(&seq.to_be_bytes());
                    packet[8..16].copy_from_slice(&now_us().to_be_bytes());
                    if student.send_to(packet, ingress).await.is_ok() {
                        let mut st = s.lock().unwrap_or_else(|p| p.into_inner());
                        st.sent += 1;
                        if packet[0] == VIDEO {
                            st.video.sent += 1;
                        } else {
                            st.audio.sent += 1;
                        }
                    }
                }
            }
        });

        let signal_server = tokio::spawn(echo_tcp(signal_listener));
        let signal_client = tokio::spawn(signal_session(signal_ingress, stats.clone()));
        Ok(Class {
            name,
            student_city,
            teacher_city,
            stats,
            student_addr,
            // The senders last: `stop_sending` aborts them.
            tasks: vec![
                teacher_task,
                echo_task,
                signal_server,
                signal_client,
                send_task,
            ],
        })
    }

    /// Stops sending media and signalling; receivers run until the class is dropped.
    pub fn stop_sending(&self) {
        for t in self.tasks.iter().rev().take(2) {
            t.abort();
        }
    }
}

/// The teacher's signalling server: echoes every TCP session it accepts.
async fn echo_tcp(listener: tokio::net::TcpListener) {
    use tokio::io::AsyncWriteExt;
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let (mut r, mut w) = stream.into_split();
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        });
    }
}

/// The student's signalling session: a numbered message every 500 ms through the
/// overlay's TCP service, each echo checked byte for byte. A session that breaks
/// (its path cut) is counted and a new one opened.
async fn signal_session(ingress: SocketAddr, stats: Arc<Mutex<ClassStats>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut n = 0u64;
    loop {
        let Ok(Ok(mut stream)) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect(ingress),
        )
        .await
        else {
            tokio::time::sleep(SIGNAL_INTERVAL).await;
            continue;
        };
        loop {
            n += 1;
            let mut msg = [b'.'; SIGNAL_BYTES];
            msg[..8].copy_from_slice(&n.to_be_bytes());
            let mut back = [0u8; SIGNAL_BYTES];
            let exchange = async {
                stream.write_all(&msg).await?;
                stream.read_exact(&mut back).await?;
                Ok::<_, std::io::Error>(())
            };
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(15), exchange).await,
                Ok(Ok(()))
            ) && back == msg;
            {
                let mut st = stats.lock().unwrap_or_else(|p| p.into_inner());
                if ok {
                    st.signals_ok += 1;
                } else {
                    st.signal_breaks += 1;
                }
            }
            if !ok {
                break;
            }
            tokio::time::sleep(SIGNAL_INTERVAL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_counts_only_packets_older_than_the_newest_arrival() {
        let t0 = std::time::Instant::now();
        let mut audio = StreamStats {
            sent: 10,
            ..StreamStats::default()
        };
        // 0..=5 sent and 3 lost among them; 6..=9 are still in flight.
        for seq in [0, 2, 5] {
            audio.arrived(t0, seq);
        }
        assert_eq!(audio.settled(1), (3, 6));
        // Video uses every other sequence number: 0, 2, 4, 6 sent before 6 arrived.
        let mut video = StreamStats::default();
        for seq in [0, 6] {
            video.arrived(t0, seq);
        }
        assert_eq!(video.settled(2), (2, 4));
        assert_eq!(StreamStats::default().settled(1), (0, 0));
    }

    #[test]
    fn a_gap_is_found_near_when_it_ended() {
        let t0 = std::time::Instant::now();
        let mut s = StreamStats::default();
        s.arrived(t0, 0);
        s.arrived(t0 + Duration::from_millis(20), 1);
        s.arrived(t0 + Duration::from_millis(320), 2);
        assert_eq!(s.gaps.len(), 1, "only the long silence is noted");
        let window = Duration::from_millis(500);
        assert_eq!(
            s.gap_near(t0 + Duration::from_millis(400), window),
            Some(Duration::from_millis(300))
        );
        assert_eq!(s.gap_near(t0 + Duration::from_secs(5), window), None);
    }
}
