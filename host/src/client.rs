//! The public async client: every ZooKeeper operation, Kazoo's conveniences, watches and session
//! state. A [`Client`] is a cheap handle (clone it freely) onto one session actor.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{Error, Result};
use crate::path::{validate_path, Chroot};
use crate::proto::multi::{self, Op, OpResult, ReadOp, ReadResult};
use crate::proto::ops::{self, op};
use crate::proto::records::{
    Acl, AddWatchMode, ClientInfo, CreateMode, EventType, KeeperState, Stat, WatchedEvent,
    WatcherType,
};
use crate::session::hosts::ConnectString;
use crate::session::watches::{WatchKind, WatchSink};
use crate::session::{
    self, Command, Effect, Request, SessionConfig, SessionEvent, SessionState, Snapshot,
};

/// Configures and connects a [`Client`].
///
/// ```no_run
/// # async fn demo() -> Result<(), wazoo::Error> {
/// use std::time::Duration;
/// let zk = wazoo::Client::builder("127.0.0.1:2181,127.0.0.1:2182/app")
///     .session_timeout(Duration::from_secs(6))
///     .allow_read_only(true)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    connect_string: String,
    cfg: SessionConfig,
    wait: Duration,
    auth: Vec<(String, Vec<u8>)>,
}

impl ClientBuilder {
    /// The session timeout to ask for (default 10 s; the server clamps it to 2..20 ticks).
    pub fn session_timeout(mut self, t: Duration) -> Self {
        self.cfg.session_timeout = t;
        self
    }
    /// Time allowed for each server's TCP connect and handshake (default: session timeout divided
    /// by the number of servers, at least 500 ms).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.cfg.connect_timeout = Some(t);
        self
    }
    /// Accept read-only servers when quorum is lost (default false). Reads then work and writes
    /// fail with [`Error::NotReadOnly`]; the client keeps probing for a read-write server.
    pub fn allow_read_only(mut self, yes: bool) -> Self {
        self.cfg.allow_read_only = yes;
        self
    }
    /// Largest frame accepted from the server (default 1 MiB plus headers, as `jute.maxbuffer`).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.cfg.max_frame = bytes;
        self
    }
    /// How many requests may wait while disconnected before new ones fail with
    /// [`Error::QueueFull`] (default 10,000).
    pub fn max_queued_requests(mut self, n: usize) -> Self {
        self.cfg.max_queued = n;
        self
    }
    /// The longest pause between two reconnect cycles (default 2 s; jittered).
    pub fn max_backoff(mut self, t: Duration) -> Self {
        self.cfg.max_backoff = t;
        self
    }
    /// How long [`ClientBuilder::connect`] waits for the first connection (default 15 s).
    pub fn wait_for_connection(mut self, t: Duration) -> Self {
        self.wait = t;
        self
    }
    /// Credentials to add before anything else (replayed on every reconnect), e.g.
    /// `("digest", b"user:password")`.
    pub fn auth(mut self, scheme: &str, auth: &[u8]) -> Self {
        self.auth.push((scheme.to_string(), auth.to_vec()));
        self
    }

    /// Starts the session and waits until it is connected (read-write, or read-only when
    /// allowed). Fails with [`Error::Timeout`] if no server accepted it in time.
    pub async fn connect(self) -> Result<Client> {
        let cs = ConnectString::parse(&self.connect_string)?;
        let chroot = cs.chroot.clone();
        let (tx, snap) = session::spawn(self.cfg, cs)
            .map_err(|e| Error::InvalidArgument(format!("cannot start the session thread: {e}")))?;
        let client = Client {
            inner: Arc::new(Inner { tx, snap, chroot }),
        };
        let mut auth_replies = Vec::new();
        for (scheme, auth) in self.auth {
            let (reply, rx) = oneshot::channel();
            client.send(Command::AddAuth {
                scheme,
                auth,
                reply,
            })?;
            auth_replies.push(rx);
        }
        let mut snap = client.inner.snap.clone();
        let connected = tokio::time::timeout(self.wait, async {
            loop {
                let s = *snap.borrow_and_update();
                if matches!(
                    s.state,
                    SessionState::Connected | SessionState::ConnectedReadOnly
                ) {
                    return Ok(());
                }
                if snap.changed().await.is_err() {
                    return Err(Error::Closed);
                }
            }
        })
        .await;
        match connected {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                client.close().await;
                return Err(Error::Timeout(self.wait));
            }
        }
        for rx in auth_replies {
            rx.await.map_err(|_| Error::Closed)??;
        }
        Ok(client)
    }
}

/// Options for [`Client::create_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// The node's mode (default persistent).
    pub mode: CreateMode,
    /// The node's ACL (default `world:anyone` all).
    pub acl: Vec<Acl>,
    /// Create missing parents as persistent nodes, as Kazoo's `makepath=True` (default false).
    pub makepath: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            mode: CreateMode::Persistent,
            acl: Acl::open_unsafe(),
            makepath: false,
        }
    }
}

/// A one-shot watch: resolves once, with the event that triggered it.
#[derive(Debug)]
#[must_use = "a watcher does nothing unless awaited"]
pub struct OneshotWatcher {
    rx: oneshot::Receiver<WatchedEvent>,
}

impl OneshotWatcher {
    /// Waits for the watch to fire. If the session is lost or the client closed first, the event
    /// has type [`EventType::None`] and state `Expired` or `Closed`.
    pub async fn changed(self) -> WatchedEvent {
        self.rx.await.unwrap_or(WatchedEvent {
            event_type: EventType::None,
            keeper_state: KeeperState::Closed,
            path: String::new(),
            zxid: -1,
        })
    }
}

/// A persistent watch's events, until it is removed or the session ends. Dropping it removes
/// the watch on the server once its next event finds nobody listening.
#[derive(Debug)]
pub struct PersistentWatcher {
    rx: mpsc::UnboundedReceiver<WatchedEvent>,
}

impl PersistentWatcher {
    /// The next event: node events, [`EventType::Resync`] after a reconnect (changes made while
    /// away are not replayed by the server), or a final `None`-type event when the session ends;
    /// then `None`.
    pub async fn next(&mut self) -> Option<WatchedEvent> {
        self.rx.recv().await
    }

    /// The next event if one is already there.
    pub fn try_next(&mut self) -> Option<WatchedEvent> {
        self.rx.try_recv().ok()
    }
}

/// A stream of session state changes (see [`Client::state_events`]).
#[derive(Debug)]
pub struct StateEvents {
    rx: mpsc::UnboundedReceiver<SessionEvent>,
}

impl StateEvents {
    /// The next state change; `None` once the client is closed and the `Closed` event was read.
    pub async fn next(&mut self) -> Option<SessionEvent> {
        self.rx.recv().await
    }
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::UnboundedSender<Command>,
    snap: watch::Receiver<Snapshot>,
    chroot: Chroot,
}

/// An async ZooKeeper client: a handle onto one session. Clone it freely; the session closes
/// when [`Client::close`] is called or the last handle is dropped.
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
}

fn check(path: &str) -> Result<()> {
    validate_path(path, false)
}

impl Client {
    /// A builder for a client on `connect_string` (`host:port[,host:port...][/chroot]`).
    pub fn builder(connect_string: &str) -> ClientBuilder {
        ClientBuilder {
            connect_string: connect_string.to_string(),
            cfg: SessionConfig::default(),
            wait: Duration::from_secs(15),
            auth: Vec::new(),
        }
    }

    /// Connects with the defaults.
    pub async fn connect(connect_string: &str) -> Result<Client> {
        Client::builder(connect_string).connect().await
    }

    fn send(&self, cmd: Command) -> Result<()> {
        self.inner.tx.send(cmd).map_err(|_| Error::Closed)
    }

    /// Sends a frame and waits for its reply body.
    async fn call(&self, frame: BytesMut, effect: Effect) -> Result<Bytes> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Request(Request {
            frame,
            reply,
            effect,
        }))?;
        rx.await.map_err(|_| Error::Closed)?
    }

    fn server_path(&self, path: &str) -> String {
        self.inner.chroot.apply(path)
    }

    fn user_path(&self, path: &str) -> String {
        self.inner.chroot.strip(path).to_string()
    }

    fn path_frame(&self, opcode: i32, path: &str, extra: usize) -> BytesMut {
        let sp = self.server_path(path);
        let mut f = ops::start_frame(opcode, sp.len() + 4 + extra);
        bytes::BufMut::put_i32(&mut f, sp.len() as i32);
        bytes::BufMut::put_slice(&mut f, sp.as_bytes());
        f
    }

    // ---- session ----

    /// The session's current state.
    pub fn state(&self) -> SessionState {
        self.inner.snap.borrow().state
    }

    /// The session id (0 while there is none).
    pub fn session_id(&self) -> i64 {
        self.inner.snap.borrow().session_id
    }

    /// The session timeout the server granted.
    pub fn negotiated_timeout(&self) -> Duration {
        self.inner.snap.borrow().negotiated_timeout
    }

    /// Every session state change from now on (the first event is the current state).
    pub fn state_events(&self) -> StateEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        if self.send(Command::Listen(tx.clone())).is_err() {
            let _ = tx.send(SessionEvent {
                state: SessionState::Closed,
                keeper_state: KeeperState::Closed,
                session_id: 0,
            });
        }
        StateEvents { rx }
    }

    /// Closes the session (its ephemerals go at once) and stops the client. Requests still
    /// waiting fail with [`Error::Closed`]. Idempotent.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Adds credentials to the session, e.g. `add_auth("digest", b"user:password")`; they are
    /// replayed on every reconnect.
    pub async fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::AddAuth {
            scheme: scheme.to_string(),
            auth: auth.to_vec(),
            reply,
        })?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// The identities the server associates with this session (ZooKeeper 3.7+).
    pub async fn whoami(&self) -> Result<Vec<ClientInfo>> {
        let body = self
            .call(ops::start_frame(op::WHO_AM_I, 0), Effect::None)
            .await?;
        ops::read_whoami(&body)
    }

    // ---- create / delete ----

    /// Creates a node with an open ACL; returns its path (with the sequence suffix, if any).
    pub async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        Ok(self
            .create_with(
                path,
                data,
                &CreateOptions {
                    mode,
                    ..Default::default()
                },
            )
            .await?
            .0)
    }

    /// Creates a node with options; returns its path and stat.
    pub async fn create_with(
        &self,
        path: &str,
        data: &[u8],
        opts: &CreateOptions,
    ) -> Result<(String, Stat)> {
        validate_path(path, opts.mode.is_sequential())?;
        if opts.acl.is_empty() {
            return Err(Error::InvalidAcl);
        }
        if let Some(ttl) = opts.mode.ttl() {
            if ttl <= 0 {
                return Err(Error::InvalidArgument(format!(
                    "a TTL must be positive, got {ttl}"
                )));
            }
        }
        match self.create_once(path, data, opts).await {
            Err(Error::NoNode) if opts.makepath => {
                if let Some(parent) = parent(path) {
                    self.ensure_path(parent).await?;
                }
                self.create_once(path, data, opts).await
            }
            other => other,
        }
    }

    /// One create request, no makepath.
    async fn create_once(
        &self,
        path: &str,
        data: &[u8],
        opts: &CreateOptions,
    ) -> Result<(String, Stat)> {
        let sp = self.server_path(path);
        let mut f = ops::start_frame(ops::create_opcode(opts.mode), sp.len() + data.len() + 64);
        ops::write_create(&mut f, &sp, data, &opts.acl, opts.mode);
        let body = self.call(f, Effect::None).await?;
        let (p, stat) = ops::read_path_stat(&body)?;
        Ok((self.user_path(&p), stat))
    }

    /// Creates `path` and any missing parents as empty persistent nodes; succeeds if it exists.
    pub async fn ensure_path(&self, path: &str) -> Result<()> {
        check(path)?;
        if path == "/" {
            return Ok(());
        }
        // Fast path: it exists already.
        if self.exists(path).await?.is_some() {
            return Ok(());
        }
        let mut cur = String::new();
        for seg in path[1..].split('/') {
            cur.push('/');
            cur.push_str(seg);
            match self.create_once(&cur, b"", &CreateOptions::default()).await {
                Ok(_) | Err(Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes a node, if `version` matches (None: any version).
    pub async fn delete(&self, path: &str, version: Option<i32>) -> Result<()> {
        check(path)?;
        let mut f = self.path_frame(op::DELETE, path, 4);
        bytes::BufMut::put_i32(&mut f, version.unwrap_or(-1));
        self.call(f, Effect::None).await?;
        Ok(())
    }

    /// Deletes a node and everything below it (children first). Nodes that vanish meanwhile
    /// are fine; a node that gains children meanwhile is retried a few times.
    pub async fn delete_recursive(&self, path: &str) -> Result<()> {
        check(path)?;
        if path == "/" {
            return Err(Error::InvalidArgument(
                "refusing to delete the root recursively".into(),
            ));
        }
        for _ in 0..5 {
            // Depth-first listing, then deletes deepest first, pipelined per level.
            let mut levels: Vec<Vec<String>> = vec![vec![path.to_string()]];
            loop {
                let last = levels.last().expect("non-empty");
                let mut next = Vec::new();
                let mut lists = Vec::with_capacity(last.len());
                for chunk in last.chunks(PIPELINE) {
                    lists.extend(
                        join_all(
                            chunk
                                .iter()
                                .map(|p| async move { (p, self.get_children(p).await) }),
                        )
                        .await,
                    );
                }
                for (p, r) in lists {
                    match r {
                        Ok((children, _)) => next.extend(children.into_iter().map(|c| join(p, &c))),
                        Err(Error::NoNode) => {}
                        Err(e) => return Err(e),
                    }
                }
                if next.is_empty() {
                    break;
                }
                levels.push(next);
            }
            let mut retry = false;
            for level in levels.iter().rev() {
                let mut results = Vec::with_capacity(level.len());
                for chunk in level.chunks(PIPELINE) {
                    results.extend(join_all(chunk.iter().map(|p| self.delete(p, None))).await);
                }
                for r in results {
                    match r {
                        Ok(()) | Err(Error::NoNode) => {}
                        Err(Error::NotEmpty) => retry = true,
                        Err(e) => return Err(e),
                    }
                }
                if retry {
                    break;
                }
            }
            if !retry {
                return Ok(());
            }
        }
        Err(Error::NotEmpty)
    }

    // ---- reads ----

    /// The node's stat, or None if it does not exist.
    pub async fn exists(&self, path: &str) -> Result<Option<Stat>> {
        self.exists_inner(path, None).await
    }

    /// As [`Client::exists`], and leaves a watch that fires when the node is created, deleted
    /// or its data changes.
    pub async fn exists_watch(&self, path: &str) -> Result<(Option<Stat>, OneshotWatcher)> {
        let (tx, rx) = oneshot::channel();
        let s = self.exists_inner(path, Some(WatchSink::Once(tx))).await?;
        Ok((s, OneshotWatcher { rx }))
    }

    async fn exists_inner(&self, path: &str, sink: Option<WatchSink>) -> Result<Option<Stat>> {
        check(path)?;
        let (effect, w) = self.watch_effect(WatchKind::Exist, path, sink);
        let mut f = self.path_frame(op::EXISTS, path, 1);
        bytes::BufMut::put_u8(&mut f, w as u8);
        match self.call(f, effect).await {
            Ok(body) => Ok(Some(ops::read_stat(&body)?)),
            Err(Error::NoNode) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn watch_effect(&self, kind: WatchKind, path: &str, sink: Option<WatchSink>) -> (Effect, bool) {
        match sink {
            Some(sink) => (
                Effect::Watch {
                    kind,
                    path: self.server_path(path),
                    sink,
                },
                true,
            ),
            None => (Effect::None, false),
        }
    }

    /// The node's data and stat.
    pub async fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat)> {
        self.get_data_inner(path, None).await
    }

    /// As [`Client::get_data`], and leaves a watch that fires when the data changes or the
    /// node is deleted.
    pub async fn get_data_watch(&self, path: &str) -> Result<(Vec<u8>, Stat, OneshotWatcher)> {
        let (tx, rx) = oneshot::channel();
        let (d, s) = self.get_data_inner(path, Some(WatchSink::Once(tx))).await?;
        Ok((d, s, OneshotWatcher { rx }))
    }

    async fn get_data_inner(&self, path: &str, sink: Option<WatchSink>) -> Result<(Vec<u8>, Stat)> {
        check(path)?;
        let (effect, w) = self.watch_effect(WatchKind::Data, path, sink);
        let mut f = self.path_frame(op::GET_DATA, path, 1);
        bytes::BufMut::put_u8(&mut f, w as u8);
        let body = self.call(f, effect).await?;
        ops::read_data_stat(&body)
    }

    /// The node's children (names, unsorted) and its stat.
    pub async fn get_children(&self, path: &str) -> Result<(Vec<String>, Stat)> {
        self.get_children_inner(path, None).await
    }

    /// As [`Client::get_children`], and leaves a watch that fires when a child is added or
    /// removed or the node is deleted.
    pub async fn get_children_watch(
        &self,
        path: &str,
    ) -> Result<(Vec<String>, Stat, OneshotWatcher)> {
        let (tx, rx) = oneshot::channel();
        let (c, s) = self
            .get_children_inner(path, Some(WatchSink::Once(tx)))
            .await?;
        Ok((c, s, OneshotWatcher { rx }))
    }

    async fn get_children_inner(
        &self,
        path: &str,
        sink: Option<WatchSink>,
    ) -> Result<(Vec<String>, Stat)> {
        check(path)?;
        let (effect, w) = self.watch_effect(WatchKind::Child, path, sink);
        let mut f = self.path_frame(op::GET_CHILDREN2, path, 1);
        bytes::BufMut::put_u8(&mut f, w as u8);
        let body = self.call(f, effect).await?;
        ops::read_children_stat(&body)
    }

    /// The number of all descendants of a node (ZooKeeper 3.6+).
    pub async fn get_all_children_number(&self, path: &str) -> Result<i32> {
        check(path)?;
        let body = self
            .call(
                self.path_frame(op::GET_ALL_CHILDREN_NUMBER, path, 0),
                Effect::None,
            )
            .await?;
        ops::read_i32(&body)
    }

    /// The session's ephemeral nodes whose paths start with `prefix` (`/` for all; 3.6+).
    pub async fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>> {
        if !prefix.starts_with('/') {
            return Err(Error::InvalidPath {
                path: prefix.to_string(),
                reason: "a path must start with '/'",
            });
        }
        let body = self
            .call(self.path_frame(op::GET_EPHEMERALS, prefix, 0), Effect::None)
            .await?;
        Ok(ops::read_strings(&body)?
            .iter()
            .map(|p| self.user_path(p))
            .collect())
    }

    // ---- writes ----

    /// Sets a node's data, if `version` matches (None: any version); returns the new stat.
    pub async fn set_data(&self, path: &str, data: &[u8], version: Option<i32>) -> Result<Stat> {
        check(path)?;
        let sp = self.server_path(path);
        let mut f = ops::start_frame(op::SET_DATA, sp.len() + data.len() + 12);
        ops::write_set_data(&mut f, &sp, data, version.unwrap_or(-1));
        let body = self.call(f, Effect::None).await?;
        ops::read_stat(&body)
    }

    /// The node's ACL and stat.
    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat)> {
        check(path)?;
        let body = self
            .call(self.path_frame(op::GET_ACL, path, 0), Effect::None)
            .await?;
        ops::read_acl_stat(&body)
    }

    /// Sets the node's ACL, if its ACL version matches (None: any).
    pub async fn set_acl(&self, path: &str, acl: &[Acl], version: Option<i32>) -> Result<Stat> {
        check(path)?;
        if acl.is_empty() {
            return Err(Error::InvalidAcl);
        }
        let sp = self.server_path(path);
        let mut f = ops::start_frame(op::SET_ACL, sp.len() + 64);
        ops::write_set_acl(&mut f, &sp, acl, version.unwrap_or(-1));
        let body = self.call(f, Effect::None).await?;
        ops::read_stat(&body)
    }

    /// Waits until the server this client talks to has caught up with the leader for `path`.
    pub async fn sync(&self, path: &str) -> Result<()> {
        check(path)?;
        let body = self
            .call(self.path_frame(op::SYNC, path, 0), Effect::None)
            .await?;
        ops::read_path(&body)?;
        Ok(())
    }

    /// Runs writes atomically: all succeed or none is applied ([`Error::MultiFailed`] then says
    /// which op failed and carries every op's result).
    pub async fn multi(&self, ops_: &[Op]) -> Result<Vec<OpResult>> {
        for o in ops_ {
            match o {
                Op::Create {
                    path, mode, acl, ..
                } => {
                    validate_path(path, mode.is_sequential())?;
                    if acl.is_empty() {
                        return Err(Error::InvalidAcl);
                    }
                }
                other => check(other.path())?,
            }
        }
        let mut f = ops::start_frame(op::MULTI, 64 * ops_.len());
        multi::write_multi(&mut f, ops_, |p| self.server_path(p));
        let body = self.call(f, Effect::None).await?;
        multi::read_multi(&body, |p| self.user_path(p))
    }

    /// Runs several reads in one round trip (ZooKeeper 3.6+). Not atomic: each read succeeds or
    /// fails on its own.
    pub async fn multi_read(&self, reads: &[ReadOp]) -> Result<Vec<ReadResult>> {
        for r in reads {
            match r {
                ReadOp::GetData(p) | ReadOp::GetChildren(p) => check(p)?,
            }
        }
        let mut f = ops::start_frame(op::MULTI_READ, 32 * reads.len());
        multi::write_multi_read(&mut f, reads, |p| self.server_path(p));
        let body = self.call(f, Effect::None).await?;
        multi::read_multi_read(&body)
    }

    // ---- watches ----

    /// Adds a persistent (recursive) watch (ZooKeeper 3.6+). It stays until removed, survives
    /// reconnects (with a [`EventType::Resync`] event, since the server does not replay missed
    /// changes), and ends with the session.
    pub async fn add_watch(&self, path: &str, mode: AddWatchMode) -> Result<PersistentWatcher> {
        check(path)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let kind = match mode {
            AddWatchMode::Persistent => WatchKind::Persistent,
            AddWatchMode::PersistentRecursive => WatchKind::PersistentRecursive,
        };
        let mut f = self.path_frame(op::ADD_WATCH, path, 4);
        bytes::BufMut::put_i32(&mut f, mode.code());
        let body = self
            .call(
                f,
                Effect::Watch {
                    kind,
                    path: self.server_path(path),
                    sink: WatchSink::Stream(tx),
                },
            )
            .await?;
        ops::read_empty_or_err(&body)?;
        Ok(PersistentWatcher { rx })
    }

    /// Removes this session's watches of a type at a path, on the server and here (each
    /// removed watcher hears a *WatchRemoved event). [`Error::NoWatcher`] if there were none.
    pub async fn remove_watches(&self, path: &str, kind: WatcherType) -> Result<()> {
        check(path)?;
        let mut f = self.path_frame(op::REMOVE_WATCHES, path, 4);
        bytes::BufMut::put_i32(&mut f, kind.code());
        let effect = Effect::RemoveWatches {
            path: self.server_path(path),
            user_path: path.to_string(),
            watcher_type: kind.code(),
        };
        let body = self.call(f, effect).await?;
        ops::read_empty_or_err(&body)
    }

    /// Whether this session has a watch of the type at the path on the server
    /// ([`Error::NoWatcher`] if not).
    pub async fn check_watches(&self, path: &str, kind: WatcherType) -> Result<()> {
        check(path)?;
        let mut f = self.path_frame(op::CHECK_WATCHES, path, 4);
        bytes::BufMut::put_i32(&mut f, kind.code());
        let body = self.call(f, Effect::None).await?;
        ops::read_empty_or_err(&body)
    }
}

fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) if path.len() > 1 => Some("/"),
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// How many requests the recursive helpers keep in flight at once.
const PIPELINE: usize = 256;

/// Runs futures concurrently and collects their outputs in order (a tiny join_all: requests are
/// pipelined because each future sends its command on first poll). Callers keep the set small.
async fn join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = (0..futs.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in futs.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("all ready")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_and_joins() {
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}
