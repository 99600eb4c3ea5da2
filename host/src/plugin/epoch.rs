//! The epoch ticker and the wall-clock deadlines of guest calls.
//!
//! Epoch ticks interrupt guests: a call past its compute budget traps at the next one, and a
//! call that computes yields at each so the lanes sharing its thread get turns. The ticker
//! parks while no guest code runs, ticks four times as often while a call spins, and watches
//! the deadlines of calls that wait (on ZooKeeper, or after a yield), waking their lanes once
//! one has passed: no timer per call.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

/// A lane's wall-clock deadline: the handler's side moves it forward as it takes the next
/// event; while a call awaits, the epoch ticker watches it and wakes the lane once it has
/// passed (see [`within`]).
pub(crate) struct Deadline {
    base: Instant,
    /// Nanoseconds after `base`.
    ns: AtomicU64,
    /// Set by the ticker when it saw the deadline pass.
    passed: AtomicBool,
    /// The lane's waker while its call awaits.
    waker: Mutex<Option<std::task::Waker>>,
}

impl Deadline {
    pub(crate) fn new() -> Self {
        Deadline {
            base: Instant::now(),
            ns: AtomicU64::new(0),
            passed: AtomicBool::new(false),
            waker: Mutex::new(None),
        }
    }

    /// Whether the deadline has passed (as of now).
    fn expired(&self) -> bool {
        Instant::now() >= self.get()
    }

    pub(crate) fn set(&self, at: Instant) {
        let ns = at.saturating_duration_since(self.base).as_nanos() as u64;
        self.ns.store(ns, Ordering::Relaxed);
    }

    fn get(&self) -> Instant {
        self.base + Duration::from_nanos(self.ns.load(Ordering::Relaxed))
    }
}

/// Stops the epoch ticker when dropped (unless forgotten).
pub(crate) struct StopOnDrop(pub(crate) Arc<Ticker>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// How long the epoch ticker goes on ticking after the last guest call ended, so that a burst
/// of events does not wake it for each one.
const TICK_GRACE: Duration = Duration::from_millis(100);

/// The epoch ticker's controls. Epoch ticks interrupt guests (budgets, yields); with no guest
/// call or build under way there is nothing to interrupt, so the ticker parks instead of
/// waking the machine hundreds of times a second.
pub(crate) struct Ticker {
    stop: AtomicBool,
    /// Guest calls and instance builds under way.
    running: AtomicUsize,
    pub(crate) thread: std::sync::OnceLock<std::thread::Thread>,
    /// Whether the ticker is parked (for tests).
    parked: AtomicBool,
    /// Calls that have run for a whole tick without returning or waiting (see
    /// `Meter::end_call`), per lane thread (by `runtime::thread_slot`). While there are any,
    /// the ticker ticks four times as often: a spinning guest yields at every tick, and the
    /// lanes that share its thread wait for their turn at most that long. An event queued for
    /// a lane whose thread a spinning call holds bumps the epoch, so that the call yields at
    /// once.
    spinning_on: Box<[AtomicUsize]>,
    /// Deadlines of calls that await (see [`within`]), checked at every tick.
    watched: Mutex<Vec<Arc<Deadline>>>,
    /// How many are in `watched`, read without the lock.
    watching: AtomicUsize,
}

impl Ticker {
    /// Marks guest code as (possibly) running until the guard is dropped.
    pub(crate) fn enter(&self) -> Ticking<'_> {
        if self.running.fetch_add(1, Ordering::SeqCst) == 0 {
            if let Some(t) = self.thread.get() {
                t.unpark(); // a no-op (an atomic swap) unless it is parked
            }
        }
        Ticking(self)
    }

    /// Watches `deadline` until the guard is dropped: once it has passed, the lane is woken.
    /// Only while a call is under way, so the ticker is ticking.
    pub(crate) fn watch<'a>(&'a self, deadline: &Arc<Deadline>) -> Watched<'a> {
        deadline.passed.store(false, Ordering::Relaxed);
        let mut w = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        w.push(deadline.clone());
        self.watching.store(w.len(), Ordering::Release);
        Watched(self, deadline.clone())
    }

    /// A ticker for `lane_threads` lane threads (see `thread_slot`).
    pub(crate) fn new(lane_threads: usize) -> Ticker {
        Ticker {
            stop: AtomicBool::new(false),
            running: AtomicUsize::new(0),
            thread: std::sync::OnceLock::new(),
            parked: AtomicBool::new(false),
            spinning_on: (0..lane_threads).map(|_| AtomicUsize::new(0)).collect(),
            watched: Mutex::new(Vec::new()),
            watching: AtomicUsize::new(0),
        }
    }

    /// A call on lane thread `slot` starts (`true`) or stops (`false`) counting as spinning.
    pub(crate) fn spun(&self, slot: usize, on: bool) {
        let n = &self.spinning_on[slot];
        if on {
            n.fetch_add(1, Ordering::Relaxed);
        } else {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether a call spins on lane thread `slot`.
    pub(crate) fn spins_on(&self, slot: usize) -> bool {
        self.spinning_on[slot].load(Ordering::Relaxed) > 0
    }

    /// Whether any call spins.
    fn spinning(&self) -> bool {
        self.spinning_on
            .iter()
            .any(|n| n.load(Ordering::Relaxed) > 0)
    }

    /// Wakes the lanes whose watched deadline has passed.
    fn check_deadlines(&self) {
        if self.watching.load(Ordering::Acquire) == 0 {
            return;
        }
        let w = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        for d in w.iter().filter(|d| d.expired()) {
            d.passed.store(true, Ordering::Release);
            let waker = d.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }

    /// The ticker thread's loop: `tick` apart while guest code runs (and for [`TICK_GRACE`]
    /// after), parked otherwise. An `enter` racing with the park is not lost: an unpark
    /// before a park makes the park return at once.
    pub(crate) fn run(&self, tick: Duration, mut increment: impl FnMut()) {
        let mut idle_since: Option<Instant> = None;
        while !self.stop.load(Ordering::SeqCst) {
            if self.running.load(Ordering::SeqCst) == 0 {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= TICK_GRACE {
                    self.parked.store(true, Ordering::SeqCst);
                    std::thread::park();
                    self.parked.store(false, Ordering::SeqCst);
                    idle_since = None;
                    continue;
                }
            } else {
                idle_since = None;
            }
            if self.spinning() {
                std::thread::sleep(tick / 4);
            } else {
                std::thread::sleep(tick);
            }
            increment();
            self.check_deadlines();
        }
    }
}

/// See [`Ticker::watch`].
pub(crate) struct Watched<'a>(&'a Ticker, Arc<Deadline>);

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        let mut w = self.0.watched.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = w.iter().position(|d| Arc::ptr_eq(d, &self.1)) {
            w.swap_remove(i);
        }
        self.0.watching.store(w.len(), Ordering::Release);
        drop(w);
        *self.1.waker.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// See [`Ticker::enter`].
pub(crate) struct Ticking<'a>(&'a Ticker);

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `call` until the wall-clock `deadline`, which may move forward meanwhile (a handler
/// that takes the next event moves it); `None` if the deadline passed first.
///
/// Most handlers finish in their first poll (nothing to await): those cost nothing here. A
/// call that awaits (ZooKeeper, or an epoch yield) is watched by the epoch ticker, which runs
/// anyway while a call is under way and wakes the lane once the deadline has passed, within a
/// tick. A tokio timer per call instead woke the runtime's driver thread on each call that
/// awaited, a sizeable share of what a guest added to a ZooKeeper round trip.
pub(crate) async fn within<F: Future>(
    ticker: &Ticker,
    deadline: &Arc<Deadline>,
    call: F,
) -> Option<F::Output> {
    let mut call = std::pin::pin!(call);
    let first = std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await;
    if let Poll::Ready(out) = first {
        return Some(out);
    }
    let _watched = ticker.watch(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = call.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        {
            let mut w = deadline.waker.lock().unwrap_or_else(|p| p.into_inner());
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        // The ticker may have seen an earlier deadline that the handler has moved since.
        if deadline.passed.swap(false, Ordering::AcqRel) && deadline.expired() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_ticks_only_while_guest_code_runs() {
        let ticker = Arc::new(Ticker::new(3));
        let ticks = Arc::new(AtomicU64::new(0));
        let (t, n) = (ticker.clone(), ticks.clone());
        let thread = std::thread::spawn(move || {
            t.run(Duration::from_millis(1), || {
                n.fetch_add(1, Ordering::SeqCst);
            })
        });
        let _ = ticker.thread.set(thread.thread().clone());
        let wait = |what: &str, cond: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !cond() {
                assert!(Instant::now() < deadline, "{what}");
                std::thread::sleep(Duration::from_millis(1));
            }
        };
        wait("an idle ticker parks after its grace period", &|| {
            ticker.parked.load(Ordering::SeqCst)
        });
        let before = ticks.load(Ordering::SeqCst);
        {
            let _running = ticker.enter();
            wait("a guest call wakes the ticker and it ticks", &|| {
                ticks.load(Ordering::SeqCst) >= before + 5
            });
            assert!(!ticker.parked.load(Ordering::SeqCst));
        }
        wait("the ticker parks again once the call ended", &|| {
            ticker.parked.load(Ordering::SeqCst)
        });
        ticker.stop();
        thread.join().unwrap();
    }

    #[test]
    fn the_epoch_ticks_faster_while_a_call_spins_and_wakes_passed_deadlines() {
        let ticker = Arc::new(Ticker::new(3));
        let ticks = Arc::new(AtomicU64::new(0));
        let (t, n) = (ticker.clone(), ticks.clone());
        let thread = std::thread::spawn(move || {
            t.run(Duration::from_millis(8), || {
                n.fetch_add(1, Ordering::SeqCst);
            })
        });
        let _ = ticker.thread.set(thread.thread().clone());
        let _running = ticker.enter();
        let rate = |what: &str| {
            let (t0, n0) = (Instant::now(), ticks.load(Ordering::SeqCst));
            std::thread::sleep(Duration::from_millis(400));
            let per_s = (ticks.load(Ordering::SeqCst) - n0) as f64 / t0.elapsed().as_secs_f64();
            assert!(per_s > 0.0, "no ticks {what}");
            per_s
        };
        let normal = rate("normally");
        let watch = 1; // the watch lane's thread, with one thread per kind
        ticker.spun(watch, true);
        let fast = rate("while spinning");
        ticker.spun(watch, false);
        // Four times as often in theory; sleeps overshoot, most on a loaded machine.
        assert!(
            fast > 2.0 * normal,
            "{fast:.0}/s while spinning, {normal:.0}/s normally"
        );

        // A watched deadline that passes wakes its waiter within a few ticks.
        struct Flag(AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let deadline = Arc::new(Deadline::new());
        deadline.set(Instant::now() + Duration::from_millis(20));
        *deadline.waker.lock().unwrap() = Some(std::task::Waker::from(flag.clone()));
        let watched = ticker.watch(&deadline);
        let started = Instant::now();
        while !flag.0.load(Ordering::SeqCst) {
            assert!(started.elapsed() < Duration::from_secs(10), "never woken");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(deadline.passed.load(Ordering::SeqCst) && deadline.expired());
        assert!(
            started.elapsed() >= Duration::from_millis(19),
            "woken before the deadline"
        );
        drop(watched);
        assert_eq!(ticker.watching.load(Ordering::SeqCst), 0);
        drop(_running);
        ticker.stop();
        thread.join().unwrap();
    }
}
