//! The scheduler's retention policy: every table vacuumed on an interval, in the background.

use std::time::Duration;

use krxflow_lake::Lake;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The first vacuum waits at most this long after the start, so a scheduler restarted more
/// often than its interval still vacuums.
const FIRST_AFTER: Duration = Duration::from_secs(300);

/// When the next vacuum is due and the one running, if any.
pub(crate) struct Retention {
    every: Option<Duration>,
    retain: Duration,
    next: Instant,
    running: Option<JoinHandle<()>>,
}

impl Retention {
    /// `every: None` turns the policy off.
    pub(crate) fn new(every: Option<Duration>, retain: Duration) -> Self {
        let first = every.map_or(FIRST_AFTER, |e| e.min(FIRST_AFTER));
        Self {
            every,
            retain,
            next: Instant::now() + first,
            running: None,
        }
    }

    /// Starts a vacuum of every table when one is due and none is running.
    pub(crate) fn tick(&mut self, lake: &Lake) {
        let Some(every) = self.every else { return };
        if Instant::now() < self.next || self.running.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        self.next = Instant::now() + every;
        let (lake, retain) = (lake.clone(), self.retain);
        self.running = Some(tokio::spawn(async move { vacuum_all(&lake, retain).await }));
    }

    /// Waits for a running vacuum (shutdown).
    pub(crate) async fn finish(self) {
        if let Some(h) = self.running {
            let _ = h.await;
        }
    }
}

async fn vacuum_all(lake: &Lake, window: Duration) {
    let retain = chrono::Duration::from_std(window).unwrap_or(krxflow_lake::DEFAULT_RETAIN);
    let tables = match lake.list_tables().await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("serve: vacuum: cannot list tables: {e}");
            return;
        }
    };
    let mut deleted = 0;
    for name in &tables {
        match lake.vacuum(name, retain, false).await {
            Ok(Some(v)) => deleted += v.files.len(),
            Ok(None) => {}
            Err(e) => eprintln!("serve: vacuum: {name}: {e}"),
        }
    }
    eprintln!(
        "serve: vacuum: deleted {deleted} files in {} tables (window {})",
        tables.len(),
        krxflow_dag::format_duration(window)
    );
}
