//! The host ([`PluginHost`]) and its loaded plugins' handles ([`Plugin`]): loading, binding,
//! reloading, draining, and the lifetime of the host's threads.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::bindings::wazoo::plugin::types as wit;
use super::component::{fits, Components};
use super::config::{IsolationMode, PluginHostConfig};
use super::convert::wit_state;
use super::engine::engine;
#[cfg(feature = "test-support")]
use super::epoch::Deadline;
use super::epoch::Ticker;
use super::error::PluginError;
use super::imports;
#[cfg(feature = "test-support")]
use super::instance::build;
use super::lane;
use super::policy::Policy;
use super::runtime::{GuestThreads, Runtime};
use super::state::{GuestEvent, GuestLanes, PluginState, StoreData};
use super::stats::PluginStats;
use super::watches::{add_persistent, arm, Armed};
use crate::client::Client;
use crate::dispatch::{LaneKind, LaneMetrics, Lanes, Tracker};
use crate::proto::records::AddWatchMode;
use crate::session::SessionEvent;
use crate::tenant::Tenant;

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

/// What the host's handles share: the runtime every plugin holds, the components in use, the
/// lanes plugins are given. Only [`PluginHost`] and [`Plugin`] handles hold it.
struct HostInner {
    runtime: Arc<Runtime>,
    /// Compiles and links components (with the compilation cache, if
    /// [`PluginHostConfig::cache_dir`] names one), and keeps those in use.
    components: Components<StoreData>,
    cfg: PluginHostConfig,
    shared_lanes: Mutex<Option<GuestLanes>>,
    /// Per-plugin mode: how many loaded plugins' lanes each thread of a kind holds (by
    /// [`GuestLanes`]' thread); a new plugin's go to the least busy.
    thread_load: Mutex<Vec<usize>>,
    /// Non-blocking forwarding lanes: the session actor's events reach guest lanes through them.
    forward: Lanes,
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

/// Watches a [`PluginHost`]'s threads, tasks and instances go away (for tests of the host
/// itself).
#[cfg(feature = "test-support")]
#[derive(Clone)]
pub struct HostProbe(Tracker);

#[cfg(feature = "test-support")]
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
    _running: Arc<Running>,
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
        let engine = engine(&cfg)?;
        let linker = imports::linker(&engine)?;
        let cache = cfg
            .cache_dir
            .as_deref()
            .map(|dir| super::cache::Cache::open(dir, cfg.cache_max_bytes))
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
        let components = Components::new(engine.clone(), linker, cache, cfg.max_component_bytes);
        let (runtime, threads) = Runtime::start(engine, per_kind, cfg.epoch_tick, tracker.clone())?;
        let forward = Lanes::tracked("guest-forward", tracker);
        Ok(PluginHost {
            _running: Arc::new(Running {
                _threads: threads,
                ticker: runtime.ticker().clone(),
                forward: forward.clone(),
            }),
            inner: Arc::new(HostInner {
                runtime,
                components,
                cfg,
                shared_lanes: Mutex::new(None),
                thread_load: Mutex::new(vec![0; per_kind]),
                forward,
            }),
        })
    }

    /// How many distinct components loaded plugins use (plugins of the same component share
    /// one compiled, pre-linked copy). For tests.
    #[cfg(feature = "test-support")]
    pub fn prepared_components(&self) -> usize {
        self.inner.components.in_use()
    }

    /// Pool slots (linear memories) that held an instance and are free now: warm, for the
    /// next instance of any plugin (for tests of the runtime itself).
    #[cfg(feature = "test-support")]
    pub fn idle_pool_slots(&self) -> u32 {
        self.inner
            .runtime
            .engine()
            .pooling_allocator_metrics()
            .map_or(0, |m| m.unused_warm_memories())
    }

    /// A probe that sees the host's threads, tasks and instances go away.
    #[cfg(feature = "test-support")]
    pub fn probe(&self) -> HostProbe {
        HostProbe(self.inner.runtime.tracker().clone())
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
        let runtime = &self.inner.runtime;
        runtime.stop_accepting();
        let deadline = tokio::time::Instant::now() + timeout;
        while runtime.in_flight() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Events handed to guest lanes and not yet handled.
    pub fn queued_events(&self) -> u64 {
        self.inner.runtime.in_flight()
    }

    /// Checks that `bytes` would be accepted as a plugin: WebAssembly, a component, compiling,
    /// and fitting the `wazoo:plugin@0.1.0` world. Needs no ZooKeeper.
    pub fn check(&self, name: &str, bytes: &[u8]) -> Result<(), PluginError> {
        self.inner.components.prepare(name, bytes).map(|_| ())
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
        self.inner
            .components
            .within_size(name, std::fs::metadata(path).map_err(io)?.len())?;
        let bytes = std::fs::read(path).map_err(io)?;
        self.load(client, name, &bytes, policy, config)
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
        let inner = &self.inner;
        let pre = inner.components.prepare(name, bytes)?;
        fits(name, &pre, &policy)?;
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
                lane::spawn(&inner.runtime, thread)
            }
            IsolationMode::Shared => inner
                .shared_lanes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert_with(|| lane::spawn(&inner.runtime, 0))
                .clone(),
        };
        // The plugin's requests are its own tenant's: admitted up to its cap, served in turn
        // with everyone else's.
        let tenant = Tenant::new(name, policy.max_in_flight);
        let state = Arc::new(PluginState::new(
            name,
            policy,
            config,
            client.with_lanes(inner.forward.clone()).for_tenant(tenant),
            pre,
            lanes,
            inner.runtime.clone(),
        ));
        tracing::info!(plugin = name, "plugin loaded");
        Ok(Plugin {
            state,
            host: self.clone(),
        })
    }
}

/// A loaded plugin. Dropping it (or [`Plugin::unload`]) stops its bindings and lanes. It keeps
/// its host's threads running (see [`PluginHost`]).
pub struct Plugin {
    state: Arc<PluginState>,
    host: PluginHost,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", self.state.name())
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        self.state.name()
    }

    /// Its counters.
    pub fn stats(&self) -> PluginStats {
        self.state.stats()
    }

    /// The counters of this plugin's events on one of its guest lanes: handled, queued, the
    /// handler time and queueing time histograms, traps (as `panics`). With
    /// [`IsolationMode::PerPlugin`] that is the whole lane; with [`IsolationMode::Shared`] this
    /// plugin's share of the shared lane.
    pub fn lane_metrics(&self, lane: LaneKind) -> LaneMetrics {
        self.state.lane(lane).snapshot()
    }

    /// Binds the plugin to events. Watch bindings need the path in the plugin's read
    /// allow-list.
    pub async fn bind(&self, binding: Binding) -> Result<(), PluginError> {
        let s = &self.state;
        let bind_err = |reason: String| PluginError::Bind {
            name: s.name().to_string(),
            reason,
        };
        match &binding {
            Binding::Session => {
                // The session's registry must not keep the plugin alive: a weak handle.
                let shared = Arc::downgrade(s);
                let id = s.client().add_listener(move |ev: SessionEvent, info| {
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
                s.listening(id);
                Ok(())
            }
            Binding::Data(p)
            | Binding::Exists(p)
            | Binding::Children(p)
            | Binding::Persistent(p)
            | Binding::PersistentRecursive(p) => {
                if !s.policy().may_read(p) {
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
        let name = self.state.name();
        let pre = self.host.inner.components.prepare(name, bytes)?;
        fits(name, &pre, self.state.policy())?;
        self.state.replace_code(pre);
        tracing::info!(plugin = %name, "plugin reloaded");
        Ok(())
    }

    /// Queues a synthetic watch event on the plugin's watch lane, as if ZooKeeper had sent it
    /// (for benchmarks and tests of the runtime itself). False if the plugin no longer takes
    /// events.
    #[cfg(feature = "test-support")]
    pub fn inject_watch(&self, path: &str, seq: u64) -> bool {
        self.state.send(
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
    #[cfg(feature = "test-support")]
    pub fn inject_session(&self, seq: u64) -> bool {
        self.state.send(
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
    #[cfg(feature = "test-support")]
    pub async fn rebuild_instances(&self, n: usize) -> Result<(Duration, Duration), String> {
        let shared = self.state.clone();
        self.state
            .runtime()
            .tasks()
            .spawn(async move {
                let _ticking = shared.runtime().ticker().enter();
                let before = shared.stats();
                let deadline = Arc::new(Deadline::new());
                for _ in 0..n {
                    drop(build(&shared, LaneKind::Watch, &deadline).await?);
                }
                let after = shared.stats();
                Ok((
                    after.build_time - before.build_time,
                    after.init_time - before.init_time,
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
        self.state.unload();
        let host = &self.host.inner;
        if host.cfg.isolation == IsolationMode::PerPlugin {
            let mut load = host.thread_load.lock().unwrap_or_else(|p| p.into_inner());
            load[self.state.lane_thread()] -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_dropped_host_stops_its_threads() {
        let host = PluginHost::new(PluginHostConfig {
            max_instances: 4,
            ..Default::default()
        })
        .unwrap();
        let probe = host.inner.runtime.tracker().clone();
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
            !probe.wait_none(Duration::from_millis(50)),
            "a clone keeps it running"
        );
        drop(clone);
        assert!(
            probe.wait_none(Duration::from_secs(10)),
            "{} threads or tasks still live",
            probe.live()
        );
    }
}
