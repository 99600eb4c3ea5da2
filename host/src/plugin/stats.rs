//! A plugin's counters ([`PluginCounters`], written as it runs) and their snapshot
//! ([`PluginStats`]), as the lanes' `LaneCounters` and `LaneMetrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A plugin's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Handler calls that returned normally.
    pub calls: u64,
    /// Traps, exhausted budgets and timeouts.
    pub traps: u64,
    /// Instances built (first builds and rebuilds).
    pub instantiations: u64,
    /// Instances rebuilt after a crash (a trap, an exhausted budget, a timeout, a failed build).
    pub restarts: u64,
    /// Whether the plugin was disabled for crashing too often.
    pub disabled: bool,
    /// Of the `calls`, events the guest took from its lane's queue while handling an earlier
    /// one, in the same call into the guest (`wazoo:plugin/lane`; the SDK does this): a burst
    /// of events costs one call into the guest, not one per event.
    pub taken: u64,
    /// Time spent building instances (the store, its WASI context, instantiation from the
    /// pre-linked component), over all `instantiations`; `init` not included.
    pub build_time: Duration,
    /// Time spent in the guests' `init`, over all `instantiations`.
    pub init_time: Duration,
    /// Guest execution over all its calls (handlers, `init`, instantiation), measured as the
    /// compute budget measures it: time waiting on ZooKeeper inside an import, or for a CPU,
    /// is not counted. Which plugin burns the host's CPU, and how close its calls come to
    /// their budget on average (this over `calls`).
    pub compute_time: Duration,
    /// The plugin's requests to ZooKeeper in flight now (admitted and not yet completed; see
    /// [`crate::Policy::max_in_flight`]).
    pub requests_in_flight: u64,
    /// Its `-async` calls refused with `busy` because it had `max_in_flight` in flight.
    pub rejected_busy: u64,
}

/// The counters behind [`PluginStats`] (but `disabled`, which is the plugin's state).
#[derive(Default)]
pub(crate) struct PluginCounters {
    calls: AtomicU64,
    traps: AtomicU64,
    instantiations: AtomicU64,
    restarts: AtomicU64,
    /// Events a running handler took from its lane's queue (see [`PluginStats::taken`]).
    taken: AtomicU64,
    /// Nanoseconds spent building instances, and in their `init` (see [`PluginStats`]).
    build_ns: AtomicU64,
    init_ns: AtomicU64,
    /// Nanoseconds of guest execution (see [`PluginStats::compute_time`]).
    compute_ns: AtomicU64,
}

impl PluginCounters {
    /// `n` handler calls returned normally.
    pub(crate) fn called(&self, n: u64) {
        self.calls.fetch_add(n, Ordering::Relaxed);
    }

    /// Of the calls, `n` handled events the guest took from its lane's queue.
    pub(crate) fn took(&self, n: u64) {
        self.taken.fetch_add(n, Ordering::Relaxed);
    }

    /// A call trapped, exhausted its budget or timed out, or a build failed.
    pub(crate) fn trapped(&self) {
        self.traps.fetch_add(1, Ordering::Relaxed);
    }

    /// An instance was built again after a crash.
    pub(crate) fn restarted(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }

    /// An instance was built, in `ns` nanoseconds.
    pub(crate) fn built(&self, ns: u64) {
        self.instantiations.fetch_add(1, Ordering::Relaxed);
        self.build_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// An instance's `init` ran for `ns` nanoseconds.
    pub(crate) fn initialised(&self, ns: u64) {
        self.init_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// A call was charged `ns` nanoseconds of guest execution.
    pub(crate) fn computed(&self, ns: u64) {
        self.compute_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counters now, for a plugin that is `disabled` or not.
    pub(crate) fn snapshot(&self, disabled: bool) -> PluginStats {
        PluginStats {
            calls: self.calls.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            instantiations: self.instantiations.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::Relaxed),
            taken: self.taken.load(Ordering::Relaxed),
            disabled,
            build_time: Duration::from_nanos(self.build_ns.load(Ordering::Relaxed)),
            init_time: Duration::from_nanos(self.init_ns.load(Ordering::Relaxed)),
            compute_time: Duration::from_nanos(self.compute_ns.load(Ordering::Relaxed)),
            requests_in_flight: 0,
            rejected_busy: 0,
        }
    }
}
