//! The host side of the guest's imports, one file per WIT interface: `zookeeper.rs` (ZooKeeper
//! through the plugin's allow-lists; every check happens there, before anything reaches the
//! session), `log.rs`, and `lane.rs` (a running handler takes the events queued behind its
//! own). Each is implemented on [`ImportCtx`], the imports' narrow view of a Store's data (as
//! wasmtime-wasi's `WasiCtxView`): the plugin, the running call's meter, the lane's queue.
//! Conversions between the guest's types and the library's are in `convert.rs`.
//!
//! Adding an interface: its WIT in `wit/plugin.wit`, and a file here implementing its `Host`
//! trait on [`ImportCtx`] (the world's linker picks it up).

mod lane;
mod log;
mod zookeeper;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};
use wasmtime::Engine;

use super::bindings::wazoo::plugin::types as wit;
use super::bindings::Plugin as PluginBindings;
use super::error::PluginError;
use super::meter::Meter;
use super::state::{Feed, PluginState, StoreData};
use crate::dispatch::LaneKind;

/// The linker every plugin is linked with: WASI (p2; clocks and randomness, output to the
/// log, no network) and the `wazoo:plugin` imports.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<StoreData>, PluginError> {
    let mut linker = Linker::<StoreData>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| PluginError::Engine(e.to_string()))?;
    PluginBindings::add_to_linker::<StoreData, Imports>(&mut linker, view)
        .map_err(|e| PluginError::Engine(e.to_string()))?;
    Ok(linker)
}

/// What the imports see of a Store's data.
pub(crate) struct ImportCtx<'a> {
    plugin: &'a Arc<PluginState>,
    meter: &'a mut Meter,
    /// While a watch or completion handler runs: its lane's queue.
    feed: &'a mut Option<Feed>,
    /// The lane the instance serves.
    lane: LaneKind,
}

/// Selects [`ImportCtx`] as the imports' view (see [`HasData`]).
struct Imports;

impl HasData for Imports {
    type Data<'a> = ImportCtx<'a>;
}

fn view(data: &mut StoreData) -> ImportCtx<'_> {
    ImportCtx {
        plugin: &data.plugin,
        meter: &mut data.meter,
        feed: &mut data.feed,
        lane: data.lane,
    }
}

impl wit::Host for ImportCtx<'_> {}
