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
use std::time::Duration;

use crate::client::{Client, CreateOptions, OneshotWatcher, PersistentWatcher};
use crate::dispatch::CallbackInfo;
use crate::error::Result;
use crate::proto::multi::{Op, OpResult, ReadOp, ReadResult};
use crate::proto::records::{
    Acl, AddWatchMode, ClientInfo, CreateMode, Stat, WatchedEvent, WatcherType,
};
use crate::session::{SessionEvent, SessionState};
use crate::ListenerId;

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
/// Every public method of [`Client`] has a blocking twin here of the same name, except the few
/// that build or re-plumb a client (`builder`, `connect`, `with_lanes`, `lanes`: use
/// [`BlockingClient::async_client`]) and the async stream `state_events` (blocking code takes
/// [`BlockingClient::add_listener`]); a unit test keeps it so.
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

    /// A handle on the same session whose requests belong to `tenant` (see
    /// [`Client::for_tenant`]): a call beyond the tenant's cap waits for a slot.
    pub fn for_tenant(&self, tenant: std::sync::Arc<crate::Tenant>) -> BlockingClient {
        BlockingClient::new(self.inner.for_tenant(tenant))
    }

    /// The tenant this handle's requests belong to (`None`: the embedding service's own).
    pub fn tenant(&self) -> Option<&std::sync::Arc<crate::Tenant>> {
        self.inner.tenant()
    }

    /// See [`Client::state`].
    pub fn state(&self) -> SessionState {
        self.inner.state()
    }
    /// See [`Client::session_id`].
    pub fn session_id(&self) -> i64 {
        self.inner.session_id()
    }
    /// See [`Client::negotiated_timeout`].
    pub fn negotiated_timeout(&self) -> Duration {
        self.inner.negotiated_timeout()
    }
    /// See [`Client::add_listener`].
    pub fn add_listener(
        &self,
        f: impl Fn(SessionEvent, CallbackInfo) + Send + Sync + 'static,
    ) -> ListenerId {
        self.inner.add_listener(f)
    }
    /// See [`Client::remove_listener`].
    pub fn remove_listener(&self, id: ListenerId) {
        self.inner.remove_listener(id)
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
    /// See [`Client::exists_with`].
    pub fn exists_with(
        &self,
        path: &str,
        watcher: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static,
    ) -> Result<Option<Stat>> {
        block_on(self.inner.exists_with(path, watcher))
    }
    /// See [`Client::get_data`].
    pub fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat)> {
        block_on(self.inner.get_data(path))
    }
    /// See [`Client::get_data_watch`].
    pub fn get_data_watch(&self, path: &str) -> Result<(Vec<u8>, Stat, OneshotWatcher)> {
        block_on(self.inner.get_data_watch(path))
    }
    /// See [`Client::get_data_with`].
    pub fn get_data_with(
        &self,
        path: &str,
        watcher: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static,
    ) -> Result<(Vec<u8>, Stat)> {
        block_on(self.inner.get_data_with(path, watcher))
    }
    /// See [`Client::get_children`].
    pub fn get_children(&self, path: &str) -> Result<(Vec<String>, Stat)> {
        block_on(self.inner.get_children(path))
    }
    /// See [`Client::get_children_watch`].
    pub fn get_children_watch(&self, path: &str) -> Result<(Vec<String>, Stat, OneshotWatcher)> {
        block_on(self.inner.get_children_watch(path))
    }
    /// See [`Client::get_children_with`].
    pub fn get_children_with(
        &self,
        path: &str,
        watcher: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static,
    ) -> Result<(Vec<String>, Stat)> {
        block_on(self.inner.get_children_with(path, watcher))
    }
    /// See [`Client::get_all_children_number`].
    pub fn get_all_children_number(&self, path: &str) -> Result<i32> {
        block_on(self.inner.get_all_children_number(path))
    }
    /// See [`Client::get_ephemerals`].
    pub fn get_ephemerals(&self, prefix: &str) -> Result<Vec<String>> {
        block_on(self.inner.get_ephemerals(prefix))
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
    /// See [`Client::add_watch_with`].
    pub fn add_watch_with(
        &self,
        path: &str,
        mode: AddWatchMode,
        watcher: impl FnMut(WatchedEvent, CallbackInfo) -> bool + Send + 'static,
    ) -> Result<()> {
        block_on(self.inner.add_watch_with(path, mode, watcher))
    }
    /// See [`Client::remove_watches`].
    pub fn remove_watches(&self, path: &str, kind: WatcherType) -> Result<()> {
        block_on(self.inner.remove_watches(path, kind))
    }
    /// See [`Client::check_watches`].
    pub fn check_watches(&self, path: &str, kind: WatcherType) -> Result<()> {
        block_on(self.inner.check_watches(path, kind))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// `Client`'s public methods that have no blocking twin, and why.
    const NOT_BLOCKING: &[(&str, &str)] = &[
        (
            "builder",
            "builds an async client; wrap it with BlockingClient::new",
        ),
        (
            "connect",
            "its timeout needs a tokio runtime; wrap the client it returns",
        ),
        (
            "with_lanes",
            "re-plumbs the async handle; async_client().with_lanes(..)",
        ),
        ("lanes", "the async handle's lanes; async_client().lanes()"),
        (
            "state_events",
            "an async stream; blocking code adds a listener",
        ),
    ];

    /// The names of the `pub fn`s and `pub async fn`s of every `impl <ty> {` block (rustfmt's
    /// layout: the block opens and closes at column 0, one signature starts a line).
    fn pub_methods(src: &str, ty: &str) -> BTreeSet<String> {
        let open = format!("impl {ty} {{");
        let mut inside = false;
        let mut names = BTreeSet::new();
        for line in src.lines() {
            if line == open {
                inside = true;
            } else if inside && line == "}" {
                inside = false;
            } else if inside {
                let sig = line.trim_start();
                let rest = sig
                    .strip_prefix("pub fn ")
                    .or_else(|| sig.strip_prefix("pub async fn "));
                if let Some(rest) = rest {
                    let end = rest.find(['(', '<']).unwrap_or(rest.len());
                    names.insert(rest[..end].to_string());
                }
            }
        }
        names
    }

    /// Every Rust file of the client module (`client.rs` or the `client/` directory), read
    /// from the source tree so that a file added to the module is read too.
    fn client_sources() -> String {
        fn walk(p: &Path, out: &mut String) {
            if p.is_dir() {
                let mut entries: Vec<_> = std::fs::read_dir(p)
                    .expect("read the client module's directory")
                    .map(|e| e.expect("a directory entry").path())
                    .collect();
                entries.sort();
                for e in entries {
                    walk(&e, out);
                }
            } else if p.is_file() && p.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(p).expect("read a client source file"));
                out.push('\n');
            }
        }
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut out = String::new();
        walk(&src.join("client.rs"), &mut out);
        walk(&src.join("client"), &mut out);
        out
    }

    /// Fails when `Client` gains a public method that `BlockingClient` lacks: add its blocking
    /// twin (or, if it cannot block, say why in `NOT_BLOCKING`).
    #[test]
    fn every_client_method_has_a_blocking_twin() {
        let client = pub_methods(&client_sources(), "Client");
        assert!(
            client.contains("get_data") && client.contains("add_watch"),
            "the parser found no Client methods: {client:?}"
        );
        let blocking = pub_methods(include_str!("blocking.rs"), "BlockingClient");
        let exempt: BTreeSet<String> = NOT_BLOCKING.iter().map(|(n, _)| n.to_string()).collect();
        let missing: Vec<_> = client
            .iter()
            .filter(|n| !blocking.contains(*n) && !exempt.contains(*n))
            .collect();
        assert!(
            missing.is_empty(),
            "BlockingClient lacks {missing:?}: add each (see Client's) or list it in NOT_BLOCKING"
        );
        let stale: Vec<_> = exempt
            .iter()
            .filter(|n| !client.contains(*n) || blocking.contains(*n))
            .collect();
        assert!(stale.is_empty(), "NOT_BLOCKING names {stale:?} needlessly");
    }
}
