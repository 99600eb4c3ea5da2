//! Support for the chaos soak (`tests/tests/soak.rs`): a seeded fault plan, a ledger that
//! proves every request completes exactly once, the invariant checker (a pure function over what
//! the soak recorded, so it is unit-tested below), and resident-memory sampling.
//!
//! The checker's model of the soak: one writer creates `n<seq>` nodes with data `seq=<seq>`, in
//! `seq` order, from one client, so `seq` order is commit (zxid) order. A persistent recursive
//! watcher on their parent records what it sees as [`Obs`]: node events, the gaps the client
//! announced (a `Resync` after a reconnect, or the end of the session), and the re-read it made
//! after each gap. A write that was applied must then have been seen as an event, or lie inside
//! an announced gap and be in the re-read that followed it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wazoo::{Error, PluginStats};

// ---------------------------------------------------------------------------------------------
// Randomness and the fault plan

/// A small seeded generator (SplitMix64): the same seed gives the same fault plan.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi` milliseconds.
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// The soak's seed: `WAZOO_SOAK_SEED` (decimal or `0x` hex) when set, else a fresh one.
pub fn seed_from_env() -> u64 {
    if let Ok(s) = std::env::var("WAZOO_SOAK_SEED") {
        let s = s.trim();
        let parsed = match s.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => s.parse(),
        };
        return parsed.unwrap_or_else(|_| panic!("WAZOO_SOAK_SEED={s:?} is not a number"));
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Rng::new(nanos ^ (u64::from(std::process::id()) << 32)).next_u64()
}

/// The chaos phase's length: `WAZOO_SOAK_SECS` seconds when set, else `default`.
pub fn soak_secs_from_env(default: u64) -> Duration {
    let secs = match std::env::var("WAZOO_SOAK_SECS") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("WAZOO_SOAK_SECS={s:?} is not a number of seconds")),
        Err(_) => default,
    };
    Duration::from_secs(secs)
}

/// Which client's proxies a network fault hits: each client reaches every server through a
/// proxy of its own, so faults can hit one client and spare the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client running the plugins and the watchers.
    Host,
    /// The writer's client.
    Writer,
}

/// One fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the connections through one proxy (or all of a side's, or every proxy).
    Drop {
        side: Option<Side>,
        proxy: Option<usize>,
    },
    /// Forward nothing through one proxy for a while, then close what lived through it.
    Blackhole {
        side: Side,
        proxy: usize,
        hold: Duration,
    },
    /// Forward nothing through every proxy of a side for a while (shorter than detection of a
    /// dead link would need to expire the session).
    Partition { side: Side, hold: Duration },
    /// Delay traffic through one proxy (or all) for a while.
    Slow {
        proxy: Option<(Side, usize)>,
        delay: Duration,
        hold: Duration,
    },
    /// Kill the leader (`SIGKILL`), keep it down for a while, start it again.
    KillLeader { down: Duration },
    /// Kill a follower, keep it down for a while, start it again.
    KillFollower { down: Duration },
    /// Cut the host client off every server for longer than its session timeout.
    Expire,
}

impl Fault {
    /// A short name, for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Drop { .. } => "drop",
            Fault::Blackhole { .. } => "blackhole",
            Fault::Partition { .. } => "partition",
            Fault::Slow { .. } => "slow",
            Fault::KillLeader { .. } => "kill-leader",
            Fault::KillFollower { .. } => "kill-follower",
            Fault::Expire => "expire",
        }
    }
}

/// A fault and the calm that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What to do.
    pub fault: Fault,
    /// How long to wait after it was healed.
    pub pause: Duration,
}

/// Which faults a plan draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Everything: drops, blackholes, partitions, slow links, leader and follower kills.
    Full,
    /// Only short partitions of the host client (and drops), to make reconnects that miss
    /// changes: what the resync-suppression test needs.
    HostPartitions,
}

/// An endless, seeded sequence of fault steps, plus when in the phase the one forced session
/// expiry happens. Timing depends on the machine (a restart takes what it takes); the sequence of
/// faults and their parameters depends only on the seed.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    rng: Rng,
    mix: Mix,
    members: usize,
    /// When (from the start of the chaos phase) to force the session expiry.
    pub expire_at: Duration,
}

impl FaultPlan {
    /// The plan for `seed` over a chaos phase of `phase`, on `members` servers.
    pub fn new(seed: u64, phase: Duration, members: usize, mix: Mix) -> FaultPlan {
        let mut rng = Rng::new(seed);
        // Somewhere in the middle third of the phase.
        let third = (phase.as_millis() as u64 / 3).max(1);
        let expire_at = Duration::from_millis(third + rng.below(third));
        FaultPlan {
            rng,
            mix,
            members,
            expire_at,
        }
    }
}

impl Iterator for FaultPlan {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        let r = &mut self.rng;
        let side = |r: &mut Rng| {
            if r.below(2) == 0 {
                Side::Host
            } else {
                Side::Writer
            }
        };
        let n = self.members as u64;
        let fault = match self.mix {
            Mix::HostPartitions => {
                if r.below(4) == 0 {
                    Fault::Drop {
                        side: Some(Side::Host),
                        proxy: None,
                    }
                } else {
                    Fault::Partition {
                        side: Side::Host,
                        hold: r.ms(800, 2000),
                    }
                }
            }
            Mix::Full => match r.below(100) {
                0..=24 => Fault::Drop {
                    side: match r.below(3) {
                        0 => None,
                        _ => Some(side(r)),
                    },
                    proxy: match r.below(2) {
                        0 => None,
                        _ => Some(r.below(n) as usize),
                    },
                },
                25..=42 => Fault::Blackhole {
                    side: side(r),
                    proxy: r.below(n) as usize,
                    hold: r.ms(300, 2500),
                },
                43..=52 => Fault::Partition {
                    side: side(r),
                    hold: r.ms(300, 1500),
                },
                53..=72 => Fault::Slow {
                    proxy: match r.below(3) {
                        0 => None,
                        _ => Some((side(r), r.below(n) as usize)),
                    },
                    delay: r.ms(20, 250),
                    hold: r.ms(1000, 4000),
                },
                73..=87 => Fault::KillLeader {
                    down: r.ms(300, 3000),
                },
                _ => Fault::KillFollower {
                    down: r.ms(300, 3000),
                },
            },
        };
        let pause = r.ms(300, 2500);
        Some(Step { fault, pause })
    }
}

// ---------------------------------------------------------------------------------------------
// The writes' names and values

/// The node name of write `seq`.
pub fn node_name(seq: u64) -> String {
    format!("n{seq:010}")
}

/// The data of write `seq`.
pub fn node_data(seq: u64) -> Vec<u8> {
    format!("seq={seq}").into_bytes()
}

/// The `seq` of a node name (the last segment of `path`), if it is one of the writes'.
pub fn parse_seq(path: &str) -> Option<u64> {
    let name = path.rsplit('/').next()?;
    let digits = name.strip_prefix('n')?;
    (digits.len() == 10).then(|| digits.parse().ok()).flatten()
}

// ---------------------------------------------------------------------------------------------
// The ledger: exactly-once completion

/// What a request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// The writer's `create` of write `seq`.
    Create,
    /// Any other write (`set_data` of a watched node or a config key, a marker `create`).
    OtherWrite,
    /// A read on the host client, completed on its completion lane.
    Read,
}

/// A request the soak issued, and every completion it got (exactly one is right).
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// What it was.
    pub kind: OpKind,
    /// For [`OpKind::Create`], the write's `seq`.
    pub seq: u64,
    /// Its completions, in order: `Ok(())` or the typed error.
    pub completions: Vec<Result<(), Error>>,
}

/// Records issued requests and their completions; completions are counted as they come, and
/// [`Ledger::all_completed`] waits for the last one (no polling).
#[derive(Debug)]
pub struct Ledger {
    records: Mutex<Vec<RequestRecord>>,
    /// Distinct requests completed at least once.
    completed: tokio::sync::watch::Sender<u64>,
    issued: AtomicU64,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger {
            records: Mutex::new(Vec::new()),
            completed: tokio::sync::watch::Sender::new(0),
            issued: AtomicU64::new(0),
        }
    }
}

impl Ledger {
    /// A new, shared ledger.
    pub fn new() -> Arc<Ledger> {
        Arc::new(Ledger::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RequestRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes a request about to be sent; returns its id.
    pub fn issue(&self, kind: OpKind, seq: u64) -> usize {
        let mut records = self.lock();
        records.push(RequestRecord {
            kind,
            seq,
            completions: Vec::new(),
        });
        self.issued.fetch_add(1, Ordering::SeqCst);
        records.len() - 1
    }

    /// Notes a completion of request `id`.
    pub fn complete<T>(&self, id: usize, result: &Result<T, Error>) {
        let first = {
            let mut records = self.lock();
            let r = &mut records[id];
            r.completions
                .push(result.as_ref().map(|_| ()).map_err(Clone::clone));
            r.completions.len() == 1
        };
        if first {
            self.completed.send_modify(|n| *n += 1);
        }
    }

    /// Requests issued so far.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::SeqCst)
    }

    /// Requests completed (at least once) so far.
    pub fn completed(&self) -> u64 {
        *self.completed.borrow()
    }

    /// Waits until every request issued so far has completed, up to `timeout`.
    pub async fn all_completed(&self, timeout: Duration) -> bool {
        let want = self.issued();
        let mut rx = self.completed.subscribe();
        let done = tokio::time::timeout(timeout, rx.wait_for(|n| *n >= want)).await;
        matches!(done, Ok(Ok(_)))
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.lock().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// What the persistent watcher saw

/// Why the watcher's client said it may have missed events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapKind {
    /// A `Resync` event: the watch was re-armed after a reconnect.
    Resync,
    /// The session ended (the watcher's final event); the watch was added again on the new
    /// session.
    SessionLost,
}

/// One observation of the persistent watcher, in the order it made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obs {
    /// A `NodeCreated` event for write `seq`.
    Event(u64),
    /// The client announced a gap.
    Gap(GapKind),
    /// What a re-read after a gap found: the writes' `seq`s present then (those above the last
    /// event seen may be all that is kept).
    Reread(Vec<u64>),
    /// Any other event, described.
    Unexpected(String),
}

// ---------------------------------------------------------------------------------------------
// The checker

/// A config key whose mirror differs from its source (`None`: the node is missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDiff {
    /// The key, relative to the source and mirror roots.
    pub key: String,
    /// The source's data.
    pub source: Option<Vec<u8>>,
    /// The mirror's data.
    pub mirror: Option<Vec<u8>>,
}

/// Everything the soak recorded, for [`check`].
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Every request the soak issued and its completions.
    pub requests: Vec<RequestRecord>,
    /// The persistent watcher's observations.
    pub watcher: Vec<Obs>,
    /// The writes present at the end (`seq` to data), re-read after the chaos.
    pub final_nodes: BTreeMap<u64, Vec<u8>>,
    /// Values a DataWatch saw on a node the writer kept setting to increasing numbers.
    pub data_watch: Vec<u64>,
    /// That node's final value.
    pub final_data: u64,
    /// Child counts a ChildrenWatch saw on a node the writer only ever added children to.
    pub children_watch: Vec<usize>,
    /// The final child count.
    pub final_children: usize,
    /// Config keys whose mirror differs from the source at the end.
    pub mirror_diff: Vec<KeyDiff>,
    /// Each plugin's counters at the end.
    pub plugins: Vec<(String, PluginStats)>,
    /// Panics counted by the native lanes.
    pub lane_panics: u64,
    /// Whether every lane (native and guest) drained.
    pub lanes_drained: bool,
    /// Largest resident set seen, KiB.
    pub rss_max_kib: u64,
    /// Its bound, KiB.
    pub rss_bound_kib: u64,
    /// Other end-state checks that failed, described.
    pub failed_end_checks: Vec<String>,
}

/// A broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A request never completed.
    NotCompleted { id: usize, kind: OpKind, seq: u64 },
    /// A request completed more than once.
    CompletedTwice {
        id: usize,
        kind: OpKind,
        seq: u64,
        times: usize,
    },
    /// A request failed with an error the faults cannot explain.
    UnexpectedError {
        id: usize,
        kind: OpKind,
        seq: u64,
        error: Error,
    },
    /// An acknowledged write is not there at the end.
    AckedButMissing { seq: u64 },
    /// A write is there with other data than written.
    WrongData { seq: u64, found: Vec<u8> },
    /// A write that failed with `SessionExpired` (never sent) is there.
    AppliedAfterDefiniteFailure { seq: u64 },
    /// A node no request created.
    UnknownNode { seq: u64 },
    /// An applied write the watcher neither saw as an event nor found in a re-read after an
    /// announced gap: `after` and `before` are the events around it.
    MissedWithoutResync {
        seq: u64,
        after: Option<u64>,
        before: Option<u64>,
    },
    /// An event out of commit order, or a second event for the same write.
    OutOfOrder { seq: u64, after: u64 },
    /// An event for a write that is not there.
    EventForUnappliedWrite { seq: u64 },
    /// Events came after an announced gap without a re-read in between (a bug of the soak's
    /// watcher, which re-reads before taking the next event).
    GapWithoutReread { at: usize },
    /// An event of a kind the writes cannot cause.
    UnexpectedEvent(String),
    /// The DataWatch saw the value go back.
    DataWatchWentBack { from: u64, to: u64 },
    /// The DataWatch's last value is not the final one.
    DataWatchNotConverged { last: Option<u64>, want: u64 },
    /// The ChildrenWatch saw the child count go down.
    ChildrenWatchWentBack { from: usize, to: usize },
    /// The ChildrenWatch's last count is not the final one.
    ChildrenWatchNotConverged { last: Option<usize>, want: usize },
    /// The config mirror differs from its source.
    MirrorDiverged { key: String },
    /// A plugin was disabled.
    PluginDisabled { name: String },
    /// A plugin's handler trapped.
    PluginTrapped { name: String, traps: u64 },
    /// A native callback panicked.
    LanePanics { panics: u64 },
    /// A lane did not drain.
    LanesNotDrained,
    /// Resident memory went over its bound.
    RssOverBound { max_kib: u64, bound_kib: u64 },
    /// Another end-state check failed.
    EndCheck(String),
}

impl Violation {
    /// A short name, for counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::NotCompleted { .. } => "not-completed",
            Violation::CompletedTwice { .. } => "completed-twice",
            Violation::UnexpectedError { .. } => "unexpected-error",
            Violation::AckedButMissing { .. } => "acked-but-missing",
            Violation::WrongData { .. } => "wrong-data",
            Violation::AppliedAfterDefiniteFailure { .. } => "applied-after-definite-failure",
            Violation::UnknownNode { .. } => "unknown-node",
            Violation::MissedWithoutResync { .. } => "missed-without-resync",
            Violation::OutOfOrder { .. } => "out-of-order",
            Violation::EventForUnappliedWrite { .. } => "event-for-unapplied-write",
            Violation::GapWithoutReread { .. } => "gap-without-reread",
            Violation::UnexpectedEvent(_) => "unexpected-event",
            Violation::DataWatchWentBack { .. } => "data-watch-went-back",
            Violation::DataWatchNotConverged { .. } => "data-watch-not-converged",
            Violation::ChildrenWatchWentBack { .. } => "children-watch-went-back",
            Violation::ChildrenWatchNotConverged { .. } => "children-watch-not-converged",
            Violation::MirrorDiverged { .. } => "mirror-diverged",
            Violation::PluginDisabled { .. } => "plugin-disabled",
            Violation::PluginTrapped { .. } => "plugin-trapped",
            Violation::LanePanics { .. } => "lane-panics",
            Violation::LanesNotDrained => "lanes-not-drained",
            Violation::RssOverBound { .. } => "rss-over-bound",
            Violation::EndCheck(_) => "end-check",
        }
    }
}

/// Counts the checker made along the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckStats {
    /// Requests issued.
    pub requests: usize,
    /// Creates acknowledged.
    pub acked: usize,
    /// Creates that failed with `ConnectionLoss` but were applied.
    pub ambiguous_applied: usize,
    /// Creates that failed with `ConnectionLoss` and were not applied.
    pub ambiguous_lost: usize,
    /// Creates that failed with `SessionExpired` (never sent).
    pub expired: usize,
    /// Node events the watcher saw.
    pub events: usize,
    /// Gaps announced by `Resync`.
    pub resyncs: usize,
    /// Gaps announced by the end of a session.
    pub sessions_lost: usize,
    /// Applied writes the watcher learnt of from a re-read after a gap (no event).
    pub covered_by_reread: usize,
}

/// The checker's answer.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Every broken invariant found.
    pub violations: Vec<Violation>,
    /// What was counted.
    pub stats: CheckStats,
}

impl Verdict {
    /// Whether any violation of this kind was found.
    pub fn has(&self, kind: &str) -> bool {
        self.violations.iter().any(|v| v.kind() == kind)
    }

    /// Violations per kind.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for v in &self.violations {
            *m.entry(v.kind()).or_insert(0) += 1;
        }
        m
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "requests {}, creates acked {}, ambiguous applied {} / lost {}, expired {}; \
             watcher: {} events, {} resyncs, {} sessions lost, {} writes covered by re-reads",
            s.requests,
            s.acked,
            s.ambiguous_applied,
            s.ambiguous_lost,
            s.expired,
            s.events,
            s.resyncs,
            s.sessions_lost,
            s.covered_by_reread
        )?;
        if self.violations.is_empty() {
            return write!(f, "no violation");
        }
        writeln!(
            f,
            "{} violations: {:?}",
            self.violations.len(),
            self.counts()
        )?;
        let mut shown: HashMap<&str, usize> = HashMap::new();
        for v in &self.violations {
            let n = shown.entry(v.kind()).or_insert(0);
            *n += 1;
            if *n <= 5 {
                writeln!(f, "  {v:?}")?;
            }
        }
        Ok(())
    }
}

/// Errors the faults explain: `ConnectionLoss` (in flight at a drop) and `SessionExpired`
/// (queued when the session was lost).
fn explained(e: &Error) -> bool {
    matches!(e, Error::ConnectionLoss | Error::SessionExpired)
}

/// Checks every invariant the soak claims against what it recorded.
pub fn check(r: &Recorded) -> Verdict {
    let mut v = Vec::new();
    let mut st = CheckStats {
        requests: r.requests.len(),
        ..CheckStats::default()
    };

    // Exactly-once completion, with a result or an error the faults explain.
    let mut creates: BTreeMap<u64, &RequestRecord> = BTreeMap::new();
    for (id, req) in r.requests.iter().enumerate() {
        let (kind, seq) = (req.kind, req.seq);
        match req.completions.len() {
            0 => v.push(Violation::NotCompleted { id, kind, seq }),
            1 => {}
            times => v.push(Violation::CompletedTwice {
                id,
                kind,
                seq,
                times,
            }),
        }
        if let Some(Err(e)) = req.completions.first() {
            if !explained(e) {
                v.push(Violation::UnexpectedError {
                    id,
                    kind,
                    seq,
                    error: e.clone(),
                });
            }
        }
        if kind == OpKind::Create {
            creates.insert(seq, req);
        }
    }

    // The final state agrees with what was acknowledged.
    let mut applied: BTreeSet<u64> = BTreeSet::new();
    for (&seq, data) in &r.final_nodes {
        if !creates.contains_key(&seq) {
            v.push(Violation::UnknownNode { seq });
            continue;
        }
        applied.insert(seq);
        if *data != node_data(seq) {
            v.push(Violation::WrongData {
                seq,
                found: data.clone(),
            });
        }
    }
    for (&seq, req) in &creates {
        let present = r.final_nodes.contains_key(&seq);
        match req.completions.first() {
            Some(Ok(())) => {
                st.acked += 1;
                if !present {
                    v.push(Violation::AckedButMissing { seq });
                }
            }
            Some(Err(Error::SessionExpired)) => {
                st.expired += 1;
                if present {
                    v.push(Violation::AppliedAfterDefiniteFailure { seq });
                }
            }
            Some(Err(Error::ConnectionLoss)) if present => st.ambiguous_applied += 1,
            Some(Err(Error::ConnectionLoss)) => st.ambiguous_lost += 1,
            _ => {}
        }
    }

    // Every applied write was seen by the persistent watcher, or lies in an announced gap and
    // was in the re-read after it.
    let mut cursor: Option<u64> = None;
    let mut covered: BTreeSet<u64> = BTreeSet::new();
    let mut awaiting_reread: Option<usize> = None;
    let missed = |from: Option<u64>,
                  to: Option<u64>,
                  covered: &BTreeSet<u64>,
                  st: &mut CheckStats,
                  v: &mut Vec<Violation>| {
        let lo = from.map_or(0, |c| c.saturating_add(1));
        let range = match to {
            Some(hi) if hi <= lo => return,
            Some(hi) => applied.range(lo..hi),
            None => applied.range(lo..),
        };
        for &m in range {
            if covered.contains(&m) {
                st.covered_by_reread += 1;
            } else {
                v.push(Violation::MissedWithoutResync {
                    seq: m,
                    after: from,
                    before: to,
                });
            }
        }
    };
    for (at, obs) in r.watcher.iter().enumerate() {
        match obs {
            Obs::Gap(kind) => {
                match kind {
                    GapKind::Resync => st.resyncs += 1,
                    GapKind::SessionLost => st.sessions_lost += 1,
                }
                awaiting_reread.get_or_insert(at);
            }
            Obs::Reread(seqs) => {
                covered.extend(seqs.iter().copied());
                awaiting_reread = None;
            }
            Obs::Unexpected(what) => v.push(Violation::UnexpectedEvent(what.clone())),
            Obs::Event(seq) => {
                let seq = *seq;
                st.events += 1;
                if let Some(gap) = awaiting_reread.take() {
                    v.push(Violation::GapWithoutReread { at: gap });
                }
                if let Some(c) = cursor.filter(|c| seq <= *c) {
                    v.push(Violation::OutOfOrder { seq, after: c });
                    continue;
                }
                if !applied.contains(&seq) {
                    v.push(Violation::EventForUnappliedWrite { seq });
                }
                missed(cursor, Some(seq), &covered, &mut st, &mut v);
                cursor = Some(seq);
                covered.clear();
            }
        }
    }
    missed(cursor, None, &covered, &mut st, &mut v);

    // The native recipes: never backwards, and converged.
    for w in r.data_watch.windows(2) {
        if w[1] < w[0] {
            v.push(Violation::DataWatchWentBack {
                from: w[0],
                to: w[1],
            });
        }
    }
    if r.data_watch.last() != Some(&r.final_data) {
        v.push(Violation::DataWatchNotConverged {
            last: r.data_watch.last().copied(),
            want: r.final_data,
        });
    }
    for w in r.children_watch.windows(2) {
        if w[1] < w[0] {
            v.push(Violation::ChildrenWatchWentBack {
                from: w[0],
                to: w[1],
            });
        }
    }
    if r.children_watch.last() != Some(&r.final_children) {
        v.push(Violation::ChildrenWatchNotConverged {
            last: r.children_watch.last().copied(),
            want: r.final_children,
        });
    }

    // Plugins, lanes, memory.
    for d in &r.mirror_diff {
        v.push(Violation::MirrorDiverged { key: d.key.clone() });
    }
    for (name, stats) in &r.plugins {
        if stats.disabled {
            v.push(Violation::PluginDisabled { name: name.clone() });
        }
        if stats.traps > 0 {
            v.push(Violation::PluginTrapped {
                name: name.clone(),
                traps: stats.traps,
            });
        }
    }
    if r.lane_panics > 0 {
        v.push(Violation::LanePanics {
            panics: r.lane_panics,
        });
    }
    if !r.lanes_drained {
        v.push(Violation::LanesNotDrained);
    }
    if r.rss_max_kib > r.rss_bound_kib {
        v.push(Violation::RssOverBound {
            max_kib: r.rss_max_kib,
            bound_kib: r.rss_bound_kib,
        });
    }
    v.extend(r.failed_end_checks.iter().cloned().map(Violation::EndCheck));
    Verdict {
        violations: v,
        stats: st,
    }
}

// ---------------------------------------------------------------------------------------------
// Memory

/// This process's resident set size in KiB (`VmRSS` of `/proc/self/status`), if readable.
pub fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: OpKind, seq: u64, r: Result<(), Error>) -> RequestRecord {
        RequestRecord {
            kind,
            seq,
            completions: vec![r],
        }
    }

    /// Writes 1..=n all acked and present; the watcher saw `events` (with `obs` spliced in
    /// where the events are listed as `None`).
    fn base(n: u64) -> Recorded {
        Recorded {
            requests: (1..=n).map(|s| req(OpKind::Create, s, Ok(()))).collect(),
            final_nodes: (1..=n).map(|s| (s, node_data(s))).collect(),
            data_watch: vec![0, 3, 7],
            final_data: 7,
            children_watch: vec![0, 1, 2],
            final_children: 2,
            lanes_drained: true,
            rss_max_kib: 1,
            rss_bound_kib: 2,
            ..Recorded::default()
        }
    }

    fn events(seqs: impl IntoIterator<Item = u64>) -> Vec<Obs> {
        seqs.into_iter().map(Obs::Event).collect()
    }

    #[test]
    fn a_clean_run_passes() {
        let mut r = base(10);
        r.watcher = events(1..=10);
        let v = check(&r);
        assert!(v.violations.is_empty(), "{v}");
        assert_eq!(v.stats.events, 10);
        assert_eq!(v.stats.acked, 10);
    }

    #[test]
    fn a_gap_announced_by_resync_and_covered_by_the_reread_passes() {
        let mut r = base(10);
        r.watcher = events(1..=3);
        r.watcher.push(Obs::Gap(GapKind::Resync));
        r.watcher.push(Obs::Reread(vec![4, 5, 6, 7]));
        r.watcher.extend(events(7..=10));
        let v = check(&r);
        assert!(v.violations.is_empty(), "{v}");
        assert_eq!(v.stats.covered_by_reread, 3);
        assert_eq!(v.stats.resyncs, 1);
    }

    #[test]
    fn a_gap_after_session_loss_passes_too() {
        let mut r = base(6);
        r.watcher = events(1..=2);
        r.watcher.push(Obs::Gap(GapKind::SessionLost));
        r.watcher.push(Obs::Reread(vec![3, 4, 5, 6]));
        let v = check(&r);
        assert!(v.violations.is_empty(), "{v}");
        assert_eq!(v.stats.sessions_lost, 1);
    }

    #[test]
    fn a_missed_event_without_resync_is_caught() {
        let mut r = base(10);
        r.watcher = events((1..=10).filter(|s| *s != 5));
        let v = check(&r);
        assert_eq!(
            v.violations,
            vec![Violation::MissedWithoutResync {
                seq: 5,
                after: Some(4),
                before: Some(6)
            }]
        );
    }

    #[test]
    fn a_reread_covers_only_its_own_gap() {
        // 2 is in a re-read, but the gap was before 5: missing 8 is not excused by it.
        let mut r = base(10);
        r.watcher = events([1]);
        r.watcher.push(Obs::Gap(GapKind::Resync));
        r.watcher.push(Obs::Reread(vec![2, 3, 4, 8]));
        r.watcher.extend(events([5, 6, 7, 9, 10]));
        let v = check(&r);
        assert_eq!(
            v.violations,
            vec![Violation::MissedWithoutResync {
                seq: 8,
                after: Some(7),
                before: Some(9)
            }]
        );
    }

    #[test]
    fn a_write_missing_at_the_end_is_caught() {
        let mut r = base(5);
        r.watcher = events(1..=4);
        let v = check(&r);
        assert_eq!(v.counts().get("missed-without-resync"), Some(&1));
    }

    #[test]
    fn events_out_of_order_and_duplicates_are_caught() {
        let mut r = base(4);
        r.watcher = events([1, 3, 2, 3, 4]);
        let v = check(&r);
        assert_eq!(v.counts().get("out-of-order"), Some(&2));
    }

    #[test]
    fn an_event_after_a_gap_without_reread_is_caught() {
        let mut r = base(3);
        r.watcher = events([1]);
        r.watcher.push(Obs::Gap(GapKind::Resync));
        r.watcher.extend(events([2, 3]));
        assert!(check(&r).has("gap-without-reread"));
    }

    #[test]
    fn completions_are_counted_exactly_once() {
        let mut r = base(3);
        r.watcher = events(1..=3);
        r.requests.push(RequestRecord {
            kind: OpKind::Read,
            seq: 0,
            completions: vec![],
        });
        r.requests.push(RequestRecord {
            kind: OpKind::Read,
            seq: 0,
            completions: vec![Ok(()), Ok(())],
        });
        r.requests.push(req(
            OpKind::OtherWrite,
            0,
            Err(Error::MalformedResponse("x".into())),
        ));
        r.requests
            .push(req(OpKind::Read, 0, Err(Error::ConnectionLoss)));
        let v = check(&r);
        assert_eq!(
            v.counts(),
            BTreeMap::from([
                ("completed-twice", 1),
                ("not-completed", 1),
                ("unexpected-error", 1)
            ])
        );
    }

    #[test]
    fn the_final_state_must_agree_with_the_acknowledgements() {
        let mut r = base(5);
        r.watcher = events([1, 2, 3]);
        r.requests[3].completions = vec![Err(Error::ConnectionLoss)]; // 4: ambiguous, absent
        r.requests[4].completions = vec![Err(Error::SessionExpired)]; // 5: never sent, present
        r.final_nodes.remove(&4);
        r.final_nodes.insert(2, b"seq=999".to_vec());
        r.final_nodes.insert(99, node_data(99));
        let v = check(&r);
        assert_eq!(v.stats.ambiguous_lost, 1);
        assert_eq!(
            v.counts(),
            BTreeMap::from([
                ("applied-after-definite-failure", 1),
                ("missed-without-resync", 1), // 5 is there and was never seen
                ("unknown-node", 1),
                ("wrong-data", 1),
            ])
        );
        // An acked write that vanished.
        let mut r = base(3);
        r.watcher = events(1..=3);
        r.final_nodes.remove(&3);
        assert!(check(&r).has("acked-but-missing"));
    }

    #[test]
    fn recipes_plugins_lanes_and_memory_are_checked() {
        let mut r = base(1);
        r.watcher = events([1]);
        r.data_watch = vec![1, 5, 4];
        r.final_data = 6;
        r.children_watch = vec![3, 2];
        r.final_children = 3;
        r.mirror_diff = vec![KeyDiff {
            key: "k1".into(),
            source: Some(b"a".to_vec()),
            mirror: None,
        }];
        r.plugins = vec![(
            "p".into(),
            PluginStats {
                traps: 2,
                disabled: true,
                ..PluginStats::default()
            },
        )];
        r.lane_panics = 1;
        r.lanes_drained = false;
        r.rss_max_kib = 10;
        r.failed_end_checks = vec!["reporter".into()];
        let v = check(&r);
        for kind in [
            "data-watch-went-back",
            "data-watch-not-converged",
            "children-watch-went-back",
            "children-watch-not-converged",
            "mirror-diverged",
            "plugin-disabled",
            "plugin-trapped",
            "lane-panics",
            "lanes-not-drained",
            "rss-over-bound",
            "end-check",
        ] {
            assert!(v.has(kind), "{kind} not reported: {v}");
        }
    }

    #[test]
    fn plans_are_reproducible_and_mix_every_fault() {
        let phase = Duration::from_secs(120);
        let a: Vec<Step> = FaultPlan::new(7, phase, 3, Mix::Full).take(200).collect();
        let b: Vec<Step> = FaultPlan::new(7, phase, 3, Mix::Full).take(200).collect();
        assert_eq!(a, b);
        let kinds: BTreeSet<&str> = a.iter().map(|s| s.fault.kind()).collect();
        assert_eq!(
            kinds,
            BTreeSet::from([
                "blackhole",
                "drop",
                "kill-follower",
                "kill-leader",
                "partition",
                "slow"
            ])
        );
        let p = FaultPlan::new(7, phase, 3, Mix::Full);
        assert!(p.expire_at >= phase / 3 && p.expire_at < phase * 2 / 3);
        assert_ne!(
            FaultPlan::new(8, phase, 3, Mix::Full)
                .take(20)
                .collect::<Vec<_>>(),
            a[..20]
        );
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(
            parse_seq(&format!("/soak/data/{}", node_name(42))),
            Some(42)
        );
        assert_eq!(parse_seq("/soak/data"), None);
        assert_eq!(parse_seq("/soak/data/nx"), None);
        assert!(rss_kib().is_some_and(|k| k > 0));
    }
}
