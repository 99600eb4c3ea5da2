//! Components in use: compiling (or loading from the [`Cache`]), linking, and the checks at
//! load (size, header, memory against the policy). Plugins of one component share its code
//! and its pre-linked instance (`InstancePre`), kept while a loaded plugin uses it.
//!
//! Generic over the Store's data `T` only so that this sits below the plugin state, which
//! holds the [`Prepared`] component its lanes build instances from.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, Linker};
use wasmtime::Engine;

use super::bindings::PluginPre;
use super::cache::Cache;
use super::error::PluginError;
use super::policy::Policy;

/// A component compiled and linked for one or more loaded plugins.
pub(crate) struct Prepared<T: 'static> {
    pre: PluginPre<T>,
    /// Keeps the host's entry for this component alive while the plugin uses it.
    _users: Arc<()>,
}

impl<T: 'static> Prepared<T> {
    /// The pre-linked component, from which instances are built.
    pub(crate) fn pre(&self) -> &PluginPre<T> {
        &self.pre
    }
}

/// The host's record of a prepared component (see [`Components::prepared`]).
struct PreparedEntry<T: 'static> {
    bytes: Arc<[u8]>,
    pre: PluginPre<T>,
    users: std::sync::Weak<()>,
}

/// Compiles and links components, and keeps those in use.
pub(crate) struct Components<T: 'static> {
    engine: Engine,
    linker: Linker<T>,
    /// The compilation cache, if [`PluginHostConfig::cache_dir`](super::PluginHostConfig::cache_dir)
    /// names one.
    cache: Option<Cache>,
    /// [`PluginHostConfig::max_component_bytes`](super::PluginHostConfig::max_component_bytes).
    max_bytes: usize,
    /// Components already compiled and linked, by content, while a loaded plugin uses them:
    /// plugins of the same component share its code and its pre-linked instance.
    prepared: Mutex<HashMap<u64, Vec<PreparedEntry<T>>>>,
}

impl<T: 'static> Components<T> {
    pub(crate) fn new(
        engine: Engine,
        linker: Linker<T>,
        cache: Option<Cache>,
        max_bytes: usize,
    ) -> Self {
        Components {
            engine,
            linker,
            cache,
            max_bytes,
            prepared: Mutex::new(HashMap::new()),
        }
    }

    /// How many distinct components loaded plugins use.
    #[cfg(feature = "test-support")]
    pub(crate) fn in_use(&self) -> usize {
        let map = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        map.values()
            .flatten()
            .filter(|e| e.users.strong_count() > 0)
            .count()
    }

    /// Refuses a component larger than [`PluginHostConfig::max_component_bytes`](super::PluginHostConfig::max_component_bytes).
    pub(crate) fn within_size(&self, name: &str, len: u64) -> Result<(), PluginError> {
        let max = self.max_bytes as u64;
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

    /// Checks the bytes, compiles (or loads from the cache) and links.
    pub(crate) fn prepare(&self, name: &str, bytes: &[u8]) -> Result<Prepared<T>, PluginError> {
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
            let mut map = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
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
        let pre = self
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
        let mut map = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
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
        match &self.cache {
            Some(cache) => cache.compile(&self.engine, name, bytes),
            None => Component::new(&self.engine, bytes).map_err(|e| PluginError::Invalid {
                name: name.to_string(),
                reason: format!("{e:#}"),
            }),
        }
    }
}

/// Refuses, at load, a component whose every instance would fail to build under `policy`.
/// What the pooling allocator cannot hold (a memory larger than
/// [`PluginHostConfig::max_memory`](super::PluginHostConfig::max_memory), more memories,
/// tables or core instances than a plugin may have) wasmtime refuses as it compiles or
/// deserializes; the policy's own memory limit, which differs between plugins of one
/// component, is checked here.
pub(crate) fn fits<T: 'static>(
    name: &str,
    pre: &Prepared<T>,
    policy: &Policy,
) -> Result<(), PluginError> {
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
