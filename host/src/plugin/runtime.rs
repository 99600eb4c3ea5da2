//! What every plugin, lane and instance of a host shares ([`Runtime`]): the engine, the epoch
//! ticker, the threads guest code runs on, and the count of events in flight.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;

use super::epoch::{StopOnDrop, Ticker};
use super::error::PluginError;
use crate::dispatch::{LaneKind, Tracked, Tracker};

/// What plugins, their lanes and their instances share. Everything running on the host's
/// threads may hold it; it owns no thread (the host's handles own them, see [`GuestThreads`]).
pub(crate) struct Runtime {
    engine: Engine,
    /// The epoch ticker, which runs only while guest code may be running.
    ticker: Arc<Ticker>,
    /// Where guest lanes and the host's own tasks (re-arming watches, adding bindings again)
    /// run; the stop signals live in [`GuestThreads`].
    threads: GuestThreadHandles,
    /// How often the epoch ticks (see [`PluginHostConfig::epoch_tick`](super::PluginHostConfig::epoch_tick)).
    epoch_tick: Duration,
    /// False once [`PluginHost::drain`](super::PluginHost::drain) was called: no new events
    /// are taken.
    accepting: AtomicBool,
    /// Events handed to guest lanes and not yet handled.
    in_flight: AtomicU64,
    /// The next plugin's id.
    next_id: AtomicU64,
    /// Counts what must be gone once the host has stopped: this struct, the guest runtime's
    /// threads, the epoch ticker, the forwarding lanes' threads, guest lane tasks, instances.
    tracker: Tracker,
    _tracked: Tracked,
}

impl Runtime {
    /// Starts the epoch ticker's thread (ticking `engine`'s epoch every `epoch_tick` while
    /// guest code runs) and the guest threads, `per_kind` of each lane kind. Dropping the
    /// [`GuestThreads`] stops those; the ticker stops with [`Ticker::stop`].
    pub(crate) fn start(
        engine: Engine,
        per_kind: usize,
        epoch_tick: Duration,
        tracker: Tracker,
    ) -> Result<(Arc<Runtime>, GuestThreads), PluginError> {
        let ticker = Arc::new(Ticker::new(3 * per_kind));
        {
            let engine = engine.clone();
            let t = ticker.clone();
            let tick = epoch_tick;
            let tracked = tracker.enter();
            let thread = std::thread::Builder::new()
                .name("wazoo-epoch".into())
                .spawn(move || {
                    let _tracked = tracked;
                    t.run(tick, || engine.increment_epoch());
                })
                .map_err(|e| PluginError::Engine(e.to_string()))?;
            let _ = ticker.thread.set(thread.thread().clone());
        }
        // Stops the ticker if anything below fails.
        let stop_on_error = StopOnDrop(ticker.clone());
        let threads = GuestThreads::start(&tracker, per_kind)
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        std::mem::forget(stop_on_error);
        let runtime = Runtime {
            engine,
            ticker,
            threads: threads.handles.clone(),
            epoch_tick,
            accepting: AtomicBool::new(true),
            in_flight: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            _tracked: tracker.enter(),
            tracker,
        };
        Ok((Arc::new(runtime), threads))
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn ticker(&self) -> &Arc<Ticker> {
        &self.ticker
    }

    pub(crate) fn epoch_tick(&self) -> Duration {
        self.epoch_tick
    }

    pub(crate) fn tracker(&self) -> &Tracker {
        &self.tracker
    }

    /// The runtime of the host's own tasks (re-arming watches, adding bindings again).
    pub(crate) fn tasks(&self) -> &tokio::runtime::Handle {
        self.threads.tasks()
    }

    /// The runtime of `kind`'s lane thread `thread`.
    pub(crate) fn lane(&self, kind: LaneKind, thread: usize) -> &tokio::runtime::Handle {
        self.threads.lane(kind, thread)
    }

    /// Which lane thread `kind`'s lane of a set on `thread` runs on (see [`thread_slot`]).
    pub(crate) fn thread_slot(&self, kind: LaneKind, thread: usize) -> usize {
        thread_slot(kind, thread, self.threads.per_kind)
    }

    /// Whether events are still taken (not since [`Runtime::stop_accepting`]).
    pub(crate) fn accepting(&self) -> bool {
        self.accepting.load(Ordering::Relaxed)
    }

    /// No new events are taken from now on (a drain).
    pub(crate) fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    /// An id for a new plugin, unique in the host.
    pub(crate) fn next_plugin_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Events handed to guest lanes and not yet handled.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// One more event handed to a guest lane.
    pub(crate) fn event_queued(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// `n` events handed to guest lanes were handled (or will never be).
    pub(crate) fn events_done(&self, n: u64) {
        self.in_flight.fetch_sub(n, Ordering::SeqCst);
    }
}

/// The threads guest code runs on: one per lane kind, each with a single-threaded runtime on
/// which every guest lane of that kind is a task, and one for the host's own tasks (re-arming
/// watches, adding bindings again).
///
/// Why not one work-stealing runtime for all: each wake-up from outside it (an event from the
/// session, a ZooKeeper reply) woke two of its workers, the second to go on searching for work;
/// on a two-core machine that added 15-30 us to a guest's ZooKeeper round trip. One thread per
/// kind keeps Kazoo's guarantee as the three lanes had it: a guest spinning in a watch handler
/// holds only watch lanes, and only for one epoch tick at a time (a quarter tick while any
/// guest spins, see [`Ticker`]), never session or completion lanes.
pub(crate) struct GuestThreads {
    handles: GuestThreadHandles,
    /// Dropping these stops the threads (and drops their tasks, and the instances in those).
    _stops: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl GuestThreads {
    /// Starts `per_kind` threads for each lane kind and one for the host's tasks.
    fn start(tracker: &Tracker, per_kind: usize) -> std::io::Result<GuestThreads> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        let mut names = Vec::new();
        for kind in ["session", "watch", "completion"] {
            for i in 0..per_kind {
                names.push(match per_kind {
                    1 => format!("wazoo-guest-{kind}"),
                    _ => format!("wazoo-guest-{kind}-{i}"),
                });
            }
        }
        names.push("wazoo-guest-tasks".into());
        for name in names {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                // Events and replies arrive from other threads, into the runtime's remote
                // queue; by default it is looked at once every 31 polls, and a spinning guest
                // yields once per (quarter) tick: the lanes it shares a thread with waited up
                // to 31 of its turns.
                .global_queue_interval(1)
                .build()?;
            handles.push(rt.handle().clone());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let tracked = tracker.enter();
            std::thread::Builder::new().name(name).spawn(move || {
                let _tracked = tracked;
                rt.block_on(async {
                    let _ = stopped.await;
                });
                // Its tasks, and the instances they hold, go before the thread counts as
                // gone.
                drop(rt);
            })?;
            stops.push(stop);
        }
        let tasks = handles.pop().expect("the tasks' runtime");
        Ok(GuestThreads {
            handles: GuestThreadHandles {
                lanes: handles.into(),
                per_kind,
                tasks,
            },
            _stops: stops,
        })
    }
}

/// The guest threads' runtime handles, without the power to stop them (see [`GuestThreads`]).
#[derive(Clone)]
struct GuestThreadHandles {
    /// Session, watch, completion (by [`LaneKind::index`]), `per_kind` of each.
    lanes: Arc<[tokio::runtime::Handle]>,
    per_kind: usize,
    tasks: tokio::runtime::Handle,
}

impl GuestThreadHandles {
    fn lane(&self, kind: LaneKind, thread: usize) -> &tokio::runtime::Handle {
        &self.lanes[thread_slot(kind, thread, self.per_kind)]
    }

    fn tasks(&self) -> &tokio::runtime::Handle {
        &self.tasks
    }
}

/// The index of `kind`'s `thread` among all lane threads (`per_kind` of each kind), as in
/// [`GuestThreadHandles::lanes`] and the epoch ticker's spinning counts.
fn thread_slot(kind: LaneKind, thread: usize, per_kind: usize) -> usize {
    kind.index() * per_kind + thread
}
