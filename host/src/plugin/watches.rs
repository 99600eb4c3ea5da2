//! How bindings reach a plugin: kept-armed one-shot watches (data, children, existence),
//! persistent watches bound again on a new session, and a guest's own one-shot watches.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::bindings::wazoo::plugin::types as wit;
use super::convert::wit_event;
use super::state::{GuestEvent, PluginState};
use crate::dispatch::LaneKind;
use crate::proto::records::{AddWatchMode, EventType, WatchedEvent};

pub(crate) async fn add_persistent(
    s: &Arc<PluginState>,
    path: &str,
    mode: AddWatchMode,
) -> crate::Result<()> {
    // The session's registry must not keep the plugin alive: a weak handle, and the watcher
    // ends at the first event after the plugin is gone.
    let shared = Arc::downgrade(s);
    let bound = path.to_string();
    s.client()
        .add_watch_owned(
            path,
            mode,
            move |ev, info| {
                if ev.event_type == EventType::None {
                    // The session ended, and the server forgot the watch with it. Unless the
                    // client was closed, bind again on the next session.
                    if ev.keeper_state != crate::KeeperState::Closed {
                        if let Some(s) = shared.upgrade().filter(|s| s.loaded()) {
                            rebind_persistent(s, bound.clone(), mode, info.seq);
                        }
                    }
                    return false;
                }
                match shared.upgrade() {
                    Some(s) if s.loaded() => {
                        s.send(LaneKind::Watch, GuestEvent::Watch(wit_event(&ev, info.seq)));
                        true
                    }
                    _ => false,
                }
            },
            Some(s.watching().clone()),
        )
        .await?;
    // Unloading the plugin prunes it, here and on the server.
    s.watches(path);
    Ok(())
}

/// Adds a persistent binding again after its session was lost (the client starts a new one;
/// the request waits for it), retrying with backoff while the connection is down. Then the
/// plugin gets a `resync` event for the path: changes made while no session existed were never
/// reported, so it should re-read what it depends on.
fn rebind_persistent(s: Arc<PluginState>, path: String, mode: AddWatchMode, seq: u64) {
    let rt = s.runtime().tasks().clone();
    rt.spawn(async move {
        let mut delay = Duration::from_millis(50);
        while s.loaded() {
            match Box::pin(add_persistent(&s, &path, mode)).await {
                Ok(()) => {
                    tracing::info!(plugin = %s.name(), %path, "persistent binding added again on the new session");
                    let ev = WatchedEvent {
                        event_type: EventType::Resync,
                        keeper_state: crate::KeeperState::SyncConnected,
                        path,
                        zxid: -1,
                    };
                    s.send(LaneKind::Watch, GuestEvent::Watch(wit_event(&ev, seq)));
                    return;
                }
                Err(crate::Error::Closed) => return,
                Err(e) => {
                    tracing::debug!(plugin = %s.name(), %path, "adding the persistent binding again: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    });
}

/// Which one-shot watch a kept-armed binding uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Armed {
    /// `get_data` (`exists` while the node is missing): data changes, creation, deletion.
    Data,
    /// `exists`: creation and deletion reach the plugin; data changes only re-arm.
    Exists,
    /// `get_children` (`exists` while the node is missing): children changes, creation,
    /// deletion.
    Children,
}

/// Arms a one-shot watch and re-arms it after every trigger (and after session loss), sending
/// each event to the plugin's watch lane. The re-arm runs as a task, never on a lane. The
/// watch is withdrawn when the plugin is unloaded.
///
/// As Kazoo's DataWatch does, the watch is re-armed before the event that triggered it is
/// delivered: a plugin that hears an event may rely on hearing the next change too. Only when
/// the re-arm fails (the connection is down) does the event go first and the re-arm retry
/// after it.
///
/// A node created or deleted between a trigger and its re-arm fires no watch; the re-arm sees
/// it, though, and the plugin then gets the `node-created` or `node-deleted` it missed, stamped
/// with the re-arm's completion. A node deleted and created again in that window is told
/// apart by its creation zxid, and the plugin gets both events. So the plugin always learns
/// the node's existence, and every incarnation of it the watch could see.
pub(crate) async fn arm(s: Arc<PluginState>, path: String, kind: Armed) -> crate::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(WatchedEvent, u64)>();
    let forward = move |tx: mpsc::UnboundedSender<(WatchedEvent, u64)>| {
        move |ev: WatchedEvent, info: crate::CallbackInfo| {
            let _ = tx.send((ev, info.seq));
        }
    };
    let (now, _) = arm_once(&s, &path, kind, forward(tx.clone())).await?;
    let mut known = Known::from(now);
    s.watches(&path);
    let rt = s.runtime().tasks().clone();
    rt.spawn(async move {
        while let Some((ev, seq)) = rx.recv().await {
            if !s.loaded() {
                break;
            }
            let deliver = match ev.event_type {
                EventType::None => {
                    if ev.keeper_state == crate::KeeperState::Closed {
                        break;
                    }
                    false // the session was lost: re-arm on the new one
                }
                EventType::NodeDataChanged => kind != Armed::Exists,
                _ => true,
            };
            known = known.after(ev.event_type);
            let mut trigger = deliver.then(|| wit_event(&ev, seq));
            let mut pause = Duration::from_millis(50);
            while s.loaded() {
                match arm_once(&s, &path, kind, forward(tx.clone())).await {
                    Ok((now, stamp)) => {
                        if let Some(t) = trigger.take() {
                            s.send(LaneKind::Watch, GuestEvent::Watch(t));
                        }
                        for missed in known.missed(now) {
                            tracing::debug!(plugin = %s.name(), %path, "a change between trigger and re-arm: {missed:?}");
                            let ev = wit::WatchEvent {
                                event_type: missed,
                                path: path.clone(),
                                seq: stamp,
                            };
                            s.send(LaneKind::Watch, GuestEvent::Watch(ev));
                        }
                        known = Known::from(now);
                        break;
                    }
                    Err(crate::Error::Closed) => return,
                    Err(e) => {
                        if let Some(t) = trigger.take() {
                            s.send(LaneKind::Watch, GuestEvent::Watch(t));
                        }
                        tracing::debug!(plugin = %s.name(), %path, "re-arming the watch failed ({e}); retrying");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
    });
    Ok(())
}

/// What a kept-armed binding knows of its node between re-arms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Known {
    /// The node was missing.
    Missing,
    /// The node existed, created at this zxid.
    Present(i64),
    /// An event said the node was created; which incarnation the re-arm sees is unknown.
    Created,
}

impl Known {
    fn from(czxid: Option<i64>) -> Self {
        czxid.map_or(Known::Missing, Known::Present)
    }

    /// What the triggering event itself tells.
    fn after(self, ev: EventType) -> Self {
        match ev {
            EventType::NodeCreated => Known::Created,
            EventType::NodeDeleted => Known::Missing,
            _ => self,
        }
    }

    /// The existence changes a re-arm that found `now` (the node's creation zxid, or `None`)
    /// shows were missed since.
    fn missed(self, now: Option<i64>) -> Vec<wit::EventType> {
        use wit::EventType::{NodeCreated, NodeDeleted};
        match (self, now) {
            (Known::Missing, Some(_)) => vec![NodeCreated],
            (Known::Present(_) | Known::Created, None) => vec![NodeDeleted],
            (Known::Present(was), Some(is)) if was != is => vec![NodeDeleted, NodeCreated],
            _ => Vec::new(),
        }
    }
}

/// Sends a request and awaits its result with the session's stamp of its completion.
async fn stamped<T: Send + 'static>(p: crate::Pending<T>) -> crate::Result<(T, u64)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    // A blocking call, for the guest or for a binding: it waits for a slot in the plugin's cap
    // rather than failing with `busy`.
    p.rawlink_admitted(move |r, info| {
        let _ = tx.send(r.map(|v| (v, info.seq)));
    })
    .await?;
    // No answer at all: the lanes that would have run the callback were stopped.
    rx.await.map_err(|_| crate::Error::Closed)?
}

/// Arms one watch of `kind` on `path` (for data and children: an exists watch while the node is
/// missing); `w` hears its event. Withdrawn when the plugin is unloaded. Returns the node's
/// creation zxid (`None` when it is missing), and the stamp of the request's completion.
async fn arm_once(
    s: &Arc<PluginState>,
    path: &str,
    kind: Armed,
    w: impl FnOnce(WatchedEvent, crate::CallbackInfo) + Clone + Send + 'static,
) -> crate::Result<(Option<i64>, u64)> {
    let alive = s.watching().clone();
    let c = s.client();
    let exists =
        |r: crate::Result<(Option<crate::Stat>, u64)>| r.map(|(st, q)| (st.map(|st| st.czxid), q));
    match kind {
        Armed::Data => match stamped(c.get_data_owned(path, w.clone(), alive.clone())).await {
            Ok(((_, st), q)) => Ok((Some(st.czxid), q)),
            Err(crate::Error::NoNode) => exists(stamped(c.exists_owned(path, w, alive)).await),
            Err(e) => Err(e),
        },
        Armed::Exists => exists(stamped(c.exists_owned(path, w, alive)).await),
        Armed::Children => {
            match stamped(c.get_children_owned(path, w.clone(), alive.clone())).await {
                Ok(((_, st), q)) => Ok((Some(st.czxid), q)),
                // Wait for the node to appear, then watch its children.
                Err(crate::Error::NoNode) => exists(stamped(c.exists_owned(path, w, alive)).await),
                Err(e) => Err(e),
            }
        }
    }
}

/// A one-shot watch a guest arms itself (`zookeeper.add-watch`): its one event, whatever it
/// is, reaches the plugin's watch lane; nothing re-arms it.
pub(crate) async fn watch_once(s: &Arc<PluginState>, path: &str, kind: Armed) -> crate::Result<()> {
    let shared = Arc::downgrade(s);
    let w = move |ev: WatchedEvent, info: crate::CallbackInfo| {
        if ev.event_type == EventType::None {
            return; // the session ended: the watch is gone with it
        }
        if let Some(s) = shared.upgrade() {
            s.send(LaneKind::Watch, GuestEvent::Watch(wit_event(&ev, info.seq)));
        }
    };
    arm_once(s, path, kind, w).await?;
    s.watches(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_re_arm_reports_the_existence_changes_it_missed() {
        use wit::EventType::{NodeCreated, NodeDeleted};
        let cases = [
            (Known::Missing, None, vec![]),
            (Known::Missing, Some(7), vec![NodeCreated]),
            (Known::Present(7), Some(7), vec![]),
            (Known::Present(7), None, vec![NodeDeleted]),
            // Deleted and created again between trigger and re-arm.
            (Known::Present(7), Some(9), vec![NodeDeleted, NodeCreated]),
            // The created event told of some incarnation; the re-arm cannot tell which.
            (Known::Created, Some(9), vec![]),
            (Known::Created, None, vec![NodeDeleted]),
        ];
        for (known, now, want) in cases {
            let got = known.missed(now);
            assert_eq!(got.len(), want.len(), "{known:?} then {now:?}: {got:?}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(
                    std::mem::discriminant(g),
                    std::mem::discriminant(w),
                    "{known:?} then {now:?}"
                );
            }
        }
        assert_eq!(
            Known::Present(7).after(EventType::NodeDeleted),
            Known::Missing
        );
        assert_eq!(Known::Missing.after(EventType::NodeCreated), Known::Created);
        assert_eq!(
            Known::Present(7).after(EventType::NodeDataChanged),
            Known::Present(7)
        );
    }
}
