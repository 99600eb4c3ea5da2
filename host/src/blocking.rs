//! A blocking facade over the async client, for synchronous callers: callbacks on the dispatch
//! lanes, scripts, threads without a runtime.
//!
//! The client's futures only wait on channels fed by the session thread, so they can be driven
//! by a plain thread-parking executor: no tokio runtime is needed on the calling thread, and the
//! session never waits for the caller.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

use crate::client::{Client, CreateOptions, OneshotWatcher, PersistentWatcher};
use crate::error::Result;
use crate::proto::multi::{Op, OpResult, ReadOp, ReadResult};
use crate::proto::records::{
    Acl, AddWatchMode, ClientInfo, CreateMode, Stat, WatchedEvent, WatcherType,
};
use crate::session::SessionState;

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the current thread, parking between wake-ups. Only for
/// futures that need no runtime (the client's do not).
pub fn block_on<F: IntoFuture>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut.into_future());
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// The [`Client`]'s operations as blocking calls. Each call blocks only its own thread.
///
/// Do not call it from inside an async task: it would block that runtime's worker thread.
///
/// ```no_run
/// # fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// let zk = wazoo::BlockingClient::new(zk);
/// let (data, _stat) = zk.get_data("/config")?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct BlockingClient {
    inner: Client,
}

impl BlockingClient {
    /// Wraps an async client (they share the session).
    pub fn new(client: Client) -> BlockingClient {
        BlockingClient { inner: client }
    }

    /// The async client underneath.
    pub fn async_client(&self) -> &Client {
        &self.inner
    }

    /// See [`Client::state`].
    pub fn state(&self) -> SessionState {
        self.inner.state()
    }
    /// See [`Client::session_id`].
    pub fn session_id(&self) -> i64 {
        self.inner.session_id()
    }
    /// See [`Client::create`].
    pub fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        block_on(self.inner.create(path, data, mode))
    }
    /// See [`Client::create_with`].
    pub fn create_with(
        &self,
        path: &str,
        data: &[u8],
        opts: &CreateOptions,
    ) -> Result<(String, Stat)> {
        block_on(self.inner.create_with(path, data, opts))
    }
    /// See [`Client::ensure_path`].
    pub fn ensure_path(&self, path: &str) -> Result<()> {
        block_on(self.inner.ensure_path(path))
    }
    /// See [`Client::delete`].
    pub fn delete(&self, path: &str, version: Option<i32>) -> Result<()> {
        block_on(self.inner.delete(path, version))
    }
    /// See [`Client::delete_recursive`].
    pub fn delete_recursive(&self, path: &str) -> Result<()> {
        block_on(self.inner.delete_recursive(path))
    }
    /// See [`Client::exists`].
    pub fn exists(&self, path: &str) -> Result<Option<Stat>> {
        block_on(self.inner.exists(path))
    }
    /// See [`Client::exists_watch`].
    pub fn exists_watch(&self, path: &str) -> Result<(Option<Stat>, OneshotWatcher)> {
        block_on(self.inner.exists_watch(path))
    }
    /// See [`Client::get_data`].
    pub fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat)> {
        block_on(self.inner.get_data(path))
    }
    /// See [`Client::get_data_watch`].
    pub fn get_data_watch(&self, path: &str) -> Result<(Vec<u8>, Stat, OneshotWatcher)> {
        block_on(self.inner.get_data_watch(path))
    }
    /// See [`Client::get_children`].
    pub fn get_children(&self, path: &str) -> Result<(Vec<String>, Stat)> {
        block_on(self.inner.get_children(path))
    }
    /// See [`Client::get_children_watch`].
    pub fn get_children_watch(&self, path: &str) -> Result<(Vec<String>, Stat, OneshotWatcher)> {
        block_on(self.inner.get_children_watch(path))
    }
    /// See [`Client::set_data`].
    pub fn set_data(&self, path: &str, data: &[u8], version: Option<i32>) -> Result<Stat> {
        block_on(self.inner.set_data(path, data, version))
    }
    /// See [`Client::get_acl`].
    pub fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat)> {
        block_on(self.inner.get_acl(path))
    }
    /// See [`Client::set_acl`].
    pub fn set_acl(&self, path: &str, acl: &[Acl], version: Option<i32>) -> Result<Stat> {
        block_on(self.inner.set_acl(path, acl, version))
    }
    /// See [`Client::sync`].
    pub fn sync(&self, path: &str) -> Result<()> {
        block_on(self.inner.sync(path))
    }
    /// See [`Client::multi`].
    pub fn multi(&self, ops: &[Op]) -> Result<Vec<OpResult>> {
        block_on(self.inner.multi(ops))
    }
    /// See [`Client::multi_read`].
    pub fn multi_read(&self, reads: &[ReadOp]) -> Result<Vec<ReadResult>> {
        block_on(self.inner.multi_read(reads))
    }
    /// See [`Client::add_watch`].
    pub fn add_watch(&self, path: &str, mode: AddWatchMode) -> Result<PersistentWatcher> {
        block_on(self.inner.add_watch(path, mode))
    }
    /// See [`Client::remove_watches`].
    pub fn remove_watches(&self, path: &str, kind: WatcherType) -> Result<()> {
        block_on(self.inner.remove_watches(path, kind))
    }
    /// See [`Client::add_auth`].
    pub fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<()> {
        block_on(self.inner.add_auth(scheme, auth))
    }
    /// See [`Client::whoami`].
    pub fn whoami(&self) -> Result<Vec<ClientInfo>> {
        block_on(self.inner.whoami())
    }
    /// Waits for a one-shot watch to fire.
    pub fn wait_watch(&self, w: OneshotWatcher) -> WatchedEvent {
        block_on(w.changed())
    }
    /// See [`Client::close`].
    pub fn close(&self) {
        block_on(self.inner.close())
    }
}
