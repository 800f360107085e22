//! What the live map's stream is served from: the frames every open stream
//! receives (one bounded broadcast queue: a stream that falls more than
//! [`LiveLimits::queue`] frames behind is ended, and its page reconnects to a
//! fresh snapshot), the recent timeline (for new streams' snapshots), the cap
//! on open streams, and a signal that the relays' sessions changed.
//!
//! Frames come from the hub task ([`crate::hub`], links and nodes, driven by
//! the compute task's publications) and from [`Live::event`] (the hub's
//! timeline events, and the lab's cut, restore and impair).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use serde::Serialize;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

/// The bounds of the live stream.
#[derive(Debug, Clone)]
pub struct LiveLimits {
    /// Streams open at once; past it `GET /api/v1/stream` answers 503. Default 16.
    pub max_streams: usize,
    /// Frames a stream may fall behind before it is ended. Default 64.
    pub queue: usize,
    /// A comment is sent after this long without a frame. Default 15 s.
    pub keep_alive: Duration,
}

impl Default for LiveLimits {
    fn default() -> Self {
        LiveLimits {
            max_streams: 16,
            queue: 64,
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// Timeline events kept for new streams' snapshots.
pub const RECENT: usize = 50;

/// What a timeline event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    LinkDown,
    LinkUp,
    Reroute,
    Drain,
    /// By hand (the lab's API or scenario).
    Cut,
    Restore,
    Impair,
}

/// One entry of the map's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEvent {
    /// Unix time, seconds.
    pub at_s: f64,
    pub kind: EventKind,
    /// One line for people.
    pub text: String,
    /// The link it is about, if any.
    pub a: Option<String>,
    pub b: Option<String>,
}

impl TimelineEvent {
    /// An event at the wall clock's now.
    pub fn now(kind: EventKind, text: impl Into<String>, link: Option<(&str, &str)>) -> Self {
        let at_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| (d.as_secs_f64() * 1000.0).round() / 1000.0);
        TimelineEvent {
            at_s,
            kind,
            text: text.into(),
            a: link.map(|(a, _)| a.to_string()),
            b: link.map(|(_, b)| b.to_string()),
        }
    }
}

/// See the module's documentation.
#[derive(Debug)]
pub struct Live {
    pub limits: LiveLimits,
    frames: broadcast::Sender<Bytes>,
    /// The last [`RECENT`] events. Held while an event is sent and while a
    /// stream subscribes, so each event is in a snapshot or in its stream,
    /// never both, never neither.
    recent: Mutex<VecDeque<TimelineEvent>>,
    streams: Arc<Semaphore>,
    sessions: watch::Sender<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each critical section is one push or one copy; a poisoned lock is consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Live {
    pub fn new(limits: LiveLimits) -> Live {
        Live {
            frames: broadcast::channel(limits.queue.max(1)).0,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            streams: Arc::new(Semaphore::new(limits.max_streams)),
            sessions: watch::channel(0).0,
            limits,
        }
    }

    /// Records a timeline event and sends it to every open stream.
    pub fn event(&self, kind: EventKind, text: impl Into<String>, link: Option<(&str, &str)>) {
        self.push(TimelineEvent::now(kind, text, link));
    }

    pub(crate) fn push(&self, event: TimelineEvent) {
        let mut recent = lock(&self.recent);
        let _ = self.frames.send(crate::stream::frame("timeline", &event));
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    /// The recent timeline, oldest first.
    pub fn recent(&self) -> Vec<TimelineEvent> {
        lock(&self.recent).iter().cloned().collect()
    }

    /// Sends a frame to every open stream (none open: dropped).
    pub(crate) fn send(&self, frame: Bytes) {
        let _ = self.frames.send(frame);
    }

    /// A new stream's slot (`None`: at the cap), its recent timeline, and
    /// its receiver of every later frame.
    pub(crate) fn open(
        &self,
    ) -> Option<(
        OwnedSemaphorePermit,
        Vec<TimelineEvent>,
        broadcast::Receiver<Bytes>,
    )> {
        let permit = self.streams.clone().try_acquire_owned().ok()?;
        let recent = lock(&self.recent);
        Some((
            permit,
            recent.iter().cloned().collect(),
            self.frames.subscribe(),
        ))
    }

    /// Streams open now.
    pub fn streams_open(&self) -> usize {
        self.limits
            .max_streams
            .saturating_sub(self.streams.available_permits())
    }

    /// Tells the hub a relay connected, disconnected or applied a table.
    pub(crate) fn sessions_changed(&self) {
        self.sessions.send_modify(|n| *n += 1);
    }

    pub(crate) fn sessions_rx(&self) -> watch::Receiver<u64> {
        self.sessions.subscribe()
    }
}

impl Default for Live {
    fn default() -> Self {
        Live::new(LiveLimits::default())
    }
}
