//! The public async client: every ZooKeeper operation, Kazoo's conveniences, watches and session
//! state. A [`Client`] is a cheap handle (clone it freely) onto one session actor.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{mpsc, oneshot, watch};

use crate::dispatch::{CallbackInfo, Lanes};

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
    self, Command, Effect, Listener, ReplySink, Request, SessionConfig, SessionEvent, SessionState,
    Snapshot,
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
    lanes: Option<Lanes>,
    suppress_resync: bool,
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
    /// Run the session actor as a task on the caller's tokio runtime instead of on a thread of
    /// its own (default false).
    ///
    /// This saves a cross-thread wake-up per request and per reply (about a third of the
    /// client's CPU per operation, see BENCHMARKS.md), at a price: a task of yours that hogs the
    /// runtime without yielding then delays pings and may lose the session. Keep the default when
    /// callbacks or other work may monopolise the runtime's threads.
    pub fn session_on_current_runtime(mut self, yes: bool) -> Self {
        self.cfg.on_caller_runtime = yes;
        self
    }

    /// Credentials to add before anything else (replayed on every reconnect), e.g.
    /// `("digest", b"user:password")`.
    pub fn auth(mut self, scheme: &str, auth: &[u8]) -> Self {
        self.auth.push((scheme.to_string(), auth.to_vec()));
        self
    }

    /// Connects to every server over TLS with these settings, except servers marked `tcp://` in
    /// the connect string (the global switch). See [`TlsConfig`](crate::TlsConfig).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), wazoo::Error> {
    /// let tls = wazoo::TlsConfig::new().ca_file("/etc/zookeeper/ca.pem");
    /// let zk = wazoo::Client::builder("zk1:2281,zk2:2281").tls(tls).connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn tls(mut self, cfg: crate::TlsConfig) -> Self {
        self.cfg.tls = Some(crate::tls::TlsSetting {
            config: cfg,
            every_host: true,
            connector: None,
        });
        self
    }

    /// TLS settings for the servers marked `tls://` in the connect string only; the others are
    /// reached in plain text (`tls://zk1:2281,zk2:2181`: the first over TLS).
    pub fn tls_per_host(mut self, cfg: crate::TlsConfig) -> Self {
        self.cfg.tls = Some(crate::tls::TlsSetting {
            config: cfg,
            every_host: false,
            connector: None,
        });
        self
    }

    /// Authenticates every connection with SASL (DIGEST-MD5) right after the handshake, before
    /// any request: reconnects authenticate again. Wrong credentials make
    /// [`ClientBuilder::connect`] fail with [`Error::AuthFailed`] (or
    /// [`Error::SessionClosedRequireSaslAuth`] when the server enforces SASL); ACLs can then
    /// name the user with the `sasl` scheme ([`crate::Acl::new`]`(perms, "sasl", "bob")`).
    pub fn sasl(mut self, cfg: crate::SaslConfig) -> Self {
        self.cfg.sasl = Some(cfg);
        self
    }

    /// The lanes callbacks run on (default: a new set named after the connect string).
    pub fn lanes(mut self, lanes: Lanes) -> Self {
        self.lanes = Some(lanes);
        self
    }

    /// Test-only: this client's persistent watchers never hear [`EventType::Resync`], as if the
    /// client did not tell them about reconnects. It breaks a guarantee on purpose, so that the
    /// chaos soak (`tests/tests/soak.rs`) can show its checker catches the loss. Not for use.
    #[doc(hidden)]
    pub fn suppress_resync_for_tests(mut self, yes: bool) -> Self {
        self.suppress_resync = yes;
        self
    }

    /// Starts the session and waits until it is connected (read-write, or read-only when
    /// allowed). Fails with [`Error::Timeout`] if no server accepted it in time, or at once
    /// with what a person must fix when every server failed that way: [`Error::Tls`]
    /// (certificates), [`Error::AuthFailed`] (SASL credentials); with [`Error::TlsConfig`] when
    /// the TLS settings cannot be loaded.
    pub async fn connect(mut self) -> Result<Client> {
        let cs = ConnectString::parse(&self.connect_string)?;
        crate::tls::prepare(&mut self.cfg.tls, &cs.hosts)?;
        let chroot = cs.chroot.clone();
        let (tx, snap) = session::spawn(self.cfg, cs)
            .map_err(|e| Error::InvalidArgument(format!("cannot start the session thread: {e}")))?;
        let lanes = self.lanes.unwrap_or_else(|| Lanes::new("client"));
        let client = Client {
            inner: Arc::new(Inner {
                tx,
                snap,
                chroot,
                suppress_resync: self.suppress_resync,
            }),
            lanes,
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
                let s = snap.borrow_and_update().clone();
                if matches!(
                    s.state,
                    SessionState::Connected | SessionState::ConnectedReadOnly
                ) {
                    return Ok(());
                }
                if let Some(f) = s.failure.filter(|f| f.every_server) {
                    return Err(f.error);
                }
                if snap.changed().await.is_err() {
                    return Err(Error::Closed);
                }
            }
        })
        .await;
        match connected {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                client.close().await;
                return Err(e);
            }
            Err(_) => {
                let failure = client.inner.snap.borrow().failure.clone();
                client.close().await;
                return Err(failure.map_or(Error::Timeout(self.wait), |f| f.error));
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
    /// See [`ClientBuilder::suppress_resync_for_tests`].
    suppress_resync: bool,
}

impl PersistentWatcher {
    /// The next event: node events, [`EventType::Resync`] after a reconnect (changes made while
    /// away are not replayed by the server), or a final `None`-type event when the session ends;
    /// then `None`.
    pub async fn next(&mut self) -> Option<WatchedEvent> {
        loop {
            let ev = self.rx.recv().await;
            if !self.suppressed(&ev) {
                return ev;
            }
        }
    }

    /// The next event if one is already there.
    pub fn try_next(&mut self) -> Option<WatchedEvent> {
        loop {
            let ev = self.rx.try_recv().ok();
            if !self.suppressed(&ev) {
                return ev;
            }
        }
    }

    fn suppressed(&self, ev: &Option<WatchedEvent>) -> bool {
        self.suppress_resync
            && ev
                .as_ref()
                .is_some_and(|e| e.event_type == EventType::Resync)
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
}

type Decode<T> = fn(&Chroot, Result<Bytes>) -> Result<T>;

/// A request ready to go. `.await` it (it is sent when the future is created), or
/// [`rawlink`](Pending::rawlink) a callback to the completion lane (Kazoo's `rawlink`).
///
/// Invalid arguments (a bad path, an empty ACL) were already found when the request was built:
/// awaiting returns the error; `rawlink` returns it instead of calling the callback.
#[must_use = "a request is sent only when awaited or linked"]
pub struct Pending<T> {
    client: Client,
    req: Result<(BytesMut, Effect)>,
    decode: Decode<T>,
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("valid", &self.req.is_ok())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Pending<T> {
    /// Sends the request; `f` runs on the completion lane with its result, exactly once,
    /// whatever happens to the connection (a result, `ConnectionLoss`, `SessionExpired` or
    /// `Closed`). Completion callbacks run in request order.
    pub fn rawlink(self, f: impl FnOnce(Result<T>, CallbackInfo) + Send + 'static) -> Result<()> {
        let (frame, effect) = self.req?;
        let chroot = self.client.inner.clone();
        let decode = self.decode;
        let reply = ReplySink::Lane {
            lanes: self.client.lanes.clone(),
            job: Box::new(move |res, info| f(decode(&chroot.chroot, res), info)),
        };
        self.client.send_request(frame, effect, reply)
    }
}

impl<T> IntoFuture for Pending<T> {
    type Output = Result<T>;
    type IntoFuture = PendingFuture<T>;

    fn into_future(self) -> PendingFuture<T> {
        let rx = self.req.and_then(|(frame, effect)| {
            let (tx, rx) = oneshot::channel();
            self.client
                .send_request(frame, effect, ReplySink::Oneshot(tx))?;
            Ok(rx)
        });
        PendingFuture {
            inner: self.client.inner,
            rx: Some(rx),
            decode: self.decode,
        }
    }
}

/// The future of an awaited [`Pending`].
#[must_use = "futures do nothing unless polled"]
pub struct PendingFuture<T> {
    inner: Arc<Inner>,
    rx: Option<Result<oneshot::Receiver<Result<Bytes>>>>,
    decode: Decode<T>,
}

impl<T> std::fmt::Debug for PendingFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingFuture").finish_non_exhaustive()
    }
}

impl<T> Future for PendingFuture<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = &mut *self;
        let res = match this.rx.as_mut().expect("polled after completion") {
            Err(e) => Err(e.clone()),
            Ok(rx) => match Pin::new(rx).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r.unwrap_or(Err(Error::Closed)),
            },
        };
        this.rx = None;
        Poll::Ready((this.decode)(&this.inner.chroot, res))
    }
}

/// What every create (alone or in a multi) must satisfy before it is sent.
fn check_create(path: &str, acl: &[Acl], mode: CreateMode) -> Result<()> {
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

fn check(path: &str) -> Result<()> {
    validate_path(path, false)
}

// ---- decoders: one per response shape ----

fn dec_unit(_: &Chroot, r: Result<Bytes>) -> Result<()> {
    r.map(|_| ())
}
fn dec_empty_or_err(_: &Chroot, r: Result<Bytes>) -> Result<()> {
    ops::read_empty_or_err(&r?)
}
fn dec_path_stat(c: &Chroot, r: Result<Bytes>) -> Result<(String, Stat)> {
    let (p, s) = ops::read_path_stat(&r?)?;
    Ok((c.strip(&p).to_string(), s))
}
fn dec_path(c: &Chroot, r: Result<Bytes>) -> Result<String> {
    dec_path_stat(c, r).map(|(p, _)| p)
}
fn dec_exists(_: &Chroot, r: Result<Bytes>) -> Result<Option<Stat>> {
    match r {
        Ok(b) => Ok(Some(ops::read_stat(&b)?)),
        Err(Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}
fn dec_stat(_: &Chroot, r: Result<Bytes>) -> Result<Stat> {
    ops::read_stat(&r?)
}
fn dec_data(_: &Chroot, r: Result<Bytes>) -> Result<(Vec<u8>, Stat)> {
    ops::read_data_stat(&r?)
}
fn dec_children(_: &Chroot, r: Result<Bytes>) -> Result<(Vec<String>, Stat)> {
    ops::read_children_stat(&r?)
}
fn dec_i32(_: &Chroot, r: Result<Bytes>) -> Result<i32> {
    ops::read_i32(&r?)
}
fn dec_paths(c: &Chroot, r: Result<Bytes>) -> Result<Vec<String>> {
    Ok(ops::read_strings(&r?)?
        .iter()
        .map(|p| c.strip(p).to_string())
        .collect())
}
fn dec_acl(_: &Chroot, r: Result<Bytes>) -> Result<(Vec<Acl>, Stat)> {
    ops::read_acl_stat(&r?)
}
fn dec_sync(_: &Chroot, r: Result<Bytes>) -> Result<()> {
    ops::read_path(&r?).map(|_| ())
}
fn dec_whoami(_: &Chroot, r: Result<Bytes>) -> Result<Vec<ClientInfo>> {
    ops::read_whoami(&r?)
}
fn dec_multi(c: &Chroot, r: Result<Bytes>) -> Result<Vec<OpResult>> {
    multi::read_multi(&r?, |p| c.strip(p).to_string())
}
fn dec_multi_read(_: &Chroot, r: Result<Bytes>) -> Result<Vec<ReadResult>> {
    multi::read_multi_read(&r?)
}

impl Client {
    /// A builder for a client on `connect_string` (`host:port[,host:port...][/chroot]`).
    pub fn builder(connect_string: &str) -> ClientBuilder {
        ClientBuilder {
            connect_string: connect_string.to_string(),
            cfg: SessionConfig::default(),
            wait: Duration::from_secs(15),
            auth: Vec::new(),
            lanes: None,
            suppress_resync: false,
        }
    }

    /// Connects with the defaults.
    pub async fn connect(connect_string: &str) -> Result<Client> {
        Client::builder(connect_string).connect().await
    }

    /// A handle on the same session whose callbacks run on other lanes: how each plugin gets
    /// lanes of its own (per-plugin isolation) while sharing one connection.
    pub fn with_lanes(&self, lanes: Lanes) -> Client {
        Client {
            inner: self.inner.clone(),
            lanes,
        }
    }

    /// The lanes this handle's callbacks run on.
    pub fn lanes(&self) -> &Lanes {
        &self.lanes
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

    fn pending<T>(&self, req: Result<(BytesMut, Effect)>, decode: Decode<T>) -> Pending<T> {
        Pending {
            client: self.clone(),
            req,
            decode,
        }
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
    fn path_frame(&self, opcode: i32, path: &str, extra: usize) -> BytesMut {
        let c = &self.inner.chroot;
        let len = c.server_len(path);
        let mut f = ops::start_frame(opcode, len + 4 + extra);
        f.put_i32(len as i32);
        c.put(path, &mut f);
        f
    }

    fn path_req(&self, opcode: i32, path: &str) -> Result<(BytesMut, Effect)> {
        check(path)?;
        Ok((self.path_frame(opcode, path, 0), Effect::None))
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

    /// Every session state change from now on, as a stream (the first event is the current
    /// state).
    pub fn state_events(&self) -> StateEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        if self
            .send(Command::Listen(Listener::Channel(tx.clone())))
            .is_err()
        {
            let _ = tx.send(SessionEvent {
                state: SessionState::Closed,
                keeper_state: KeeperState::Closed,
                session_id: 0,
            });
        }
        StateEvents { rx }
    }

    /// Adds a state listener: `f` runs on the session lane for the current state, then for
    /// every change. It may call ZooKeeper (blocking or async) without risk of deadlock: the
    /// session actor never waits for it.
    pub fn add_listener(
        &self,
        f: impl Fn(SessionEvent, CallbackInfo) + Send + Sync + 'static,
    ) -> ListenerId {
        let id = ListenerId(NEXT_LISTENER.fetch_add(1, Ordering::Relaxed));
        let _ = self.send(Command::Listen(Listener::Lane {
            id,
            lanes: self.lanes.clone(),
            f: Arc::new(f),
        }));
        id
    }

    /// Removes a state listener; it hears nothing queued after this call.
    pub fn remove_listener(&self, id: ListenerId) {
        let _ = self.send(Command::Unlisten(id));
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
    pub fn whoami(&self) -> Pending<Vec<ClientInfo>> {
        self.pending(
            Ok((ops::start_frame(op::WHO_AM_I, 0), Effect::None)),
            dec_whoami,
        )
    }

    // ---- create / delete ----

    /// Creates a node with an open ACL; returns its path (with the sequence suffix, if any).
    pub fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Pending<String> {
        let opts = CreateOptions {
            mode,
            ..Default::default()
        };
        self.pending(self.create_req(path, data, &opts), dec_path)
    }

    fn create_req(
        &self,
        path: &str,
        data: &[u8],
        opts: &CreateOptions,
    ) -> Result<(BytesMut, Effect)> {
        check_create(path, &opts.acl, opts.mode)?;
        let sp = self.server_create_path(path, opts.mode);
        let mut f = ops::start_frame(ops::create_opcode(opts.mode), sp.len() + data.len() + 64);
        ops::write_create(&mut f, &sp, data, &opts.acl, opts.mode);
        Ok((f, Effect::None))
    }

    /// Creates a node with options (mode, ACL, makepath); returns its path and stat.
    pub async fn create_with(
        &self,
        path: &str,
        data: &[u8],
        opts: &CreateOptions,
    ) -> Result<(String, Stat)> {
        let once = || self.pending(self.create_req(path, data, opts), dec_path_stat);
        match once().await {
            Err(Error::NoNode) if opts.makepath => {
                if let Some(parent) = parent(path) {
                    self.ensure_path(parent).await?;
                }
                once().await
            }
            other => other,
        }
    }

    /// Creates `path` and any missing parents as empty persistent nodes; succeeds if it exists.
    pub async fn ensure_path(&self, path: &str) -> Result<()> {
        check(path)?;
        if path == "/" || self.exists(path).await?.is_some() {
            return Ok(());
        }
        let mut cur = String::new();
        for seg in path[1..].split('/') {
            cur.push('/');
            cur.push_str(seg);
            match self.create(&cur, b"", CreateMode::Persistent).await {
                Ok(_) | Err(Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Deletes a node, if `version` matches (None: any version).
    pub fn delete(&self, path: &str, version: Option<i32>) -> Pending<()> {
        let req = check(path).map(|_| {
            let mut f = self.path_frame(op::DELETE, path, 4);
            f.put_i32(version.unwrap_or(-1));
            (f, Effect::None)
        });
        self.pending(req, dec_unit)
    }

    /// Deletes a node and everything below it (children first, pipelined). Nodes that vanish
    /// meanwhile are fine; a node that gains children meanwhile is retried a few times.
    pub async fn delete_recursive(&self, path: &str) -> Result<()> {
        check(path)?;
        if path == "/" {
            return Err(Error::InvalidArgument(
                "refusing to delete the root recursively".into(),
            ));
        }
        for _ in 0..5 {
            let mut levels: Vec<Vec<String>> = vec![vec![path.to_string()]];
            loop {
                let last = levels.last().expect("non-empty");
                let mut next = Vec::new();
                for chunk in last.chunks(PIPELINE) {
                    let futs: Vec<_> = chunk
                        .iter()
                        .map(|p| self.get_children(p).into_future())
                        .collect();
                    for (p, f) in chunk.iter().zip(futs) {
                        match f.await {
                            Ok((children, _)) => {
                                next.extend(children.into_iter().map(|c| join(p, &c)))
                            }
                            Err(Error::NoNode) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                if next.is_empty() {
                    break;
                }
                levels.push(next);
            }
            let mut retry = false;
            'levels: for level in levels.iter().rev() {
                for chunk in level.chunks(PIPELINE) {
                    let futs: Vec<_> = chunk
                        .iter()
                        .map(|p| self.delete(p, None).into_future())
                        .collect();
                    for f in futs {
                        match f.await {
                            Ok(()) | Err(Error::NoNode) => {}
                            Err(Error::NotEmpty) => retry = true,
                            Err(e) => return Err(e),
                        }
                    }
                }
                if retry {
                    break 'levels;
                }
            }
            if !retry {
                return Ok(());
            }
        }
        Err(Error::NotEmpty)
    }

    // ---- reads ----

    fn watched_req(
        &self,
        opcode: i32,
        kind: WatchKind,
        path: &str,
        sink: Option<WatchSink>,
    ) -> Result<(BytesMut, Effect)> {
        check(path)?;
        let mut f = self.path_frame(opcode, path, 1);
        f.put_u8(sink.is_some() as u8);
        let effect = match sink {
            Some(sink) => Effect::Watch {
                kind,
                path: self.server_path(path),
                sink,
            },
            None => Effect::None,
        };
        Ok((f, effect))
    }

    fn lane_once(&self, f: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static) -> WatchSink {
        WatchSink::LaneOnce {
            lanes: self.lanes.clone(),
            f: Box::new(f),
            alive: None,
        }
    }

    /// The node's stat, or None if it does not exist.
    pub fn exists(&self, path: &str) -> Pending<Option<Stat>> {
        self.pending(
            self.watched_req(op::EXISTS, WatchKind::Exist, path, None),
            dec_exists,
        )
    }

    /// As [`Client::exists`], and leaves a watch that fires when the node is created, deleted
    /// or its data changes.
    pub async fn exists_watch(&self, path: &str) -> Result<(Option<Stat>, OneshotWatcher)> {
        let (tx, rx) = oneshot::channel();
        let req = self.watched_req(
            op::EXISTS,
            WatchKind::Exist,
            path,
            Some(WatchSink::Once(tx)),
        );
        let s = self.pending(req, dec_exists).await?;
        Ok((s, OneshotWatcher { rx }))
    }

    /// As [`Client::exists`]; `watcher` runs on the watch lane when the watch fires.
    pub fn exists_with(
        &self,
        path: &str,
        watcher: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static,
    ) -> Pending<Option<Stat>> {
        let req = self.watched_req(
            op::EXISTS,
            WatchKind::Exist,
            path,
            Some(self.lane_once(watcher)),
        );
        self.pending(req, dec_exists)
    }

    /// The node's data and stat.
    pub fn get_data(&self, path: &str) -> Pending<(Vec<u8>, Stat)> {
        self.pending(
            self.watched_req(op::GET_DATA, WatchKind::Data, path, None),
            dec_data,
        )
    }

    /// As [`Client::get_data`], and leaves a watch that fires when the data changes or the
    /// node is deleted.
    pub async fn get_data_watch(&self, path: &str) -> Result<(Vec<u8>, Stat, OneshotWatcher)> {
        let (tx, rx) = oneshot::channel();
        let req = self.watched_req(
            op::GET_DATA,
            WatchKind::Data,
            path,
            Some(WatchSink::Once(tx)),
        );
        let (d, s) = self.pending(req, dec_data).await?;
        Ok((d, s, OneshotWatcher { rx }))
    }

    /// As [`Client::get_data`]; `watcher` runs on the watch lane when the watch fires.
    pub fn get_data_with(
        &self,
        path: &str,
        watcher: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static,
    ) -> Pending<(Vec<u8>, Stat)> {
        let req = self.watched_req(
            op::GET_DATA,
            WatchKind::Data,
            path,
            Some(self.lane_once(watcher)),
        );
        self.pending(req, dec_data)
    }

    /// The node's children (names, unsorted) and its stat.
    pub fn get_children(&self, path: &str) -> Pending<(Vec<String>, Stat)> {
        self.pending(
            self.watched_req(op::GET_CHILDREN2, WatchKind::Child, path, None),
            dec_children,
        )
    }

    /// As [`Client::get_children`], and leaves a watch that fires when a child is added or
    /// removed or the node is deleted.
    pub async fn get_children_watch(
        &self,
        path: &str,
    ) -> Result<(Vec<String>, Stat, OneshotWatcher)> {
        let (tx, rx) = oneshot::channel();
        let req = self.watched_req(
            op::GET_CHILDREN2,
            WatchKind::Child,
            path,
            Some(WatchSink::Once(tx)),
        );
        let (c, s) = self.pending(req, dec_children).await?;
        Ok((c, s, OneshotWatcher { rx }))
    }

    /// As [`Client::get_children`]; `watcher` runs on the watch lane when the watch fires.
    pub fn get_children_with(
        &self,
        path: &str,
        watcher: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static,
    ) -> Pending<(Vec<String>, Stat)> {
        let req = self.watched_req(
            op::GET_CHILDREN2,
            WatchKind::Child,
            path,
            Some(self.lane_once(watcher)),
        );
        self.pending(req, dec_children)
    }

    /// The number of all descendants of a node (ZooKeeper 3.6+).
    pub fn get_all_children_number(&self, path: &str) -> Pending<i32> {
        self.pending(self.path_req(op::GET_ALL_CHILDREN_NUMBER, path), dec_i32)
    }

    /// The session's ephemeral nodes whose paths start with `prefix` (`/` for all; 3.6+).
    pub fn get_ephemerals(&self, prefix: &str) -> Pending<Vec<String>> {
        let req = if prefix.starts_with('/') {
            Ok((self.path_frame(op::GET_EPHEMERALS, prefix, 0), Effect::None))
        } else {
            Err(Error::InvalidPath {
                path: prefix.to_string(),
                reason: "a path must start with '/'",
            })
        };
        self.pending(req, dec_paths)
    }

    // ---- writes ----

    /// Sets a node's data, if `version` matches (None: any version); returns the new stat.
    pub fn set_data(&self, path: &str, data: &[u8], version: Option<i32>) -> Pending<Stat> {
        let req = check(path).map(|_| {
            let sp = self.server_path(path);
            let mut f = ops::start_frame(op::SET_DATA, sp.len() + data.len() + 12);
            ops::write_set_data(&mut f, &sp, data, version.unwrap_or(-1));
            (f, Effect::None)
        });
        self.pending(req, dec_stat)
    }

    /// The node's ACL and stat.
    pub fn get_acl(&self, path: &str) -> Pending<(Vec<Acl>, Stat)> {
        self.pending(self.path_req(op::GET_ACL, path), dec_acl)
    }

    /// Sets the node's ACL, if its ACL version matches (None: any).
    pub fn set_acl(&self, path: &str, acl: &[Acl], version: Option<i32>) -> Pending<Stat> {
        let req = check(path).and_then(|_| {
            if acl.is_empty() {
                return Err(Error::InvalidAcl);
            }
            let sp = self.server_path(path);
            let mut f = ops::start_frame(op::SET_ACL, sp.len() + 64);
            ops::write_set_acl(&mut f, &sp, acl, version.unwrap_or(-1));
            Ok((f, Effect::None))
        });
        self.pending(req, dec_stat)
    }

    /// Waits until the server this client talks to has caught up with the leader for `path`.
    pub fn sync(&self, path: &str) -> Pending<()> {
        self.pending(self.path_req(op::SYNC, path), dec_sync)
    }

    /// Runs writes atomically: all succeed or none is applied ([`Error::MultiFailed`] then says
    /// which op failed and carries every op's result).
    pub fn multi(&self, ops_: &[Op]) -> Pending<Vec<OpResult>> {
        let req = (|| {
            for o in ops_ {
                match o {
                    Op::Create {
                        path, mode, acl, ..
                    } => check_create(path, acl, *mode)?,
                    other => check(other.path())?,
                }
            }
            let mut f = ops::start_frame(op::MULTI, 64 * ops_.len());
            multi::write_multi(&mut f, ops_, |p, create| match create {
                Some(mode) => self.server_create_path(p, mode),
                None => self.server_path(p),
            });
            Ok((f, Effect::None))
        })();
        self.pending(req, dec_multi)
    }

    /// Runs several reads in one round trip (ZooKeeper 3.6+). Not atomic: each read succeeds or
    /// fails on its own.
    pub fn multi_read(&self, reads: &[ReadOp]) -> Pending<Vec<ReadResult>> {
        let req = (|| {
            for r in reads {
                match r {
                    ReadOp::GetData(p) | ReadOp::GetChildren(p) => check(p)?,
                }
            }
            let mut f = ops::start_frame(op::MULTI_READ, 32 * reads.len());
            multi::write_multi_read(&mut f, reads, |p| self.server_path(p));
            Ok((f, Effect::None))
        })();
        self.pending(req, dec_multi_read)
    }

    // ---- watches ----

    fn add_watch_req(
        &self,
        path: &str,
        mode: AddWatchMode,
        sink: WatchSink,
    ) -> Result<(BytesMut, Effect)> {
        check(path)?;
        let kind = match mode {
            AddWatchMode::Persistent => WatchKind::Persistent,
            AddWatchMode::PersistentRecursive => WatchKind::PersistentRecursive,
        };
        let mut f = self.path_frame(op::ADD_WATCH, path, 4);
        f.put_i32(mode.code());
        Ok((
            f,
            Effect::Watch {
                kind,
                path: self.server_path(path),
                sink,
            },
        ))
    }

    /// Adds a persistent (recursive) watch (ZooKeeper 3.6+). It stays until removed, survives
    /// reconnects (with a [`EventType::Resync`] event, since the server does not replay missed
    /// changes), and ends with the session.
    pub async fn add_watch(&self, path: &str, mode: AddWatchMode) -> Result<PersistentWatcher> {
        let (tx, rx) = mpsc::unbounded_channel();
        let req = self.add_watch_req(path, mode, WatchSink::Stream(tx));
        self.pending(req, dec_empty_or_err).await?;
        Ok(PersistentWatcher {
            rx,
            suppress_resync: self.inner.suppress_resync,
        })
    }

    /// As [`Client::add_watch`]; `watcher` runs on the watch lane for every event until it
    /// returns false, the watch is removed or the session ends.
    pub fn add_watch_with(
        &self,
        path: &str,
        mode: AddWatchMode,
        watcher: impl FnMut(WatchedEvent, CallbackInfo) -> bool + Send + 'static,
    ) -> Pending<()> {
        self.add_watch_owned(path, mode, watcher, None)
    }

    /// As [`Client::add_watch_with`]; the watcher is also withdrawn (and pruned from the
    /// server by [`Client::prune_watches`]) once `owner` is false. The watcher ending (returning
    /// false) never clears `owner`, which may own other watchers.
    pub(crate) fn add_watch_owned(
        &self,
        path: &str,
        mode: AddWatchMode,
        mut watcher: impl FnMut(WatchedEvent, CallbackInfo) -> bool + Send + 'static,
        owner: Option<Arc<AtomicBool>>,
    ) -> Pending<()> {
        let suppress = self.inner.suppress_resync;
        let watcher = move |ev: WatchedEvent, info| {
            (suppress && ev.event_type == EventType::Resync) || watcher(ev, info)
        };
        let sink = WatchSink::LaneMany {
            lanes: self.lanes.clone(),
            f: Arc::new(std::sync::Mutex::new(watcher)),
            alive: Arc::new(AtomicBool::new(true)),
            owner,
        };
        self.pending(self.add_watch_req(path, mode, sink), dec_empty_or_err)
    }

    /// Removes this session's watches of a type at a path, on the server and here (each
    /// removed watcher hears a *WatchRemoved event). [`Error::NoWatcher`] if there were none.
    pub fn remove_watches(&self, path: &str, kind: WatcherType) -> Pending<()> {
        let req = check(path).map(|_| {
            let mut f = self.path_frame(op::REMOVE_WATCHES, path, 4);
            f.put_i32(kind.wire_code());
            let effect = Effect::RemoveWatches {
                path: self.server_path(path),
                user_path: path.to_string(),
                watcher_type: kind.code(),
            };
            (f, effect)
        });
        self.pending(req, dec_empty_or_err)
    }

    /// Whether this session has a watch of the type at the path on the server
    /// ([`Error::NoWatcher`] if not).
    pub fn check_watches(&self, path: &str, kind: WatcherType) -> Pending<()> {
        let req = check(path).map(|_| {
            let mut f = self.path_frame(op::CHECK_WATCHES, path, 4);
            f.put_i32(kind.code());
            (f, Effect::None)
        });
        self.pending(req, dec_empty_or_err)
    }

    /// A one-shot lane watch whose owner can withdraw it (`alive` false): for the recipes.
    pub(crate) fn get_data_owned(
        &self,
        path: &str,
        watcher: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static,
        alive: Arc<AtomicBool>,
    ) -> Pending<(Vec<u8>, Stat)> {
        let sink = WatchSink::LaneOnce {
            lanes: self.lanes.clone(),
            f: Box::new(watcher),
            alive: Some(alive),
        };
        self.pending(
            self.watched_req(op::GET_DATA, WatchKind::Data, path, Some(sink)),
            dec_data,
        )
    }

    /// See [`Client::get_data_owned`].
    pub(crate) fn exists_owned(
        &self,
        path: &str,
        watcher: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static,
        alive: Arc<AtomicBool>,
    ) -> Pending<Option<Stat>> {
        let sink = WatchSink::LaneOnce {
            lanes: self.lanes.clone(),
            f: Box::new(watcher),
            alive: Some(alive),
        };
        self.pending(
            self.watched_req(op::EXISTS, WatchKind::Exist, path, Some(sink)),
            dec_exists,
        )
    }

    /// See [`Client::get_data_owned`].
    pub(crate) fn get_children_owned(
        &self,
        path: &str,
        watcher: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static,
        alive: Arc<AtomicBool>,
    ) -> Pending<(Vec<String>, Stat)> {
        let sink = WatchSink::LaneOnce {
            lanes: self.lanes.clone(),
            f: Box::new(watcher),
            alive: Some(alive),
        };
        self.pending(
            self.watched_req(op::GET_CHILDREN2, WatchKind::Child, path, Some(sink)),
            dec_children,
        )
    }

    /// Forgets watchers at `path` whose owners are gone, and removes the server's watch of any
    /// kind left without watchers. Used when a [`crate::DataWatch`] or [`crate::ChildrenWatch`]
    /// is dropped.
    pub(crate) fn prune_watches(&self, path: &str) {
        let _ = self.send(Command::Prune {
            path: self.server_path(path),
        });
    }
}

/// Identifies a state listener added with [`Client::add_listener`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

static NEXT_LISTENER: AtomicU64 = AtomicU64::new(1);

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
