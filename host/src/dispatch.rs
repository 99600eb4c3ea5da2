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

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

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

    fn index(self) -> usize {
        match self {
            LaneKind::Session => 0,
            LaneKind::Watch => 1,
            LaneKind::Completion => 2,
        }
    }

    fn name(self) -> &'static str {
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

/// A lane's counters, readable at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneMetrics {
    /// Callbacks run to completion (panicked ones included).
    pub dispatched: u64,
    /// Callbacks waiting to run.
    pub queue_depth: u64,
    /// Callbacks that panicked.
    pub panics: u64,
    /// Total time spent in callbacks.
    pub busy: Duration,
    /// The longest single callback.
    pub max_callback: Duration,
}

pub(crate) type Job = Box<dyn FnOnce(CallbackInfo) + Send>;

struct Item {
    seq: u64,
    queued_at: Instant,
    what: &'static str,
    job: Job,
}

#[derive(Default)]
struct Counters {
    dispatched: AtomicU64,
    queued: AtomicU64,
    panics: AtomicU64,
    busy_ns: AtomicU64,
    max_ns: AtomicU64,
}

struct Lane {
    tx: Mutex<Option<mpsc::Sender<Item>>>,
    counters: Arc<Counters>,
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
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl Lanes {
    /// A new set of lanes; `name` labels their threads and log lines. Threads start lazily, on
    /// a lane's first callback.
    pub fn new(name: &str) -> Lanes {
        let lane = || Lane {
            tx: Mutex::new(None),
            counters: Arc::new(Counters::default()),
        };
        Lanes {
            inner: Arc::new(LanesInner {
                name: name.to_string(),
                lanes: [lane(), lane(), lane()],
                local_seq: AtomicU64::new(0),
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
        lane.counters.queued.fetch_add(1, Ordering::Relaxed);
        let mut item = Item {
            seq,
            queued_at: Instant::now(),
            what,
            job,
        };
        let mut guard = lane.tx.lock().unwrap_or_else(|p| p.into_inner());
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
        lane.counters.queued.fetch_sub(1, Ordering::Relaxed);
        tracing::error!(lanes = %self.inner.name, lane = kind.name(), "cannot start a lane thread; callback dropped");
    }

    fn start(&self, kind: LaneKind) -> mpsc::Sender<Item> {
        let (tx, rx) = mpsc::channel::<Item>();
        let counters = self.inner.lanes[kind.index()].counters.clone();
        let name = self.inner.name.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("wazoo-{}-{}", kind.name(), name))
            .spawn(move || lane_loop(kind, &name, rx, &counters));
        if let Err(e) = spawned {
            tracing::error!(lane = kind.name(), "cannot spawn a lane thread: {e}");
        }
        tx
    }

    /// A lane's counters.
    pub fn metrics(&self, lane: LaneKind) -> LaneMetrics {
        let c = &self.inner.lanes[lane.index()].counters;
        LaneMetrics {
            dispatched: c.dispatched.load(Ordering::Relaxed),
            queue_depth: c.queued.load(Ordering::Relaxed),
            panics: c.panics.load(Ordering::Relaxed),
            busy: Duration::from_nanos(c.busy_ns.load(Ordering::Relaxed)),
            max_callback: Duration::from_nanos(c.max_ns.load(Ordering::Relaxed)),
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

fn lane_loop(kind: LaneKind, name: &str, rx: mpsc::Receiver<Item>, c: &Counters) {
    while let Ok(Item {
        seq,
        queued_at,
        what,
        job,
    }) = rx.recv()
    {
        let start = Instant::now();
        let info = CallbackInfo {
            lane: kind,
            seq,
            queued_at,
        };
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| job(info))) {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_string());
            c.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(lanes = %name, lane = kind.name(), seq, event = what, "callback panicked: {msg}");
        }
        let ns = start.elapsed().as_nanos() as u64;
        c.busy_ns.fetch_add(ns, Ordering::Relaxed);
        c.max_ns.fetch_max(ns, Ordering::Relaxed);
        c.dispatched.fetch_add(1, Ordering::Relaxed);
        c.queued.fetch_sub(1, Ordering::Relaxed);
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
}
