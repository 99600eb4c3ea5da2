//! Counting live lane threads (and a plugin host's tasks and instances), so that their owner
//! can wait until every one is gone.

use std::sync::{Arc, Condvar, Mutex};
#[cfg(any(test, all(feature = "plugins", feature = "test-support")))]
use std::time::Duration;

/// Counts live things (threads, tasks, instances) so that their owner can wait until every one
/// is gone.
#[derive(Clone, Default)]
pub(crate) struct Tracker(Arc<(Mutex<usize>, Condvar)>);

/// One live thing of a [`Tracker`]; gone when dropped.
pub(crate) struct Tracked(Tracker);

impl Tracker {
    /// One more live thing, until the guard is dropped.
    pub(crate) fn enter(&self) -> Tracked {
        self.add(1);
        Tracked(self.clone())
    }

    /// Adjusts the count directly (for things that announce their start and end by hooks).
    pub(crate) fn add(&self, n: isize) {
        let (m, cv) = &*self.0;
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        *g = g.saturating_add_signed(n);
        if *g == 0 {
            cv.notify_all();
        }
    }

    /// How many are live.
    #[cfg(any(test, all(feature = "plugins", feature = "test-support")))]
    pub(crate) fn live(&self) -> usize {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until none is live, up to `timeout`; whether none is.
    #[cfg(any(test, all(feature = "plugins", feature = "test-support")))]
    pub(crate) fn wait_none(&self, timeout: Duration) -> bool {
        let (m, cv) = &*self.0;
        let g = m.lock().unwrap_or_else(|p| p.into_inner());
        let (g, _) = cv
            .wait_timeout_while(g, timeout, |n| *n > 0)
            .unwrap_or_else(|p| p.into_inner());
        *g == 0
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}
