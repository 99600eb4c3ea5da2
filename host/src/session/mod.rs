//! The session: one actor task per client that owns the socket and everything that depends on
//! it (handshake, pings, xids, requests in flight, the watch registry, auth replay, reconnects).
//!
//! **Architecture Invariant:** the actor never runs or awaits user code. It talks to the rest of
//! the client only through channels: requests come in on one `mpsc`, each answered exactly once
//! on its own `oneshot`; watch events and state changes go out on channels it never waits on.

mod actor;
mod connect;
mod connection;
mod fair;
mod frames;
pub(crate) mod hosts;
mod lowat;
mod pending;
mod sasl;
mod state;
mod timers;
pub(crate) mod transport;
pub(crate) mod watches;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot};

pub(crate) use actor::spawn;
pub(crate) use fair::OwnerId;
pub use sasl::SaslConfig;
use watches::{WatchKind, WatchSink};

use crate::dispatch::{CallbackInfo, LaneKind, Lanes};
use crate::error::Result;
use crate::proto::records::{KeeperState, WatcherType};

/// Identifies a state listener added with [`crate::Client::add_listener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

impl ListenerId {
    /// A new id, never handed out before in this process.
    pub(crate) fn next() -> ListenerId {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        ListenerId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What the client asks of the session.
#[derive(Debug)]
pub(crate) enum Command {
    /// A request: a frame ready to send but for its xid.
    Request(Request),
    /// Add credentials to the session (and to every later connection of it).
    AddAuth {
        scheme: String,
        auth: Vec<u8>,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Hear every session state change from now on (first the current state).
    Listen(Listener),
    /// Stop telling a lane listener.
    Unlisten(ListenerId),
    /// Drop watchers at a (server) path whose owners are gone; remove emptied watches on the
    /// server.
    Prune { path: String },
    /// Close the session and stop.
    Close(oneshot::Sender<()>),
}

/// A request on its way to the server.
#[derive(Debug)]
pub(crate) struct Request {
    /// A frame from `proto::ops::start_frame`, complete but for its length and xid.
    pub frame: BytesMut,
    /// Where the reply body (after the header) or error goes.
    pub reply: ReplySink,
    /// What the session does to its watch registry when the reply arrives.
    pub effect: Effect,
    /// Whose request it is (0: the embedding service's own); the session serves owners with
    /// requests waiting in turn (`fair.rs`).
    pub owner: OwnerId,
}

/// Where a request's outcome goes.
pub(crate) enum ReplySink {
    /// To an awaiting future.
    Oneshot(oneshot::Sender<Result<Bytes>>),
    /// To a callback on the completion lane.
    Lane {
        lanes: Lanes,
        job: Box<dyn FnOnce(Result<Bytes>, CallbackInfo) + Send>,
    },
}

impl std::fmt::Debug for ReplySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplySink::Oneshot(_) => f.write_str("Oneshot"),
            ReplySink::Lane { lanes, .. } => write!(f, "Lane({})", lanes.name()),
        }
    }
}

impl ReplySink {
    /// Delivers the outcome (exactly once: it consumes the sink). `seq` is the actor's stamp.
    pub(crate) fn complete(self, seq: u64, res: Result<Bytes>) {
        match self {
            ReplySink::Oneshot(tx) => {
                let _ = tx.send(res);
            }
            ReplySink::Lane { lanes, job } => lanes.submit(
                LaneKind::Completion,
                seq,
                "completion",
                Box::new(move |info| job(res, info)),
            ),
        }
    }
}

/// Who hears session state changes.
pub(crate) enum Listener {
    /// A stream ([`crate::StateEvents`]).
    Channel(mpsc::UnboundedSender<SessionEvent>),
    /// A callback on a session lane.
    Lane {
        id: ListenerId,
        lanes: Lanes,
        f: std::sync::Arc<dyn Fn(SessionEvent, CallbackInfo) + Send + Sync>,
    },
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listener::Channel(_) => f.write_str("Channel"),
            Listener::Lane { id, .. } => write!(f, "Lane({id:?})"),
        }
    }
}

impl Listener {
    /// Tells the listener; false when it is gone.
    pub(crate) fn tell(&self, seq: u64, ev: &SessionEvent) -> bool {
        match self {
            Listener::Channel(tx) => tx.send(ev.clone()).is_ok(),
            Listener::Lane { lanes, f, .. } => {
                let f = f.clone();
                let ev = ev.clone();
                lanes.submit(
                    LaneKind::Session,
                    seq,
                    "session",
                    Box::new(move |info| f(ev, info)),
                );
                true
            }
        }
    }
}

/// A request's side effect on the session's watch registry, applied when its reply arrives.
#[derive(Debug)]
pub(crate) enum Effect {
    None,
    /// Register a watcher (exists: a data watch if the node exists, an exist watch on NoNode;
    /// others only on success).
    Watch {
        kind: WatchKind,
        path: String,
        sink: WatchSink,
    },
    /// On success, forget the watchers that `removeWatches` removed on the server.
    RemoveWatches {
        path: String,
        user_path: String,
        watcher_type: WatcherType,
    },
}

/// Kazoo's session states, plus read-only and closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionState {
    /// Connected to a read-write server.
    Connected,
    /// Connected to a read-only server (quorum lost): reads work, writes fail with
    /// [`crate::Error::NotReadOnly`].
    ConnectedReadOnly,
    /// The connection dropped; the session may still be alive. Requests wait for the reconnect.
    Suspended,
    /// The session is gone (expired): its ephemerals and watches too. The client starts a new one.
    Lost,
    /// The client was closed.
    Closed,
}

/// A session state change, as state listeners hear it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    /// The new state.
    pub state: SessionState,
    /// ZooKeeper's raw state behind it.
    pub keeper_state: KeeperState,
    /// The session id (0 when there is none).
    pub session_id: i64,
}

/// Tunables of a session, set through [`crate::ClientBuilder`].
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    pub session_timeout: Duration,
    pub connect_timeout: Option<Duration>,
    pub allow_read_only: bool,
    pub max_frame: usize,
    pub max_queued: usize,
    pub max_backoff: Duration,
    pub set_watches_batch: usize,
    /// Run the actor as a task on the caller's runtime instead of a thread of its own.
    pub on_caller_runtime: bool,
    /// TLS settings and which servers use them (see [`crate::ClientBuilder::tls`]).
    pub tls: Option<hosts::TlsSetting>,
    /// SASL credentials, used on every connection right after the handshake.
    pub sasl: Option<SaslConfig>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            session_timeout: Duration::from_secs(10),
            connect_timeout: None,
            allow_read_only: false,
            max_frame: crate::proto::frame::DEFAULT_MAX_FRAME,
            max_queued: 10_000,
            max_backoff: Duration::from_secs(2),
            set_watches_batch: 128 * 1024,
            on_caller_runtime: false,
            tls: None,
            sasl: None,
        }
    }
}

/// Connection attempts failed for a reason a person must fix (certificates, credentials).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectFailure {
    /// The last such error.
    pub error: crate::error::Error,
    /// Whether every server of the last pass failed that way (so waiting will not help).
    pub every_server: bool,
}

/// What the client can read of the session without asking it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub state: SessionState,
    pub session_id: i64,
    pub negotiated_timeout: Duration,
    /// Why connecting keeps failing, when a person must fix it; cleared on connecting.
    pub failure: Option<ConnectFailure>,
}
