//! What a lane counts: callbacks, queue depth, panics, and histograms of run and wait times,
//! recorded by the lane's one consumer with relaxed atomics and read as a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{LaneKind, Lanes};

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
}
