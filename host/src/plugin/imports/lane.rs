//! `wazoo:plugin/lane`: a running watch or completion handler takes the events queued behind
//! its own for the same plugin, so a burst costs one call into the guest instead of one per
//! event. Each event still has its own budget, wall-clock limit and statistics.

use std::sync::Arc;
use std::time::Instant;

use super::ImportCtx;
use crate::dispatch::LaneKind;
use crate::plugin::bindings::wazoo::plugin::{lane, types as wit};
use crate::plugin::state::GuestEvent;

impl lane::Host for ImportCtx<'_> {
    fn next_watch(&mut self) -> wasmtime::Result<Option<wit::WatchEvent>> {
        Ok(match self.take_next(LaneKind::Watch) {
            Some(GuestEvent::Watch(e)) => Some(e),
            _ => None,
        })
    }

    fn next_completion(&mut self) -> wasmtime::Result<Option<(Vec<u8>, wit::Completion)>> {
        Ok(match self.take_next(LaneKind::Completion) {
            Some(GuestEvent::Completion(c)) => Some(*c),
            _ => None,
        })
    }
}

impl ImportCtx<'_> {
    /// The running handler takes the next event queued for its plugin on its lane, if one is
    /// queued now and may run in this call: the plugin's own, of the handler's kind, the
    /// plugin still alive and not reloaded. Anything else stays queued for the lane, in order.
    /// The event handled so far counts as handled, and the compute budget and the wall-clock
    /// limit start anew for the one taken.
    fn take_next(&mut self, kind: LaneKind) -> Option<GuestEvent> {
        if self.lane != kind {
            return None;
        }
        let feed = self.feed.as_mut()?;
        let msg = feed.queue.try_next()?;
        let s = self.plugin;
        let fits = Arc::ptr_eq(&msg.0, s)
            && matches!(
                (kind, &msg.1),
                (LaneKind::Watch, GuestEvent::Watch(_))
                    | (LaneKind::Completion, GuestEvent::Completion(..))
            )
            && s.alive()
            && s.generation() == feed.generation;
        if !fits {
            feed.queue.hold(msg);
            return None;
        }
        let (_, ev, queued_at) = msg;
        let now = Instant::now();
        s.lane(kind).record(
            feed.started.saturating_duration_since(feed.queued_at),
            now.saturating_duration_since(feed.started),
            false,
        );
        feed.handled += 1;
        feed.queued_at = queued_at;
        feed.started = now;
        self.meter.next_event(now);
        Some(ev)
    }
}
