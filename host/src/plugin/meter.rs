//! The compute meter: what a guest call is charged against its compute budget, and its
//! wall-clock deadline.
//!
//! The budget counts guest execution only. A call is charged in *segments* of guest execution:
//! one begins as the call starts, as the guest resumes after an epoch yield and as it resumes
//! after an import that waited on ZooKeeper; one ends at an epoch tick and as the guest calls
//! an import that waits. Time waiting on ZooKeeper inside an import is never charged. A segment
//! that began when the guest resumed is measured with the thread's CPU clock, so time the OS
//! keeps the thread off the CPU (a loaded machine) is not charged either. The first segment of
//! a call is measured on the wall clock (no system call per callback) and charged at most one
//! epoch tick: the epoch interrupts the guest within a tick of running.
//!
//! The lane task starts and ends calls ([`Meter::start_call`], [`Meter::end_call`]), the epoch
//! callback charges at each tick and decides whether the guest yields or traps
//! ([`Meter::on_epoch`]), and the imports leave waits on ZooKeeper uncharged
//! ([`Meter::uncharged`]).

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::UpdateDeadline;

use super::epoch::{Deadline, Ticker};

/// The compute meter of one instance: the running call's charged guest execution, its budget,
/// and its wall-clock deadline.
pub(crate) struct Meter {
    /// The most guest execution one event may be charged (the policy's compute budget).
    budget: Duration,
    /// How long one event may take on the wall clock (the policy's wall limit).
    wall_limit: Duration,
    /// The lane's wall-clock deadline, which the ticker watches while a call waits (see
    /// [`super::epoch::within`]).
    deadline: Arc<Deadline>,
    /// Told when a call starts or stops counting as spinning, for lane thread `slot`.
    ticker: Arc<Ticker>,
    slot: usize,
    /// Guest execution charged to the current call so far (segments already closed).
    charged_ns: u64,
    /// Whether a segment of guest execution is running (not closed by an epoch tick that
    /// ended the call, or by an import waiting on ZooKeeper).
    seg_open: bool,
    /// Between [`Meter::start_call`] and [`Meter::end_call`].
    in_call: bool,
    /// Guest execution of the events a running handler finished before taking the next
    /// (see [`Meter::next_event`]), added to the plugin's at the end of the call.
    taken_ns: u64,
    /// When the running segment began, for segments measured by the clock on the wall.
    seg_wall: Instant,
    /// When non-zero: the running segment began at this reading of the thread's CPU clock
    /// (plus one), set by an epoch yield as the guest resumes; it is measured in CPU time.
    resume_cpu: Arc<AtomicU64>,
    /// The most a wall-measured segment is charged: one epoch tick (see [`Meter::close_segment`]).
    tick_ns: u64,
    /// The guest resumed after waiting on ZooKeeper and has not met an epoch check since.
    waited: bool,
    /// Whether the running call counts as spinning (see [`Ticker::spun`]): its event has
    /// been charged a whole tick of guest execution. Until [`Meter::end_call`].
    spinning: bool,
}

impl Meter {
    /// A meter for calls with this `budget` and `wall_limit`, on lane thread `slot` (whose
    /// `deadline` the lane passes to [`super::epoch::within`]), the epoch ticking every `tick`.
    pub(crate) fn new(
        budget: Duration,
        wall_limit: Duration,
        tick: Duration,
        deadline: Arc<Deadline>,
        ticker: Arc<Ticker>,
        slot: usize,
    ) -> Meter {
        Meter {
            budget,
            wall_limit,
            deadline,
            ticker,
            slot,
            charged_ns: 0,
            seg_open: false,
            in_call: false,
            taken_ns: 0,
            seg_wall: Instant::now(),
            resume_cpu: Arc::new(AtomicU64::new(0)),
            tick_ns: tick.as_nanos() as u64,
            waited: false,
            spinning: false,
        }
    }

    /// Starts the compute-budget clock of a new call started at `now`, and its wall-clock
    /// deadline.
    pub(crate) fn start_call(&mut self, now: Instant) {
        self.deadline.set(now + self.wall_limit);
        self.charged_ns = 0;
        self.seg_wall = now;
        self.seg_open = true;
        self.in_call = true;
        self.resume_cpu.store(0, Ordering::Relaxed);
        self.waited = false;
    }

    /// The running handler goes on with the next event at `now` (`wazoo:plugin/lane`): the
    /// guest execution so far goes to the one it finished, and the compute budget and the
    /// wall-clock limit start anew.
    pub(crate) fn next_event(&mut self, now: Instant) {
        self.close_segment_at(now);
        self.taken_ns += self.charged_ns;
        self.start_call(now);
    }

    /// A call into the guest has ended (returned, trapped or was cancelled) at `now`. Returns
    /// the guest execution it was charged in nanoseconds (none if no call was under way), for
    /// the plugin's [`PluginStats::compute_time`](super::PluginStats::compute_time).
    pub(crate) fn end_call(&mut self, now: Instant) -> u64 {
        let mut ns = 0;
        if std::mem::take(&mut self.in_call) {
            ns = self.settle(now);
        }
        if std::mem::take(&mut self.spinning) {
            self.ticker.spun(self.slot, false);
        }
        ns
    }

    /// Awaits what `start` begins (a ZooKeeper call from an import): the guest's running
    /// segment is charged up to here, and a new one begins when the reply is back, so the
    /// wait is never charged.
    pub(crate) async fn uncharged<F: IntoFuture>(
        &mut self,
        start: impl FnOnce() -> F,
    ) -> F::Output {
        self.close_segment();
        let r = start().await;
        self.resume_after_wait();
        r
    }

    /// At an epoch tick: charges the segment that ends now and traps the call if its budget is
    /// exhausted; otherwise the guest yields to the other tasks on its thread.
    pub(crate) fn on_epoch(&mut self) -> wasmtime::Result<UpdateDeadline> {
        // The tick passed while the guest waited on ZooKeeper and it has only just resumed:
        // it held the thread for no time, so it need not yield (a yield per reply that crossed
        // a tick was a visible part of a guest's round trip).
        if std::mem::take(&mut self.waited) && self.segment_ns() < self.tick_ns / 2 {
            return Ok(UpdateDeadline::Continue(1));
        }
        self.close_segment();
        if self.guest_time() >= self.budget {
            return Err(wasmtime::format_err!(
                "compute budget of {:?} exhausted after {:?} of guest execution (time waiting on ZooKeeper or for a CPU is not counted)",
                self.budget,
                self.guest_time()
            ));
        }
        // Let other tasks on this thread run; the guest is charged again from the moment it
        // resumes, in CPU time (where there is no thread clock: from now, on the wall). A call
        // charged a whole tick (computing, not waiting on ZooKeeper) makes the ticker tick
        // faster, so that the lanes sharing its thread get their turns sooner.
        if !self.spinning && self.charged_ns >= self.tick_ns {
            self.spinning = true;
            self.ticker.spun(self.slot, true);
        }
        self.open_segment();
        let resume = self.resume_cpu.clone();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                if let Some(now) = thread_cpu_ns() {
                    resume.store(now + 1, Ordering::Relaxed);
                }
            }),
        ))
    }

    /// Charges the segment of guest execution that ends now (at an epoch tick, or as the guest
    /// calls an import that waits on ZooKeeper); see the module's doc for how it is measured.
    fn close_segment(&mut self) {
        self.close_segment_at(Instant::now());
    }

    fn close_segment_at(&mut self, now: Instant) {
        let ns = self.segment_ns_at(now);
        self.seg_open = false;
        self.resume_cpu.store(0, Ordering::Relaxed);
        self.charged_ns = self.charged_ns.saturating_add(ns);
    }

    /// What the running segment would be charged if it ended now.
    fn segment_ns(&self) -> u64 {
        self.segment_ns_at(Instant::now())
    }

    fn segment_ns_at(&self, now: Instant) -> u64 {
        if !self.seg_open {
            return 0;
        }
        let c0 = self.resume_cpu.load(Ordering::Relaxed);
        if c0 != 0 {
            if let Some(now) = thread_cpu_ns() {
                return now.saturating_sub(c0 - 1);
            }
        }
        (now.saturating_duration_since(self.seg_wall).as_nanos() as u64).min(self.tick_ns)
    }

    /// A new wall-measured segment begins.
    fn open_segment(&mut self) {
        self.seg_wall = Instant::now();
        self.seg_open = true;
    }

    /// The call has ended: its guest execution, to go to the plugin's
    /// [`PluginStats::compute_time`](super::PluginStats::compute_time).
    fn settle(&mut self, now: Instant) -> u64 {
        self.close_segment_at(now);
        std::mem::take(&mut self.charged_ns) + std::mem::take(&mut self.taken_ns)
    }

    /// The guest runs again after an import that waited on ZooKeeper: a new segment, measured
    /// on the thread's CPU clock (a wall-measured one charged every preemption of a loaded
    /// machine to a guest that waits often), and an epoch tick that passed during the wait
    /// does not make it yield.
    fn resume_after_wait(&mut self) {
        self.open_segment();
        if let Some(now) = thread_cpu_ns() {
            self.resume_cpu.store(now + 1, Ordering::Relaxed);
        }
        self.waited = true;
    }

    /// Guest execution charged to this call so far.
    fn guest_time(&self) -> Duration {
        Duration::from_nanos(self.charged_ns)
    }
}

/// The calling thread's CPU time in nanoseconds, where the platform has such a clock.
fn thread_cpu_ns() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid clock id and a valid, writable timespec.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}
