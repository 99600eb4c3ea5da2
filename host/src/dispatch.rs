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

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a lane polls its queue after running a callback before it parks (see the module
/// documentation): zero, park at once. Polling needs a core to spare; on a machine whose cores
/// are busy with the server and other work, it made the frame-to-callback latency worse
/// (BENCHMARKS.md, "Dispatch lanes").
pub const DEFAULT_SPIN: Duration = Duration::ZERO;

/// How lane threads ask the OS to schedule them ([`Lanes::with_scheduling`]). Linux only;
/// elsewhere ignored. What the kernel refuses (a negative nice value without `CAP_SYS_NICE` or
/// a matching `RLIMIT_NICE`) is logged once per lane thread, which then runs as it would have.
///
/// ```
/// use std::time::Duration;
/// let lanes = wazoo::Lanes::with_scheduling(
///     "svc",
///     wazoo::LaneScheduling::default()
///         .slice(Duration::from_micros(100))
///         .nice(-10),
/// );
/// # drop(lanes);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneScheduling {
    nice: Option<i32>,
    slice: Option<Duration>,
}

impl LaneScheduling {
    /// The nice value of lane threads (-20 to 19; lower runs sooner). A negative value needs
    /// privilege. Measured here: with the server on the same two cores, nice -10 took the
    /// frame-to-callback p99 at 10k events/s from about 100 µs to 27–45 µs (BENCHMARKS.md).
    pub fn nice(mut self, nice: i32) -> Self {
        self.nice = Some(nice.clamp(-20, 19));
        self
    }

    /// The time slice lane threads ask for (Linux 6.6+ with EEVDF honours 0.1 to 100 ms; the
    /// kernel clamps). A thread with a shorter slice gets an earlier deadline when it wakes, so
    /// it preempts a longer-sliced thread sooner; it is also preempted sooner itself, which
    /// suits short callbacks. Needs no privilege.
    pub fn slice(mut self, slice: Duration) -> Self {
        self.slice = Some(slice);
        self
    }

    /// Applies these settings to the calling thread.
    fn apply(&self, lane: &str) {
        if self.nice.is_none() && self.slice.is_none() {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            // struct sched_attr (include/uapi/linux/sched/types.h), version 1.
            #[repr(C)]
            struct SchedAttr {
                size: u32,
                policy: u32,
                flags: u64,
                nice: i32,
                priority: u32,
                runtime: u64,
                deadline: u64,
                period: u64,
                util_min: u32,
                util_max: u32,
            }
            let attr = SchedAttr {
                size: std::mem::size_of::<SchedAttr>() as u32,
                policy: libc::SCHED_OTHER as u32,
                flags: 0,
                // Unless asked for another one, the nice value the thread has.
                nice: self.nice.unwrap_or_else(|| {
                    // SAFETY: no memory effects. (It returns the value itself; -1 is an error
                    // only when errno says so, and a nice of -1 is kept either way.)
                    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
                }),
                priority: 0,
                runtime: self.slice.map_or(0, |d| d.as_nanos() as u64),
                deadline: 0,
                period: 0,
                util_min: 0,
                util_max: 0,
            };
            // SAFETY: sched_setattr reads `attr` (of the size it is told) for the calling
            // thread (pid 0) and keeps no pointer to it.
            let r = unsafe {
                libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32)
            };
            if r != 0 {
                let e = std::io::Error::last_os_error();
                tracing::warn!(lane, nice = ?self.nice, slice = ?self.slice, "the kernel refused the lane's scheduling settings; running with the defaults: {e}");
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = lane;
    }
}

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

/// A distribution of durations in power-of-two buckets: the first holds everything up to
/// 2^13 ns (8.2 µs), each next one doubles the bound, up to 2^34 ns (17.2 s); a last bucket
/// holds what is longer. The shape of a Prometheus histogram, without its cumulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative): `counts[i]` counts those above
    /// [`Histogram::upper_bound`]`(i - 1)` and at most `upper_bound(i)`.
    pub counts: [u64; Histogram::BUCKETS],
    /// The sum of every observation.
    pub sum: Duration,
}

/// log2 of the first bucket's bound, in nanoseconds.
const FIRST_BOUND_LOG2: u32 = 13;

impl Histogram {
    /// Buckets, the last one unbounded.
    pub const BUCKETS: usize = 23;

    /// The inclusive upper bound of bucket `i`; `None` for the last (unbounded) one.
    pub fn upper_bound(i: usize) -> Option<Duration> {
        (i + 1 < Self::BUCKETS).then(|| Duration::from_nanos(1 << (FIRST_BOUND_LOG2 + i as u32)))
    }

    /// The bucket a duration of `ns` nanoseconds falls in.
    #[inline]
    fn bucket(ns: u64) -> usize {
        // The smallest k with ns <= 2^k.
        let k = u64::BITS - ns.saturating_sub(1).leading_zeros();
        (k.saturating_sub(FIRST_BOUND_LOG2) as usize).min(Self::BUCKETS - 1)
    }

    /// How many observations there are.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Each bucket's upper bound (`None`: unbounded) with the number of observations at or
    /// below it: Prometheus' `le` buckets.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        self.counts.iter().enumerate().scan(0u64, |acc, (i, c)| {
            *acc += c;
            Some((Self::upper_bound(i), *acc))
        })
    }

    /// An upper bound of the `q` quantile (0..=1): the bound of the bucket it falls in. `None`
    /// when empty or in the unbounded bucket.
    pub fn quantile_bound(&self, q: f64) -> Option<Duration> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((n as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        self.cumulative()
            .find(|(_, c)| *c >= rank)
            .and_then(|(b, _)| b)
    }
}

/// The recording side of a [`Histogram`]. Only one thread may [`AtomicHistogram::record`] at a
/// time (a lane's own thread or task); any thread may take a snapshot.
#[derive(Default)]
pub(crate) struct AtomicHistogram {
    counts: [AtomicU64; Histogram::BUCKETS],
    sum_ns: AtomicU64,
}

/// A duration in nanoseconds, saturating (without 128-bit arithmetic).
#[inline]
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// Adds to a counter that only the calling thread writes: a plain load and store, which costs
/// far less than a read-modify-write and is exact under that rule (readers see either value).
#[inline]
fn bump(c: &AtomicU64, by: u64) {
    c.store(
        c.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

impl AtomicHistogram {
    /// Records one observation (single writer, see the type).
    #[inline]
    pub(crate) fn record(&self, d: Duration) {
        let ns = nanos(d);
        bump(&self.counts[Histogram::bucket(ns)], 1);
        bump(&self.sum_ns, ns);
    }

    pub(crate) fn snapshot(&self) -> Histogram {
        let mut h = Histogram::default();
        for (dst, src) in h.counts.iter_mut().zip(&self.counts) {
            *dst = src.load(Ordering::Relaxed);
        }
        h.sum = Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed));
        h
    }
}

/// A lane's counters, readable at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneMetrics {
    /// Callbacks run to completion (panicked ones included).
    pub dispatched: u64,
    /// Callbacks waiting to run (or running).
    pub queue_depth: u64,
    /// Callbacks that panicked.
    pub panics: u64,
    /// Total time spent in callbacks.
    pub busy: Duration,
    /// The longest single callback.
    pub max_callback: Duration,
    /// How long each callback ran.
    pub callback: Histogram,
    /// How long each callback waited between being queued and starting.
    pub wait: Histogram,
}

/// The counters behind [`LaneMetrics`], shared by native lanes and guest lanes. Everything but
/// `queued` is written by the lane's one consumer only, and lies on other cache lines than
/// `queued`, which every producer updates too.
#[derive(Default)]
pub(crate) struct LaneCounters {
    queued: CacheLines<AtomicU64>,
    panics: AtomicU64,
    max_ns: AtomicU64,
    callback: AtomicHistogram,
    wait: AtomicHistogram,
}

/// A value alone on its cache lines (two: x86 prefetches lines in pairs).
#[derive(Default)]
#[repr(align(128))]
struct CacheLines<T>(T);

impl<T> std::ops::Deref for CacheLines<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl LaneCounters {
    /// One more event queued (any thread).
    #[inline]
    pub(crate) fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// A queued event that will never run (any thread).
    #[inline]
    pub(crate) fn unqueued(&self) {
        self.queued.fetch_sub(1, Ordering::Relaxed);
    }

    /// A callback finished: it waited `wait` and ran `ran` (the consumer only).
    #[inline]
    pub(crate) fn done(&self, wait: Duration, ran: Duration, panicked: bool) {
        self.record(wait, ran, panicked);
        self.dequeued(1);
    }

    /// Records a finished callback without taking it off the queue's count: a consumer that
    /// finishes several in a row counts them off at once with [`LaneCounters::dequeued`].
    #[inline]
    pub(crate) fn record(&self, wait: Duration, ran: Duration, panicked: bool) {
        self.wait.record(wait);
        self.callback.record(ran);
        let ns = nanos(ran);
        if ns > self.max_ns.load(Ordering::Relaxed) {
            self.max_ns.store(ns, Ordering::Relaxed);
        }
        if panicked {
            bump(&self.panics, 1);
        }
    }

    /// `n` recorded callbacks leave the queue's count; after their records, so that a drain
    /// that sees the queue empty also sees the counts.
    #[inline]
    pub(crate) fn dequeued(&self, n: u64) {
        self.queued.fetch_sub(n, Ordering::Release);
    }

    pub(crate) fn snapshot(&self) -> LaneMetrics {
        let queue_depth = self.queued.load(Ordering::Acquire);
        let callback = self.callback.snapshot();
        LaneMetrics {
            dispatched: callback.count(),
            queue_depth,
            panics: self.panics.load(Ordering::Relaxed),
            busy: callback.sum,
            max_callback: Duration::from_nanos(self.max_ns.load(Ordering::Relaxed)),
            callback,
            wait: self.wait.snapshot(),
        }
    }
}

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
    pub(crate) fn live(&self) -> usize {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until none is live, up to `timeout`; whether none is.
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

fn lane_loop(
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

    /// Raising a thread's nice value and shortening its slice need no privilege, so this runs
    /// as any user; lowering nice is left to the benchmark (it needs `CAP_SYS_NICE`).
    #[cfg(target_os = "linux")]
    #[test]
    fn lane_threads_take_their_scheduling_settings() {
        let lanes = Lanes::with_scheduling(
            "sched",
            LaneScheduling::default()
                .nice(7)
                .slice(Duration::from_micros(300)),
        );
        let (tx, rx) = mpsc::channel();
        lanes.run(LaneKind::Watch, move |_| {
            // SAFETY: no memory effects.
            let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
            let sched = std::fs::read_to_string("/proc/thread-self/sched").unwrap_or_default();
            tx.send((nice, sched)).unwrap();
        });
        let (nice, sched) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(nice, 7);
        // Linux 6.12+ takes a custom slice for fair threads (and shows it); older kernels
        // ignore the request.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut v = release
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u32>().ok());
        let custom_slices = (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 12);
        if let Some(line) = sched
            .lines()
            .find(|l| custom_slices && l.starts_with("se.slice"))
        {
            let ns: u64 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
            assert_eq!(ns, 300_000, "{line}");
        }
        // Unset settings leave a lane thread as it was.
        let plain = Lanes::new("plain");
        let (tx, rx) = mpsc::channel();
        plain.run(LaneKind::Watch, move |_| {
            // SAFETY: no memory effects.
            tx.send(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) })
                .unwrap();
        });
        // SAFETY: no memory effects.
        let mine = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), mine);
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
    fn histogram_buckets_are_powers_of_two_from_8us_to_17s() {
        assert_eq!(Histogram::upper_bound(0), Some(Duration::from_nanos(8192)));
        assert_eq!(
            Histogram::upper_bound(Histogram::BUCKETS - 2),
            Some(Duration::from_nanos(1 << 34))
        );
        assert_eq!(Histogram::upper_bound(Histogram::BUCKETS - 1), None);
        for (ns, bucket) in [
            (0, 0),
            (1, 0),
            (8192, 0),
            (8193, 1),
            (16384, 1),
            (16385, 2),
            (1 << 34, Histogram::BUCKETS - 2),
            ((1 << 34) + 1, Histogram::BUCKETS - 1),
            (u64::MAX, Histogram::BUCKETS - 1),
        ] {
            assert_eq!(Histogram::bucket(ns), bucket, "{ns} ns");
        }
        // Every value lies within its bucket's bounds.
        for ns in (0..40).map(|s| (1u64 << s) + 12345) {
            let b = Histogram::bucket(ns);
            assert!(Histogram::upper_bound(b).is_none_or(|u| ns <= u.as_nanos() as u64));
            if b > 0 {
                assert!(ns > Histogram::upper_bound(b - 1).unwrap().as_nanos() as u64);
            }
        }
        let h = AtomicHistogram::default();
        for us in [1, 5, 20, 20, 3_000, 20_000_000] {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 6);
        assert_eq!(s.sum, Duration::from_micros(20_003_046));
        let cum: Vec<_> = s.cumulative().collect();
        assert_eq!(cum[0], (Some(Duration::from_nanos(8192)), 2));
        assert_eq!(cum[2], (Some(Duration::from_nanos(32768)), 4));
        assert_eq!(*cum.last().unwrap(), (None, 6));
        assert_eq!(s.quantile_bound(0.5), Some(Duration::from_nanos(32768)));
        assert_eq!(s.quantile_bound(1.0), None, "20 s is past the last bound");
    }

    #[test]
    fn callback_and_wait_times_land_in_their_buckets() {
        let lanes = Lanes::new("t3");
        lanes.run(LaneKind::Watch, |_| {
            std::thread::sleep(Duration::from_millis(20))
        });
        lanes.run(LaneKind::Watch, |_| {});
        assert!(lanes.drain(Duration::from_secs(5)));
        let m = lanes.metrics(LaneKind::Watch);
        assert_eq!(m.callback.count(), 3, "two callbacks and drain's marker");
        assert!(m.busy >= Duration::from_millis(20));
        assert!(m.max_callback >= Duration::from_millis(20));
        // The sleeper is in a bucket bounded at 2^25 ns (33.6 ms) or more; the second callback
        // waited behind it for about as long.
        let slow: u64 = m.callback.counts[(25 - FIRST_BOUND_LOG2 as usize)..]
            .iter()
            .sum();
        assert!(slow >= 1, "{:?}", m.callback);
        let waited: u64 = m.wait.counts[(24 - FIRST_BOUND_LOG2 as usize)..]
            .iter()
            .sum();
        assert!(waited >= 1, "{:?}", m.wait);
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
