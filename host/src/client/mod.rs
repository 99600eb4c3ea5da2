//! The public async client: every ZooKeeper operation, Kazoo's conveniences, watches and session
//! state. A [`Client`] is a cheap handle (clone it freely) onto one session actor.
//!
//! This file holds the handle and what every request shares (sending, chroot, frames, checks);
//! [`ClientBuilder`] is in `builder.rs`, the session's state and listeners in `state.rs`, the
//! operations in `operations.rs`, the watches in `watchers.rs`, Kazoo's conveniences in
//! `conveniences.rs`, [`Pending`] in `pending.rs` and the reply decoders in `decode.rs`.

mod builder;
mod conveniences;
mod decode;
mod operations;
mod pending;
mod state;
mod watchers;

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use tokio::sync::{mpsc, watch};

use crate::dispatch::Lanes;
use crate::error::{Error, Result};
use crate::path::{validate_path, Chroot};
use crate::proto::ops::{self, OpCode};
use crate::proto::records::{Acl, CreateMode};
use crate::session::{Command, Effect, OwnerId, ReplySink, Request, Snapshot};
use crate::tenant::Tenant;

pub use builder::ClientBuilder;
pub use operations::CreateOptions;
pub use pending::{Pending, PendingFuture};
pub use state::StateEvents;
// For the crate's own users of the client; the public path is `wazoo::ListenerId`.
pub(crate) use crate::session::ListenerId;
pub use watchers::{OneshotWatcher, PersistentWatcher};

#[derive(Debug)]
pub(crate) struct Inner {
    tx: mpsc::UnboundedSender<Command>,
    snap: watch::Receiver<Snapshot>,
    chroot: Chroot,
    /// See [`ClientBuilder::suppress_resync_for_tests`].
    suppress_resync: bool,
}

/// An async ZooKeeper client: a handle onto one session. Clone it freely; the session closes
/// when [`Client::close`] is called or the last handle is dropped.
///
/// Single-request operations return a [`Pending`]: `.await` it for the result, or
/// [`Pending::rawlink`] a callback that runs on the client's completion lane.
///
/// ```no_run
/// # async fn demo() -> Result<(), wazoo::Error> {
/// use wazoo::{Client, CreateMode};
/// let zk = Client::connect("127.0.0.1:2181").await?;
/// zk.create("/greeting", b"hello", CreateMode::Persistent).await?;
/// let (data, stat) = zk.get_data("/greeting").await?;
/// assert_eq!(data, b"hello");
/// zk.set_data("/greeting", b"hi", Some(stat.version)).await?;
/// zk.delete("/greeting", None).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
    lanes: Lanes,
    /// Whose requests these are, when not the embedding service's own.
    tenant: Option<Arc<Tenant>>,
}

impl Client {
    /// A handle on the same session whose callbacks run on other lanes: how each plugin gets
    /// lanes of its own (per-plugin isolation) while sharing one connection.
    pub fn with_lanes(&self, lanes: Lanes) -> Client {
        Client {
            inner: self.inner.clone(),
            lanes,
            tenant: self.tenant.clone(),
        }
    }

    /// A handle on the same session whose requests belong to `tenant`: they are admitted up to
    /// the tenant's cap of requests in flight (an awaited request waits for a slot; a
    /// [`Pending::rawlink`] fails with [`Error::Busy`]), so what one tenant can queue in the
    /// session is bounded. How the plugin host keeps plugins from starving each other.
    ///
    /// ```no_run
    /// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
    /// use wazoo::Tenant;
    /// let batch = zk.for_tenant(Tenant::new("batch-import", 64));
    /// batch.get_data("/config").await?; // at most 64 of batch's requests in flight
    /// # Ok(()) }
    /// ```
    pub fn for_tenant(&self, tenant: Arc<Tenant>) -> Client {
        Client {
            inner: self.inner.clone(),
            lanes: self.lanes.clone(),
            tenant: Some(tenant),
        }
    }

    /// The tenant this handle's requests belong to (`None`: the embedding service's own).
    pub fn tenant(&self) -> Option<&Arc<Tenant>> {
        self.tenant.as_ref()
    }

    /// The lanes this handle's callbacks run on.
    pub fn lanes(&self) -> &Lanes {
        &self.lanes
    }

    fn owner(&self) -> OwnerId {
        self.tenant.as_ref().map_or(0, |t| t.owner())
    }

    fn send(&self, cmd: Command) -> Result<()> {
        self.inner.tx.send(cmd).map_err(|_| Error::Closed)
    }

    fn send_request(&self, frame: BytesMut, effect: Effect, reply: ReplySink) -> Result<()> {
        self.inner
            .tx
            .send(Command::Request(Request {
                frame,
                reply,
                effect,
                owner: self.owner(),
            }))
            .map_err(|e| match e.0 {
                Command::Request(r) => {
                    // The session is gone; a lane callback still runs, exactly once.
                    r.reply.complete(0, Err(Error::Closed));
                    Error::Closed
                }
                _ => Error::Closed,
            })
    }

    fn server_path(&self, path: &str) -> String {
        self.inner.chroot.apply(path)
    }

    /// The server's path for a create: a sequential child of the root is a sequential child
    /// of the chroot (the server appends the counter, so `/app` would make the sibling
    /// `/app0000000001`).
    fn server_create_path(&self, path: &str, mode: CreateMode) -> String {
        let mut sp = self.server_path(path);
        if path == "/" && mode.is_sequential() && sp != "/" {
            sp.push('/');
        }
        sp
    }

    /// A frame for `opcode` whose body starts with the (chrooted) path.
    fn path_frame(&self, opcode: OpCode, path: &str, extra: usize) -> BytesMut {
        let c = &self.inner.chroot;
        let len = c.server_len(path);
        let mut f = ops::start_frame(opcode, len + 4 + extra);
        f.put_i32(len as i32);
        c.put(path, &mut f);
        f
    }

    fn path_req(&self, opcode: OpCode, path: &str) -> Result<(BytesMut, Effect)> {
        check(path)?;
        Ok((self.path_frame(opcode, path, 0), Effect::None))
    }
}

/// What every create (alone or in a multi) must satisfy before it is sent.
pub(super) fn check_create(path: &str, acl: &[Acl], mode: CreateMode) -> Result<()> {
    validate_path(path, mode.is_sequential())?;
    if acl.is_empty() {
        return Err(Error::InvalidAcl);
    }
    match mode.ttl() {
        Some(ttl) if ttl <= 0 => Err(Error::InvalidArgument(format!(
            "a TTL must be positive, got {ttl}"
        ))),
        _ => Ok(()),
    }
}

pub(super) fn check(path: &str) -> Result<()> {
    validate_path(path, false)
}
