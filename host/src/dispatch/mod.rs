//! Dispatch lanes: Kazoo's three sequential callback queues, made real.
//!
//! A [`Lanes`] set has three lanes, one per kind of callback ([`LaneKind`]): session events
//! (state listeners), watch events (watch callbacks, [`crate::DataWatch`],
//! [`crate::ChildrenWatch`]) and completions (callbacks chained to async results). Each lane runs
//! its callbacks one at a time, in the order the session actor produced the events, on a thread of
//! its own: a native callback may block (a blocking ZooKeeper call, a sleep) and hold up only its
//! own lane. The session actor only ever *sends* to a lane; it never waits for one.
//!
//! Every event is stamped by the session actor with a per-client sequence number, so the order
//! across lanes can be reconstructed ([`CallbackInfo::seq`]).
//!
//! A panicking callback is caught, logged with its lane and stamp, and counted; the lane goes on.
//!
//! # Metrics
//!
//! Each lane counts its callbacks, its queue depth and panics, and keeps two [`Histogram`]s:
//! the time each callback ran, and the time each waited between being queued and starting.
//! Recording is a handful of relaxed atomic operations on counters only the lane's own thread
//! writes, so it costs a few nanoseconds per callback.
//!
//! # Waking a lane
//!
//! A lane thread that finds its queue empty right after running a callback may poll it for a
//! while before it parks ([`Lanes::with_spin`]; [`DEFAULT_SPIN`] by default): an event that
//! arrives within that window starts at once instead of paying for a thread wake-up, which on a
//! busy or virtualised machine is the largest part of the frame-to-callback latency. It polls
//! only while events come densely (the last one queued within the window of the one before), so
//! a lane with sparse events parks at once and an idle lane never polls.
//!
//! A parked lane's wake-up waits for a CPU. Where the server and other work share the cores,
//! that wait is most of the latency's tail; [`LaneScheduling`] lets lane threads ask the kernel
//! for a shorter time slice (so a woken lane preempts sooner) and a better nice value.

mod lane;
mod metrics;
mod scheduling;
mod tracker;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lane::lane_loop;

pub(crate) use metrics::LaneCounters;
pub use metrics::{Histogram, LaneMetrics};
pub use scheduling::LaneScheduling;
#[cfg(feature = "plugins")]
pub(crate) use tracker::Tracked;
pub(crate) use tracker::Tracker;

/// How long a lane polls its queue after running a callback before it parks (see the module
/// documentation): zero, park at once. Polling needs a core to spare; on a machine whose cores
/// are busy with the server and other work, it made the frame-to-callback latency worse
/// (BENCHMARKS.md, "Dispatch lanes").
pub const DEFAULT_SPIN: Duration = Duration::ZERO;

/// The three kinds of callback, each with its own lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaneKind {
    /// Session state changes (state listeners).
    Session,
    /// Watch events.
    Watch,
    /// Completions of async requests.
    Completion,
}

impl LaneKind {
    /// All three, in a fixed order.
    pub const ALL: [LaneKind; 3] = [LaneKind::Session, LaneKind::Watch, LaneKind::Completion];

    pub(crate) fn index(self) -> usize {
        match self {
            LaneKind::Session => 0,
            LaneKind::Watch => 1,
            LaneKind::Completion => 2,
        }
    }

    /// Its name in logs and metrics: `session`, `watch` or `completion`.
    pub fn name(self) -> &'static str {
        match self {
            LaneKind::Session => "session",
            LaneKind::Watch => "watch",
            LaneKind::Completion => "completion",
        }
    }
}

/// What a callback is told about its own dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallbackInfo {
    /// The lane it runs on.
    pub lane: LaneKind,
    /// The session actor's sequence stamp of the event (strictly increasing per client).
    pub seq: u64,
    /// When the event was handed to the lane (for the session actor: right after it read the
    /// frame). `queued_at.elapsed()` at the start of a callback is its queueing latency.
    pub queued_at: Instant,
}

pub(crate) type Job = Box<dyn FnOnce(CallbackInfo) + Send>;

struct Item {
    seq: u64,
    queued_at: Instant,
    what: &'static str,
    job: Job,
}

struct Lane {
    tx: Mutex<Option<mpsc::Sender<Item>>>,
    counters: Arc<LaneCounters>,
}

/// A set of three sequential lanes. Cheap to clone (a handle); the lane threads stop when the
/// last handle and every pending callback are gone.
///
/// ```
/// use wazoo::{Lanes, LaneKind};
/// let lanes = Lanes::new("example");
/// let (tx, rx) = std::sync::mpsc::channel();
/// lanes.run(LaneKind::Watch, move |info| tx.send(info.lane).unwrap());
/// assert_eq!(rx.recv().unwrap(), LaneKind::Watch);
/// ```
#[derive(Clone)]
pub struct Lanes {
    inner: Arc<LanesInner>,
}

struct LanesInner {
    name: String,
    lanes: [Lane; 3],
    /// Stamps for work submitted directly (not by a session actor).
    local_seq: AtomicU64,
    /// How long an emptied lane polls before parking.
    spin: Duration,
    /// How lane threads ask to be scheduled.
    scheduling: LaneScheduling,
    /// Set by [`Lanes::stop`]: nothing new runs, no thread starts.
    stopped: AtomicBool,
    /// Counts the lane threads, for an owner that waits for them to exit.
    tracker: Option<Tracker>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("name", &self.inner.name)
            .field("spin", &self.inner.spin)
            .field("scheduling", &self.inner.scheduling)
            .finish_non_exhaustive()
    }
}

impl Lanes {
    /// A new set of lanes; `name` labels their threads and log lines. Threads start lazily, on
    /// a lane's first callback.
    pub fn new(name: &str) -> Lanes {
        Lanes::build(name, DEFAULT_SPIN, LaneScheduling::default(), None)
    }

    /// As [`Lanes::new`], with lane threads scheduled as `scheduling` asks.
    pub fn with_scheduling(name: &str, scheduling: LaneScheduling) -> Lanes {
        Lanes::build(name, DEFAULT_SPIN, scheduling, None)
    }

    /// As [`Lanes::new`], polling an emptied queue for up to `spin` before parking (instead of
    /// [`DEFAULT_SPIN`]; zero parks at once), while events come at most `spin` apart. With a
    /// core to spare, that saves events arriving within the window a thread wake-up, at the cost
    /// of up to `spin` of busy CPU per event; without one, it costs latency too.
    pub fn with_spin(name: &str, spin: Duration) -> Lanes {
        Lanes::build(name, spin, LaneScheduling::default(), None)
    }

    /// As [`Lanes::new`], with every lane thread counted by `tracker`.
    #[cfg(any(feature = "plugins", test))]
    pub(crate) fn tracked(name: &str, tracker: Tracker) -> Lanes {
        Lanes::build(name, DEFAULT_SPIN, LaneScheduling::default(), Some(tracker))
    }

    fn build(
        name: &str,
        spin: Duration,
        scheduling: LaneScheduling,
        tracker: Option<Tracker>,
    ) -> Lanes {
        let lane = || Lane {
            tx: Mutex::new(None),
            counters: Arc::new(LaneCounters::default()),
        };
        Lanes {
            inner: Arc::new(LanesInner {
                name: name.to_string(),
                lanes: [lane(), lane(), lane()],
                local_seq: AtomicU64::new(0),
                spin,
                scheduling,
                stopped: AtomicBool::new(false),
                tracker,
            }),
        }
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Runs `f` on a lane, after everything already queued there.
    pub fn run(&self, lane: LaneKind, f: impl FnOnce(CallbackInfo) + Send + 'static) {
        let seq = self.inner.local_seq.fetch_add(1, Ordering::Relaxed);
        self.submit(lane, seq, "callback", Box::new(f));
    }

    /// Queues a job with the session's stamp.
    pub(crate) fn submit(&self, kind: LaneKind, seq: u64, what: &'static str, job: Job) {
        let lane = &self.inner.lanes[kind.index()];
        lane.counters.queued();
        let mut item = Item {
            seq,
            queued_at: Instant::now(),
            what,
            job,
        };
        let mut guard = lane.tx.lock().unwrap_or_else(|p| p.into_inner());
        if self.inner.stopped.load(Ordering::Relaxed) {
            drop(guard);
            lane.counters.unqueued();
            tracing::debug!(lanes = %self.inner.name, lane = kind.name(), seq, event = what, "lanes stopped; callback dropped");
            return;
        }
        for _ in 0..2 {
            let tx = guard.get_or_insert_with(|| self.start(kind));
            match tx.send(item) {
                Ok(()) => return,
                Err(mpsc::SendError(back)) => {
                    // The thread died (it never should: panics are caught); start a new one.
                    item = back;
                    *guard = None;
                }
            }
        }
        lane.counters.unqueued();
        tracing::error!(lanes = %self.inner.name, lane = kind.name(), "cannot start a lane thread; callback dropped");
    }

    fn start(&self, kind: LaneKind) -> mpsc::Sender<Item> {
        let (tx, rx) = mpsc::channel::<Item>();
        let counters = self.inner.lanes[kind.index()].counters.clone();
        let name = self.inner.name.clone();
        let spin = self.inner.spin;
        let scheduling = self.inner.scheduling;
        let tracked = self.inner.tracker.as_ref().map(Tracker::enter);
        let spawned = std::thread::Builder::new()
            .name(format!("wazoo-{}-{}", kind.name(), name))
            .spawn(move || {
                let _tracked = tracked;
                scheduling.apply(kind.name());
                lane_loop(kind, &name, rx, &counters, spin)
            });
        if let Err(e) = spawned {
            tracing::error!(lane = kind.name(), "cannot spawn a lane thread: {e}");
        }
        tx
    }

    /// A lane's counters.
    pub fn metrics(&self, lane: LaneKind) -> LaneMetrics {
        self.inner.lanes[lane.index()].counters.snapshot()
    }

    /// How long an emptied lane polls before parking.
    pub fn spin(&self) -> Duration {
        self.inner.spin
    }

    /// Stops the lanes: callbacks already queued still run, later ones are dropped, and each
    /// thread exits once its queue is empty. For owners that must not outlive their users'
    /// handles (a plugin host).
    #[cfg(any(feature = "plugins", test))]
    pub(crate) fn stop(&self) {
        self.inner.stopped.store(true, Ordering::Relaxed);
        for lane in &self.inner.lanes {
            lane.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    /// Waits until every lane has run everything queued so far, up to `timeout`. Returns
    /// whether they drained.
    pub fn drain(&self, timeout: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        for kind in LaneKind::ALL {
            if self.inner.lanes[kind.index()]
                .tx
                .lock()
                .map(|g| g.is_none())
                .unwrap_or(true)
            {
                let _ = tx.send(());
                continue;
            }
            let tx = tx.clone();
            self.run(kind, move |_| {
                let _ = tx.send(());
            });
        }
        let deadline = Instant::now() + timeout;
        for _ in 0..3 {
            let left = deadline.saturating_duration_since(Instant::now());
            if rx.recv_timeout(left).is_err() {
                return false;
            }
        }
        // The markers signal from inside their callbacks; the counters catch up right after.
        while LaneKind::ALL
            .iter()
            .any(|k| self.metrics(*k).queue_depth > 0)
        {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_runs_in_order_and_survives_a_panic() {
        let lanes = Lanes::new("t");
        let (tx, rx) = mpsc::channel();
        for i in 0..100u32 {
            let tx = tx.clone();
            lanes.run(LaneKind::Completion, move |info| {
                if i == 50 {
                    panic!("boom {i}");
                }
                tx.send((i, info.seq)).unwrap();
            });
        }
        let got: Vec<(u32, u64)> = (0..99)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        let order: Vec<u32> = got.iter().map(|g| g.0).collect();
        assert_eq!(order, (0..100).filter(|i| *i != 50).collect::<Vec<_>>());
        assert!(got.windows(2).all(|w| w[0].1 < w[1].1), "stamps increase");
        assert!(lanes.drain(Duration::from_secs(5)));
        let m = lanes.metrics(LaneKind::Completion);
        // 100 callbacks, and drain's own marker.
        assert_eq!((m.dispatched, m.panics, m.queue_depth), (101, 1, 0));
        assert_eq!((m.callback.count(), m.wait.count()), (101, 101));
    }

    #[test]
    fn a_blocked_lane_does_not_hold_the_others() {
        let lanes = Lanes::new("t2");
        let (release_tx, release_rx) = mpsc::channel::<()>();
        lanes.run(LaneKind::Watch, move |_| {
            let _ = release_rx.recv_timeout(Duration::from_secs(10));
        });
        let (tx, rx) = mpsc::channel();
        lanes.run(LaneKind::Session, move |i| tx.send(i.lane).unwrap());
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            LaneKind::Session
        );
        assert_eq!(lanes.metrics(LaneKind::Watch).queue_depth, 1);
        release_tx.send(()).unwrap();
        assert!(lanes.drain(Duration::from_secs(5)));
    }

    #[test]
    fn stopped_lanes_run_what_was_queued_and_their_threads_exit() {
        let tracker = Tracker::default();
        let lanes = Lanes::tracked("t4", tracker.clone());
        let (tx, rx) = mpsc::channel();
        for kind in LaneKind::ALL {
            let tx = tx.clone();
            lanes.run(kind, move |_| tx.send(kind).unwrap());
        }
        lanes.stop();
        let mut ran: Vec<LaneKind> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        ran.sort_by_key(|k| k.index());
        assert_eq!(ran, LaneKind::ALL);
        assert!(
            tracker.wait_none(Duration::from_secs(5)),
            "{} lane threads still live",
            tracker.live()
        );
        lanes.run(LaneKind::Watch, move |_| tx.send(LaneKind::Watch).unwrap());
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        assert_eq!(lanes.metrics(LaneKind::Watch).queue_depth, 0);
        assert_eq!(tracker.live(), 0, "no thread started after stop");
    }
}
