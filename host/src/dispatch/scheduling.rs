//! How lane threads ask the kernel to schedule them: a nice value and a time slice.

use std::time::Duration;

/// How lane threads ask the OS to schedule them
/// ([`Lanes::with_scheduling`](super::Lanes::with_scheduling)). Linux only; elsewhere ignored.
/// What the kernel refuses (a negative nice value without `CAP_SYS_NICE` or a matching
/// `RLIMIT_NICE`) is logged once per lane thread, which then runs as it would have.
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
    pub(super) fn apply(&self, lane: &str) {
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::dispatch::{LaneKind, Lanes};

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
}
