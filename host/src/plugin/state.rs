//! A loaded plugin at run time: its state ([`PluginState`], shared by its handle, its lanes,
//! its bindings and its imports), the events that reach its lanes ([`GuestEvent`]) through
//! their queues, and the data of its instances' Stores ([`StoreData`]).
//!
//! These refer to each other (the plugin holds its lanes' senders and its pre-linked code,
//! whose Stores' data points back at the plugin), so they live together; what acts on them
//! (the lane task, instance building, the imports, the host) sits above.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use wasmtime::component::ResourceTable;
use wasmtime::StoreLimits;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::wazoo::plugin::types as wit;
use super::bindings::PluginPre;
use super::component::Prepared;
use super::meter::Meter;
use super::policy::Policy;
use super::runtime::Runtime;
use super::stats::{PluginCounters, PluginStats};
use crate::client::{Client, ListenerId};
use crate::dispatch::{LaneCounters, LaneKind};

/// One event for a guest lane.
pub(crate) enum GuestEvent {
    Session(wit::SessionEvent),
    Watch(wit::WatchEvent),
    /// The context bytes and the outcome (boxed: the largest case, and events move through
    /// the lane's channel by value).
    Completion(Box<(Vec<u8>, wit::Completion)>),
    /// The plugin was unloaded: the lane drops its instance (sent by [`PluginState::unload`],
    /// past the `unloaded` check of [`PluginState::send`]).
    Unload,
}

/// An event for a guest lane, with when it was queued.
pub(crate) type LaneMsg = (Arc<PluginState>, GuestEvent, Instant);
type LaneTx = mpsc::UnboundedSender<LaneMsg>;

/// A guest lane's queue: its channel, and a message taken from it but not handled yet (one a
/// handler looked at and left for the lane: another plugin's, an unload, after a reload).
pub(crate) struct LaneQueue {
    rx: mpsc::UnboundedReceiver<LaneMsg>,
    held: Option<LaneMsg>,
}

impl LaneQueue {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<LaneMsg>) -> Self {
        LaneQueue { rx, held: None }
    }

    pub(crate) async fn next(&mut self) -> Option<LaneMsg> {
        match self.held.take() {
            Some(m) => Some(m),
            None => self.rx.recv().await,
        }
    }

    pub(crate) fn try_next(&mut self) -> Option<LaneMsg> {
        self.held.take().or_else(|| self.rx.try_recv().ok())
    }

    /// Puts back a message taken with [`LaneQueue::try_next`]: the next to come out.
    pub(crate) fn hold(&mut self, msg: LaneMsg) {
        self.held = Some(msg);
    }
}

/// What a watch or completion handler may take more events from while it runs
/// (`wazoo:plugin/lane`): the lane's queue, lent to the instance's Store for the call, and the
/// event being handled.
pub(crate) struct Feed {
    pub(crate) queue: LaneQueue,
    /// The code generation the instance was built from: a reload ends the run.
    pub(crate) generation: u64,
    /// When the event being handled was queued, and when its handling began.
    pub(crate) queued_at: Instant,
    pub(crate) started: Instant,
    /// Events of this call handled before the current one (taken over by the next): the lane
    /// counts them off its queue and the host's in-flight count when the call returns, one
    /// atomic operation each for the whole run instead of several per event.
    pub(crate) handled: u64,
}

impl Feed {
    pub(crate) fn new(queue: LaneQueue) -> Self {
        let now = Instant::now();
        Feed {
            queue,
            generation: 0,
            queued_at: now,
            started: now,
            handled: 0,
        }
    }
}

/// A set of three guest lanes (tasks): where to send their events.
#[derive(Clone)]
pub(crate) struct GuestLanes {
    session: LaneTx,
    watch: LaneTx,
    completion: LaneTx,
    /// Which of each kind's threads the three run on (see
    /// [`PluginHostConfig::lane_threads`](super::PluginHostConfig::lane_threads)).
    thread: usize,
}

impl GuestLanes {
    pub(crate) fn new(session: LaneTx, watch: LaneTx, completion: LaneTx, thread: usize) -> Self {
        GuestLanes {
            session,
            watch,
            completion,
            thread,
        }
    }

    fn tx(&self, kind: LaneKind) -> &LaneTx {
        match kind {
            LaneKind::Session => &self.session,
            LaneKind::Watch => &self.watch,
            LaneKind::Completion => &self.completion,
        }
    }
}

/// What a loaded plugin shares with its handle, its lanes, its bindings and its imports.
pub(crate) struct PluginState {
    id: u64,
    name: Arc<str>,
    policy: Policy,
    config: Vec<(String, String)>,
    client: Client,
    /// The code generation (bumped by each reload) and the code its instances are built from.
    code: Mutex<(u64, Prepared<StoreData>)>,
    /// The generation in `code`, readable without the lock (checked on every event).
    generation: AtomicU64,
    lanes: GuestLanes,
    disabled: AtomicBool,
    unloaded: AtomicBool,
    /// When its recent crashes were, against the policy's `max_crashes` in `crash_window`.
    crashes: Mutex<Vec<Instant>>,
    counters: PluginCounters,
    /// Per lane (by [`LaneKind::index`]): this plugin's events on it, queued and handled.
    lane_stats: [LaneCounters; 3],
    /// State listeners added by its bindings, removed when it is unloaded.
    listeners: Mutex<Vec<ListenerId>>,
    /// Paths of its watches (kept-armed, one-shot and persistent), pruned when it is unloaded.
    armed: Mutex<Vec<String>>,
    /// False once unloaded: withdraws its one-shot watches from the session.
    watching: Arc<AtomicBool>,
    runtime: Arc<Runtime>,
}

impl PluginState {
    /// A plugin loaded with `code` (generation 0), on `lanes`; `client` is the plugin's own
    /// handle on the session (whose callbacks run on the host's forwarding lanes).
    pub(crate) fn new(
        name: &str,
        policy: Policy,
        config: Vec<(String, String)>,
        client: Client,
        code: Prepared<StoreData>,
        lanes: GuestLanes,
        runtime: Arc<Runtime>,
    ) -> Self {
        PluginState {
            id: runtime.next_plugin_id(),
            name: Arc::from(name),
            policy,
            config,
            client,
            code: Mutex::new((0, code)),
            generation: AtomicU64::new(0),
            lanes,
            disabled: AtomicBool::new(false),
            unloaded: AtomicBool::new(false),
            crashes: Mutex::new(Vec::new()),
            counters: PluginCounters::default(),
            lane_stats: Default::default(),
            listeners: Mutex::new(Vec::new()),
            armed: Mutex::new(Vec::new()),
            watching: Arc::new(AtomicBool::new(true)),
            runtime,
        }
    }

    /// The plugin's id, unique in its host.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The configuration its instances' `init` is given.
    pub(crate) fn config(&self) -> &[(String, String)] {
        &self.config
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    pub(crate) fn counters(&self) -> &PluginCounters {
        &self.counters
    }

    /// This plugin's events on its `kind` lane.
    pub(crate) fn lane(&self, kind: LaneKind) -> &LaneCounters {
        &self.lane_stats[kind.index()]
    }

    /// Its counters now.
    pub(crate) fn stats(&self) -> PluginStats {
        let mut s = self
            .counters
            .snapshot(self.disabled.load(Ordering::Relaxed));
        if let Some(t) = self.client.tenant() {
            s.requests_in_flight = t.in_flight() as u64;
            s.rejected_busy = t.rejected();
        }
        s
    }

    /// Which of each kind's threads its lanes run on.
    pub(crate) fn lane_thread(&self) -> usize {
        self.lanes.thread
    }

    /// Which lane thread this plugin's `kind` lane runs on.
    pub(crate) fn thread_slot(&self, kind: LaneKind) -> usize {
        self.runtime.thread_slot(kind, self.lanes.thread)
    }

    /// The code generation, and the code, to build an instance from.
    pub(crate) fn code(&self) -> (u64, PluginPre<StoreData>) {
        let g = self.code.lock().unwrap_or_else(|p| p.into_inner());
        (g.0, g.1.pre().clone())
    }

    /// The code generation instances must have been built from (a reload bumps it).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Replaces the plugin's code (a reload): each lane builds an instance of it before its
    /// next event. A disabled plugin is enabled again, its crashes forgotten.
    pub(crate) fn replace_code(&self, code: Prepared<StoreData>) {
        let mut g = self.code.lock().unwrap_or_else(|p| p.into_inner());
        *g = (g.0 + 1, code);
        self.generation.store(g.0, Ordering::Release);
        self.disabled.store(false, Ordering::Relaxed);
        self.crashes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Queues `ev` on the plugin's `kind` lane, unless the plugin no longer takes events
    /// (unloaded, disabled, or its host drained); whether it was queued.
    pub(crate) fn send(self: &Arc<Self>, kind: LaneKind, ev: GuestEvent) -> bool {
        if self.unloaded.load(Ordering::Relaxed)
            || self.disabled.load(Ordering::Relaxed)
            || !self.runtime.accepting()
        {
            return false;
        }
        self.enqueue(kind, ev)
    }

    /// Queues the outcome of an async import on the completion lane, with the guest's
    /// `context` bytes.
    pub(crate) fn complete(self: &Arc<Self>, context: Vec<u8>, c: wit::Completion) {
        self.send(
            LaneKind::Completion,
            GuestEvent::Completion(Box::new((context, c))),
        );
    }

    /// Queues `ev` on the plugin's `kind` lane, counted as queued and in flight until the lane
    /// has handled it; false if the lane is gone.
    fn enqueue(self: &Arc<Self>, kind: LaneKind, ev: GuestEvent) -> bool {
        let tx = self.lanes.tx(kind);
        let stats = self.lane(kind);
        stats.queued();
        self.runtime.event_queued();
        if tx.send((self.clone(), ev, Instant::now())).is_ok() {
            // A guest spinning on that lane's thread yields at its next epoch check instead of
            // at the next tick (every running guest checks then, and most go on at once).
            if self.runtime.ticker().spins_on(self.thread_slot(kind)) {
                self.runtime.engine().increment_epoch();
            }
            true
        } else {
            stats.unqueued();
            self.runtime.events_done(1);
            false
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

    /// A call or a build failed (`why`): counted, and the plugin disabled if it crashed
    /// `max_crashes` times within `crash_window`.
    pub(crate) fn crashed(&self, why: &str) {
        self.counters.trapped();
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

    /// The flag that withdraws the plugin's one-shot watches from the session once it is
    /// unloaded.
    pub(crate) fn watching(&self) -> &Arc<AtomicBool> {
        &self.watching
    }

    /// Remembers a state listener of a binding, removed when the plugin is unloaded.
    pub(crate) fn listening(&self, id: ListenerId) {
        self.listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id);
    }

    /// Remembers a path the plugin watches, pruned when it is unloaded.
    pub(crate) fn watches(&self, path: &str) {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        if !armed.iter().any(|p| p == path) {
            armed.push(path.to_string());
        }
    }

    /// Stops the plugin: no more events reach it, its listeners and watches go, and each of
    /// its lanes drops its instance.
    pub(crate) fn unload(self: &Arc<Self>) {
        self.unloaded.store(true, Ordering::Relaxed);
        self.watching.store(false, Ordering::Relaxed);
        for id in self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            self.client.remove_listener(id);
        }
        // Forget its one-shot watches, and remove the server's where no one else watches.
        for path in self
            .armed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            self.client.prune_watches(&path);
        }
        self.send_unload();
    }

    /// Tells each of the plugin's lanes to drop its instance. Instances hold the plugin's
    /// shared state, so without this an unloaded plugin's instances (and, per plugin, its lane
    /// tasks) would live as long as the host.
    fn send_unload(self: &Arc<Self>) {
        for kind in LaneKind::ALL {
            self.enqueue(kind, GuestEvent::Unload);
        }
    }
}

/// The data of one guest instance's Store.
pub(crate) struct StoreData {
    pub(crate) plugin: Arc<PluginState>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limits: StoreLimits,
    /// What the running call is charged, against its budget and its wall-clock limit.
    pub(crate) meter: Meter,
    /// While a watch or completion handler runs: the lane's queue (see `wazoo:plugin/lane`).
    pub(crate) feed: Option<Feed>,
    /// The lane this instance serves.
    pub(crate) lane: LaneKind,
}

impl StoreData {
    pub(crate) fn new(
        plugin: Arc<PluginState>,
        lane: LaneKind,
        wasi: WasiCtx,
        limits: StoreLimits,
        meter: Meter,
    ) -> Self {
        StoreData {
            plugin,
            wasi,
            table: ResourceTable::new(),
            limits,
            meter,
            feed: None,
            lane,
        }
    }

    /// Starts the meter of a call into the guest started at `now`.
    pub(crate) fn start_call(&mut self, now: Instant) {
        self.meter.start_call(now);
    }

    /// A call into the guest has ended (returned, trapped or was cancelled) at `now`: its
    /// guest execution goes to the plugin's [`PluginStats::compute_time`].
    pub(crate) fn end_call(&mut self, now: Instant) {
        let ns = self.meter.end_call(now);
        if ns > 0 {
            self.plugin.counters.computed(ns);
        }
    }
}

impl Drop for StoreData {
    fn drop(&mut self) {
        self.end_call(Instant::now());
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
