//! A guest lane: the task that runs one lane's events one at a time, building instances lazily
//! and rebuilding them after a trap with a backoff.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::epoch::{within, Deadline};
use super::instance::{build, describe_trap, Instance};
use super::runtime::Runtime;
use super::state::{Feed, GuestEvent, GuestLanes, LaneMsg, LaneQueue};
use crate::dispatch::{LaneKind, Tracked};

/// Spawns a set of three guest lanes on `thread` of each kind.
pub(crate) fn spawn(runtime: &Runtime, thread: usize) -> GuestLanes {
    let mk = |kind: LaneKind| {
        let (tx, rx) = mpsc::unbounded_channel();
        runtime
            .lane(kind, thread)
            .spawn(lane_task(kind, rx, runtime.tracker().enter()));
        tx
    };
    GuestLanes::new(
        mk(LaneKind::Session),
        mk(LaneKind::Watch),
        mk(LaneKind::Completion),
        thread,
    )
}

/// Per plugin, on one lane: its instance (if built) and when it may be rebuilt.
#[derive(Default)]
struct Slot {
    instance: Option<Instance>,
    not_before: Option<Instant>,
    backoff: Duration,
    /// The last instance crashed: the next build is a restart.
    crashed: bool,
}

/// A guest lane: runs events one at a time, building instances lazily and rebuilding them
/// after a trap. Counts each event in its plugin's lane statistics: the wait from being queued
/// to the handler's call (instance building and backoff included), and the call itself.
///
/// A watch or completion handler is lent the lane's queue for its call, so that it may take
/// the events queued behind its own (`wazoo:plugin/lane`, see `imports::lane`); the call ends
/// with the last event it took, which is the one this loop then accounts for.
async fn lane_task(kind: LaneKind, rx: mpsc::UnboundedReceiver<LaneMsg>, _tracked: Tracked) {
    let mut slots: HashMap<u64, Slot, BuildHasherDefault<IdHasher>> = HashMap::default();
    // The lane's wall-clock deadline, moved by each of its instances' meters.
    let deadline = Arc::new(Deadline::new());
    let mut feed = Some(Feed::new(LaneQueue::new(rx)));
    loop {
        let queue = &mut feed.as_mut().expect("returned by every call").queue;
        let Some((shared, ev, queued_at)) = queue.next().await else {
            break;
        };
        let runtime = shared.runtime();
        // Counts the event handled at the end of the iteration; with a handler that took
        // more events, the last of them (each earlier one was counted as it was taken).
        let _done = InFlightGuard(runtime);
        // Builds and calls run guest code: the epoch must tick.
        let _ticking = runtime.ticker().enter();
        let stats = shared.lane(kind);
        if !shared.alive() {
            slots.remove(&shared.id());
            stats.unqueued();
            continue;
        }
        let slot = slots.entry(shared.id()).or_default();
        let generation = shared.generation();
        if slot
            .instance
            .as_ref()
            .is_some_and(|i| i.generation != generation)
        {
            slot.instance = None; // reloaded
        }
        if slot.instance.is_none() {
            if let Some(t) = slot.not_before {
                tokio::time::sleep_until(t.into()).await;
            }
            match build(&shared, kind, &deadline).await {
                Ok(i) => {
                    slot.instance = Some(i);
                    if std::mem::take(&mut slot.crashed) {
                        shared.counters().restarted();
                    }
                }
                Err(why) => {
                    shared.crashed(&format!(
                        "building the {kind:?} lane's instance failed: {why}"
                    ));
                    slot.crashed = true;
                    back_off(slot);
                    stats.done(queued_at.elapsed(), Duration::ZERO, true);
                    continue;
                }
            }
        }
        let inst = slot.instance.as_mut().expect("built above");
        let started = Instant::now();
        let mut lent = feed.take().expect("returned by every call");
        lent.generation = inst.generation;
        lent.queued_at = queued_at;
        lent.started = started;
        inst.store.data_mut().feed = Some(lent);
        // Also sets the wall-clock deadline `within` watches.
        inst.store.data_mut().start_call(started);
        inst.store.set_epoch_deadline(1);
        let call = async {
            match ev {
                GuestEvent::Session(e) => inst.bindings.call_on_session(&mut inst.store, e).await,
                GuestEvent::Watch(e) => inst.bindings.call_on_watch(&mut inst.store, &e).await,
                GuestEvent::Completion(c) => {
                    inst.bindings
                        .call_on_completion(&mut inst.store, &c.0, &c.1)
                        .await
                }
                // Handled above: an unloaded plugin is not alive.
                GuestEvent::Unload => Ok(()),
            }
        };
        let result = within(runtime.ticker(), &deadline, call).await;
        let ended = Instant::now();
        inst.store.data_mut().end_call(ended);
        // The Store outlives a trap or a cancelled call: the queue comes back either way.
        let mut lent = inst.store.data_mut().feed.take().expect("lent above");
        let (queued_at, started) = (lent.queued_at, lent.started);
        let handled = std::mem::take(&mut lent.handled);
        feed = Some(lent);
        if handled > 0 {
            stats.dequeued(handled);
            shared.counters().called(handled);
            shared.counters().took(handled);
            runtime.events_done(handled);
        }
        let failure = match result {
            Some(Ok(())) => None,
            Some(Err(trap)) => Some(format!(
                "{kind:?} handler trapped: {}",
                describe_trap(&trap)
            )),
            None => Some(format!(
                "{kind:?} handler exceeded its wall-clock limit of {:?}",
                shared.policy().wall_limit
            )),
        };
        stats.done(
            started.saturating_duration_since(queued_at),
            ended.saturating_duration_since(started),
            failure.is_some(),
        );
        match failure {
            None => {
                shared.counters().called(1);
                slot.backoff = Duration::ZERO;
            }
            Some(why) => {
                shared.crashed(&why);
                slot.instance = None;
                slot.crashed = true;
                back_off(slot);
            }
        }
    }
}

/// A hasher for the lane's slot map, keyed by plugin ids (small, distinct integers): SipHash
/// was a visible share of an empty callback.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Spread the bits a little; hashbrown uses the top 7 for its control bytes.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Counts an event as handled when dropped, whichever way its handling ended.
struct InFlightGuard<'a>(&'a Runtime);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.events_done(1);
    }
}

fn back_off(slot: &mut Slot) {
    slot.backoff = if slot.backoff.is_zero() {
        Duration::from_millis(10)
    } else {
        (slot.backoff * 2).min(Duration::from_secs(5))
    };
    slot.not_before = Some(Instant::now() + slot.backoff);
}
