//! The plugin runtime: wasm components as callbacks, sandboxed, on their own lanes.
//!
//! # Engine, plugins, instances, stores
//!
//! One [`PluginHost`] per process owns one wasmtime `Engine` (epoch interruption on, the pooling
//! allocator sized from [`PluginHostConfig`]), a thread that ticks the epoch, a small runtime on
//! which guest lanes run, and an on-disk cache of precompiled components keyed by the content
//! hash and the engine's compatibility hash.
//!
//! A [`Plugin`] is one loaded component with its [`Policy`] and configuration: compiled once,
//! linked once (an `InstancePre`). It gets three *guest lanes*, one per [`LaneKind`], each an
//! async task with its own instance in its own `Store`, created lazily on the lane's first event.
//! Instances share no memory (the `context` bytes of an async call carry state to the completion
//! lane). A guest never blocks a thread: a ZooKeeper import awaits the session actor, and a
//! spinning guest yields at every epoch tick, so a thousand plugins are a thousand sets of tasks,
//! not threads.
//!
//! # Limits
//!
//! Memory is capped per instance. The compute budget counts guest execution only: time awaiting
//! ZooKeeper inside an import is never charged, and after each epoch yield the guest is charged
//! with its thread's CPU clock, so time the OS kept it off the CPU is not charged either. A
//! separate wall-clock limit bounds the whole callback. Exhausting either traps the call.
//!
//! # Failure
//!
//! Any trap poisons the whole `Store`, so the instance is dropped and rebuilt from the
//! `InstancePre` before the lane's next event, after an exponential backoff. A plugin that
//! crashes `max_crashes` times within `crash_window` is disabled (and says so in the log); other
//! plugins never notice.
//!
//! # Events
//!
//! The session actor hands events to a shared set of *forwarding* native lanes whose callbacks
//! only push into the guest lanes' channels (they never block), so the stamps and the per-lane
//! order survive, and per-plugin isolation costs no threads. Each plugin counts its events per
//! lane ([`Plugin::lane_metrics`]: handled, queued, handler and queueing time histograms).
//!
//! A watch or completion handler may take the events queued behind its own for the same plugin
//! (`wazoo:plugin/lane`, which the guest SDK uses): a burst costs one call into the guest
//! instead of one per event, the largest part of an empty callback's cost. Each event still
//! has its own budget, wall-clock limit and statistics; a trap loses only the event being
//! handled, and the rest stay queued for the rebuilt instance ([`PluginStats::taken`] counts
//! the events taken this way).
//!
//! # Lifetime
//!
//! Nothing the host's threads run holds what keeps them running: the session's registry holds
//! plugins weakly, and only [`PluginHost`] and [`Plugin`] handles own the threads. Dropping the
//! last handle stops the guest runtime, the epoch ticker and the forwarding lanes, and releases
//! every instance. Unloading a plugin removes its session listener and its one-shot watches.
//!
//! # Layering
//!
//! A module uses only modules on the lines above its own (besides `bindings`, the generated
//! WIT bindings, and the rest of the crate); rustdoc links aside, none uses one on its own line
//! or below, so there are no cycles:
//!
//! ```text
//! error config policy stdio stats convert epoch    leaves
//! cache (error)  engine (config, error)  meter (epoch)
//! component    compiles and links components; generic over the Store's data
//! runtime      the engine, epoch ticker, guest threads and in-flight count all plugins share
//! state        a plugin's state, its lanes' events and queues, its Stores' data
//! watches      kept-armed, persistent and one-shot watches
//! imports/     the WIT imports, on a view of the Store's data (`zookeeper.rs` uses watches)
//! instance     building an instance: Store, WASI, limits, meter, `init`
//! lane         the lane task: events in order, instances rebuilt after a crash with backoff
//! host         `PluginHost` and `Plugin`: loading, binding, reloading, the threads' lifetime
//! ```

mod cache;
mod component;
mod config;
mod convert;
mod engine;
mod epoch;
mod error;
mod host;
mod imports;
mod instance;
mod lane;
mod meter;
mod policy;
mod runtime;
mod state;
mod stats;
mod stdio;
mod watches;

pub use config::{IsolationMode, PluginHostConfig};
pub use error::PluginError;
#[cfg(feature = "test-support")]
pub use host::HostProbe;
pub use host::{Binding, Plugin, PluginHost};
pub use policy::Policy;
pub use stats::PluginStats;

/// The generated bindings of `wit/plugin.wit`.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        world: "plugin",
        path: "wit",
        imports: {
            // Taking the next queued event never waits: a plain call, no future per event.
            "wazoo:plugin/lane.next-watch": trappable,
            "wazoo:plugin/lane.next-completion": trappable,
            default: async | trappable,
        },
        exports: { default: async },
    });
}
