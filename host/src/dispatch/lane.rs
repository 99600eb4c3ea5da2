//! A lane thread's loop: take the next callback (polling a while first when events come
//! densely), run it with panics caught, and count it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, TryRecvError};
use std::time::{Duration, Instant};

use super::{CallbackInfo, Item, LaneCounters, LaneKind};

/// How many empty polls between two looks at the clock while spinning.
const POLLS_PER_CLOCK: u32 = 32;

/// The next item, and whether it was there at once; else polled for up to `spin`; else parked
/// until one arrives. `None` once every sender is gone.
///
/// The poll is a busy loop (`spin_loop` hints between `try_recv`s), not a `yield_now` loop:
/// measured on a loaded 2-vCPU machine, yielding pushed the lane's scheduler deadline back at
/// every call, and a lane that had yielded a few hundred times waited milliseconds for the CPU
/// once an event did arrive.
fn next_item(rx: &mpsc::Receiver<Item>, spin: Duration) -> Option<(Item, bool)> {
    match rx.try_recv() {
        Ok(item) => return Some((item, true)),
        Err(TryRecvError::Disconnected) => return None,
        Err(TryRecvError::Empty) => {}
    }
    if !spin.is_zero() {
        let until = Instant::now() + spin;
        loop {
            for _ in 0..POLLS_PER_CLOCK {
                std::hint::spin_loop();
                match rx.try_recv() {
                    Ok(item) => return Some((item, false)),
                    Err(TryRecvError::Disconnected) => return None,
                    Err(TryRecvError::Empty) => {}
                }
            }
            if Instant::now() >= until {
                break;
            }
        }
    }
    rx.recv().ok().map(|item| (item, false))
}

pub(super) fn lane_loop(
    kind: LaneKind,
    name: &str,
    rx: mpsc::Receiver<Item>,
    c: &LaneCounters,
    spin: Duration,
) {
    // Poll only while events come densely: when the last one was queued within `spin` of the
    // one before. A lane whose events are further apart would poll in vain, so it parks at once,
    // and an idle lane never polls.
    let mut dense = false;
    let mut last_queued: Option<Instant> = None;
    // When the previous callback ended: also when the next one starts if it was already queued
    // (one clock read per callback instead of two; the clock is most of a lane's own cost).
    let mut last_end: Option<Instant> = None;
    while let Some((
        Item {
            seq,
            queued_at,
            what,
            job,
        },
        at_once,
    )) = next_item(&rx, if dense { spin } else { Duration::ZERO })
    {
        if !spin.is_zero() {
            dense = last_queued.is_some_and(|t| queued_at.saturating_duration_since(t) <= spin);
            last_queued = Some(queued_at);
        }
        let start = match last_end {
            Some(t) if at_once => t.max(queued_at),
            _ => Instant::now(),
        };
        let info = CallbackInfo {
            lane: kind,
            seq,
            queued_at,
        };
        let panicked = if let Err(panic) = catch_unwind(AssertUnwindSafe(|| job(info))) {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            tracing::error!(lanes = %name, lane = kind.name(), seq, event = what, "callback panicked: {msg}");
            true
        } else {
            false
        };
        let end = Instant::now();
        c.done(
            start.saturating_duration_since(queued_at),
            end.saturating_duration_since(start),
            panicked,
        );
        last_end = Some(end);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::dispatch::{LaneKind, Lanes};

    /// The lane thread's own CPU time so far, read from inside a callback.
    fn lane_cpu(lanes: &Lanes) -> Duration {
        let (tx, rx) = mpsc::channel();
        lanes.run(LaneKind::Watch, move |_| {
            let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
            let ns: u64 = s.split_whitespace().next().unwrap().parse().unwrap();
            tx.send(Duration::from_nanos(ns)).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn an_idle_lane_or_one_with_sparse_events_does_not_poll() {
        // A window far longer than any wake-up, so polling would show in the lane's CPU time.
        let lanes = Lanes::with_spin("t5", Duration::from_millis(50));
        let before = lane_cpu(&lanes);
        std::thread::sleep(Duration::from_millis(300));
        let middle = lane_cpu(&lanes);
        std::thread::sleep(Duration::from_millis(300));
        let after = lane_cpu(&lanes);
        let used = after.saturating_sub(before);
        assert!(
            used < Duration::from_millis(20),
            "a lane with one event every 300 ms used {used:?} of CPU in 600 ms ({:?} in the first half)",
            middle.saturating_sub(before)
        );
    }
}
