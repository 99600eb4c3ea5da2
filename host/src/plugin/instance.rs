//! Building an instance: a fresh Store (its WASI context, limits and compute meter), the
//! instantiation from the plugin's pre-linked component, and `init(config)`.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi::WasiCtx;

use super::bindings::Plugin as PluginBindings;
use super::engine::{STORE_INSTANCES, STORE_MEMORIES, STORE_TABLES};
use super::epoch::Deadline;
use super::meter::Meter;
use super::state::{PluginState, StoreData};
use super::stdio::{GuestOutput, Stream};
use crate::dispatch::{LaneKind, Tracked};

/// One guest instance and the code generation it was built from.
pub(crate) struct Instance {
    pub(crate) generation: u64,
    pub(crate) store: Store<StoreData>,
    pub(crate) bindings: PluginBindings,
    /// Counted by the host until the instance is dropped.
    _tracked: Tracked,
}

/// Builds an instance in a fresh Store and runs `init(config)` on it, for the plugin's `lane`,
/// whose wall-clock `deadline` its meter moves.
pub(crate) async fn build(
    shared: &Arc<PluginState>,
    lane: LaneKind,
    deadline: &Arc<Deadline>,
) -> Result<Instance, String> {
    let began = Instant::now();
    let (generation, pre) = shared.code();
    let policy = shared.policy();
    let runtime = shared.runtime();
    let mut wasi = WasiCtx::builder();
    wasi.stdout(GuestOutput {
        plugin: shared.name().clone(),
        stream: Stream::Stdout,
    });
    wasi.stderr(GuestOutput {
        plugin: shared.name().clone(),
        stream: Stream::Stderr,
    });
    wasi.allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    let limits = StoreLimitsBuilder::new()
        .memory_size(policy.memory_limit)
        .instances(STORE_INSTANCES as usize)
        .tables(STORE_TABLES as usize)
        .memories(STORE_MEMORIES as usize)
        .trap_on_grow_failure(false)
        .build();
    let meter = Meter::new(
        policy.compute_budget,
        policy.wall_limit,
        runtime.epoch_tick(),
        deadline.clone(),
        runtime.ticker().clone(),
        shared.thread_slot(lane),
    );
    let data = StoreData::new(shared.clone(), lane, wasi.build(), limits, meter);
    let mut store = Store::new(runtime.engine(), data);
    store.limiter(|s| &mut s.limits);
    store.epoch_deadline_callback(|mut ctx| ctx.data_mut().meter.on_epoch());
    // Instantiation runs wasm (start functions), so the deadline must be set first.
    store.data_mut().start_call(Instant::now());
    store.set_epoch_deadline(1);
    let instantiated =
        tokio::time::timeout(policy.wall_limit, pre.instantiate_async(&mut store)).await;
    store.data_mut().end_call(Instant::now());
    let bindings = instantiated
        .map_err(|_| "instantiation exceeded the wall-clock limit".to_string())?
        .map_err(|e| describe_trap(&e))?;
    let built = Instant::now();
    shared
        .counters()
        .built(built.duration_since(began).as_nanos() as u64);
    store.data_mut().start_call(built);
    let init = tokio::time::timeout(
        policy.wall_limit,
        bindings.call_init(&mut store, shared.config()),
    )
    .await;
    store.data_mut().end_call(Instant::now());
    let init = init
        .map_err(|_| "init exceeded the wall-clock limit".to_string())?
        .map_err(|e| describe_trap(&e))?;
    shared
        .counters()
        .initialised(built.elapsed().as_nanos() as u64);
    if let Err(msg) = init {
        return Err(format!("init refused its configuration: {msg}"));
    }
    Ok(Instance {
        generation,
        store,
        bindings,
        _tracked: runtime.tracker().enter(),
    })
}

/// A trap's message, with wasmtime's own description where it has one.
pub(crate) fn describe_trap(e: &wasmtime::Error) -> String {
    if let Some(t) = e.downcast_ref::<wasmtime::Trap>() {
        return format!("{t}");
    }
    format!("{e:#}")
}
