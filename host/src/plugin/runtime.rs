//! The engine, loading and linking plugins, guest lanes, instance lifecycle and limits.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::wazoo::plugin::types as wit;
use super::bindings::{Plugin as PluginBindings, PluginPre};
use super::cache::Cache;
use super::epoch::{within, Deadline, StopOnDrop, Ticker};
use super::policy::Policy;
use super::stdio::{GuestOutput, Stream};
use super::watches::{add_persistent, arm, wit_state, Armed};
use crate::client::{Client, ListenerId};
use crate::dispatch::{LaneCounters, LaneKind, LaneMetrics, Lanes, Tracked, Tracker};
use crate::proto::records::AddWatchMode;
use crate::session::SessionEvent;

/// Why a plugin could not be loaded or bound.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The bytes are not WebAssembly at all.
    #[error("plugin {name}: not a WebAssembly file (no \\0asm header)")]
    NotWasm {
        /// The plugin.
        name: String,
    },
    /// A core module was given where a component is needed.
    #[error("plugin {name}: a core WebAssembly module, not a component; build it for wasm32-wasip2 (wazoo-guest does)")]
    CoreModule {
        /// The plugin.
        name: String,
    },
    /// The component failed to compile.
    #[error("plugin {name}: invalid component: {reason}")]
    Invalid {
        /// The plugin.
        name: String,
        /// The compiler's message.
        reason: String,
    },
    /// The component does not fit the `wazoo:plugin/plugin` world (an import wazoo does not
    /// provide, a missing export).
    #[error("plugin {name}: does not fit the wazoo:plugin@0.1.0 world: {reason}")]
    WrongWorld {
        /// The plugin.
        name: String,
        /// What does not fit.
        reason: String,
    },
    /// A file could not be read.
    #[error("plugin {name}: cannot read {path}: {reason}")]
    Io {
        /// The plugin.
        name: String,
        /// The file.
        path: PathBuf,
        /// The error.
        reason: String,
    },
    /// A binding failed (e.g. the path is invalid or outside the plugin's read allow-list).
    #[error("plugin {name}: cannot bind: {reason}")]
    Bind {
        /// The plugin.
        name: String,
        /// Why.
        reason: String,
    },
    /// The component is beyond a limit: larger than the host compiles
    /// ([`PluginHostConfig::max_component_bytes`]), or unable to run within its policy's
    /// limits, so that building an instance could only fail (its linear memory starts larger
    /// than `memory_limit`, say).
    #[error("plugin {name}: over a limit: {reason}")]
    OverLimits {
        /// The plugin.
        name: String,
        /// Which limit, and by how much.
        reason: String,
    },
    /// The engine could not be set up.
    #[error("cannot set up the wasm engine: {0}")]
    Engine(String),
    /// The compilation cache cannot be trusted with native code (see
    /// [`PluginHostConfig::cache_dir`]): it is writable by another user, owned by one, or not a
    /// directory.
    #[error("compilation cache {path}: not safe to load native code from: {reason}")]
    UntrustedCache {
        /// The cache directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// How plugins share lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsolationMode {
    /// Three lanes for all plugins (Kazoo's semantics): one plugin's slow callback delays the
    /// others' callbacks of the same kind.
    #[default]
    Shared,
    /// Three lanes per plugin: one tenant cannot stall another.
    PerPlugin,
}

/// Settings of a [`PluginHost`].
#[derive(Debug, Clone)]
pub struct PluginHostConfig {
    /// Where precompiled components are cached (none: compile on every load). An artifact is
    /// named `<SHA-256 of the component, hex>-<engine>.cwasm`, the second part a hash of the
    /// engine's settings and wazoo's version: `sha256sum plugin.wasm` finds a plugin's entry.
    /// Artifacts are native code, loaded with no more checks than wasmtime's header check, so
    /// the cache trusts only its own user: the directory is created readable by that user
    /// alone, and [`PluginHost::new`] refuses ([`PluginError::UntrustedCache`]) one that another
    /// user owns or that its group or everyone may write; an artifact another user owns, or
    /// that others may write, is compiled again and replaced, with a warning.
    pub cache_dir: Option<PathBuf>,
    /// How much the cache's artifacts may take on disk (default 1 GiB; `u64::MAX`: no limit).
    /// Above it, the least recently used are removed, at [`PluginHost::new`] and after a
    /// write; loading an artifact marks it used. Artifacts of components no longer loaded,
    /// and of other wazoo versions or engine settings, so age out.
    pub cache_max_bytes: u64,
    /// How plugins share lanes.
    pub isolation: IsolationMode,
    /// Instances that may exist at once (pooling allocator slots; default 1000).
    pub max_instances: u32,
    /// The largest component the host compiles, in bytes (default 64 MiB): compiling takes
    /// time and memory in proportion to the code, on the loading thread, and a platform that
    /// loads components from others may want a smaller bound. A larger one is refused with
    /// [`PluginError::OverLimits`] before it is read from a file, or compiled.
    pub max_component_bytes: usize,
    /// The largest memory any policy may grant, in bytes (pooling slot size; default 64 MiB).
    pub max_memory: usize,
    /// How often the epoch ticks, the granularity of compute budgets (default 2 ms).
    pub epoch_tick: Duration,
    /// Wasm stack size (default 512 KiB), so runaway recursion traps quickly.
    pub max_wasm_stack: usize,
    /// Whether instances map their component's initial memory copy-on-write from a shared
    /// image (true) or get a copy of it (false, the default). Copying costs a `memcpy` of the
    /// data segments per instance, a few KiB for a typical plugin, and measured here faster
    /// than mapping: no `mmap` per instance and no copy-on-write faults as the guest first
    /// writes (first `init` in a fresh slot 6 us against 17 us at the median, 200 us
    /// mean). Turn it on for components with megabytes of data segments.
    pub copy_on_write_images: bool,
    /// Threads per lane kind (default 1, at least 1). Each set of three guest lanes (one per
    /// plugin in [`IsolationMode::PerPlugin`], the one shared set otherwise) lives on one
    /// thread of each kind, a new plugin's on the thread that holds the fewest loaded plugins'
    /// lanes (in turn while plugins only come); a lane's callbacks stay in order on its
    /// thread. With one, every guest's watch callbacks share one core (a spinning guest
    /// yields to the others at every quarter tick); with more, guests of different plugins
    /// compute in parallel, as many at a time per kind as there are threads. Shared lanes are
    /// one set, on one thread of each kind, whatever this says.
    pub lane_threads: usize,
}

/// How much of a free pool slot's memory is kept resident for the next instance (see
/// [`PluginHost::new`]): a small guest writes a few pages (the top of its stack, its data,
/// the start of its heap), and at most [`wasmtime::PoolingAllocationConfig::max_unused_warm_slots`]
/// free slots (100) keep theirs.
const KEEP_RESIDENT: usize = 256 << 10;

impl Default for PluginHostConfig {
    fn default() -> Self {
        PluginHostConfig {
            cache_dir: None,
            cache_max_bytes: 1 << 30,
            max_component_bytes: 64 << 20,
            isolation: IsolationMode::Shared,
            max_instances: 1000,
            max_memory: 64 << 20,
            epoch_tick: Duration::from_millis(2),
            max_wasm_stack: 512 << 10,
            copy_on_write_images: false,
            lane_threads: 1,
        }
    }
}

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
}

/// What a plugin reacts to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Binding {
    /// Session state changes.
    Session,
    /// The node's data (kept armed, as Kazoo's DataWatch; node creation and deletion too).
    Data(String),
    /// The node's existence: an exists watch kept armed, so the plugin hears the node's
    /// creation and its deletion, also when it does not exist yet. Data changes re-arm the
    /// watch without reaching the plugin (bind [`Binding::Data`] for those).
    Exists(String),
    /// The node's children (kept armed).
    Children(String),
    /// A persistent watch on the node.
    Persistent(String),
    /// A persistent recursive watch on the subtree.
    PersistentRecursive(String),
}

/// One event for a guest lane.
pub(crate) enum GuestEvent {
    Session(wit::SessionEvent),
    Watch(wit::WatchEvent),
    /// The context bytes and the outcome (boxed: the largest case, and events move through
    /// the lane's channel by value).
    Completion(Box<(Vec<u8>, wit::Completion)>),
    /// The plugin was unloaded: the lane drops its instance (sent by `Plugin::drop`, past
    /// the `unloaded` check of [`Shared::send`]).
    Unload,
}

/// An event for a guest lane, with when it was queued.
type LaneMsg = (Arc<Shared>, GuestEvent, Instant);
type LaneTx = mpsc::UnboundedSender<LaneMsg>;

/// A guest lane's queue: its channel, and a message taken from it but not handled yet (one a
/// handler looked at and left for the lane: another plugin's, an unload, after a reload).
pub(crate) struct LaneQueue {
    rx: mpsc::UnboundedReceiver<LaneMsg>,
    held: Option<LaneMsg>,
}

impl LaneQueue {
    async fn next(&mut self) -> Option<LaneMsg> {
        match self.held.take() {
            Some(m) => Some(m),
            None => self.rx.recv().await,
        }
    }

    fn try_next(&mut self) -> Option<LaneMsg> {
        self.held.take().or_else(|| self.rx.try_recv().ok())
    }
}

/// What a watch or completion handler may take more events from while it runs
/// (`wazoo:plugin/lane`): the lane's queue, lent to the instance's Store for the call, and the
/// event being handled.
pub(crate) struct Feed {
    queue: LaneQueue,
    /// The code generation the instance was built from: a reload ends the run.
    generation: u64,
    /// When the event being handled was queued, and when its handling began.
    queued_at: Instant,
    started: Instant,
    /// The event's wall-clock deadline, which the ticker watches while the call waits.
    deadline: Arc<Deadline>,
    /// Events of this call handled before the current one (taken over by the next): the lane
    /// counts them off its queue and the host's in-flight count when the call returns, one
    /// atomic operation each for the whole run instead of several per event.
    handled: u64,
}

/// A set of three guest lanes (tasks).
#[derive(Clone)]
pub(crate) struct GuestLanes {
    session: LaneTx,
    watch: LaneTx,
    completion: LaneTx,
    /// Which of each kind's threads the three run on (see [`PluginHostConfig::lane_threads`]).
    thread: usize,
}

impl GuestLanes {
    fn spawn(threads: &GuestThreadHandles, thread: usize, tracker: &Tracker) -> GuestLanes {
        let mk = |kind: LaneKind| {
            let (tx, rx) = mpsc::unbounded_channel();
            threads
                .lane(kind, thread)
                .spawn(lane_task(kind, rx, tracker.enter()));
            tx
        };
        GuestLanes {
            session: mk(LaneKind::Session),
            watch: mk(LaneKind::Watch),
            completion: mk(LaneKind::Completion),
            thread,
        }
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
struct GuestThreads {
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

/// A component compiled and linked for one or more loaded plugins.
pub(crate) struct Prepared {
    pub pre: PluginPre<GuestState>,
    /// Keeps the host's entry for this component alive while the plugin uses it.
    _users: Arc<()>,
}

/// The host's record of a prepared component (see `HostInner::prepared`).
struct PreparedEntry {
    bytes: Arc<[u8]>,
    pre: PluginPre<GuestState>,
    users: std::sync::Weak<()>,
}

/// What a loaded plugin shares with its lanes and its import implementations.
pub(crate) struct Shared {
    pub id: u64,
    pub name: Arc<str>,
    pub policy: Policy,
    pub config: Vec<(String, String)>,
    pub client: Client,
    pub pre: Mutex<(u64, Prepared)>,
    /// The generation in `pre`, readable without the lock (checked on every event).
    pub generation: AtomicU64,
    pub lanes: GuestLanes,
    pub disabled: AtomicBool,
    pub unloaded: AtomicBool,
    pub crashes: Mutex<Vec<Instant>>,
    pub calls: AtomicU64,
    pub traps: AtomicU64,
    pub instantiations: AtomicU64,
    pub restarts: AtomicU64,
    /// Events a running handler took from its lane's queue (see [`PluginStats::taken`]).
    pub taken: AtomicU64,
    /// Nanoseconds spent building instances, and in their `init` (see [`PluginStats`]).
    pub build_ns: AtomicU64,
    pub init_ns: AtomicU64,
    /// Nanoseconds of guest execution (see [`PluginStats::compute_time`]).
    pub compute_ns: AtomicU64,
    /// Per lane (by [`LaneKind::index`]): this plugin's events on it, queued and handled.
    pub lane_stats: [LaneCounters; 3],
    /// State listeners added by its bindings, removed when it is unloaded.
    pub listeners: Mutex<Vec<ListenerId>>,
    /// Paths of its watches (kept-armed, one-shot and persistent), pruned when it is unloaded.
    pub armed: Mutex<Vec<String>>,
    /// False once unloaded: withdraws its one-shot watches from the session.
    pub watching: Arc<AtomicBool>,
    pub host: Arc<HostInner>,
}

impl Shared {
    /// Which lane thread this plugin's `kind` lane runs on (see [`thread_slot`]).
    fn thread_slot(&self, kind: LaneKind) -> usize {
        thread_slot(kind, self.lanes.thread, self.host.threads.per_kind)
    }

    pub(crate) fn send(self: &Arc<Self>, kind: LaneKind, ev: GuestEvent) -> bool {
        if self.unloaded.load(Ordering::Relaxed)
            || self.disabled.load(Ordering::Relaxed)
            || !self.host.accepting.load(Ordering::Relaxed)
        {
            return false;
        }
        self.enqueue(kind, ev)
    }

    /// Queues `ev` on the plugin's `kind` lane, counted as queued and in flight until the lane
    /// has handled it; false if the lane is gone.
    fn enqueue(self: &Arc<Self>, kind: LaneKind, ev: GuestEvent) -> bool {
        let tx = match kind {
            LaneKind::Session => &self.lanes.session,
            LaneKind::Watch => &self.lanes.watch,
            LaneKind::Completion => &self.lanes.completion,
        };
        let stats = &self.lane_stats[kind.index()];
        stats.queued();
        self.host.in_flight.fetch_add(1, Ordering::SeqCst);
        if tx.send((self.clone(), ev, Instant::now())).is_ok() {
            // A guest spinning on that lane's thread yields at its next epoch check instead of
            // at the next tick (every running guest checks then, and most go on at once).
            if self.host.ticker.spins_on(self.thread_slot(kind)) {
                self.host.engine.increment_epoch();
            }
            true
        } else {
            stats.unqueued();
            self.host.in_flight.fetch_sub(1, Ordering::SeqCst);
            false
        }
    }

    /// Tells each of the plugin's lanes to drop its instance. Instances hold the plugin's
    /// shared state, so without this an unloaded plugin's instances (and, per plugin, its lane
    /// tasks) would live as long as the host.
    fn send_unload(self: &Arc<Self>) {
        for kind in LaneKind::ALL {
            self.enqueue(kind, GuestEvent::Unload);
        }
    }

    /// Whether the plugin is still loaded (disabled plugins are: a reload revives them, so
    /// their watches stay armed).
    pub(crate) fn loaded(&self) -> bool {
        !self.unloaded.load(Ordering::Relaxed)
    }

    pub(crate) fn alive(&self) -> bool {
        !self.unloaded.load(Ordering::Relaxed) && !self.disabled.load(Ordering::Relaxed)
    }

    fn crashed(&self, why: &str) {
        self.traps.fetch_add(1, Ordering::Relaxed);
        let mut c = self.crashes.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        c.retain(|t| now.duration_since(*t) < self.policy.crash_window);
        c.push(now);
        if c.len() as u32 >= self.policy.max_crashes && !self.disabled.swap(true, Ordering::Relaxed)
        {
            tracing::error!(
                plugin = %self.name,
                crashes = c.len(),
                window = ?self.policy.crash_window,
                "plugin disabled: it crashed {} times within {:?}; last: {why}",
                c.len(),
                self.policy.crash_window
            );
        } else {
            tracing::warn!(plugin = %self.name, "plugin call failed, instance will be rebuilt: {why}");
        }
    }
}

/// The state of one guest instance's Store.
pub(crate) struct GuestState {
    pub shared: Arc<Shared>,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// Guest execution charged to the current call so far (segments already closed).
    charged_ns: u64,
    /// Whether a segment of guest execution is running (not closed by an epoch tick that
    /// ended the call, or by an import waiting on ZooKeeper).
    seg_open: bool,
    /// Between [`GuestState::start_call`] and [`GuestState::end_call`].
    in_call: bool,
    /// Guest execution of the events a running handler finished before taking the next
    /// (see [`GuestState::take_next`]), added to the plugin's at the end of the call.
    taken_ns: u64,
    /// When the running segment began, for segments measured by the clock on the wall.
    seg_wall: Instant,
    /// When non-zero: the running segment began at this reading of the thread's CPU clock
    /// (plus one), set by an epoch yield as the guest resumes; it is measured in CPU time.
    resume_cpu: Arc<AtomicU64>,
    /// The most a wall-measured segment is charged: one epoch tick (see [`GuestState::close_segment`]).
    tick_ns: u64,
    /// While a watch or completion handler runs: the lane's queue (see [`GuestState::take_next`]).
    feed: Option<Feed>,
    /// The guest resumed after waiting on ZooKeeper and has not met an epoch check since.
    waited: bool,
    /// The lane this instance serves.
    lane: LaneKind,
    /// Whether the running call counts as spinning (see [`Ticker::spinning_on`]): its event has
    /// been charged a whole tick of guest execution. Until [`GuestState::end_call`].
    spinning: bool,
}

impl Drop for GuestState {
    fn drop(&mut self) {
        self.end_call(Instant::now());
    }
}

impl GuestState {
    /// Starts the compute-budget clock of a new call started at `now`.
    fn start_call(&mut self, now: Instant) {
        self.charged_ns = 0;
        self.seg_wall = now;
        self.seg_open = true;
        self.in_call = true;
        self.resume_cpu.store(0, Ordering::Relaxed);
        self.waited = false;
    }

    /// Charges the segment of guest execution that ends now (at an epoch tick, or as the guest
    /// calls an import that waits on ZooKeeper).
    ///
    /// The budget counts guest execution only. A segment that began when the guest resumed
    /// after an epoch yield or after waiting on ZooKeeper is measured with the thread's CPU
    /// clock, so time the OS keeps the thread off the CPU (a loaded machine) is not charged.
    /// The first segment of a call is measured on the wall clock (no system call per callback)
    /// and charged at most one epoch tick: the epoch interrupts the guest within a tick of
    /// running.
    pub(crate) fn close_segment(&mut self) {
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

    /// The call has ended: its guest execution goes to the plugin's
    /// [`PluginStats::compute_time`].
    fn settle(&mut self, now: Instant) {
        self.close_segment_at(now);
        let ns = std::mem::take(&mut self.charged_ns) + std::mem::take(&mut self.taken_ns);
        self.shared.compute_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The guest runs again after an import that waited on ZooKeeper: a new segment, measured
    /// on the thread's CPU clock (a wall-measured one charged every preemption of a loaded
    /// machine to a guest that waits often), and an epoch tick that passed during the wait
    /// does not make it yield.
    pub(crate) fn resume_after_wait(&mut self) {
        self.open_segment();
        if let Some(now) = thread_cpu_ns() {
            self.resume_cpu.store(now + 1, Ordering::Relaxed);
        }
        self.waited = true;
    }

    /// A call into the guest has ended (returned, trapped or was cancelled) at `now`.
    fn end_call(&mut self, now: Instant) {
        if std::mem::take(&mut self.in_call) {
            self.settle(now);
        }
        if std::mem::take(&mut self.spinning) {
            self.shared
                .host
                .ticker
                .spun(self.shared.thread_slot(self.lane), false);
        }
    }

    /// Guest execution charged to this call so far.
    fn guest_time(&self) -> Duration {
        Duration::from_nanos(self.charged_ns)
    }

    /// The running handler takes the next event queued for its plugin on its lane
    /// (`wazoo:plugin/lane`), if one is queued now and may run in this call: the plugin's own,
    /// of the handler's kind, the plugin still alive and not reloaded. Anything else stays
    /// queued for the lane, in order. The event handled so far counts as handled, and the
    /// compute budget and the wall-clock limit start anew for the one taken.
    pub(crate) fn take_next(&mut self, kind: LaneKind) -> Option<GuestEvent> {
        if self.lane != kind {
            return None;
        }
        let feed = self.feed.as_mut()?;
        let msg = feed.queue.try_next()?;
        let fits = Arc::ptr_eq(&msg.0, &self.shared)
            && matches!(
                (kind, &msg.1),
                (LaneKind::Watch, GuestEvent::Watch(_))
                    | (LaneKind::Completion, GuestEvent::Completion(..))
            )
            && self.shared.alive()
            && self.shared.generation.load(Ordering::Acquire) == feed.generation;
        if !fits {
            feed.queue.held = Some(msg);
            return None;
        }
        let (_, ev, queued_at) = msg;
        let now = Instant::now();
        let s = &self.shared;
        s.lane_stats[kind.index()].record(
            feed.started.saturating_duration_since(feed.queued_at),
            now.saturating_duration_since(feed.started),
            false,
        );
        feed.handled += 1;
        feed.queued_at = queued_at;
        feed.started = now;
        feed.deadline.set(now + s.policy.wall_limit);
        self.close_segment_at(now);
        self.taken_ns += self.charged_ns;
        self.start_call(now);
        Some(ev)
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

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What plugins, their lanes and their instances share. Everything running on the host's
/// threads may hold it; it owns no thread (see [`Running`]).
pub(crate) struct HostInner {
    engine: Engine,
    linker: Linker<GuestState>,
    /// The compilation cache, if [`PluginHostConfig::cache_dir`] names one.
    cache: Option<Cache>,
    cfg: PluginHostConfig,
    /// Components already compiled and linked, by content, while a loaded plugin uses them:
    /// plugins of the same component share its code and its pre-linked instance.
    prepared: Mutex<HashMap<u64, Vec<PreparedEntry>>>,
    /// Where guest lanes and the host's own tasks (re-arming watches, adding bindings again)
    /// run; the stop signals live in [`Running`].
    threads: GuestThreadHandles,
    shared_lanes: Mutex<Option<GuestLanes>>,
    /// Per-plugin mode: how many loaded plugins' lanes each thread of a kind holds (by
    /// [`GuestLanes::thread`]); a new plugin's go to the least busy.
    thread_load: Mutex<Vec<usize>>,
    /// Non-blocking forwarding lanes: the session actor's events reach guest lanes through them.
    pub forward: Lanes,
    next_id: AtomicU64,
    /// False once [`PluginHost::drain`] was called: no new events are taken.
    accepting: AtomicBool,
    /// Events handed to guest lanes and not yet handled.
    in_flight: AtomicU64,
    /// The epoch ticker, which runs only while guest code may be running.
    ticker: Arc<Ticker>,
    /// Counts what must be gone once the host has stopped: this struct, the guest runtime's
    /// threads, the epoch ticker, the forwarding lanes' threads, guest lane tasks, instances.
    tracker: Tracker,
    _tracked: Tracked,
}

impl HostInner {
    /// The runtime of the host's own tasks (re-arming watches, adding bindings again).
    pub(crate) fn tasks(&self) -> &tokio::runtime::Handle {
        self.threads.tasks()
    }
}

/// The host's threads: the guest runtime, the epoch ticker and the forwarding lanes. Held by
/// every [`PluginHost`] and [`Plugin`] handle and by nothing those threads run, so dropping the
/// last handle stops them; the tasks they ran, and the instances inside those, are dropped.
struct Running {
    /// Dropped with this: the guest threads stop (never blocking: the last handle may be
    /// dropped inside an async context).
    _threads: GuestThreads,
    ticker: Arc<Ticker>,
    forward: Lanes,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.ticker.stop();
        self.forward.stop();
        tracing::debug!("plugin host stopped");
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
pub(crate) fn thread_slot(kind: LaneKind, thread: usize, per_kind: usize) -> usize {
    kind.index() * per_kind + thread
}

/// Watches a [`PluginHost`]'s threads, tasks and instances go away (for tests of the host
/// itself).
#[doc(hidden)]
#[derive(Clone)]
pub struct HostProbe(Tracker);

impl HostProbe {
    /// How many of the host's threads, tasks, instances (and the host itself) are live.
    pub fn live(&self) -> usize {
        self.0.live()
    }

    /// Waits until none is, up to `timeout`; whether none is.
    pub fn wait_stopped(&self, timeout: Duration) -> bool {
        self.0.wait_none(timeout)
    }
}

/// Loads plugins and runs them. One per process is enough; clone the handle freely.
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use wazoo::{Binding, PluginHost, PluginHostConfig, Policy};
/// let host = PluginHost::new(PluginHostConfig::default())?;
/// let plugin = host.load_file(
///     &zk,
///     "audit",
///     "audit_log.wasm".as_ref(),
///     Policy::default().read(["/app"]),
///     vec![],
/// )?;
/// plugin.bind(Binding::PersistentRecursive("/app".into())).await?;
/// # Ok(()) }
/// ```
///
/// The host's threads (a small guest runtime, an epoch ticker, forwarding lanes) stop when the
/// last handle is dropped: every clone of the `PluginHost` and every [`Plugin`] loaded from it.
/// Its instances are released then.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
    running: Arc<Running>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("isolation", &self.inner.cfg.isolation)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Sets up the engine, the epoch ticker and the guest runtime.
    pub fn new(cfg: PluginHostConfig) -> Result<PluginHost, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.concurrency_support(false);
        config.max_wasm_stack(cfg.max_wasm_stack);
        let mut pool = wasmtime::PoolingAllocationConfig::new();
        pool.total_component_instances(cfg.max_instances);
        pool.total_core_instances(cfg.max_instances.saturating_mul(4));
        pool.total_memories(cfg.max_instances.saturating_mul(2));
        pool.total_tables(cfg.max_instances.saturating_mul(4));
        pool.total_stacks(cfg.max_instances);
        pool.max_memory_size(cfg.max_memory);
        // What a Store lets one instance have (see `build`): a component beyond it is refused
        // as it is compiled, not at every attempt to build an instance.
        pool.max_core_instances_per_component(STORE_INSTANCES);
        pool.max_memories_per_component(STORE_MEMORIES);
        pool.max_tables_per_component(STORE_TABLES);
        // Instances come and go (lazily built, rebuilt after a trap, unloaded): what a pool slot
        // costs the next instance matters. A slot's memory, and its table, are reset by hand
        // where the kernel can tell which pages were written (Linux 6.7+), so they stay
        // resident for the next instance instead of faulting in again; beyond this much per
        // slot they are handed back to the kernel.
        if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
            pool.pagemap_scan(wasmtime::Enabled::Yes);
            pool.linear_memory_keep_resident(KEEP_RESIDENT);
        }
        pool.table_keep_resident(4096);
        // A freed slot is reused before a never-used one is touched, whichever component it
        // last held: the slots ever used are as many as the most instances live at once, and
        // a new plugin (or a reloaded one, whose code is new to the pool) does not pay the
        // first-touch faults of a cold slot while warm ones sit idle. Wasmtime's default
        // (100 idle warm slots before reusing one of another component) keeps slots for the
        // component they held, which saves remapping a copy-on-write image; with images
        // copied (the default here) there is nothing to save.
        if !cfg.copy_on_write_images {
            pool.max_unused_warm_slots(0);
        }
        config.memory_init_cow(cfg.copy_on_write_images);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(e.to_string()))?;

        let mut linker = Linker::<GuestState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| PluginError::Engine(e.to_string()))?;
        PluginBindings::add_to_linker::<GuestState, wasmtime::component::HasSelf<GuestState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| PluginError::Engine(e.to_string()))?;

        let cache = cfg
            .cache_dir
            .as_deref()
            .map(|dir| Cache::open(dir, cfg.cache_max_bytes))
            .transpose()?;
        let tracker = Tracker::default();
        if cfg.lane_threads == 0 {
            return Err(PluginError::Engine(
                "lane_threads must be at least 1 (threads per lane kind)".into(),
            ));
        }
        // Shared lanes are one set: one thread of each kind is all they can use.
        let per_kind = match cfg.isolation {
            IsolationMode::Shared => 1,
            IsolationMode::PerPlugin => cfg.lane_threads,
        };
        let ticker = Arc::new(Ticker::new(3 * per_kind));
        {
            let engine = engine.clone();
            let t = ticker.clone();
            let tick = cfg.epoch_tick;
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
        let forward = Lanes::tracked("guest-forward", tracker.clone());
        Ok(PluginHost {
            inner: Arc::new(HostInner {
                engine,
                linker,
                cache,
                cfg,
                prepared: Mutex::new(HashMap::new()),
                threads: threads.handles.clone(),
                shared_lanes: Mutex::new(None),
                thread_load: Mutex::new(vec![0; threads.handles.per_kind]),
                forward: forward.clone(),
                next_id: AtomicU64::new(1),
                accepting: AtomicBool::new(true),
                in_flight: AtomicU64::new(0),
                ticker: ticker.clone(),
                _tracked: tracker.enter(),
                tracker,
            }),
            running: Arc::new(Running {
                _threads: threads,
                ticker,
                forward,
            }),
        })
    }

    /// How many distinct components loaded plugins use (plugins of the same component share
    /// one compiled, pre-linked copy). For tests.
    #[doc(hidden)]
    pub fn prepared_components(&self) -> usize {
        let map = self
            .inner
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        map.values()
            .flatten()
            .filter(|e| e.users.strong_count() > 0)
            .count()
    }

    /// Pool slots (linear memories) that held an instance and are free now: warm, for the
    /// next instance of any plugin (for tests of the runtime itself).
    #[doc(hidden)]
    pub fn idle_pool_slots(&self) -> u32 {
        self.inner
            .engine
            .pooling_allocator_metrics()
            .map_or(0, |m| m.unused_warm_memories())
    }

    /// A probe that sees the host's threads, tasks and instances go away.
    #[doc(hidden)]
    pub fn probe(&self) -> HostProbe {
        HostProbe(self.inner.tracker.clone())
    }

    /// The counters of the forwarding lanes, through which every event of every plugin passes
    /// on its way from the session to the plugin's guest lane.
    pub fn forward_metrics(&self, lane: LaneKind) -> LaneMetrics {
        self.inner.forward.metrics(lane)
    }

    /// Stops taking new events for any plugin and waits until every event already handed to a
    /// guest lane has been handled, up to `timeout`. Returns whether they all were. For a clean
    /// shutdown: drain, then drop the plugins and close the session.
    pub async fn drain(&self, timeout: Duration) -> bool {
        self.inner.accepting.store(false, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + timeout;
        while self.inner.in_flight.load(Ordering::SeqCst) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Events handed to guest lanes and not yet handled.
    pub fn queued_events(&self) -> u64 {
        self.inner.in_flight.load(Ordering::SeqCst)
    }

    /// Checks that `bytes` would be accepted as a plugin: WebAssembly, a component, compiling,
    /// and fitting the `wazoo:plugin@0.1.0` world. Needs no ZooKeeper.
    pub fn check(&self, name: &str, bytes: &[u8]) -> Result<(), PluginError> {
        self.prepare(name, bytes).map(|_| ())
    }

    /// Loads a plugin from a file. See [`PluginHost::load`].
    pub fn load_file(
        &self,
        client: &Client,
        name: &str,
        path: &Path,
        policy: Policy,
        config: Vec<(String, String)>,
    ) -> Result<Plugin, PluginError> {
        let io = |e: std::io::Error| PluginError::Io {
            name: name.to_string(),
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        // Not read at all when it is too large (a wrong path to a disk image, say).
        self.within_size(name, std::fs::metadata(path).map_err(io)?.len())?;
        let bytes = std::fs::read(path).map_err(io)?;
        self.load(client, name, &bytes, policy, config)
    }

    /// Refuses a component larger than [`PluginHostConfig::max_component_bytes`].
    fn within_size(&self, name: &str, len: u64) -> Result<(), PluginError> {
        let max = self.inner.cfg.max_component_bytes as u64;
        if len > max {
            return Err(PluginError::OverLimits {
                name: name.to_string(),
                reason: format!(
                    "the component is {} ({len} bytes), over the host's max_component_bytes of {}",
                    mib(len),
                    mib(max)
                ),
            });
        }
        Ok(())
    }

    /// Loads a plugin: checks and compiles the component (or takes it from the cache), links
    /// it against the world, and gives it its lanes. Nothing runs until the first event; each
    /// lane's instance is built then, and `init(config)` called on it.
    pub fn load(
        &self,
        client: &Client,
        name: &str,
        bytes: &[u8],
        policy: Policy,
        config: Vec<(String, String)>,
    ) -> Result<Plugin, PluginError> {
        let pre = self.prepare(name, bytes)?;
        fits(name, &pre, &policy)?;
        let inner = &self.inner;
        let lanes = match inner.cfg.isolation {
            IsolationMode::PerPlugin => {
                // On the thread that holds the fewest loaded plugins' lanes (the first of
                // those): in turn while plugins only come, and into the gaps unloads leave.
                let thread = {
                    let mut load = inner.thread_load.lock().unwrap_or_else(|p| p.into_inner());
                    let (thread, _) = load
                        .iter()
                        .enumerate()
                        .min_by_key(|&(i, n)| (*n, i))
                        .expect("at least one lane thread");
                    load[thread] += 1;
                    thread
                };
                GuestLanes::spawn(&inner.threads, thread, &inner.tracker)
            }
            IsolationMode::Shared => inner
                .shared_lanes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| GuestLanes::spawn(&inner.threads, 0, &inner.tracker))
                .clone(),
        };
        let shared = Arc::new(Shared {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            name: Arc::from(name),
            policy,
            config,
            client: client.with_lanes(self.inner.forward.clone()),
            pre: Mutex::new((0, pre)),
            generation: AtomicU64::new(0),
            lanes,
            disabled: AtomicBool::new(false),
            unloaded: AtomicBool::new(false),
            crashes: Mutex::new(Vec::new()),
            calls: AtomicU64::new(0),
            traps: AtomicU64::new(0),
            instantiations: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            build_ns: AtomicU64::new(0),
            init_ns: AtomicU64::new(0),
            compute_ns: AtomicU64::new(0),
            lane_stats: Default::default(),
            listeners: Mutex::new(Vec::new()),
            armed: Mutex::new(Vec::new()),
            watching: Arc::new(AtomicBool::new(true)),
            host: self.inner.clone(),
        });
        tracing::info!(plugin = name, "plugin loaded");
        Ok(Plugin {
            shared,
            _running: self.running.clone(),
        })
    }

    /// Checks the bytes, compiles (or loads from the cache) and links.
    fn prepare(&self, name: &str, bytes: &[u8]) -> Result<Prepared, PluginError> {
        self.within_size(name, bytes.len() as u64)?;
        if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
            return Err(PluginError::NotWasm {
                name: name.to_string(),
            });
        }
        if bytes[4..8] == [1, 0, 0, 0] {
            return Err(PluginError::CoreModule {
                name: name.to_string(),
            });
        }
        let key = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            h.finish()
        };
        {
            let mut map = self
                .inner
                .prepared
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(list) = map.get_mut(&key) {
                list.retain(|e| e.users.strong_count() > 0);
                // Same hash and same bytes: the same component.
                if let Some(e) = list.iter().find(|e| *e.bytes == *bytes) {
                    if let Some(token) = e.users.upgrade() {
                        return Ok(Prepared {
                            pre: e.pre.clone(),
                            _users: token,
                        });
                    }
                }
            }
        }
        let component = self.compile(name, bytes)?;
        let pre =
            self.inner
                .linker
                .instantiate_pre(&component)
                .map_err(|e| PluginError::WrongWorld {
                    name: name.to_string(),
                    reason: format!("{e:#}"),
                })?;
        let pre = PluginPre::new(pre).map_err(|e| PluginError::WrongWorld {
            name: name.to_string(),
            reason: format!("{e:#}"),
        })?;
        let token = Arc::new(());
        let mut map = self
            .inner
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Forget components no loaded plugin uses any more.
        map.retain(|_, list| {
            list.retain(|e| e.users.strong_count() > 0);
            !list.is_empty()
        });
        map.entry(key).or_default().push(PreparedEntry {
            bytes: Arc::from(bytes),
            pre: pre.clone(),
            users: Arc::downgrade(&token),
        });
        Ok(Prepared { pre, _users: token })
    }

    fn compile(&self, name: &str, bytes: &[u8]) -> Result<Component, PluginError> {
        match &self.inner.cache {
            Some(cache) => cache.compile(&self.inner.engine, name, bytes),
            None => Component::new(&self.inner.engine, bytes).map_err(|e| PluginError::Invalid {
                name: name.to_string(),
                reason: format!("{e:#}"),
            }),
        }
    }
}

/// Refuses, at load, a component whose every instance would fail to build under `policy`.
/// What the pooling allocator cannot hold (a memory larger than
/// [`PluginHostConfig::max_memory`], more memories, tables or core instances than a plugin
/// may have) wasmtime refuses as it compiles or deserializes; the policy's own memory limit,
/// which differs between plugins of one component, is checked here.
fn fits(name: &str, pre: &Prepared, policy: &Policy) -> Result<(), PluginError> {
    let Some(needs) = pre.pre.instance_pre().component().resources_required() else {
        return Ok(()); // it instantiates imported modules: nothing to tell ahead
    };
    let initial = needs
        .max_initial_memory_size
        .unwrap_or(0)
        .saturating_mul(WASM_PAGE);
    if initial > policy.memory_limit as u64 {
        return Err(PluginError::OverLimits {
            name: name.to_string(),
            reason: format!(
                "its linear memory starts at {} ({} pages of 64 KiB), over its policy's \
                 memory_limit of {}",
                mib(initial),
                initial / WASM_PAGE,
                mib(policy.memory_limit as u64)
            ),
        });
    }
    Ok(())
}

/// A WebAssembly page (wasmtime does not enable custom page sizes).
const WASM_PAGE: u64 = 64 << 10;

/// `bytes` for a message: in MiB, with a fraction where it has one.
fn mib(bytes: u64) -> String {
    let m = bytes as f64 / (1u64 << 20) as f64;
    if m.fract() == 0.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.2} MiB")
    }
}

/// How many core instances, tables and memories one guest instance may have.
const STORE_INSTANCES: u32 = 16;
const STORE_TABLES: u32 = 16;
const STORE_MEMORIES: u32 = 4;

/// A loaded plugin. Dropping it (or [`Plugin::unload`]) stops its bindings and lanes. It keeps
/// its host's threads running (see [`PluginHost`]).
pub struct Plugin {
    shared: Arc<Shared>,
    _running: Arc<Running>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its counters.
    pub fn stats(&self) -> PluginStats {
        PluginStats {
            calls: self.shared.calls.load(Ordering::Relaxed),
            traps: self.shared.traps.load(Ordering::Relaxed),
            instantiations: self.shared.instantiations.load(Ordering::Relaxed),
            restarts: self.shared.restarts.load(Ordering::Relaxed),
            taken: self.shared.taken.load(Ordering::Relaxed),
            disabled: self.shared.disabled.load(Ordering::Relaxed),
            build_time: Duration::from_nanos(self.shared.build_ns.load(Ordering::Relaxed)),
            init_time: Duration::from_nanos(self.shared.init_ns.load(Ordering::Relaxed)),
            compute_time: Duration::from_nanos(self.shared.compute_ns.load(Ordering::Relaxed)),
        }
    }

    /// The counters of this plugin's events on one of its guest lanes: handled, queued, the
    /// handler time and queueing time histograms, traps (as `panics`). With
    /// [`IsolationMode::PerPlugin`] that is the whole lane; with [`IsolationMode::Shared`] this
    /// plugin's share of the shared lane.
    pub fn lane_metrics(&self, lane: LaneKind) -> LaneMetrics {
        self.shared.lane_stats[lane.index()].snapshot()
    }

    /// Binds the plugin to events. Watch bindings need the path in the plugin's read
    /// allow-list.
    pub async fn bind(&self, binding: Binding) -> Result<(), PluginError> {
        let s = &self.shared;
        let bind_err = |reason: String| PluginError::Bind {
            name: s.name.to_string(),
            reason,
        };
        match &binding {
            Binding::Session => {
                // The session's registry must not keep the plugin alive: a weak handle.
                let shared = Arc::downgrade(s);
                let id = s.client.add_listener(move |ev: SessionEvent, info| {
                    if let Some(shared) = shared.upgrade() {
                        shared.send(
                            LaneKind::Session,
                            GuestEvent::Session(wit::SessionEvent {
                                state: wit_state(ev.state),
                                session_id: ev.session_id,
                                seq: info.seq,
                            }),
                        );
                    }
                });
                s.listeners
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(id);
                Ok(())
            }
            Binding::Data(p)
            | Binding::Exists(p)
            | Binding::Children(p)
            | Binding::Persistent(p)
            | Binding::PersistentRecursive(p) => {
                if !s.policy.may_read(p) {
                    return Err(bind_err(format!(
                        "{p} is outside the plugin's read allow-list"
                    )));
                }
                let r = match &binding {
                    Binding::Persistent(_) => add_persistent(s, p, AddWatchMode::Persistent).await,
                    Binding::PersistentRecursive(_) => {
                        add_persistent(s, p, AddWatchMode::PersistentRecursive).await
                    }
                    Binding::Data(_) => arm(s.clone(), p.clone(), Armed::Data).await,
                    Binding::Exists(_) => arm(s.clone(), p.clone(), Armed::Exists).await,
                    _ => arm(s.clone(), p.clone(), Armed::Children).await,
                };
                r.map_err(|e| bind_err(e.to_string()))
            }
        }
    }

    /// Replaces the plugin's code, keeping its bindings and watches: each lane builds an
    /// instance of the new code before its next event.
    pub fn reload(&self, bytes: &[u8]) -> Result<(), PluginError> {
        let host = PluginHost {
            inner: self.shared.host.clone(),
            running: self._running.clone(),
        };
        let pre = host.prepare(&self.shared.name, bytes)?;
        fits(&self.shared.name, &pre, &self.shared.policy)?;
        let mut g = self.shared.pre.lock().unwrap_or_else(|p| p.into_inner());
        *g = (g.0 + 1, pre);
        self.shared.generation.store(g.0, Ordering::Release);
        self.shared.disabled.store(false, Ordering::Relaxed);
        self.shared
            .crashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        tracing::info!(plugin = %self.shared.name, "plugin reloaded");
        Ok(())
    }

    /// Queues a synthetic watch event on the plugin's watch lane, as if ZooKeeper had sent it
    /// (for benchmarks and tests of the runtime itself). False if the plugin no longer takes
    /// events.
    #[doc(hidden)]
    pub fn inject_watch(&self, path: &str, seq: u64) -> bool {
        self.shared.send(
            LaneKind::Watch,
            GuestEvent::Watch(wit::WatchEvent {
                event_type: wit::EventType::NodeDataChanged,
                path: path.to_string(),
                seq,
            }),
        )
    }

    /// Queues a synthetic session event (`connected`) on the plugin's session lane, as if the
    /// session had changed state (for benchmarks of the runtime itself). False if the plugin no
    /// longer takes events.
    #[doc(hidden)]
    pub fn inject_session(&self, seq: u64) -> bool {
        self.shared.send(
            LaneKind::Session,
            GuestEvent::Session(wit::SessionEvent {
                state: wit::SessionState::Connected,
                session_id: 0,
                seq,
            }),
        )
    }

    /// Builds `n` instances of the plugin one after another on the host's guest runtime, each
    /// dropped before the next is built (so each reuses the pool slot its predecessor left, as
    /// a rebuild after a trap does), and returns the time the builds took and the time their
    /// `init` calls took (for benchmarks of the runtime itself). They count in [`PluginStats`].
    #[doc(hidden)]
    pub async fn rebuild_instances(&self, n: usize) -> Result<(Duration, Duration), String> {
        let shared = self.shared.clone();
        self.shared
            .host
            .threads
            .tasks()
            .spawn(async move {
                let _ticking = shared.host.ticker.enter();
                let ns = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let (build0, init0) = (ns(&shared.build_ns), ns(&shared.init_ns));
                for _ in 0..n {
                    drop(build(&shared, LaneKind::Watch).await?);
                }
                Ok((
                    Duration::from_nanos(ns(&shared.build_ns) - build0),
                    Duration::from_nanos(ns(&shared.init_ns) - init0),
                ))
            })
            .await
            .map_err(|e| e.to_string())?
    }

    /// Stops the plugin: no more events reach it; its watches are dropped.
    pub fn unload(self) {}
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let s = &self.shared;
        s.unloaded.store(true, Ordering::Relaxed);
        s.watching.store(false, Ordering::Relaxed);
        for id in s
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            s.client.remove_listener(id);
        }
        // Forget its one-shot watches, and remove the server's where no one else watches.
        for path in s.armed.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            s.client.prune_watches(&path);
        }
        s.send_unload();
        if s.host.cfg.isolation == IsolationMode::PerPlugin {
            let mut load = s.host.thread_load.lock().unwrap_or_else(|p| p.into_inner());
            load[s.lanes.thread] -= 1;
        }
    }
}

/// One guest instance and the code generation it was built from.
struct Instance {
    generation: u64,
    store: Store<GuestState>,
    bindings: PluginBindings,
    /// Counted by the host until the instance is dropped.
    _tracked: Tracked,
}

/// Per plugin, on one lane: its instance (if built) and when it may be rebuilt.
#[derive(Default)]
struct Slot {
    instance: Option<Instance>,
    not_before: Option<Instant>,
    backoff: Duration,
    /// The last instance crashed: the next build is a restart.
    crashed: bool,
}

/// A guest lane: runs events one at a time, building instances lazily and rebuilding them
/// after a trap. Counts each event in its plugin's lane statistics: the wait from being queued
/// to the handler's call (instance building and backoff included), and the call itself.
///
/// A watch or completion handler is lent the lane's queue for its call, so that it may take
/// the events queued behind its own (see [`GuestState::take_next`]); the call ends with the
/// last event it took, which is the one this loop then accounts for.
async fn lane_task(kind: LaneKind, rx: mpsc::UnboundedReceiver<LaneMsg>, _tracked: Tracked) {
    let mut slots: HashMap<u64, Slot, BuildHasherDefault<IdHasher>> = HashMap::default();
    let deadline = Arc::new(Deadline::new());
    let now = Instant::now();
    let mut feed = Some(Feed {
        queue: LaneQueue { rx, held: None },
        generation: 0,
        queued_at: now,
        started: now,
        deadline: deadline.clone(),
        handled: 0,
    });
    loop {
        let queue = &mut feed.as_mut().expect("returned by every call").queue;
        let Some((shared, ev, queued_at)) = queue.next().await else {
            break;
        };
        // Counts the event handled at the end of the iteration; with a handler that took
        // more events, the last of them (each earlier one was counted as it was taken).
        let _done = InFlightGuard(&shared.host);
        // Builds and calls run guest code: the epoch must tick.
        let _ticking = shared.host.ticker.enter();
        let stats = &shared.lane_stats[kind.index()];
        if !shared.alive() {
            slots.remove(&shared.id);
            stats.unqueued();
            continue;
        }
        let slot = slots.entry(shared.id).or_default();
        let generation = shared.generation.load(Ordering::Acquire);
        if slot
            .instance
            .as_ref()
            .is_some_and(|i| i.generation != generation)
        {
            slot.instance = None; // reloaded
        }
        if slot.instance.is_none() {
            if let Some(t) = slot.not_before {
                tokio::time::sleep_until(t.into()).await;
            }
            match build(&shared, kind).await {
                Ok(i) => {
                    slot.instance = Some(i);
                    if std::mem::take(&mut slot.crashed) {
                        shared.restarts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(why) => {
                    shared.crashed(&format!(
                        "building the {kind:?} lane's instance failed: {why}"
                    ));
                    slot.crashed = true;
                    back_off(slot);
                    stats.done(queued_at.elapsed(), Duration::ZERO, true);
                    continue;
                }
            }
        }
        let inst = slot.instance.as_mut().expect("built above");
        let started = Instant::now();
        deadline.set(started + shared.policy.wall_limit);
        let mut lent = feed.take().expect("returned by every call");
        lent.generation = inst.generation;
        lent.queued_at = queued_at;
        lent.started = started;
        inst.store.data_mut().feed = Some(lent);
        inst.store.data_mut().start_call(started);
        inst.store.set_epoch_deadline(1);
        let call = async {
            match ev {
                GuestEvent::Session(e) => inst.bindings.call_on_session(&mut inst.store, e).await,
                GuestEvent::Watch(e) => inst.bindings.call_on_watch(&mut inst.store, &e).await,
                GuestEvent::Completion(c) => {
                    inst.bindings
                        .call_on_completion(&mut inst.store, &c.0, &c.1)
                        .await
                }
                // Handled above: an unloaded plugin is not alive.
                GuestEvent::Unload => Ok(()),
            }
        };
        let result = within(&shared.host.ticker, &deadline, call).await;
        let ended = Instant::now();
        inst.store.data_mut().end_call(ended);
        // The Store outlives a trap or a cancelled call: the queue comes back either way.
        let mut lent = inst.store.data_mut().feed.take().expect("lent above");
        let (queued_at, started) = (lent.queued_at, lent.started);
        let handled = std::mem::take(&mut lent.handled);
        feed = Some(lent);
        if handled > 0 {
            stats.dequeued(handled);
            shared.calls.fetch_add(handled, Ordering::Relaxed);
            shared.taken.fetch_add(handled, Ordering::Relaxed);
            shared.host.in_flight.fetch_sub(handled, Ordering::SeqCst);
        }
        let failure = match result {
            Some(Ok(())) => None,
            Some(Err(trap)) => Some(format!(
                "{kind:?} handler trapped: {}",
                describe_trap(&trap)
            )),
            None => Some(format!(
                "{kind:?} handler exceeded its wall-clock limit of {:?}",
                shared.policy.wall_limit
            )),
        };
        stats.done(
            started.saturating_duration_since(queued_at),
            ended.saturating_duration_since(started),
            failure.is_some(),
        );
        match failure {
            None => {
                shared.calls.fetch_add(1, Ordering::Relaxed);
                slot.backoff = Duration::ZERO;
            }
            Some(why) => {
                shared.crashed(&why);
                slot.instance = None;
                slot.crashed = true;
                back_off(slot);
            }
        }
    }
}

/// A hasher for the lane's slot map, keyed by plugin ids (small, distinct integers): SipHash
/// was a visible share of an empty callback.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // Spread the bits a little; hashbrown uses the top 7 for its control bytes.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Counts an event as handled when dropped, whichever way its handling ended.
struct InFlightGuard<'a>(&'a HostInner);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn back_off(slot: &mut Slot) {
    slot.backoff = if slot.backoff.is_zero() {
        Duration::from_millis(10)
    } else {
        (slot.backoff * 2).min(Duration::from_secs(5))
    };
    slot.not_before = Some(Instant::now() + slot.backoff);
}

/// A trap's message, with wasmtime's own description where it has one.
fn describe_trap(e: &wasmtime::Error) -> String {
    if let Some(t) = e.downcast_ref::<wasmtime::Trap>() {
        return format!("{t}");
    }
    format!("{e:#}")
}

/// Builds an instance in a fresh Store and runs `init(config)` on it.
async fn build(shared: &Arc<Shared>, lane: LaneKind) -> Result<Instance, String> {
    let began = Instant::now();
    let (generation, pre) = {
        let g = shared.pre.lock().unwrap_or_else(|p| p.into_inner());
        (g.0, g.1.pre.clone())
    };
    let mut wasi = WasiCtx::builder();
    wasi.stdout(GuestOutput {
        plugin: shared.name.clone(),
        stream: Stream::Stdout,
    });
    wasi.stderr(GuestOutput {
        plugin: shared.name.clone(),
        stream: Stream::Stderr,
    });
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    let limits = StoreLimitsBuilder::new()
        .memory_size(shared.policy.memory_limit)
        .instances(STORE_INSTANCES as usize)
        .tables(STORE_TABLES as usize)
        .memories(STORE_MEMORIES as usize)
        .trap_on_grow_failure(false)
        .build();
    let state = GuestState {
        shared: shared.clone(),
        wasi: wasi.build(),
        table: ResourceTable::new(),
        limits,
        charged_ns: 0,
        seg_open: false,
        in_call: false,
        taken_ns: 0,
        seg_wall: Instant::now(),
        resume_cpu: Arc::new(AtomicU64::new(0)),
        tick_ns: shared.host.cfg.epoch_tick.as_nanos() as u64,
        feed: None,
        waited: false,
        lane,
        spinning: false,
    };
    let mut store = Store::new(&shared.host.engine, state);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_callback(|mut ctx| {
        let s = ctx.data_mut();
        // The tick passed while the guest waited on ZooKeeper and it has only just resumed:
        // it held the thread for no time, so it need not yield (a yield per reply that crossed
        // a tick was a visible part of a guest's round trip).
        if std::mem::take(&mut s.waited) && s.segment_ns() < s.tick_ns / 2 {
            return Ok(UpdateDeadline::Continue(1));
        }
        s.close_segment();
        if s.guest_time() >= s.shared.policy.compute_budget {
            return Err(wasmtime::format_err!(
                "compute budget of {:?} exhausted after {:?} of guest execution (time waiting on ZooKeeper or for a CPU is not counted)",
                s.shared.policy.compute_budget,
                s.guest_time()
            ));
        }
        // Let other tasks on this thread run; the guest is charged again from the moment it
        // resumes, in CPU time (where there is no thread clock: from now, on the wall). A call
        // charged a whole tick (computing, not waiting on ZooKeeper) makes the ticker tick
        // faster, so that the lanes sharing its thread get their turns sooner.
        if !s.spinning && s.charged_ns >= s.tick_ns {
            s.spinning = true;
            s.shared.host.ticker.spun(s.shared.thread_slot(s.lane), true);
        }
        s.open_segment();
        let resume = s.resume_cpu.clone();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                if let Some(now) = thread_cpu_ns() {
                    resume.store(now + 1, Ordering::Relaxed);
                }
            }),
        ))
    });
    // Instantiation runs wasm (start functions), so the deadline must be set first.
    store.data_mut().start_call(Instant::now());
    store.set_epoch_deadline(1);
    let instantiated =
        tokio::time::timeout(shared.policy.wall_limit, pre.instantiate_async(&mut store)).await;
    store.data_mut().end_call(Instant::now());
    let bindings = instantiated
        .map_err(|_| "instantiation exceeded the wall-clock limit".to_string())?
        .map_err(|e| describe_trap(&e))?;
    shared.instantiations.fetch_add(1, Ordering::Relaxed);
    let built = Instant::now();
    shared.build_ns.fetch_add(
        built.duration_since(began).as_nanos() as u64,
        Ordering::Relaxed,
    );
    store.data_mut().start_call(built);
    let init = tokio::time::timeout(
        shared.policy.wall_limit,
        bindings.call_init(&mut store, &shared.config),
    )
    .await;
    store.data_mut().end_call(Instant::now());
    let init = init
        .map_err(|_| "init exceeded the wall-clock limit".to_string())?
        .map_err(|e| describe_trap(&e))?;
    shared
        .init_ns
        .fetch_add(built.elapsed().as_nanos() as u64, Ordering::Relaxed);
    if let Err(msg) = init {
        return Err(format!("init refused its configuration: {msg}"));
    }
    Ok(Instance {
        generation,
        store,
        bindings,
        _tracked: shared.host.tracker.enter(),
    })
}

/// Lets import implementations reach the plugin's lanes and counters.
pub(crate) fn completion_send(shared: &Arc<Shared>, context: Vec<u8>, c: wit::Completion) {
    shared.send(
        LaneKind::Completion,
        GuestEvent::Completion(Box::new((context, c))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_host_stops_its_threads() {
        let host = PluginHost::new(PluginHostConfig {
            max_instances: 4,
            ..Default::default()
        })
        .unwrap();
        let probe = host.probe();
        // The host itself, the epoch ticker and the runtime's workers (threads that start on
        // their own time: on a loaded machine not all have by the time `new` returns).
        let deadline = Instant::now() + Duration::from_secs(10);
        while probe.live() < 3 {
            assert!(
                Instant::now() < deadline,
                "only {} of the host's threads and tasks started",
                probe.live()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        host.inner.forward.run(LaneKind::Watch, move |_| {
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let clone = host.clone();
        drop(host);
        assert!(
            !probe.wait_stopped(Duration::from_millis(50)),
            "a clone keeps it running"
        );
        drop(clone);
        assert!(
            probe.wait_stopped(Duration::from_secs(10)),
            "{} threads or tasks still live",
            probe.live()
        );
    }
}
