//! # wazoo
//!
//! A ZooKeeper client for Rust whose callbacks run on Kazoo's three sequential lanes (session
//! events, watch events, completions), natively or inside sandboxed WebAssembly guests.
//!
//! This crate's opinions, up front:
//! - **One actor owns the session.** It runs on a thread of its own and never runs user code, so
//!   pings flow and reconnects happen whatever callbacks do. Every request completes exactly
//!   once: with its result, [`Error::ConnectionLoss`] (in flight when a connection dropped) or
//!   [`Error::SessionExpired`].
//! - **Watches survive reconnects.** One-shot watches are restored with SetWatches2 (the server
//!   replays what was missed); persistent watches are re-added and their watchers get an
//!   explicit [`EventType::Resync`], because the server replays nothing for them.
//! - **Kazoo's state model**: [`SessionState::Connected`], `Suspended`, `Lost`, plus
//!   `ConnectedReadOnly`; a lost session is replaced by a new one automatically.
//! - **Bad input is a typed error**: invalid paths are refused before sending; malformed or
//!   oversized frames close the connection with a typed error, never a panic.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wazoo::Error> {
//! use wazoo::{AddWatchMode, Client, CreateMode, CreateOptions};
//! let zk = Client::connect("127.0.0.1:2181").await?;
//! zk.create_with("/app/config", b"v1", &CreateOptions { makepath: true, ..Default::default() }).await?;
//! let mut changes = zk.add_watch("/app", AddWatchMode::PersistentRecursive).await?;
//! zk.set_data("/app/config", b"v2", None).await?;
//! let ev = changes.next().await.unwrap();
//! assert_eq!(ev.path, "/app/config");
//! # Ok(()) }
//! ```
//!
//! ## Features
//! - `plugins` (on by default): the wasm plugin host (`PluginHost`, `Plugin`, `Policy`,
//!   `Binding`), with wasmtime and Cranelift. With `default-features = false` wazoo is the
//!   ZooKeeper client with its lanes and recipes, and builds about 40 crates instead of about 170.
//! - `test-support`: hooks for wazoo's own tests and benchmarks (fault switches, probes);
//!   not part of the API, not covered by semver.
//! - `fuzzing`: the decoders' entry point for the fuzz targets; not part of the API either.

mod blocking;
mod client;
mod dispatch;
mod error;
mod path;
#[cfg(feature = "plugins")]
mod plugin;
mod proto;

/// Entry points for the fuzzers (`fuzz/`); not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use proto::fuzz as __fuzz;
mod rand;
mod recipe;
mod retry;
mod session;
mod tenant;
mod tls;

pub use blocking::{block_on, BlockingClient};
pub use client::{
    Client, ClientBuilder, CreateOptions, OneshotWatcher, Pending, PendingFuture,
    PersistentWatcher, StateEvents,
};
pub use dispatch::{
    CallbackInfo, Histogram, LaneKind, LaneMetrics, LaneScheduling, Lanes, DEFAULT_SPIN,
};
pub use error::{Error, Result};
pub use path::validate_path;
// For wazoo's own tests and benchmarks: what of a host is still live.
#[cfg(all(feature = "plugins", feature = "test-support"))]
pub use plugin::HostProbe;
#[cfg(feature = "plugins")]
pub use plugin::{
    Binding, IsolationMode, Plugin, PluginError, PluginHost, PluginHostConfig, PluginStats, Policy,
};
pub use proto::multi::{Op, OpResult, ReadOp, ReadResult};
pub use proto::records::{
    Acl, AddWatchMode, ClientInfo, CreateMode, EventType, Id, KeeperState, Perms, Stat,
    WatchedEvent, WatcherType,
};
pub use recipe::{
    create_protected, Barrier, BlockingLock, ChildrenWatch, Counter, CounterChange, DataWatch,
    DoubleBarrier, Election, FencingToken, LeaderLatch, Lock, LockEvents, LockState, LockingQueue,
    PartitionEvents, PartitionState, Party, PersistentNode, Queue, Semaphore, SetPartitioner,
    TreeCache, TreeEvent, TreeEvents, DEFAULT_PRIORITY,
};
pub use retry::RetryPolicy;
pub use session::{ListenerId, SaslConfig, SessionEvent, SessionState};
pub use tenant::{Tenant, DEFAULT_MAX_IN_FLIGHT};
pub use tls::{TlsConfig, TlsErrorKind};
