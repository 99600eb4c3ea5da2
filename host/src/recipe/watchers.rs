//! Kazoo's `DataWatch` and `ChildrenWatch`: a function called at once with a node's current
//! value, then again after every change, kept armed across reconnects (by SetWatches2) and
//! across session loss (re-registered on the new session), until it returns false or its handle
//! is dropped.
//!
//! Everything runs on the client's watch lane, one call at a time: the first call, the calls
//! after each change and the (blocking) reads between them. A read that waits for a reconnect
//! holds only the watch lane; session events go on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::blocking::block_on;
use crate::client::Client;
use crate::dispatch::{CallbackInfo, LaneKind};
use crate::error::{Error, Result};
use crate::path::validate_path;
use crate::proto::records::{EventType, KeeperState, Stat, WatchedEvent};

type DataFn = dyn FnMut(Option<(Vec<u8>, Stat)>, Option<WatchedEvent>) -> bool + Send;
type ChildrenFn = dyn FnMut(Vec<String>, Option<WatchedEvent>) -> bool + Send;

enum Kind {
    Data(Mutex<Box<DataFn>>),
    Children(Mutex<Box<ChildrenFn>>),
}

struct Shared {
    client: Client,
    path: String,
    alive: Arc<AtomicBool>,
    /// Bumped on every registration; a watch from an older one is ignored (a read can leave
    /// two watches armed: getData's and exists').
    generation: AtomicU64,
    kind: Kind,
}

/// Calls a function with a node's data now and after every change (Kazoo's `DataWatch`).
///
/// The function gets `Some((data, stat))`, or `None` while the node does not exist, and the
/// event that caused the call (`None` for the first call). Returning false stops the watch;
/// so does dropping the handle.
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// let watch = wazoo::DataWatch::new(&zk, "/config", |value, _event| {
///     if let Some((data, stat)) = value {
///         println!("config v{}: {} bytes", stat.version, data.len());
///     }
///     true // keep watching
/// })?;
/// # Ok(()) }
/// ```
pub struct DataWatch {
    shared: Arc<Shared>,
}

/// Calls a function with a node's children now and after every change (Kazoo's
/// `ChildrenWatch`). It stops when the node is deleted (as Kazoo's does), when the function
/// returns false, or when the handle is dropped.
pub struct ChildrenWatch {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for DataWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataWatch")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ChildrenWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildrenWatch")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl DataWatch {
    /// Starts watching `path`; the first call happens on the watch lane right away.
    pub fn new(
        client: &Client,
        path: &str,
        f: impl FnMut(Option<(Vec<u8>, Stat)>, Option<WatchedEvent>) -> bool + Send + 'static,
    ) -> Result<DataWatch> {
        Ok(DataWatch {
            shared: start(client, path, Kind::Data(Mutex::new(Box::new(f))))?,
        })
    }

    /// Whether it still watches.
    pub fn is_active(&self) -> bool {
        self.shared.alive.load(Ordering::Relaxed)
    }
}

impl ChildrenWatch {
    /// Starts watching `path`'s children; `f` gets the child names (Kazoo's default,
    /// `send_event=False`).
    pub fn new(
        client: &Client,
        path: &str,
        mut f: impl FnMut(Vec<String>) -> bool + Send + 'static,
    ) -> Result<ChildrenWatch> {
        Self::with_events(client, path, move |children, _| f(children))
    }

    /// As [`ChildrenWatch::new`], and `f` also gets the event that caused the call (Kazoo's
    /// `send_event=True`; `None` for the first call).
    pub fn with_events(
        client: &Client,
        path: &str,
        f: impl FnMut(Vec<String>, Option<WatchedEvent>) -> bool + Send + 'static,
    ) -> Result<ChildrenWatch> {
        Ok(ChildrenWatch {
            shared: start(client, path, Kind::Children(Mutex::new(Box::new(f))))?,
        })
    }

    /// Whether it still watches.
    pub fn is_active(&self) -> bool {
        self.shared.alive.load(Ordering::Relaxed)
    }
}

fn start(client: &Client, path: &str, kind: Kind) -> Result<Arc<Shared>> {
    validate_path(path, false)?;
    let shared = Arc::new(Shared {
        client: client.clone(),
        path: path.to_string(),
        alive: Arc::new(AtomicBool::new(true)),
        generation: AtomicU64::new(0),
        kind,
    });
    let s = shared.clone();
    client
        .lanes()
        .run(LaneKind::Watch, move |_| fetch(&s, None));
    Ok(shared)
}

fn stop(s: &Shared) {
    if s.alive.swap(false, Ordering::Relaxed) {
        s.client.prune_watches(&s.path);
    }
}

impl Drop for DataWatch {
    fn drop(&mut self) {
        stop(&self.shared);
    }
}

impl Drop for ChildrenWatch {
    fn drop(&mut self) {
        stop(&self.shared);
    }
}

/// Reads the node, re-arms the watch and calls the function. Runs on the watch lane.
fn fetch(s: &Arc<Shared>, event: Option<WatchedEvent>) {
    let mut pause = Duration::from_millis(50);
    loop {
        if !s.alive.load(Ordering::Relaxed) {
            return;
        }
        let generation = s.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let watcher = {
            let s = s.clone();
            move |ev: WatchedEvent, _: CallbackInfo| on_event(&s, generation, ev)
        };
        let outcome: Result<Option<bool>> = match &s.kind {
            Kind::Data(f) => match block_on(s.client.get_data_owned(
                &s.path,
                watcher.clone(),
                s.alive.clone(),
            )) {
                Ok((data, stat)) => Ok(Some(call(f, |f| f(Some((data, stat)), event.clone())))),
                Err(Error::NoNode) => {
                    match block_on(s.client.exists_owned(&s.path, watcher, s.alive.clone())) {
                        Ok(None) => Ok(Some(call(f, |f| f(None, event.clone())))),
                        Ok(Some(_)) => Ok(None), // created meanwhile: read again
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            },
            Kind::Children(f) => match block_on(s.client.get_children_owned(
                &s.path,
                watcher,
                s.alive.clone(),
            )) {
                Ok((children, _)) => Ok(Some(call(f, |f| f(children, event.clone())))),
                Err(Error::NoNode) => Ok(Some(false)), // Kazoo's ChildrenWatch ends with its node
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(Some(true)) => return,
            Ok(Some(false)) => return stop(s),
            Ok(None) => continue,
            Err(Error::Closed) => {
                s.alive.store(false, Ordering::Relaxed);
                return;
            }
            Err(e)
                if e.is_retryable()
                    || e == Error::SessionExpired
                    || matches!(e, Error::QueueFull(_)) =>
            {
                // The session is between connections (or sessions): try again shortly.
                tracing::debug!(path = %s.path, "watch re-arm failed ({e}); retrying");
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                tracing::error!(path = %s.path, "watch stopped: {e}");
                return stop(s);
            }
        }
    }
}

/// Calls the user's function. (A panic unwinds to the lane, which logs it; the watch stays
/// armed and the next change calls the function again.)
fn call<F: ?Sized>(f: &Mutex<Box<F>>, run: impl FnOnce(&mut F) -> bool) -> bool {
    let mut g = f.lock().unwrap_or_else(|p| p.into_inner());
    run(&mut **g)
}

/// A watch fired. Runs on the watch lane.
fn on_event(s: &Arc<Shared>, generation: u64, ev: WatchedEvent) {
    if !s.alive.load(Ordering::Relaxed) || s.generation.load(Ordering::Relaxed) != generation {
        return;
    }
    match (ev.event_type, ev.keeper_state) {
        (EventType::None, KeeperState::Closed) => {
            s.alive.store(false, Ordering::Relaxed);
        }
        // The session was lost: re-register on the new one and report the current value.
        (EventType::None, _) => fetch(s, Some(ev)),
        (EventType::DataWatchRemoved | EventType::ChildWatchRemoved, _) => stop(s),
        _ => fetch(s, Some(ev)),
    }
}
