//! Watches: the one-shot and persistent watcher types, adding, removing and checking
//! persistent watches, and the owned watches the recipes withdraw.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use tokio::sync::{mpsc, oneshot};

use crate::dispatch::CallbackInfo;
use crate::error::Result;
use crate::proto::ops::op;
use crate::proto::records::{
    AddWatchMode, EventType, KeeperState, Stat, WatchedEvent, WatcherType,
};
use crate::session::watches::{WatchKind, WatchSink};
use crate::session::{Command, Effect};

use super::decode::{dec_children, dec_data, dec_empty_or_err, dec_exists};
use super::{check, Client, Pending};

/// A one-shot watch: resolves once, with the event that triggered it.
#[derive(Debug)]
#[must_use = "a watcher does nothing unless awaited"]
pub struct OneshotWatcher {
    pub(super) rx: oneshot::Receiver<WatchedEvent>,
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
    /// See
    /// [`ClientBuilder::suppress_resync_for_tests`](super::ClientBuilder::suppress_resync_for_tests).
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

impl Client {
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
    /// removed watcher hears a *WatchRemoved event). [`Error::NoWatcher`](crate::Error::NoWatcher)
    /// if there were none.
    pub fn remove_watches(&self, path: &str, kind: WatcherType) -> Pending<()> {
        let req = check(path).map(|_| {
            let mut f = self.path_frame(op::REMOVE_WATCHES, path, 4);
            f.put_i32(kind.wire_code());
            let effect = Effect::RemoveWatches {
                path: self.server_path(path),
                user_path: path.to_string(),
                watcher_type: kind,
            };
            (f, effect)
        });
        self.pending(req, dec_empty_or_err)
    }

    /// Whether this session has a watch of the type at the path on the server
    /// ([`Error::NoWatcher`](crate::Error::NoWatcher) if not).
    pub fn check_watches(&self, path: &str, kind: WatcherType) -> Pending<()> {
        let req = check(path).map(|_| {
            let mut f = self.path_frame(op::CHECK_WATCHES, path, 4);
            f.put_i32(kind as i32);
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
