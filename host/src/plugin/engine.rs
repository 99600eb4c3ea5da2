//! The wasmtime engine: epoch interruption, and the pooling allocator sized from
//! [`PluginHostConfig`] (copied memory images, slots kept resident between instances, freed
//! slots reused before never-used ones).

use wasmtime::{Config, Engine};

use super::config::PluginHostConfig;
use super::error::PluginError;

/// How many core instances, tables and memories one guest instance may have.
pub(crate) const STORE_INSTANCES: u32 = 16;
pub(crate) const STORE_TABLES: u32 = 16;
pub(crate) const STORE_MEMORIES: u32 = 4;

/// How much of a free pool slot's memory is kept resident for the next instance (see
/// [`engine`]): a small guest writes a few pages (the top of its stack, its data, the start of
/// its heap), and at most [`wasmtime::PoolingAllocationConfig::max_unused_warm_slots`] free
/// slots (100) keep theirs.
const KEEP_RESIDENT: usize = 256 << 10;

/// The engine every plugin of a host is compiled for and runs on.
pub(crate) fn engine(cfg: &PluginHostConfig) -> Result<Engine, PluginError> {
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
    // What a Store lets one instance have (see `instance::build`): a component beyond it is refused
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
    Engine::new(&config).map_err(|e| PluginError::Engine(e.to_string()))
}
