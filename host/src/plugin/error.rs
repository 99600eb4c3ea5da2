//! Why a plugin could not be loaded or bound, or the host not set up.

use std::path::PathBuf;

#[cfg(doc)]
use super::PluginHostConfig;

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
