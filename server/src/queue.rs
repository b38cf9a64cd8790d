//! The per-app deploy queues and the deploys in flight.
//!
//! One deploy at a time per app: a deploy holds its app's turn (the app's
//! one lock, which data work outside a deploy takes too) from its first step
//! to its end; the next one waits and can say behind which
//! release. Every deploy, queued or running, holds a token of the tracker,
//! so a stopping daemon can refuse new ones and wait for those in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::task::{task_tracker::TaskTrackerToken, TaskTracker};

/// Per-app deploy queue, and the deploys in flight (shutdown waits for them).
#[derive(Default)]
pub struct Deployer {
    queues: Mutex<HashMap<String, Arc<AppQueue>>>,
    /// Every deploy holds a token of it from before its checks to its end,
    /// queued or running; closed when the daemon stops.
    in_flight: TaskTracker,
}

#[derive(Default)]
pub struct AppQueue {
    /// The app's one lock: held by the deploy that runs, and by data work
    /// (backup, restore, database create or drop) done outside a deploy.
    pub turn: Arc<tokio::sync::Mutex<()>>,
    /// Version of the release holding the turn (0 before it has one).
    pub current: AtomicI64,
}

impl Deployer {
    /// The app's queue (the same one for every caller).
    pub fn queue_for(&self, app: &str) -> Arc<AppQueue> {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(app.to_string())
            .or_default()
            .clone()
    }

    /// Refuse new deploys from now on (the daemon is stopping).
    pub fn close(&self) {
        self.in_flight.close();
    }

    /// Deploys running or queued right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// After [`Deployer::close`]: wait until no deploy is in flight, at
    /// most `limit`; true when idle.
    pub async fn wait_idle(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, self.in_flight.wait())
            .await
            .is_ok()
    }

    /// Runs `f` holding the app's deploy turn, when no deploy of the app is
    /// running or queued; `None` (and `f` not run) when one is.
    pub async fn while_idle<T>(
        &self,
        app: &str,
        f: impl std::future::Future<Output = T>,
    ) -> Option<T> {
        let queue = self.queue_for(app);
        let _turn = queue.turn.try_lock().ok()?;
        // Not a release: a deploy queued meanwhile waits for "another deploy".
        queue.current.store(0, Ordering::SeqCst);
        Some(f.await)
    }

    /// Waits for the app's turn and holds it until the guard drops: for data
    /// work outside a deploy (a deploy takes its turn itself, and the data
    /// work it does inside runs under it).
    pub async fn turn(&self, app: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let queue = self.queue_for(app);
        let guard = queue.turn.clone().lock_owned().await;
        // Not a release: a deploy queued meanwhile waits for "another deploy".
        queue.current.store(0, Ordering::SeqCst);
        guard
    }

    /// A deploy is in flight while it holds this.
    pub fn track(&self) -> TaskTrackerToken {
        self.in_flight.token()
    }

    /// True once the daemon is stopping: no new deploy starts.
    pub fn is_closed(&self) -> bool {
        self.in_flight.is_closed()
    }
}
