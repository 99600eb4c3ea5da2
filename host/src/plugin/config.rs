//! The settings of a [`PluginHost`].

use std::path::PathBuf;
use std::time::Duration;

#[cfg(doc)]
use super::{PluginError, PluginHost};

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
