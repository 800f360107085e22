//! Task ownership. Every task a daemon starts belongs to its [`Supervisor`]:
//! the supervisor sees each task end, logs and counts a failure (a panic), and
//! for a task that the daemon cannot run without, stops the daemon so that it
//! exits with an error and its service manager restarts it. Shutdown cancels
//! the daemon's token, waits (bounded) for the tasks to finish, then aborts the
//! rest. Dropping the supervisor aborts every task it owns.
//!
//! Tasks that start tasks of their own hold a [`Spawner`], a weak handle: it
//! keeps nothing alive, and once the supervisor is gone it starts nothing.
//! A task that belongs to one value (a flow's reader, a link's actor) is
//! started with [`Spawner::spawn_owned`] and ends when that value drops its
//! [`OwnedTask`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{AbortHandle, Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

/// What a task's failure means for the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Logged and counted; the daemon carries on (a connection's task: its
    /// owner reconnects or the peer retries).
    Log,
    /// The daemon cannot work without it: logged, then the daemon stops.
    StopDaemon,
}

#[derive(Debug)]
struct Inner {
    tasks: Mutex<JoinSet<()>>,
    names: Mutex<HashMap<Id, (&'static str, OnFailure)>>,
    finished: Arc<Notify>,
    failures: AtomicU64,
    /// Why the daemon was stopped by a failed task, if it was.
    fatal: Mutex<Option<String>>,
    cancel: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is one call on the set or the map; a poisoned
    // lock still holds a consistent value.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wakes the supervisor when the task holding it ends, however it ends
/// (returned, panicked or aborted: dropping the future drops this).
struct FinishedGuard(Arc<Notify>);

impl Drop for FinishedGuard {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

impl Inner {
    fn spawn<F>(self: &Arc<Self>, name: &'static str, on_failure: OnFailure, task: F) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let guard = FinishedGuard(self.finished.clone());
        let mut tasks = lock(&self.tasks);
        let handle = tasks.spawn(async move {
            let _guard = guard;
            task.await;
        });
        lock(&self.names).insert(handle.id(), (name, on_failure));
        handle
    }

    /// Takes every finished task out of the set, logging failures.
    fn reap(&self) -> usize {
        let mut reaped = 0;
        loop {
            let next = lock(&self.tasks).try_join_next_with_id();
            match next {
                Some(Ok((id, ()))) => {
                    lock(&self.names).remove(&id);
                }
                Some(Err(e)) => {
                    let (name, on_failure) = lock(&self.names)
                        .remove(&e.id())
                        .unwrap_or(("unnamed", OnFailure::Log));
                    self.failed(name, on_failure, &e);
                }
                None => return reaped,
            }
            reaped += 1;
        }
    }

    fn failed(&self, name: &'static str, on_failure: OnFailure, e: &JoinError) {
        if e.is_cancelled() {
            return;
        }
        let why = panic_message(e);
        self.failures.fetch_add(1, Ordering::Relaxed);
        match on_failure {
            OnFailure::Log => tracing::error!(task = name, "task failed: {why}"),
            OnFailure::StopDaemon => {
                tracing::error!(task = name, "task failed, stopping: {why}");
                lock(&self.fatal).get_or_insert_with(|| format!("task `{name}` failed: {why}"));
                self.cancel.cancel();
            }
        }
    }
}

/// tokio's account of a failure: "task 7 panicked with message \"...\"".
fn panic_message(e: &JoinError) -> String {
    e.to_string()
}

/// The owner of a daemon's tasks (see the module docs).
#[derive(Debug)]
pub struct Supervisor {
    inner: Arc<Inner>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Supervisor {
    /// A supervisor whose daemon stops when `cancel` fires. Call inside a
    /// tokio runtime: it starts the task that watches the others.
    pub fn new(cancel: CancellationToken) -> Supervisor {
        let inner = Arc::new(Inner {
            tasks: Mutex::new(JoinSet::new()),
            names: Mutex::new(HashMap::new()),
            finished: Arc::new(Notify::new()),
            failures: AtomicU64::new(0),
            fatal: Mutex::new(None),
            cancel,
        });
        let weak = Arc::downgrade(&inner);
        let finished = inner.finished.clone();
        let watcher = tokio::spawn(async move {
            loop {
                let next = finished.notified();
                match weak.upgrade() {
                    Some(inner) => inner.reap(),
                    None => return,
                };
                next.await;
            }
        });
        Supervisor { inner, watcher }
    }

    /// A handle for tasks that start tasks of their own.
    pub fn spawner(&self) -> Spawner {
        Spawner {
            inner: Arc::downgrade(&self.inner),
        }
    }

    /// Starts a task owned by the supervisor until it ends or the daemon stops.
    pub fn spawn<F>(&self, name: &'static str, on_failure: OnFailure, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.spawn(name, on_failure, task);
    }

    /// The daemon's shutdown token: tasks select on it.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    /// Tasks that failed (panicked) so far.
    pub fn failures(&self) -> u64 {
        self.inner.failures.load(Ordering::Relaxed)
    }

    /// Why a failed task stopped the daemon, if one did.
    pub fn fatal(&self) -> Option<String> {
        lock(&self.inner.fatal).clone()
    }

    /// Tasks running now.
    pub fn running(&self) -> usize {
        self.inner.reap();
        lock(&self.inner.tasks).len()
    }

    /// Cancels the daemon's token, waits up to `grace` for the tasks to end on
    /// their own, then aborts the rest and waits for them to go.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.cancel.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let finished = self.inner.finished.notified();
            self.inner.reap();
            if lock(&self.inner.tasks).is_empty() {
                return;
            }
            if tokio::time::timeout_at(deadline, finished).await.is_err() {
                break;
            }
        }
        let left = lock(&self.inner.tasks).len();
        tracing::debug!(left, "aborting tasks that did not stop in time");
        lock(&self.inner.tasks).abort_all();
        // Aborted tasks end at their next await point; give them a moment.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                let finished = self.inner.finished.notified();
                self.inner.reap();
                if lock(&self.inner.tasks).is_empty() {
                    return;
                }
                finished.await;
            }
        })
        .await;
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.inner.cancel.cancel();
        self.watcher.abort();
        // Dropping the last `Arc<Inner>` drops the `JoinSet`, which aborts every task.
    }
}

/// Starts tasks on behalf of a [`Supervisor`] without keeping it alive.
#[derive(Debug, Clone)]
pub struct Spawner {
    inner: Weak<Inner>,
}

impl Spawner {
    /// Starts a task owned by the supervisor; nothing if the daemon is gone.
    pub fn spawn<F>(&self, name: &'static str, on_failure: OnFailure, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if let Some(inner) = self.inner.upgrade() {
            inner.spawn(name, on_failure, task);
        }
    }

    /// Starts a task that also ends when the returned [`OwnedTask`] is dropped.
    /// Its failure is logged and counted like any other (it never stops the daemon).
    pub fn spawn_owned<F>(&self, name: &'static str, task: F) -> OwnedTask
    where
        F: Future<Output = ()> + Send + 'static,
    {
        OwnedTask(
            self.inner
                .upgrade()
                .map(|inner| inner.spawn(name, OnFailure::Log, task)),
        )
    }

    /// The daemon's shutdown token, if the daemon still runs.
    pub fn cancel_token(&self) -> Option<CancellationToken> {
        self.inner.upgrade().map(|i| i.cancel.clone())
    }
}

/// A task that belongs to one value: dropping this aborts it.
#[derive(Debug)]
pub struct OwnedTask(Option<AbortHandle>);

impl OwnedTask {
    /// Whether the task has ended.
    pub fn is_finished(&self) -> bool {
        self.0.as_ref().is_none_or(AbortHandle::is_finished)
    }
}

impl Drop for OwnedTask {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    async fn until(mut cond: impl FnMut() -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !cond() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("condition within 5 s");
    }

    #[tokio::test]
    async fn a_panic_is_seen_counted_and_a_critical_one_stops_the_daemon() {
        let cancel = CancellationToken::new();
        let sup = Supervisor::new(cancel.clone());
        sup.spawn("contained", OnFailure::Log, async { panic!("boom") });
        until(|| sup.failures() == 1).await;
        assert!(!cancel.is_cancelled(), "a contained failure stops nothing");
        sup.spawn("vital", OnFailure::StopDaemon, async {
            panic!("vital boom")
        });
        until(|| cancel.is_cancelled()).await;
        assert_eq!(sup.failures(), 2);
        let fatal = sup.fatal().expect("a reason");
        assert!(
            fatal.contains("vital") && fatal.contains("vital boom"),
            "{fatal}"
        );
    }

    #[tokio::test]
    async fn shutdown_waits_for_tasks_that_stop_and_aborts_those_that_do_not() {
        let sup = Supervisor::new(CancellationToken::new());
        let tidy = Arc::new(AtomicBool::new(false));
        let (t, token) = (tidy.clone(), sup.cancel_token().clone());
        sup.spawn("tidy", OnFailure::Log, async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            t.store(true, Ordering::SeqCst);
        });
        sup.spawn("stubborn", OnFailure::Log, std::future::pending());
        let started = tokio::time::Instant::now();
        sup.shutdown(Duration::from_millis(300)).await;
        assert!(
            tidy.load(Ordering::SeqCst),
            "the tidy task finished its work"
        );
        assert_eq!(sup.running(), 0, "the stubborn one was aborted");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(sup.failures(), 0, "an abort at shutdown is not a failure");
    }

    #[tokio::test]
    async fn dropping_the_supervisor_or_an_owned_handle_stops_the_task() {
        struct SetOnDrop(Arc<AtomicBool>);
        impl Drop for SetOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let sup = Supervisor::new(CancellationToken::new());
        let spawner = sup.spawner();
        let owned_gone = Arc::new(AtomicBool::new(false));
        let g = SetOnDrop(owned_gone.clone());
        let owned = spawner.spawn_owned("owned", async move {
            let _g = g;
            std::future::pending::<()>().await
        });
        drop(owned);
        until(|| owned_gone.load(Ordering::SeqCst)).await;

        let gone = Arc::new(AtomicBool::new(false));
        let g = SetOnDrop(gone.clone());
        sup.spawn("forever", OnFailure::Log, async move {
            let _g = g;
            std::future::pending::<()>().await
        });
        drop(sup);
        until(|| gone.load(Ordering::SeqCst)).await;
        // The spawner outlived its supervisor: it starts nothing now.
        let late = spawner.spawn_owned("late", async {});
        assert!(late.is_finished());
    }
}
