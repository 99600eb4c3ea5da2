//! Kazoo's `TreeCache`: a node and all its descendants kept in memory, with Kazoo's events
//! (added, updated, removed, initialized), on one persistent recursive watch.
//!
//! The watch reports creations, data changes and deletions anywhere under the root, but the
//! server replays nothing it missed: after a reconnect the client sends [`EventType::Resync`],
//! and after a session loss the watch is gone. Both are answered the same way: every known node
//! is read again (data and children), and what differs is emitted as events.
//!
//! The core ([`TreeCore`]) does no I/O: it turns watch events and read replies into the tree,
//! the events to emit and the reads to issue (in `driver.rs`'s vocabulary). Every read carries a sequence number in the order
//! it was sent; since one session answers in that order, a node's state is taken from the
//! newest read (or deletion event) only, so a stale reply that arrives late never undoes a newer
//! one. Deletions leave a tombstone (their sequence number) until no read is in flight.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use crate::client::{Client, PersistentWatcher};
use crate::error::{Error, Result};
use crate::proto::records::{AddWatchMode, EventType, KeeperState, Stat, WatchedEvent};
use crate::recipe::driver::{self, join, Reply, Request, Response};
use crate::session::SessionState;

/// A change in a [`TreeCache`] (Kazoo's `TreeEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeEvent {
    /// A node appeared in the cache (during the initial load too), with its data and stat.
    Added {
        /// The node's path.
        path: String,
        /// Its data.
        data: Vec<u8>,
        /// Its stat.
        stat: Stat,
    },
    /// A cached node's data changed.
    Updated {
        /// The node's path.
        path: String,
        /// The new data.
        data: Vec<u8>,
        /// The new stat.
        stat: Stat,
    },
    /// A node left the cache (it was deleted), with its last data and stat.
    Removed {
        /// The node's path.
        path: String,
        /// Its last known data.
        data: Vec<u8>,
        /// Its last known stat.
        stat: Stat,
    },
    /// The initial load is complete: every node under the root when it started is in the cache.
    Initialized,
}

/// A stream of a [`TreeCache`]'s events (see [`TreeCache::events`]).
#[derive(Debug)]
pub struct TreeEvents {
    rx: mpsc::UnboundedReceiver<TreeEvent>,
}

impl TreeEvents {
    /// The next event; `None` once the cache is closed.
    pub async fn next(&mut self) -> Option<TreeEvent> {
        self.rx.recv().await
    }

    /// The next event if one is already there.
    pub fn try_next(&mut self) -> Option<TreeEvent> {
        self.rx.try_recv().ok()
    }
}

/// Kazoo's `TreeCache`: the node at a path and all its descendants, kept in memory and current
/// through one persistent recursive watch; reads ([`TreeCache::get`], [`TreeCache::children`])
/// are served from memory.
///
/// After a reconnect (the client's [`EventType::Resync`]) or a session loss, every node is read
/// again and the differences are emitted as events, so the cache converges to the server's
/// tree. A node's stat is as of its last read: its child fields (`cversion`, `pzxid`) may lag,
/// except `num_children`, which is the cached children's count. Needs a tokio runtime (it runs
/// a task) and ZooKeeper 3.6+.
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// let mut cache = wazoo::TreeCache::new(&zk, "/app/config")?;
/// let mut events = cache.events();
/// cache.start().await?;
/// while let Some(ev) = events.next().await {
///     if ev == wazoo::TreeEvent::Initialized {
///         break;
///     }
/// }
/// println!("{:?}", cache.get("/app/config/db"));
/// cache.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TreeCache {
    client: Client,
    root: String,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    core: Mutex<TreeCore>,
    subscribers: Mutex<Vec<mpsc::UnboundedSender<TreeEvent>>>,
}

impl Shared {
    fn core(&self) -> std::sync::MutexGuard<'_, TreeCore> {
        // A panic while holding it leaves a tree that is still a tree (each step is one map
        // operation); the next resync repairs any lag.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, events: Vec<TreeEvent>) {
        if events.is_empty() {
            return;
        }
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        subs.retain(|tx| events.iter().all(|e| tx.send(e.clone()).is_ok()));
    }
}

impl TreeCache {
    /// A cache of `path` and its descendants; nothing is read until [`TreeCache::start`].
    pub fn new(client: &Client, path: &str) -> Result<TreeCache> {
        crate::path::validate_path(path, false)?;
        let (stop, _) = watch::channel(false);
        Ok(TreeCache {
            client: client.clone(),
            root: path.to_string(),
            shared: Arc::new(Shared {
                core: Mutex::new(TreeCore::new(path)),
                subscribers: Mutex::new(Vec::new()),
            }),
            stop,
            task: None,
        })
    }

    /// The cache's events from now on (subscribe before [`TreeCache::start`] to hear every
    /// node's `Added` and the `Initialized`).
    pub fn events(&self) -> TreeEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        TreeEvents { rx }
    }

    /// Adds the watch and starts loading (in a task); `Initialized` is emitted when the load is
    /// complete. Calling it again does nothing.
    pub async fn start(&mut self) -> Result<()> {
        if self.task.is_some() {
            return Ok(());
        }
        let watcher = add_watch(&self.client, &self.root).await?;
        let driver = Driver {
            client: self.client.clone(),
            root: self.root.clone(),
            shared: self.shared.clone(),
            inflight: VecDeque::new(),
        };
        let stopped = self.stop.subscribe();
        self.task = Some(tokio::spawn(driver.run(watcher, stopped)));
        Ok(())
    }

    /// Whether the initial load is complete.
    pub fn is_initialized(&self) -> bool {
        self.shared.core().initialized
    }

    /// A cached node's data and stat; `None` if it is not in the cache.
    pub fn get(&self, path: &str) -> Option<(Vec<u8>, Stat)> {
        self.shared.core().get(path)
    }

    /// A cached node's children (names, sorted); `None` if it is not in the cache.
    pub fn children(&self, path: &str) -> Option<Vec<String>> {
        self.shared.core().children(path)
    }

    /// How many nodes are cached.
    pub fn len(&self) -> usize {
        self.shared.core().nodes.len()
    }

    /// Whether no node is cached (the root does not exist, or nothing is loaded yet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every cached node's data and stat, by path.
    pub fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, Stat)> {
        let core = self.shared.core();
        core.nodes
            .keys()
            .filter_map(|p| core.get(p).map(|v| (p.clone(), v)))
            .collect()
    }

    /// The cached root's path.
    pub fn path(&self) -> &str {
        &self.root
    }

    /// Stops the cache (its event streams end) and waits for its task; the watch goes with it.
    pub async fn close(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TreeCache {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn add_watch(client: &Client, root: &str) -> Result<PersistentWatcher> {
    loop {
        match client
            .add_watch(root, AddWatchMode::PersistentRecursive)
            .await
        {
            Err(e) if driver::transient(&e) => continue,
            r => return r,
        }
    }
}

/// What woke the driver.
enum Step {
    Event(Option<WatchedEvent>),
    Reply(Reply),
}

type ReadFuture = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// The native driver: sends the core's reads (pipelined, replies taken in order), feeds it
/// the watch's events, and sets the watch again on a new session.
struct Driver {
    client: Client,
    root: String,
    shared: Arc<Shared>,
    inflight: VecDeque<(Issued, ReadFuture)>,
}

impl Driver {
    async fn run(mut self, mut watcher: PersistentWatcher, mut stopped: watch::Receiver<bool>) {
        let first = self.shared.core().start();
        self.issue(first);
        loop {
            let step = tokio::select! {
                _ = stopped.wait_for(|s| *s) => break,
                ev = watcher.next() => Step::Event(ev),
                reply = front(&mut self.inflight) => Step::Reply(reply),
            };
            let session_ended = match step {
                Step::Event(Some(ev)) if ev.event_type == EventType::None => {
                    matches!(ev.keeper_state, KeeperState::Expired | KeeperState::Closed)
                }
                Step::Event(Some(ev)) => {
                    let reads = self.apply(|core| core.on_event(&ev));
                    self.issue(reads);
                    false
                }
                Step::Event(None) => true,
                Step::Reply(reply) => {
                    if let Some((issued, _)) = self.inflight.pop_front() {
                        self.on_reply(issued, reply);
                    }
                    false
                }
            };
            if session_ended {
                // The watch ended with the session: wait for the next one, watch again, and
                // read everything again.
                match self.next_session(&mut stopped).await {
                    Some(w) => watcher = w,
                    None => break,
                }
                let reads = self.apply(TreeCore::resync);
                self.issue(reads);
            }
        }
        self.shared
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Waits for a connected session and adds the watch on it; `None` when stopped or closed.
    async fn next_session(
        &mut self,
        stopped: &mut watch::Receiver<bool>,
    ) -> Option<PersistentWatcher> {
        let mut states = self.client.state_events();
        loop {
            match self.client.state() {
                SessionState::Closed => return None,
                SessionState::Connected | SessionState::ConnectedReadOnly => {
                    match add_watch(&self.client, &self.root).await {
                        Ok(w) => return Some(w),
                        Err(Error::Closed) => return None,
                        Err(e) => tracing::warn!(root = %self.root, "tree cache: watch: {e}"),
                    }
                }
                _ => {}
            }
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => return None,
                s = states.next() => { s?; }
            }
        }
    }

    fn apply<T>(&self, f: impl FnOnce(&mut TreeCore) -> T) -> T {
        let (out, events) = {
            let mut core = self.shared.core();
            let out = f(&mut core);
            (out, core.take_events())
        };
        self.shared.publish(events);
        out
    }

    fn on_reply(&mut self, issued: Issued, reply: Reply) {
        match reply {
            Err(e) if driver::transient(&e) => {
                // Sent again (a new sequence number: it is answered after what was sent since).
                let again = self.apply(|core| core.reissue(&issued));
                self.issue(again);
            }
            reply => {
                let reads = self.apply(|core| core.on_reply(&issued, reply));
                self.issue(reads);
            }
        }
    }

    fn issue(&mut self, reads: Vec<Issued>) {
        for issued in reads {
            // Sent now (not when polled), so the reads are pipelined.
            let fut: ReadFuture = match &issued.read {
                Request::GetData { path, watch: false } => {
                    let f = self.client.get_data(path).into_future();
                    Box::pin(async move { f.await.map(|(d, s)| Response::Data(d, s)) })
                }
                Request::GetChildren(path) => {
                    let f = self.client.get_children(path).into_future();
                    Box::pin(async move { f.await.map(|(c, _)| Response::Children(c)) })
                }
                // The core asks for nothing else; were it to, it is sent when polled.
                other => {
                    let (client, req) = (self.client.clone(), other.clone());
                    Box::pin(async move { driver::send(&client, req).await.0 })
                }
            };
            self.inflight.push_back((issued, fut));
        }
    }
}

/// The oldest read's reply (replies come in the order sent); pending forever when none is in
/// flight.
async fn front(inflight: &mut VecDeque<(Issued, ReadFuture)>) -> Reply {
    match inflight.front_mut() {
        Some((_, fut)) => fut.await,
        None => std::future::pending().await,
    }
}

// ---- the core ----

/// A read (`GetData` without a watch, or `GetChildren`) with its sequence number (the order
/// it was sent in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    pub(crate) seq: u64,
    pub(crate) read: Request,
}

#[derive(Debug)]
struct Node {
    data: Vec<u8>,
    stat: Stat,
    children: BTreeSet<String>,
    /// The sequence number of what last set this node's state.
    seq: u64,
}

/// The tree cache's logic without I/O: the tree, the events to emit and the reads to issue.
#[derive(Debug)]
pub(crate) struct TreeCore {
    root: String,
    nodes: HashMap<String, Node>,
    /// Deleted paths and the sequence number of their deletion: older replies are stale.
    tombstones: HashMap<String, u64>,
    next_seq: u64,
    in_flight: usize,
    initialized: bool,
    events: Vec<TreeEvent>,
}

impl TreeCore {
    pub(crate) fn new(root: &str) -> TreeCore {
        TreeCore {
            root: root.to_string(),
            nodes: HashMap::new(),
            tombstones: HashMap::new(),
            next_seq: 0,
            in_flight: 0,
            initialized: false,
            events: Vec::new(),
        }
    }

    /// The initial load: the root's data and children.
    pub(crate) fn start(&mut self) -> Vec<Issued> {
        let root = self.root.clone();
        let mut out = Vec::new();
        self.read_node(&root, &mut out);
        out
    }

    /// After a reconnect or on a new session: read every known node (and the root) again.
    pub(crate) fn resync(&mut self) -> Vec<Issued> {
        let mut paths: Vec<String> = self.nodes.keys().cloned().collect();
        if !self.nodes.contains_key(&self.root) {
            paths.push(self.root.clone());
        }
        paths.sort();
        let mut out = Vec::new();
        for p in paths {
            self.read_node(&p, &mut out);
        }
        out
    }

    /// The events emitted since the last call.
    pub(crate) fn take_events(&mut self) -> Vec<TreeEvent> {
        std::mem::take(&mut self.events)
    }

    pub(crate) fn get(&self, path: &str) -> Option<(Vec<u8>, Stat)> {
        self.nodes.get(path).map(|n| {
            let mut stat = n.stat;
            stat.num_children = i32::try_from(n.children.len()).unwrap_or(i32::MAX);
            (n.data.clone(), stat)
        })
    }

    pub(crate) fn children(&self, path: &str) -> Option<Vec<String>> {
        self.nodes
            .get(path)
            .map(|n| n.children.iter().cloned().collect())
    }

    fn under_root(&self, path: &str) -> bool {
        path == self.root
            || (path.starts_with(&self.root)
                && (self.root == "/" || path[self.root.len()..].starts_with('/')))
    }

    fn issue(&mut self, read: Request, out: &mut Vec<Issued>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.in_flight += 1;
        out.push(Issued { seq, read });
    }

    fn read_node(&mut self, path: &str, out: &mut Vec<Issued>) {
        self.issue(data_read(path), out);
        self.issue(Request::GetChildren(path.to_string()), out);
    }

    /// A watch event: reads for a creation or a change, a removal for a deletion. `Resync`
    /// reads everything again.
    pub(crate) fn on_event(&mut self, ev: &WatchedEvent) -> Vec<Issued> {
        let mut out = Vec::new();
        match ev.event_type {
            EventType::Resync => return self.resync(),
            _ if !self.under_root(&ev.path) => {}
            EventType::NodeCreated => self.read_node(&ev.path, &mut out),
            EventType::NodeDataChanged => self.issue(data_read(&ev.path), &mut out),
            EventType::NodeChildrenChanged => {
                self.issue(Request::GetChildren(ev.path.clone()), &mut out)
            }
            EventType::NodeDeleted => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.remove(&ev.path, seq);
            }
            _ => {}
        }
        out
    }

    /// The same read again, after a transient failure.
    pub(crate) fn reissue(&mut self, issued: &Issued) -> Vec<Issued> {
        self.in_flight -= 1;
        let mut out = Vec::new();
        self.issue(issued.read.clone(), &mut out);
        out
    }

    /// A read's reply (a failure that is not transient: `NoNode` means the node is gone; any
    /// other is dropped, the next resync covers it).
    pub(crate) fn on_reply(&mut self, issued: &Issued, reply: Reply) -> Vec<Issued> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let mut out = Vec::new();
        match (&issued.read, reply) {
            (Request::GetData { path, .. }, Ok(Response::Data(data, stat))) => {
                self.set_data(path, data, stat, issued.seq);
            }
            (Request::GetChildren(path), Ok(Response::Children(names))) => {
                self.set_children(path, names, issued.seq, &mut out);
            }
            (Request::GetData { path, .. }, Err(Error::NoNode)) => self.remove(path, issued.seq),
            (_, Err(e)) => {
                tracing::debug!(read = ?issued.read, "tree cache: read failed: {e}");
            }
            (read, Ok(r)) => tracing::warn!(?read, ?r, "tree cache: a reply of the wrong kind"),
        }
        if self.in_flight == 0 {
            self.tombstones.clear();
            if !self.initialized {
                self.initialized = true;
                self.events.push(TreeEvent::Initialized);
            }
        }
        out
    }

    fn stale(&self, path: &str, seq: u64) -> bool {
        self.tombstones.get(path).is_some_and(|&t| seq < t)
            || self.nodes.get(path).is_some_and(|n| seq < n.seq)
    }

    fn set_data(&mut self, path: &str, data: Vec<u8>, stat: Stat, seq: u64) {
        if self.stale(path, seq) {
            return;
        }
        if let Some(n) = self.nodes.get_mut(path) {
            n.seq = seq;
            if n.stat.mzxid != stat.mzxid || n.stat.czxid != stat.czxid || n.data != data {
                n.data = data.clone();
                n.stat = stat;
                self.events.push(TreeEvent::Updated {
                    path: path.to_string(),
                    data,
                    stat,
                });
            } else {
                n.stat = stat;
            }
            return;
        }
        if path != self.root {
            // A node is cached only under its cached parent (else its parent is gone, or its
            // parent's listing, still to come, will read it again).
            let Some(parent) = parent_of(path).and_then(|p| self.nodes.get_mut(p)) else {
                return;
            };
            parent.children.insert(driver::name_of(path).to_string());
        }
        self.tombstones.remove(path);
        self.nodes.insert(
            path.to_string(),
            Node {
                data: data.clone(),
                stat,
                children: BTreeSet::new(),
                seq,
            },
        );
        self.events.push(TreeEvent::Added {
            path: path.to_string(),
            data,
            stat,
        });
    }

    fn set_children(&mut self, path: &str, names: Vec<String>, seq: u64, out: &mut Vec<Issued>) {
        let Some(node) = self.nodes.get(path) else {
            return;
        };
        let listed: BTreeSet<String> = names.into_iter().collect();
        let gone: Vec<String> = node.children.difference(&listed).cloned().collect();
        let new: Vec<String> = listed.difference(&node.children).cloned().collect();
        for name in gone {
            let child = join(path, &name);
            if !self.stale(&child, seq) {
                self.remove(&child, seq);
            }
        }
        for name in new {
            let child = join(path, &name);
            if !self.stale(&child, seq) {
                self.read_node(&child, out);
            }
        }
    }

    /// Removes a node and its subtree (deepest first, each with a `Removed`), leaving
    /// tombstones at `seq`.
    fn remove(&mut self, path: &str, seq: u64) {
        if self.stale(path, seq) {
            return;
        }
        self.remove_subtree(path, seq);
    }

    fn remove_subtree(&mut self, path: &str, seq: u64) {
        self.tombstones.insert(path.to_string(), seq);
        let Some(node) = self.nodes.remove(path) else {
            return;
        };
        for name in &node.children {
            self.remove_subtree(&join(path, name), seq);
        }
        if let Some(parent) = parent_of(path).and_then(|p| self.nodes.get_mut(p)) {
            parent.children.remove(driver::name_of(path));
        }
        self.events.push(TreeEvent::Removed {
            path: path.to_string(),
            data: node.data,
            stat: node.stat,
        });
    }
}

fn data_read(path: &str) -> Request {
    Request::GetData {
        path: path.to_string(),
        watch: false,
    }
}

fn parent_of(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) if path.len() > 1 => Some("/"),
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(czxid: i64, mzxid: i64) -> Stat {
        Stat {
            czxid,
            mzxid,
            ..Stat::default()
        }
    }

    fn event(t: EventType, path: &str) -> WatchedEvent {
        WatchedEvent {
            event_type: t,
            keeper_state: KeeperState::SyncConnected,
            path: path.to_string(),
            zxid: -1,
        }
    }

    /// Answers every read in `reads` (and the reads they lead to) from `server`, in order.
    fn serve(core: &mut TreeCore, server: &BTreeMap<&str, (&str, i64)>, reads: Vec<Issued>) {
        let mut queue: VecDeque<Issued> = reads.into();
        while let Some(i) = queue.pop_front() {
            let reply = answer(server, &i.read);
            queue.extend(core.on_reply(&i, reply));
        }
    }

    fn answer(server: &BTreeMap<&str, (&str, i64)>, read: &Request) -> Reply {
        match read {
            Request::GetData { path: p, .. } => server
                .get(p.as_str())
                .map(|(d, z)| Response::Data(d.as_bytes().to_vec(), stat(*z, *z)))
                .ok_or(Error::NoNode),
            Request::GetChildren(p) => {
                if !server.contains_key(p.as_str()) {
                    return Err(Error::NoNode);
                }
                let names = server
                    .keys()
                    .filter(|k| parent_of(k) == Some(p.as_str()))
                    .map(|k| driver::name_of(k).to_string())
                    .collect();
                Ok(Response::Children(names))
            }
            other => panic!("the core asked for {other:?}"),
        }
    }

    fn paths(core: &TreeCore) -> Vec<String> {
        let mut v: Vec<String> = core.nodes.keys().cloned().collect();
        v.sort();
        v
    }

    fn tree() -> BTreeMap<&'static str, (&'static str, i64)> {
        BTreeMap::from([
            ("/r", ("root", 1)),
            ("/r/a", ("a", 2)),
            ("/r/a/x", ("x", 3)),
            ("/r/b", ("b", 4)),
        ])
    }

    #[test]
    fn the_initial_load_adds_every_node_then_says_initialized() {
        let mut core = TreeCore::new("/r");
        let reads = core.start();
        serve(&mut core, &tree(), reads);
        assert_eq!(paths(&core), ["/r", "/r/a", "/r/a/x", "/r/b"]);
        let events = core.take_events();
        assert_eq!(events.len(), 5);
        assert_eq!(events.last(), Some(&TreeEvent::Initialized));
        assert_eq!(core.children("/r").unwrap(), ["a", "b"]);
        let (data, st) = core.get("/r/a").unwrap();
        assert_eq!((data.as_slice(), st.num_children), (&b"a"[..], 1));
    }

    #[test]
    fn a_missing_root_is_initialized_empty_and_added_when_created() {
        let mut core = TreeCore::new("/r");
        let reads = core.start();
        serve(&mut core, &BTreeMap::new(), reads);
        assert_eq!(core.take_events(), [TreeEvent::Initialized]);
        let reads = core.on_event(&event(EventType::NodeCreated, "/r"));
        serve(&mut core, &tree(), reads);
        assert_eq!(paths(&core), ["/r", "/r/a", "/r/a/x", "/r/b"]);
    }

    #[test]
    fn events_become_reads_updates_and_removals() {
        let mut core = TreeCore::new("/r");
        let reads = core.start();
        let mut server = tree();
        serve(&mut core, &server, reads);
        core.take_events();

        server.insert("/r/b/n", ("n", 5));
        let reads = core.on_event(&event(EventType::NodeCreated, "/r/b/n"));
        serve(&mut core, &server, reads);
        server.insert("/r/a", ("a2", 6));
        let reads = core.on_event(&event(EventType::NodeDataChanged, "/r/a"));
        serve(&mut core, &server, reads);
        server.remove("/r/a/x");
        assert!(core
            .on_event(&event(EventType::NodeDeleted, "/r/a/x"))
            .is_empty());
        assert!(core
            .on_event(&event(EventType::NodeCreated, "/elsewhere"))
            .is_empty());
        let kinds: Vec<(String, &str)> = core
            .take_events()
            .into_iter()
            .map(|e| match e {
                TreeEvent::Added { path, .. } => (path, "added"),
                TreeEvent::Updated { path, .. } => (path, "updated"),
                TreeEvent::Removed { path, .. } => (path, "removed"),
                TreeEvent::Initialized => (String::new(), "initialized"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("/r/b/n".to_string(), "added"),
                ("/r/a".to_string(), "updated"),
                ("/r/a/x".to_string(), "removed"),
            ]
        );
        assert_eq!(core.children("/r/a").unwrap(), Vec::<String>::new());
        assert_eq!(core.get("/r/a").unwrap().0, b"a2");
    }

    #[test]
    fn a_stale_reply_after_a_deletion_does_not_bring_the_node_back() {
        let mut core = TreeCore::new("/r");
        let reads = core.start();
        let mut server = tree();
        serve(&mut core, &server, reads);
        // A data change's read is in flight when the node is deleted; its (older) answer,
        // applied after the deletion event, must not resurrect it.
        let reads = core.on_event(&event(EventType::NodeDataChanged, "/r/b"));
        let stale = answer(&server, &reads[0].read);
        server.remove("/r/b");
        core.on_event(&event(EventType::NodeDeleted, "/r/b"));
        core.on_reply(&reads[0], stale);
        assert_eq!(core.get("/r/b"), None);
        assert_eq!(core.children("/r").unwrap(), ["a"]);
    }

    #[test]
    fn a_resync_emits_what_changed_while_away() {
        let mut core = TreeCore::new("/r");
        let reads = core.start();
        let mut server = tree();
        serve(&mut core, &server, reads);
        core.take_events();
        // Missed while away: /r/a/x deleted, /r/b changed, /r/c/d created.
        server.remove("/r/a/x");
        server.insert("/r/b", ("b2", 7));
        server.insert("/r/c", ("c", 8));
        server.insert("/r/c/d", ("d", 9));
        let reads = core.on_event(&event(EventType::Resync, ""));
        serve(&mut core, &server, reads);
        assert_eq!(paths(&core), ["/r", "/r/a", "/r/b", "/r/c", "/r/c/d"]);
        let mut kinds: Vec<String> = core
            .take_events()
            .into_iter()
            .map(|e| match e {
                TreeEvent::Added { path, .. } => format!("added {path}"),
                TreeEvent::Updated { path, .. } => format!("updated {path}"),
                TreeEvent::Removed { path, .. } => format!("removed {path}"),
                TreeEvent::Initialized => "initialized".to_string(),
            })
            .collect();
        kinds.sort();
        assert_eq!(
            kinds,
            [
                "added /r/c",
                "added /r/c/d",
                "removed /r/a/x",
                "updated /r/b"
            ]
        );
    }

    #[test]
    fn a_resync_after_the_root_went_removes_everything() {
        let mut core = TreeCore::new("/r");
        let reads = core.start();
        serve(&mut core, &tree(), reads);
        core.take_events();
        let reads = core.resync();
        serve(&mut core, &BTreeMap::new(), reads);
        assert!(core.nodes.is_empty());
        let removed = core
            .take_events()
            .into_iter()
            .filter(|e| matches!(e, TreeEvent::Removed { .. }))
            .count();
        assert_eq!(removed, 4);
    }

    #[test]
    fn parents_and_roots() {
        assert_eq!(parent_of("/a/b"), Some("/a"));
        assert_eq!(parent_of("/a"), Some("/"));
        assert_eq!(parent_of("/"), None);
        let core = TreeCore::new("/r");
        assert!(core.under_root("/r") && core.under_root("/r/x"));
        assert!(!core.under_root("/rx") && !core.under_root("/"));
        assert!(TreeCore::new("/").under_root("/anything"));
    }
}
