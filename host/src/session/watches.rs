//! The session's watch registry: which watchers wait on which server path, how a notification
//! maps to watchers (the Java client's rules), and what to restore after a reconnect.
//!
//! One-shot watches (data, exist, child) are removed when they fire; persistent ones stay until
//! removed or until every watcher has gone away.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::dispatch::{CallbackInfo, LaneKind, Lanes};

use crate::proto::ops::SetWatches;
use crate::proto::records::{EventType, KeeperState, WatchedEvent, WatcherType};

/// A persistent lane callback; false from it stops the watcher.
pub(crate) type ManyFn = Arc<Mutex<dyn FnMut(WatchedEvent, CallbackInfo) -> bool + Send>>;

/// Where a watch's events go.
pub(crate) enum WatchSink {
    /// A one-shot watcher: one event, then done.
    Once(oneshot::Sender<WatchedEvent>),
    /// A stream of events (persistent watches).
    Stream(mpsc::UnboundedSender<WatchedEvent>),
    /// A one-shot callback on a watch lane. `alive` (when set) says whether its owner still
    /// wants it.
    LaneOnce {
        lanes: Lanes,
        f: Box<dyn FnOnce(WatchedEvent, CallbackInfo) + Send>,
        alive: Option<Arc<AtomicBool>>,
    },
    /// A persistent callback on a watch lane, until it returns false (which clears `alive`,
    /// this watcher's own flag) or its owner goes (`owner`, when set, turns false; an owner
    /// may hold many watchers, so a watcher that ends never touches it).
    LaneMany {
        lanes: Lanes,
        f: ManyFn,
        alive: Arc<AtomicBool>,
        owner: Option<Arc<AtomicBool>>,
    },
    /// A sink that already delivered its one event.
    Spent,
}

impl std::fmt::Debug for WatchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WatchSink::Once(_) => "Once",
            WatchSink::Stream(_) => "Stream",
            WatchSink::LaneOnce { .. } => "LaneOnce",
            WatchSink::LaneMany { .. } => "LaneMany",
            WatchSink::Spent => "Spent",
        })
    }
}

impl WatchSink {
    /// Delivers an event stamped `seq`; false when the watcher is gone (or was one-shot).
    fn send(&mut self, seq: u64, ev: WatchedEvent) -> bool {
        match std::mem::replace(self, WatchSink::Spent) {
            WatchSink::Once(tx) => {
                let _ = tx.send(ev);
                false
            }
            WatchSink::LaneOnce { lanes, f, alive } => {
                if alive.is_none_or(|a| a.load(Ordering::Relaxed)) {
                    lanes.submit(
                        LaneKind::Watch,
                        seq,
                        "watch",
                        Box::new(move |info| f(ev, info)),
                    );
                }
                false
            }
            WatchSink::Stream(tx) => {
                let ok = tx.send(ev).is_ok();
                *self = WatchSink::Stream(tx);
                ok
            }
            WatchSink::LaneMany {
                lanes,
                f,
                alive,
                owner,
            } => {
                let owned = |o: &Option<Arc<AtomicBool>>| {
                    o.as_ref().is_none_or(|o| o.load(Ordering::Relaxed))
                };
                if !alive.load(Ordering::Relaxed) || !owned(&owner) {
                    return false;
                }
                let (f2, alive2, owner2) = (f.clone(), alive.clone(), owner.clone());
                lanes.submit(
                    LaneKind::Watch,
                    seq,
                    "watch",
                    Box::new(move |info| {
                        if alive2.load(Ordering::Relaxed) && owned(&owner2) {
                            let keep = (f2.lock().unwrap_or_else(|p| p.into_inner()))(ev, info);
                            if !keep {
                                alive2.store(false, Ordering::Relaxed);
                            }
                        }
                    }),
                );
                *self = WatchSink::LaneMany {
                    lanes,
                    f,
                    alive,
                    owner,
                };
                true
            }
            WatchSink::Spent => false,
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            WatchSink::Once(tx) => tx.is_closed(),
            WatchSink::Stream(tx) => tx.is_closed(),
            WatchSink::LaneOnce { alive, .. } => {
                alive.as_ref().is_some_and(|a| !a.load(Ordering::Relaxed))
            }
            WatchSink::LaneMany { alive, owner, .. } => {
                !alive.load(Ordering::Relaxed)
                    || owner.as_ref().is_some_and(|o| !o.load(Ordering::Relaxed))
            }
            WatchSink::Spent => true,
        }
    }
}

/// The kinds of watch the client keeps, as the server distinguishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum WatchKind {
    Data,
    Exist,
    Child,
    Persistent,
    PersistentRecursive,
}

#[derive(Debug, Default)]
pub(crate) struct WatchRegistry {
    data: HashMap<String, Vec<WatchSink>>,
    exist: HashMap<String, Vec<WatchSink>>,
    child: HashMap<String, Vec<WatchSink>>,
    persistent: HashMap<String, Vec<WatchSink>>,
    recursive: HashMap<String, Vec<WatchSink>>,
    /// Persistent (and recursive) watches sent and not yet answered, by path.
    adding: HashMap<String, u32>,
    adding_recursive: HashMap<String, u32>,
}

impl WatchRegistry {
    fn map(&mut self, kind: WatchKind) -> &mut HashMap<String, Vec<WatchSink>> {
        match kind {
            WatchKind::Data => &mut self.data,
            WatchKind::Exist => &mut self.exist,
            WatchKind::Child => &mut self.child,
            WatchKind::Persistent => &mut self.persistent,
            WatchKind::PersistentRecursive => &mut self.recursive,
        }
    }

    /// Registers a watcher on a server path.
    pub(crate) fn add(&mut self, kind: WatchKind, path: String, sink: WatchSink) {
        self.map(kind).entry(path).or_default().push(sink);
    }

    /// Routes a notification (server path, already chroot-stripped in `ev.path`) to its
    /// watchers. Returns the persistent paths whose every watcher is gone, which the session then
    /// removes on the server.
    pub(crate) fn dispatch(
        &mut self,
        seq: u64,
        server_path: &str,
        ev: WatchedEvent,
    ) -> Vec<(WatchKind, String)> {
        let mut once: Vec<WatchSink> = Vec::new();
        match ev.event_type {
            EventType::NodeCreated | EventType::NodeDataChanged => {
                once.extend(self.data.remove(server_path).unwrap_or_default());
                once.extend(self.exist.remove(server_path).unwrap_or_default());
            }
            EventType::NodeDeleted => {
                once.extend(self.data.remove(server_path).unwrap_or_default());
                once.extend(self.exist.remove(server_path).unwrap_or_default());
                once.extend(self.child.remove(server_path).unwrap_or_default());
            }
            EventType::NodeChildrenChanged => {
                once.extend(self.child.remove(server_path).unwrap_or_default());
            }
            _ => {}
        }
        for mut s in once {
            s.send(seq, ev.clone());
        }
        let mut emptied = Vec::new();
        if let Some(list) = self.persistent.get_mut(server_path) {
            list.retain_mut(|s| s.send(seq, ev.clone()));
            if list.is_empty() {
                self.persistent.remove(server_path);
                emptied.push((WatchKind::Persistent, server_path.to_string()));
            }
        }
        if ev.event_type != EventType::NodeChildrenChanged && !self.recursive.is_empty() {
            for prefix in ancestors_and_self(server_path) {
                if let Some(list) = self.recursive.get_mut(prefix) {
                    list.retain_mut(|s| s.send(seq, ev.clone()));
                    if list.is_empty() {
                        self.recursive.remove(prefix);
                        emptied.push((WatchKind::PersistentRecursive, prefix.to_string()));
                    }
                }
            }
        }
        emptied
    }

    /// Removes every watcher of the kinds `remove_watches` named at a path, telling each one
    /// with a *WatchRemoved event.
    pub(crate) fn remove(
        &mut self,
        seq: u64,
        server_path: &str,
        watcher_type: WatcherType,
        user_path: &str,
    ) {
        let kinds: &[(WatchKind, EventType)] = match watcher_type {
            WatcherType::Children => &[(WatchKind::Child, EventType::ChildWatchRemoved)],
            WatcherType::Data => &[
                (WatchKind::Data, EventType::DataWatchRemoved),
                (WatchKind::Exist, EventType::DataWatchRemoved),
            ],
            WatcherType::Any => &[
                (WatchKind::Child, EventType::ChildWatchRemoved),
                (WatchKind::Data, EventType::DataWatchRemoved),
                (WatchKind::Exist, EventType::DataWatchRemoved),
                (WatchKind::Persistent, EventType::PersistentWatchRemoved),
                (
                    WatchKind::PersistentRecursive,
                    EventType::PersistentWatchRemoved,
                ),
            ],
            WatcherType::Persistent => {
                &[(WatchKind::Persistent, EventType::PersistentWatchRemoved)]
            }
            WatcherType::PersistentRecursive => &[(
                WatchKind::PersistentRecursive,
                EventType::PersistentWatchRemoved,
            )],
        };
        for (kind, ev_type) in kinds {
            for mut s in self.map(*kind).remove(server_path).unwrap_or_default() {
                s.send(
                    seq,
                    WatchedEvent {
                        event_type: *ev_type,
                        keeper_state: KeeperState::SyncConnected,
                        path: user_path.to_string(),
                        zxid: -1,
                    },
                );
            }
        }
    }

    /// What to send in SetWatches2 after a reconnect. Watchers whose receivers are gone are
    /// dropped first, so dead watches are not restored.
    pub(crate) fn take_restore_list(&mut self) -> SetWatches {
        for m in [
            &mut self.data,
            &mut self.exist,
            &mut self.child,
            &mut self.persistent,
            &mut self.recursive,
        ] {
            m.retain(|_, list| {
                list.retain(|s| !s.is_closed());
                !list.is_empty()
            });
        }
        let keys = |m: &HashMap<String, Vec<WatchSink>>| m.keys().cloned().collect::<Vec<_>>();
        SetWatches {
            data: keys(&self.data),
            exist: keys(&self.exist),
            child: keys(&self.child),
            persistent: keys(&self.persistent),
            persistent_recursive: keys(&self.recursive),
        }
    }

    /// After a reconnect: tells every persistent watcher that events may have been missed.
    pub(crate) fn resync(&mut self, seq: u64, strip: impl Fn(&str) -> String) {
        for (path, list) in self.persistent.iter_mut().chain(self.recursive.iter_mut()) {
            let ev = WatchedEvent {
                event_type: EventType::Resync,
                keeper_state: KeeperState::SyncConnected,
                path: strip(path),
                zxid: -1,
            };
            list.retain_mut(|s| s.send(seq, ev.clone()));
        }
    }

    /// The session is gone (expired or closed): every watcher hears it, then all are dropped.
    pub(crate) fn clear(&mut self, seq: u64, state: KeeperState) {
        let ev = WatchedEvent {
            event_type: EventType::None,
            keeper_state: state,
            path: String::new(),
            zxid: -1,
        };
        for m in [
            &mut self.data,
            &mut self.exist,
            &mut self.child,
            &mut self.persistent,
            &mut self.recursive,
        ] {
            for (_, list) in m.drain() {
                for mut s in list {
                    s.send(seq, ev.clone());
                }
            }
        }
    }

    /// Whether a one-shot watch of `kind` at `path` is already covered by this session's
    /// persistent watch at that exact path. ZooKeeper 3.8 keeps one watch mode per (session,
    /// path) in each of its data and child watch tables: a one-shot watch sent to the server
    /// there would turn the persistent watch into a one-shot one. Such a watch is registered
    /// here only, and fired by the persistent watch's events (which include every event the
    /// one-shot watch would see). A recursive watch is not in the child table, so a child
    /// watch under it goes to the server.
    pub(crate) fn shadowed(&self, kind: WatchKind, path: &str) -> bool {
        let persistent = self.persistent.contains_key(path) || self.adding.contains_key(path);
        match kind {
            WatchKind::Data | WatchKind::Exist => {
                persistent
                    || self.recursive.contains_key(path)
                    || self.adding_recursive.contains_key(path)
            }
            WatchKind::Child => persistent,
            WatchKind::Persistent | WatchKind::PersistentRecursive => false,
        }
    }

    /// The in-flight counts of persistent watches of `kind` (none for one-shot kinds).
    fn adding_of(&mut self, kind: WatchKind) -> Option<&mut HashMap<String, u32>> {
        match kind {
            WatchKind::Persistent => Some(&mut self.adding),
            WatchKind::PersistentRecursive => Some(&mut self.adding_recursive),
            _ => None,
        }
    }

    /// A persistent watch at `path` was sent; it is registered when its reply comes.
    pub(crate) fn adding(&mut self, kind: WatchKind, path: &str) {
        if let Some(m) = self.adding_of(kind) {
            *m.entry(path.to_string()).or_default() += 1;
        }
    }

    /// The reply (or the connection's end) came for a persistent watch sent at `path`.
    pub(crate) fn added(&mut self, kind: WatchKind, path: &str) {
        let Some(m) = self.adding_of(kind) else {
            return;
        };
        if let Some(n) = m.get_mut(path) {
            *n -= 1;
            if *n == 0 {
                m.remove(path);
            }
        }
    }

    /// The connection ended: no persistent watch is on its way any more.
    pub(crate) fn forget_adding(&mut self) {
        self.adding.clear();
        self.adding_recursive.clear();
    }

    /// After this session's persistent watch at `path` left the server: the one-shot watches
    /// it covered there, which the server must now hold itself. Returns whether a data (or
    /// exist) watch and whether a child watch must be set again.
    pub(crate) fn uncovered(&self, path: &str) -> (bool, bool) {
        let data = (self.data.contains_key(path) || self.exist.contains_key(path))
            && !self.shadowed(WatchKind::Data, path);
        let child = self.child.contains_key(path) && !self.shadowed(WatchKind::Child, path);
        (data, child)
    }

    /// ZooKeeper keeps one persistent mode per (session, path): adding the other mode would
    /// silently replace the first on the server. Refuse it instead.
    pub(crate) fn mode_conflict(&self, kind: WatchKind, path: &str) -> Option<crate::error::Error> {
        let other = match kind {
            WatchKind::Persistent => &self.recursive,
            WatchKind::PersistentRecursive => &self.persistent,
            _ => return None,
        };
        other.contains_key(path).then(|| {
            crate::error::Error::InvalidArgument(format!(
                "{path} already has a persistent watch of the other mode in this session; ZooKeeper keeps one \
                 mode per path and session, so adding this one would silently replace it"
            ))
        })
    }

    /// Drops watchers at `path` whose owners are gone. Returns the watcher types left with no
    /// watcher, whose server watch should be removed.
    pub(crate) fn prune(&mut self, path: &str) -> Vec<WatcherType> {
        let mut emptied = Vec::new();
        let prune = |m: &mut HashMap<String, Vec<WatchSink>>| -> bool {
            match m.get_mut(path) {
                Some(list) => {
                    list.retain(|s| !s.is_closed());
                    if list.is_empty() {
                        m.remove(path);
                        true
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        let data_gone = prune(&mut self.data);
        let exist_gone = prune(&mut self.exist);
        if (data_gone || exist_gone)
            && !self.data.contains_key(path)
            && !self.exist.contains_key(path)
        {
            emptied.push(WatcherType::Data);
        }
        if prune(&mut self.child) {
            emptied.push(WatcherType::Children);
        }
        if prune(&mut self.persistent) {
            emptied.push(WatcherType::Persistent);
        }
        if prune(&mut self.recursive) {
            emptied.push(WatcherType::PersistentRecursive);
        }
        emptied
    }

    /// Whether a watch of this kind is registered at the path.
    #[cfg(test)]
    pub(crate) fn has(&mut self, kind: WatchKind, path: &str) -> bool {
        self.map(kind).contains_key(path)
    }
}

/// `/a/b/c` -> `/a/b/c`, `/a/b`, `/a`, `/`.
fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let cur = next?;
        next = if cur == "/" {
            None
        } else {
            match cur.rfind('/') {
                Some(0) => Some("/"),
                Some(i) => Some(&cur[..i]),
                None => None,
            }
        };
        Some(cur)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(t: EventType, p: &str) -> WatchedEvent {
        WatchedEvent {
            event_type: t,
            keeper_state: KeeperState::SyncConnected,
            path: p.into(),
            zxid: 1,
        }
    }

    #[test]
    fn ancestors() {
        assert_eq!(
            ancestors_and_self("/a/b").collect::<Vec<_>>(),
            vec!["/a/b", "/a", "/"]
        );
        assert_eq!(ancestors_and_self("/").collect::<Vec<_>>(), vec!["/"]);
    }

    #[test]
    fn one_shot_watches_fire_once_by_the_java_rules() {
        let mut r = WatchRegistry::default();
        let (t1, mut r1) = oneshot::channel();
        let (t2, mut r2) = oneshot::channel();
        let (t3, mut r3) = oneshot::channel();
        r.add(WatchKind::Data, "/a".into(), WatchSink::Once(t1));
        r.add(WatchKind::Child, "/a".into(), WatchSink::Once(t2));
        r.add(WatchKind::Exist, "/b".into(), WatchSink::Once(t3));
        r.dispatch(1, "/a", ev(EventType::NodeDataChanged, "/a"));
        assert_eq!(
            r1.try_recv().unwrap().event_type,
            EventType::NodeDataChanged
        );
        assert!(
            r2.try_recv().is_err(),
            "child watch must not fire on a data change"
        );
        assert!(!r.has(WatchKind::Data, "/a"));
        r.dispatch(1, "/a", ev(EventType::NodeDeleted, "/a"));
        assert_eq!(r2.try_recv().unwrap().event_type, EventType::NodeDeleted);
        r.dispatch(1, "/b", ev(EventType::NodeCreated, "/b"));
        assert_eq!(r3.try_recv().unwrap().event_type, EventType::NodeCreated);
        assert!(r.take_restore_list().is_empty());
    }

    #[test]
    fn one_shot_watches_under_a_persistent_watch_of_the_same_path_stay_local() {
        let mut r = WatchRegistry::default();
        // A persistent watch on its way already covers the path.
        r.adding(WatchKind::Persistent, "/p");
        assert!(r.shadowed(WatchKind::Data, "/p"));
        assert!(r.shadowed(WatchKind::Child, "/p"));
        assert!(!r.shadowed(WatchKind::Data, "/p/q"), "only the exact path");
        let (tx, _rx) = mpsc::unbounded_channel();
        r.added(WatchKind::Persistent, "/p");
        r.add(WatchKind::Persistent, "/p".into(), WatchSink::Stream(tx));
        assert!(r.shadowed(WatchKind::Exist, "/p"));
        // The server keeps recursive watches out of its child table.
        let (tx, _rx2) = mpsc::unbounded_channel();
        r.add(
            WatchKind::PersistentRecursive,
            "/r".into(),
            WatchSink::Stream(tx),
        );
        assert!(r.shadowed(WatchKind::Data, "/r"));
        assert!(!r.shadowed(WatchKind::Child, "/r"));
        // Once the persistent watch is gone, the one-shot watches it covered need the server.
        let (t1, _r1) = oneshot::channel();
        let (t2, _r2) = oneshot::channel();
        r.add(WatchKind::Data, "/p".into(), WatchSink::Once(t1));
        r.add(WatchKind::Child, "/p".into(), WatchSink::Once(t2));
        assert_eq!(r.uncovered("/p"), (false, false));
        r.remove(2, "/p", WatcherType::Persistent, "/p");
        assert_eq!(r.uncovered("/p"), (true, true));
        // A connection that ends takes the unanswered adds with it.
        r.adding(WatchKind::PersistentRecursive, "/x");
        r.forget_adding();
        assert!(!r.shadowed(WatchKind::Data, "/x"));
    }

    #[test]
    fn recursive_watches_see_descendants_but_not_child_events() {
        let mut r = WatchRegistry::default();
        let (tx, mut rx) = mpsc::unbounded_channel();
        r.add(
            WatchKind::PersistentRecursive,
            "/a".into(),
            WatchSink::Stream(tx),
        );
        r.dispatch(1, "/a/b/c", ev(EventType::NodeCreated, "/a/b/c"));
        r.dispatch(1, "/a", ev(EventType::NodeChildrenChanged, "/a"));
        r.dispatch(1, "/ab", ev(EventType::NodeCreated, "/ab"));
        assert_eq!(rx.try_recv().unwrap().path, "/a/b/c");
        assert!(rx.try_recv().is_err());
        assert!(r.has(WatchKind::PersistentRecursive, "/a"));
        r.resync(1, |p| p.to_string());
        assert_eq!(rx.try_recv().unwrap().event_type, EventType::Resync);
        drop(rx);
        let emptied = r.dispatch(1, "/a/x", ev(EventType::NodeDeleted, "/a/x"));
        assert_eq!(
            emptied,
            vec![(WatchKind::PersistentRecursive, "/a".to_string())]
        );
    }

    #[test]
    fn restore_lists_live_watches_and_clear_tells_everyone() {
        let mut r = WatchRegistry::default();
        let (t1, r1) = oneshot::channel();
        let (t2, r2) = oneshot::channel::<WatchedEvent>();
        r.add(WatchKind::Data, "/live".into(), WatchSink::Once(t1));
        r.add(WatchKind::Data, "/dead".into(), WatchSink::Once(t2));
        drop(r2);
        let sw = r.take_restore_list();
        assert_eq!(sw.data, vec!["/live".to_string()]);
        r.clear(1, KeeperState::Expired);
        assert_eq!(
            r1.blocking_recv().unwrap().keeper_state,
            KeeperState::Expired
        );
        assert!(r.take_restore_list().is_empty());
    }
}
