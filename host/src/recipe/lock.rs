//! Kazoo's `Lock` (and `ReadLock` / `WriteLock`), with its node layout so that Kazoo and wazoo
//! contenders on one path exclude each other.
//!
//! Layout: each contender creates an ephemeral sequential child `{path}/{uuid-hex}__lock__{seq}`
//! (`__rlock__` for a reader) whose data is the contender's identifier. A contender holds the
//! lock when no child that excludes it has a smaller sequence number; otherwise it watches only
//! the nearest such child (no herd). Children named as Curator names them (`-lock-`) are
//! recognised when asked, as Kazoo's `extra_lock_patterns` does.
//!
//! The node's unique prefix makes the create protected: a create whose reply was lost finds its
//! node again instead of leaving an orphan that would block every other contender until the
//! session ends.
//!
//! Session states, for the holder: `Suspended` means it may have lost the lock (the session may
//! expire while the client is away; nothing is certain until it reconnects); `Lost` means it has
//! (its node went with the session); a reconnect within the session keeps it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::client::{Client, ListenerId, OneshotWatcher};
use crate::error::{Error, Result};
use crate::proto::records::{CreateMode, EventType, KeeperState, Stat};
use crate::recipe::driver::{self, join, name_of, Reply, Request, Response};
use crate::recipe::protected::{self, Protected};
use crate::session::SessionState;

/// What a caller passes on to prove it held the lock: the lock node's sequence number (strictly
/// increasing per lock path) and the zxid of its creation (increasing across the ensemble).
/// A resource that remembers the highest token it has seen can refuse a holder that lost the
/// lock without knowing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FencingToken {
    /// The lock node's sequence number.
    pub sequence: i64,
    /// The zxid that created the lock node.
    pub czxid: i64,
}

/// Where a lock (or an election contender) stands. Listen with [`Lock::state_events`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LockState {
    /// Not held, not contending.
    Released,
    /// Contending: waiting for the lock.
    Acquiring,
    /// Held, and the session is connected.
    Held,
    /// Held when the connection dropped: the session may expire while the client is away, so
    /// the holder may have lost the lock. Stop work that needs it, or fence it.
    Suspended,
    /// The session expired while the lock was held: it is gone (another contender may hold it).
    Lost,
}

impl LockState {
    /// The state after a session state change: Kazoo's meaning of SUSPENDED and LOST for a
    /// holder. A reconnect within the session returns a suspended holder to `Held`.
    pub(crate) fn on_session(self, session: SessionState) -> LockState {
        match (self, session) {
            (LockState::Held, SessionState::Suspended) => LockState::Suspended,
            (LockState::Suspended, SessionState::Connected | SessionState::ConnectedReadOnly) => {
                LockState::Held
            }
            (LockState::Held | LockState::Suspended, SessionState::Lost | SessionState::Closed) => {
                LockState::Lost
            }
            (s, _) => s,
        }
    }
}

/// A stream of a lock's state changes (see [`Lock::state_events`]). Every change reaches every
/// stream, in order: a `Suspended` that a quick reconnect ended is still seen. A clone is a new
/// stream, of the changes from then on.
#[derive(Debug)]
pub struct LockEvents {
    cell: Arc<StateCell>,
    rx: mpsc::UnboundedReceiver<LockState>,
}

impl Clone for LockEvents {
    fn clone(&self) -> LockEvents {
        self.cell.subscribe()
    }
}

impl LockEvents {
    /// The current state.
    pub fn current(&self) -> LockState {
        self.cell.get()
    }

    /// Waits for the next change and returns the new state; `None` once the lock is dropped.
    pub async fn changed(&mut self) -> Option<LockState> {
        self.rx.recv().await
    }

    /// Returns the current state if it satisfies `f`, else waits for the next change that
    /// does; `None` once the lock is dropped.
    pub async fn wait_for(&mut self, mut f: impl FnMut(&LockState) -> bool) -> Option<LockState> {
        let now = self.current();
        if f(&now) {
            return Some(now);
        }
        loop {
            let s = self.rx.recv().await?;
            if f(&s) {
                return Some(s);
            }
        }
    }
}

/// A lock's state and the streams that hear its changes.
#[derive(Debug)]
pub(crate) struct StateCell {
    inner: Mutex<CellInner>,
}

#[derive(Debug)]
struct CellInner {
    state: LockState,
    subscribers: Vec<mpsc::UnboundedSender<LockState>>,
}

impl StateCell {
    fn new() -> Arc<StateCell> {
        Arc::new(StateCell {
            inner: Mutex::new(CellInner {
                state: LockState::Released,
                subscribers: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CellInner> {
        // A panic while holding it leaves a valid state (it is one plain value).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get(&self) -> LockState {
        self.lock().state
    }

    /// Applies `f`; a change is sent to every stream (under the lock, so in order).
    fn update(&self, f: impl FnOnce(LockState) -> LockState) {
        let mut g = self.lock();
        let next = f(g.state);
        if next != g.state {
            g.state = next;
            g.subscribers.retain(|tx| tx.send(next).is_ok());
        }
    }

    pub(crate) fn subscribe(self: &Arc<Self>) -> LockEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().subscribers.push(tx);
        LockEvents {
            cell: self.clone(),
            rx,
        }
    }

    /// Ends every stream (the lock is gone).
    fn close(&self) {
        self.lock().subscribers.clear();
    }
}

/// Kazoo's distributed lock: at most one holder at a time per path, among wazoo and Kazoo
/// contenders (and Curator's, with [`Lock::extra_lock_patterns`]).
///
/// Not re-entrant. Dropping a `Lock` deletes its node (without waiting), so a lock held or
/// awaited by a dropped handle frees its place.
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// use std::time::Duration;
/// let mut lock = wazoo::Lock::new(&zk, "/locks/report", "worker-1")?;
/// let token = lock.acquire(Some(Duration::from_secs(10))).await?;
/// // ... work, passing `token.sequence` to whatever the lock protects ...
/// lock.release().await?;
/// # Ok(()) }
/// ```
pub struct Lock {
    client: Client,
    core: LockCore,
    shared: Arc<Shared>,
    listener: ListenerId,
    /// The session-loss count when the core last heard of it.
    seen_losses: u64,
}

struct Shared {
    state: Arc<StateCell>,
    /// Times a watch on a predecessor woke this contender.
    wakeups: AtomicU64,
    /// Session losses seen by the listener.
    losses: AtomicU64,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lock")
            .field("path", &self.core.dir)
            .field("node", &self.core.node)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Lock {
    /// An exclusive lock on `path` (Kazoo's `Lock`), naming its holder `identifier` (the node's
    /// data, what [`Lock::contenders`] lists).
    pub fn new(client: &Client, path: &str, identifier: &str) -> Result<Lock> {
        Lock::with_kind(client, path, identifier, Kind::Exclusive)
    }

    /// The read side of a shared lock (Kazoo's `ReadLock`): held with other readers, never
    /// with a writer that came first.
    pub fn new_read(client: &Client, path: &str, identifier: &str) -> Result<Lock> {
        Lock::with_kind(client, path, identifier, Kind::Read)
    }

    /// The write side of a shared lock (Kazoo's `WriteLock`): held alone, waiting for readers
    /// and writers that came first.
    pub fn new_write(client: &Client, path: &str, identifier: &str) -> Result<Lock> {
        Lock::with_kind(client, path, identifier, Kind::Write)
    }

    fn with_kind(client: &Client, path: &str, identifier: &str, kind: Kind) -> Result<Lock> {
        crate::path::validate_path(path, false)?;
        let shared = Arc::new(Shared {
            state: StateCell::new(),
            wakeups: AtomicU64::new(0),
            losses: AtomicU64::new(0),
        });
        let s = shared.clone();
        let listener = client.add_listener(move |ev, _| {
            if ev.state == SessionState::Lost {
                s.losses.fetch_add(1, Ordering::SeqCst);
            }
            s.state.update(|st| st.on_session(ev.state));
        });
        Ok(Lock {
            client: client.clone(),
            core: LockCore::new(path, identifier.as_bytes(), kind),
            shared,
            listener,
            seen_losses: 0,
        })
    }

    /// Also treats children whose names end in one of `patterns` and a sequence number as
    /// contenders (Kazoo's `extra_lock_patterns`): `["-lock-"]` for Curator's
    /// `InterProcessMutex`.
    pub fn extra_lock_patterns<S: AsRef<str>>(mut self, patterns: &[S]) -> Lock {
        for p in patterns {
            self.core.add_pattern(p.as_ref());
        }
        self
    }

    /// Acquires the lock, waiting at most `timeout` (None: as long as it takes). Fails with
    /// [`Error::Timeout`] when the wait ran out (its node is then removed), or with the error
    /// that stopped it. Connection loss and session expiry while waiting are ridden out (a new
    /// session contends again, at the back of the queue).
    pub async fn acquire(&mut self, timeout: Option<Duration>) -> Result<FencingToken> {
        match self.contend(true, timeout).await? {
            Some(t) => Ok(t),
            None => Err(Error::Timeout(timeout.unwrap_or_default())),
        }
    }

    /// Takes the lock if nobody holds or awaits it ahead of this contender; `None` if someone
    /// does (its node is then removed).
    pub async fn try_acquire(&mut self) -> Result<Option<FencingToken>> {
        self.contend(false, None).await
    }

    async fn contend(
        &mut self,
        blocking: bool,
        timeout: Option<Duration>,
    ) -> Result<Option<FencingToken>> {
        if let (LockState::Held | LockState::Suspended, Some(t)) = (self.state(), self.core.token) {
            return Ok(Some(t));
        }
        let losses = self.shared.losses.load(Ordering::SeqCst);
        if losses != self.seen_losses {
            self.seen_losses = losses;
            self.core.forget_node();
        }
        self.set_state(LockState::Acquiring);
        let first = self.core.acquire(blocking);
        let outcome = match timeout {
            None => Some(self.drive(first).await),
            Some(t) => tokio::time::timeout(t, self.drive(first)).await.ok(),
        };
        match outcome {
            Some(Ok(Some(token))) => {
                self.set_state(LockState::Held);
                Ok(Some(token))
            }
            Some(Ok(None)) => {
                self.set_state(LockState::Released);
                Ok(None)
            }
            Some(Err(e)) => {
                self.abandon().await;
                Err(e)
            }
            None => {
                self.abandon().await;
                Ok(None)
            }
        }
    }

    /// Runs the core until it has a verdict: a token, not acquired (None), or an error.
    async fn drive(&mut self, mut step: Step) -> Result<Option<FencingToken>> {
        let mut watcher: Option<OneshotWatcher> = None;
        loop {
            step = match step {
                Step::Send(req) => {
                    let (reply, w) = driver::send(&self.client, req).await;
                    if w.is_some() {
                        watcher = w;
                    }
                    self.core.on_reply(reply, self.client.session_id())
                }
                Step::WaitWatch => {
                    let w = watcher.take().ok_or_else(|| {
                        Error::InvalidArgument("lock: a wait without a watch".into())
                    })?;
                    let ev = w.changed().await;
                    self.shared.wakeups.fetch_add(1, Ordering::Relaxed);
                    let fired = match (ev.event_type, ev.keeper_state) {
                        (EventType::None, KeeperState::Closed) => return Err(Error::Closed),
                        (EventType::None, _) => Watch::SessionLost,
                        _ => Watch::Fired,
                    };
                    self.core.on_watch(fired)
                }
                Step::Acquired(t) => return Ok(Some(t)),
                Step::NotAcquired | Step::Released => return Ok(None),
                Step::Failed(e) => return Err(e),
            }
        }
    }

    /// Removes this contender's node after a timeout or an error, bounded by the session
    /// timeout (a client that stays away that long loses the node with its session anyway).
    async fn abandon(&mut self) {
        let bound = self.client.negotiated_timeout().max(Duration::from_secs(1));
        let step = self.core.abandon();
        if tokio::time::timeout(bound, self.drive(step)).await.is_err() {
            tracing::warn!(path = %self.core.dir, "lock: could not remove an abandoned contender node in time");
        }
        self.set_state(LockState::Released);
    }

    /// Releases the lock (deletes its node); false if it was not held. After the session was
    /// lost, the node is already gone and this only resets the state.
    pub async fn release(&mut self) -> Result<bool> {
        let held = matches!(
            self.state(),
            LockState::Held | LockState::Suspended | LockState::Lost
        );
        let step = self.core.release();
        self.drive(step).await?;
        self.set_state(LockState::Released);
        Ok(held)
    }

    /// The identifiers of every contender, the holder first (Kazoo's `contenders()`; a
    /// contender without an identifier appears as an empty string).
    pub async fn contenders(&self) -> Result<Vec<String>> {
        let children = match self.client.get_children(&self.core.dir).await {
            Ok((c, _)) => c,
            Err(Error::NoNode) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let names = self.core.all_contenders(&children);
        let reads: Vec<_> = names
            .iter()
            .map(|n| {
                std::future::IntoFuture::into_future(self.client.get_data(&join(&self.core.dir, n)))
            })
            .collect();
        let mut out = Vec::with_capacity(names.len());
        for r in reads {
            match r.await {
                Ok((data, _)) => out.push(String::from_utf8_lossy(&data).into_owned()),
                Err(Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Where the lock stands now.
    pub fn state(&self) -> LockState {
        self.shared.state.get()
    }

    /// Whether the lock is held with the session connected (`Held`).
    pub fn is_acquired(&self) -> bool {
        self.state() == LockState::Held
    }

    /// The token of the current hold (None when not held).
    pub fn token(&self) -> Option<FencingToken> {
        match self.state() {
            LockState::Held | LockState::Suspended => self.core.token,
            _ => None,
        }
    }

    /// Every state change from now on (`Suspended` and `Lost` among them).
    pub fn state_events(&self) -> LockEvents {
        self.shared.state.subscribe()
    }

    /// The state cell, for owners that outlive their hold on the `Lock` (a latch's task).
    pub(crate) fn state_cell(&self) -> Arc<StateCell> {
        self.shared.state.clone()
    }

    /// How many times a watch on a predecessor woke this contender: with no herd, one per
    /// predecessor that went before it acquired.
    pub fn wakeups(&self) -> u64 {
        self.shared.wakeups.load(Ordering::Relaxed)
    }

    /// The lock's path.
    pub fn path(&self) -> &str {
        &self.core.dir
    }

    /// This contender's node path, while it has one.
    pub fn node_path(&self) -> Option<String> {
        self.core.node.as_ref().map(|n| join(&self.core.dir, n))
    }

    fn set_state(&self, s: LockState) {
        self.shared.state.update(|_| s);
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.client.remove_listener(self.listener);
        self.shared.state.close();
        if let Some(path) = self.node_path() {
            // Fire and forget: the request completes whenever the session can send it.
            let _ = self.client.delete(&path, None).rawlink(|_, _| {});
        }
    }
}

/// The blocking facade of [`Lock`], for threads without a runtime (as [`crate::BlockingClient`]
/// is for the client). Do not use it inside an async task.
#[derive(Debug)]
pub struct BlockingLock {
    inner: Lock,
}

impl BlockingLock {
    /// Wraps a lock.
    pub fn new(lock: Lock) -> BlockingLock {
        BlockingLock { inner: lock }
    }
    /// See [`Lock::acquire`].
    pub fn acquire(&mut self, timeout: Option<Duration>) -> Result<FencingToken> {
        driver::run_blocking(self.inner.acquire(timeout))?
    }
    /// See [`Lock::try_acquire`].
    pub fn try_acquire(&mut self) -> Result<Option<FencingToken>> {
        driver::run_blocking(self.inner.try_acquire())?
    }
    /// See [`Lock::release`].
    pub fn release(&mut self) -> Result<bool> {
        driver::run_blocking(self.inner.release())?
    }
    /// See [`Lock::contenders`].
    pub fn contenders(&self) -> Result<Vec<String>> {
        driver::run_blocking(self.inner.contenders())?
    }
    /// The async lock underneath (state, events, token).
    pub fn get_ref(&self) -> &Lock {
        &self.inner
    }
}

// ---- the core ----

/// Which of Kazoo's lock classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Exclusive,
    Read,
    Write,
}

/// What the core wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Send(Request),
    /// Wait for the watch left by the last `GetData`, then call [`LockCore::on_watch`].
    WaitWatch,
    Acquired(FencingToken),
    NotAcquired,
    Released,
    Failed(Error),
}

/// How the watch on a predecessor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watch {
    /// It fired (the predecessor changed or went).
    Fired,
    /// The session was lost: so is this contender's node.
    SessionLost,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Idle,
    Create,
    List,
    Watch,
    Wait,
    Held,
    Release,
    AbandonFind,
    AbandonDelete,
}

/// The lock state machine: one contender's view of the lock directory.
#[derive(Debug, Clone)]
pub(crate) struct LockCore {
    dir: String,
    /// Patterns that exclude this contender when found at a smaller sequence number.
    excludes: Vec<String>,
    /// Every contender pattern (for `contenders()`).
    all: Vec<String>,
    create: Protected,
    /// This contender's node name, once created.
    node: Option<String>,
    /// The session that created it (its ephemeral owner).
    owner: i64,
    token: Option<FencingToken>,
    blocking: bool,
    phase: Phase,
}

impl LockCore {
    pub(crate) fn new(dir: &str, data: &[u8], kind: Kind) -> LockCore {
        let (own, excludes): (&str, &[&str]) = match kind {
            Kind::Exclusive => ("__lock__", &["__lock__"]),
            Kind::Read => ("__rlock__", &["__lock__"]),
            Kind::Write => ("__lock__", &["__lock__", "__rlock__"]),
        };
        let prefix = format!("{}{own}", driver::uuid_hex());
        let mut all: Vec<String> = excludes.iter().map(|s| s.to_string()).collect();
        if !all.iter().any(|p| p == own) {
            all.push(own.to_string());
        }
        LockCore {
            dir: dir.to_string(),
            excludes: excludes.iter().map(|s| s.to_string()).collect(),
            all,
            create: Protected::new(
                dir,
                &prefix,
                &prefix,
                data,
                CreateMode::EphemeralSequential,
                true,
            ),
            node: None,
            owner: 0,
            token: None,
            blocking: true,
            phase: Phase::Idle,
        }
    }

    fn add_pattern(&mut self, p: &str) {
        if !self.excludes.iter().any(|e| e == p) {
            self.excludes.push(p.to_string());
        }
        if !self.all.iter().any(|e| e == p) {
            self.all.push(p.to_string());
        }
    }

    /// The session was lost: the node is gone (or going) with it.
    pub(crate) fn forget_node(&mut self) {
        self.node = None;
        self.token = None;
    }

    /// Starts contending. A contender that still has its node (an earlier acquire was
    /// interrupted) goes on from it.
    pub(crate) fn acquire(&mut self, blocking: bool) -> Step {
        self.blocking = blocking;
        if self.node.is_some() {
            return self.list();
        }
        self.phase = Phase::Create;
        into_step(self.create.start())
    }

    fn list(&mut self) -> Step {
        self.phase = Phase::List;
        Step::Send(Request::GetChildren(self.dir.clone()))
    }

    fn recreate(&mut self) -> Step {
        self.forget_node();
        self.create.reset();
        self.phase = Phase::Create;
        into_step(self.create.start())
    }

    fn own_path(&self) -> Option<String> {
        self.node.as_ref().map(|n| join(&self.dir, n))
    }

    pub(crate) fn on_reply(&mut self, reply: Reply, session_id: i64) -> Step {
        match self.phase {
            Phase::Create => match self.create.on_reply(reply, session_id) {
                protected::Next::Send(r) => Step::Send(r),
                protected::Next::Done(Ok((path, stat))) => self.created(&path, &stat),
                protected::Next::Done(Err(e)) => Step::Failed(e),
            },
            Phase::List => match reply {
                Ok(Response::Children(children)) => self.decide(&children, session_id),
                Err(e) if driver::transient(&e) => self.list(),
                Err(Error::SessionExpired | Error::NoNode) => self.recreate(),
                Err(e) => Step::Failed(e),
                Ok(r) => unexpected(r),
            },
            Phase::Watch => match reply {
                Ok(Response::Data(..)) => {
                    self.phase = Phase::Wait;
                    Step::WaitWatch
                }
                Err(Error::NoNode) => self.list(),
                Err(e) if driver::transient(&e) => self.list(),
                Err(Error::SessionExpired) => self.recreate(),
                Err(e) => Step::Failed(e),
                Ok(r) => unexpected(r),
            },
            Phase::Release => match reply {
                Ok(_) | Err(Error::NoNode | Error::SessionExpired) => {
                    self.forget_node();
                    self.phase = Phase::Idle;
                    Step::Released
                }
                Err(e) if driver::transient(&e) => self.release(),
                Err(e) => Step::Failed(e),
            },
            Phase::AbandonFind => match reply {
                Ok(Response::Children(children)) => {
                    match children
                        .iter()
                        .find(|c| c.starts_with(self.create.prefix()))
                    {
                        Some(c) => {
                            self.node = Some(c.clone());
                            self.abandon()
                        }
                        None => self.abandoned(),
                    }
                }
                Err(e) if driver::transient(&e) => self.abandon(),
                Err(Error::NoNode | Error::SessionExpired) => self.abandoned(),
                Err(e) => Step::Failed(e),
                Ok(r) => unexpected(r),
            },
            Phase::AbandonDelete => match reply {
                Ok(_) | Err(Error::NoNode | Error::SessionExpired) => self.abandoned(),
                Err(e) if driver::transient(&e) => self.abandon(),
                Err(e) => Step::Failed(e),
            },
            Phase::Idle | Phase::Wait | Phase::Held => Step::Failed(Error::InvalidArgument(
                format!("lock: a reply in phase {:?}", self.phase),
            )),
        }
    }

    fn created(&mut self, path: &str, stat: &Stat) -> Step {
        let name = name_of(path).to_string();
        let sequence = sequence_of(&name, &self.all)
            .and_then(|s| s.parse().ok())
            .unwrap_or(-1);
        self.token = Some(FencingToken {
            sequence,
            czxid: stat.czxid,
        });
        self.node = Some(name);
        self.owner = stat.ephemeral_owner;
        self.list()
    }

    /// Given the directory's children: acquired, or whom to watch.
    fn decide(&mut self, children: &[String], session_id: i64) -> Step {
        let Some(own) = self.node.clone() else {
            return self.recreate();
        };
        if !children.contains(&own) || self.owner != session_id {
            // Our node went, or belongs to a session that is gone (the client may see its
            // session expire a moment before the server removes the node): contend again.
            return self.recreate();
        }
        match predecessor(children, &own, &self.all, &self.excludes) {
            None => {
                self.phase = Phase::Held;
                match self.token {
                    Some(t) => Step::Acquired(t),
                    None => Step::Failed(Error::InvalidArgument("lock: no token".into())),
                }
            }
            Some(_) if !self.blocking => self.abandon(),
            Some(p) => {
                self.phase = Phase::Watch;
                Step::Send(Request::GetData {
                    path: join(&self.dir, &p),
                    watch: true,
                })
            }
        }
    }

    pub(crate) fn on_watch(&mut self, w: Watch) -> Step {
        match w {
            Watch::Fired => self.list(),
            Watch::SessionLost => self.recreate(),
        }
    }

    /// Gives up contending (a timeout, an error, try-acquire finding someone ahead): removes
    /// this contender's node, finding it by its prefix when a create's outcome is unknown.
    pub(crate) fn abandon(&mut self) -> Step {
        if let Some(path) = self.own_path() {
            self.phase = Phase::AbandonDelete;
            return Step::Send(Request::Delete { path, version: -1 });
        }
        if self.phase == Phase::Create || self.create.tried() {
            self.phase = Phase::AbandonFind;
            return Step::Send(Request::GetChildren(self.dir.clone()));
        }
        self.abandoned()
    }

    fn abandoned(&mut self) -> Step {
        self.forget_node();
        self.create.reset();
        self.phase = Phase::Idle;
        Step::NotAcquired
    }

    /// Releases: deletes the node, if there is one.
    pub(crate) fn release(&mut self) -> Step {
        match self.own_path() {
            Some(path) => {
                self.phase = Phase::Release;
                Step::Send(Request::Delete { path, version: -1 })
            }
            None => {
                self.phase = Phase::Idle;
                Step::Released
            }
        }
    }

    /// Every contender's node name, in lock order.
    pub(crate) fn all_contenders(&self, children: &[String]) -> Vec<String> {
        let mut c: Vec<(String, &String)> = children
            .iter()
            .filter_map(|n| sequence_of(n, &self.all).map(|s| (s.to_string(), n)))
            .collect();
        c.sort();
        c.into_iter().map(|(_, n)| n.clone()).collect()
    }
}

fn into_step(n: protected::Next) -> Step {
    match n {
        protected::Next::Send(r) => Step::Send(r),
        protected::Next::Done(Ok(_)) => Step::Failed(Error::InvalidArgument(
            "lock: a create finished before it started".into(),
        )),
        protected::Next::Done(Err(e)) => Step::Failed(e),
    }
}

fn unexpected(r: Response) -> Step {
    Step::Failed(Error::InvalidArgument(format!(
        "lock: unexpected reply {r:?}"
    )))
}

/// The sequence part of a contender's name, as Kazoo's regex `(?:p1|p2|...)(-?\d{10})$` finds
/// it; None if the name matches no pattern.
pub(crate) fn sequence_of<'a>(name: &'a str, patterns: &[String]) -> Option<&'a str> {
    let digits_at = name.len().checked_sub(10)?;
    let digits = name.get(digits_at..)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let head = &name[..digits_at];
    // A leading '-' belongs to the sequence when a pattern ends right before it (the regex's
    // leftmost match), as for a counter that overflowed.
    if let Some(h) = head.strip_suffix('-') {
        if patterns.iter().any(|p| h.ends_with(p.as_str())) {
            return Some(&name[digits_at - 1..]);
        }
    }
    patterns
        .iter()
        .any(|p| head.ends_with(p.as_str()))
        .then_some(digits)
}

/// The contender `own` must wait for: the excluding contender with the largest sequence below
/// its own (compared as Kazoo compares them, as strings); None when it holds the lock.
pub(crate) fn predecessor(
    children: &[String],
    own: &str,
    all: &[String],
    excludes: &[String],
) -> Option<String> {
    let own_seq = sequence_of(own, all)?;
    children
        .iter()
        .filter(|c| c.as_str() != own)
        .filter_map(|c| sequence_of(c, excludes).map(|s| (s, c)))
        .filter(|(s, _)| *s < own_seq)
        .max_by(|a, b| a.0.cmp(b.0))
        .map(|(_, c)| c.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn kazoo_and_curator_names_are_recognised() {
        let pats = s(&["__lock__", "-lock-"]);
        assert_eq!(
            sequence_of("abc__lock__0000000007", &pats),
            Some("0000000007")
        );
        assert_eq!(
            sequence_of("_c_0f-aa-lock-0000000012", &pats),
            Some("0000000012")
        );
        assert_eq!(
            sequence_of("abc__rlock__0000000007", &s(&["__lock__"])),
            None
        );
        assert_eq!(sequence_of("abc__lock__000000007", &pats), None);
        assert_eq!(
            sequence_of("x__lock__-0000000001", &pats),
            Some("-0000000001")
        );
        assert_eq!(sequence_of("leader", &pats), None);
    }

    #[test]
    fn the_predecessor_is_the_nearest_excluding_node_below() {
        let all = s(&["__lock__"]);
        let children = s(&[
            "c__lock__0000000003",
            "a__lock__0000000001",
            "b__lock__0000000002",
            "junk",
        ]);
        assert_eq!(
            predecessor(&children, "a__lock__0000000001", &all, &all),
            None
        );
        assert_eq!(
            predecessor(&children, "c__lock__0000000003", &all, &all).as_deref(),
            Some("b__lock__0000000002")
        );
    }

    #[test]
    fn readers_share_and_writers_exclude() {
        let children = s(&[
            "r1__rlock__0000000001",
            "w__lock__0000000002",
            "r2__rlock__0000000003",
        ]);
        let read = LockCore::new("/l", b"", Kind::Read);
        let write = LockCore::new("/l", b"", Kind::Write);
        // The first reader holds it; the writer waits for it; the second reader waits for the
        // writer (not for the first reader).
        assert_eq!(
            predecessor(
                &children,
                "r1__rlock__0000000001",
                &read.all,
                &read.excludes
            ),
            None
        );
        assert_eq!(
            predecessor(
                &children,
                "w__lock__0000000002",
                &write.all,
                &write.excludes
            )
            .as_deref(),
            Some("r1__rlock__0000000001")
        );
        assert_eq!(
            predecessor(
                &children,
                "r2__rlock__0000000003",
                &read.all,
                &read.excludes
            )
            .as_deref(),
            Some("w__lock__0000000002")
        );
        let two_readers = s(&["r1__rlock__0000000001", "r2__rlock__0000000003"]);
        assert_eq!(
            predecessor(
                &two_readers,
                "r2__rlock__0000000003",
                &read.all,
                &read.excludes
            ),
            None
        );
    }

    fn created(core: &mut LockCore, seq: u32, czxid: i64) -> (String, Step) {
        let name = format!("{}{seq:010}", core.create.prefix());
        let step = core.on_reply(
            Ok(Response::Created(
                format!("/l/{name}"),
                Stat {
                    czxid,
                    ephemeral_owner: 1,
                    ..Stat::default()
                },
            )),
            1,
        );
        (name, step)
    }

    #[test]
    fn uncontended_acquire_is_create_then_list() {
        let mut core = LockCore::new("/l", b"me", Kind::Exclusive);
        let Step::Send(Request::Create { path, data, mode }) = core.acquire(true) else {
            panic!("a create first");
        };
        assert!(
            path.starts_with("/l/") && path.ends_with("__lock__"),
            "{path}"
        );
        assert_eq!(
            (data.as_slice(), mode),
            (&b"me"[..], CreateMode::EphemeralSequential)
        );
        let (name, step) = created(&mut core, 4, 99);
        assert_eq!(step, Step::Send(Request::GetChildren("/l".into())));
        assert_eq!(
            core.on_reply(Ok(Response::Children(vec![name.clone()])), 1),
            Step::Acquired(FencingToken {
                sequence: 4,
                czxid: 99
            })
        );
        assert_eq!(
            core.release(),
            Step::Send(Request::Delete {
                path: format!("/l/{name}"),
                version: -1
            })
        );
        assert_eq!(core.on_reply(Err(Error::ConnectionLoss), 1), core.release());
        assert_eq!(core.on_reply(Err(Error::NoNode), 1), Step::Released);
    }

    #[test]
    fn a_waiter_watches_only_its_predecessor_and_relists_when_it_goes() {
        let mut core = LockCore::new("/l", b"", Kind::Exclusive);
        core.acquire(true);
        let (name, _) = created(&mut core, 3, 10);
        let children = s(&["x__lock__0000000001", "y__lock__0000000002", &name]);
        assert_eq!(
            core.on_reply(Ok(Response::Children(children)), 1),
            Step::Send(Request::GetData {
                path: "/l/y__lock__0000000002".into(),
                watch: true
            })
        );
        assert_eq!(
            core.on_reply(Ok(Response::Data(vec![], Stat::default())), 1),
            Step::WaitWatch
        );
        assert_eq!(
            core.on_watch(Watch::Fired),
            Step::Send(Request::GetChildren("/l".into()))
        );
        // The predecessor went, but one further ahead is still there: watch it now.
        let children = s(&["x__lock__0000000001", &name]);
        assert_eq!(
            core.on_reply(Ok(Response::Children(children)), 1),
            Step::Send(Request::GetData {
                path: "/l/x__lock__0000000001".into(),
                watch: true
            })
        );
        // It vanished before the watch was set: list again at once.
        assert_eq!(
            core.on_reply(Err(Error::NoNode), 1),
            Step::Send(Request::GetChildren("/l".into()))
        );
        assert!(matches!(
            core.on_reply(Ok(Response::Children(vec![name])), 1),
            Step::Acquired(_)
        ));
    }

    #[test]
    fn try_acquire_behind_someone_removes_its_node() {
        let mut core = LockCore::new("/l", b"", Kind::Exclusive);
        core.acquire(false);
        let (name, _) = created(&mut core, 2, 10);
        let children = s(&["x__lock__0000000001", &name]);
        assert_eq!(
            core.on_reply(Ok(Response::Children(children)), 1),
            Step::Send(Request::Delete {
                path: format!("/l/{name}"),
                version: -1
            })
        );
        assert_eq!(core.on_reply(Ok(Response::Unit), 1), Step::NotAcquired);
        assert_eq!(core.node, None);
    }

    #[test]
    fn a_timeout_during_the_create_finds_and_removes_the_node() {
        let mut core = LockCore::new("/l", b"", Kind::Exclusive);
        core.acquire(true);
        // The driver gave up while the create was in flight.
        assert_eq!(
            core.abandon(),
            Step::Send(Request::GetChildren("/l".into()))
        );
        let name = format!("{}0000000005", core.create.prefix());
        assert_eq!(
            core.on_reply(
                Ok(Response::Children(vec!["other".into(), name.clone()])),
                1
            ),
            Step::Send(Request::Delete {
                path: format!("/l/{name}"),
                version: -1
            })
        );
        assert_eq!(core.on_reply(Err(Error::NoNode), 1), Step::NotAcquired);
    }

    #[test]
    fn a_lost_node_or_session_contends_again() {
        let mut core = LockCore::new("/l", b"", Kind::Exclusive);
        core.acquire(true);
        let (_, _) = created(&mut core, 2, 10);
        // Our node is not among the children: the session was lost meanwhile.
        let step = core.on_reply(Ok(Response::Children(s(&["x__lock__0000000001"]))), 1);
        assert!(
            matches!(step, Step::Send(Request::Create { .. })),
            "{step:?}"
        );
        let (name, _) = created(&mut core, 3, 11);
        core.on_reply(
            Ok(Response::Children(s(&["x__lock__0000000001", &name]))),
            1,
        );
        core.on_reply(Ok(Response::Data(vec![], Stat::default())), 1);
        let step = core.on_watch(Watch::SessionLost);
        assert!(
            matches!(step, Step::Send(Request::Create { .. })),
            "{step:?}"
        );
    }

    #[test]
    fn a_node_of_an_earlier_session_is_not_held() {
        let mut core = LockCore::new("/l", b"", Kind::Exclusive);
        core.acquire(true);
        let (name, _) = created(&mut core, 2, 10);
        // The session changed (1 -> 2) while the list was in flight; the old node is still
        // listed because the server has not removed it yet.
        let step = core.on_reply(Ok(Response::Children(vec![name])), 2);
        assert!(
            matches!(step, Step::Send(Request::Create { .. })),
            "{step:?}"
        );
    }

    #[test]
    fn holder_states_follow_kazoos_meaning() {
        use LockState::*;
        assert_eq!(Held.on_session(SessionState::Suspended), Suspended);
        assert_eq!(Suspended.on_session(SessionState::Connected), Held);
        assert_eq!(Suspended.on_session(SessionState::Lost), Lost);
        assert_eq!(Held.on_session(SessionState::Lost), Lost);
        assert_eq!(Lost.on_session(SessionState::Connected), Lost);
        assert_eq!(Released.on_session(SessionState::Suspended), Released);
        assert_eq!(Acquiring.on_session(SessionState::Lost), Acquiring);
    }

    #[test]
    fn every_state_change_reaches_every_stream_in_order() {
        use LockState::*;
        let cell = StateCell::new();
        let mut a = cell.subscribe();
        cell.update(|_| Held);
        let mut b = cell.subscribe();
        // A suspension that a reconnect ends at once is still heard.
        cell.update(|s| s.on_session(SessionState::Suspended));
        cell.update(|s| s.on_session(SessionState::Connected));
        cell.update(|s| s.on_session(SessionState::Connected)); // no change, no event
        let drain =
            |e: &mut LockEvents| std::iter::from_fn(|| e.rx.try_recv().ok()).collect::<Vec<_>>();
        assert_eq!(drain(&mut a), [Held, Suspended, Held]);
        assert_eq!(drain(&mut b), [Suspended, Held]);
        assert_eq!(b.current(), Held);
        cell.close();
        assert_eq!(
            crate::blocking::block_on(a.changed()),
            None,
            "closed with the lock"
        );
    }

    #[test]
    fn contenders_are_listed_in_lock_order() {
        let core = LockCore::new("/l", b"", Kind::Exclusive);
        let children = s(&["b__lock__0000000002", "junk", "a__lock__0000000001"]);
        assert_eq!(
            core.all_contenders(&children),
            s(&["a__lock__0000000001", "b__lock__0000000002"])
        );
    }
}
