//! Curator's `PersistentNode` idea: a node (usually ephemeral) that the recipe keeps present
//! with its data: created again when it is deleted or went with a lost session, its data set
//! again after a reconnect if it was changed underneath.
//!
//! The decision (what to do given what the server shows) is [`decide`], without I/O; the task
//! around it re-checks on every watch event on the node and on every (re)connect.
//!
//! Session states: SUSPENDED means an ephemeral node may be gone; LOST means it is (the old
//! session's ephemeral may linger until the server notices: it is deleted and created again
//! under the new session); a reconnect within the session keeps it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::client::{Client, CreateOptions};
use crate::error::{Error, Result};
use crate::proto::records::{CreateMode, Stat};
use crate::recipe::driver;
use crate::recipe::protected::create_protected;
use crate::session::SessionState;

/// A node the recipe keeps present (Curator's `PersistentNode`). Needs a tokio runtime (it
/// runs a task). Closing it (or dropping it) stops the task and deletes the node.
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// use std::time::Duration;
/// let node = wazoo::PersistentNode::start(
///     &zk, "/services/api/host-a", b"10.0.0.1:80", wazoo::CreateMode::Ephemeral)?;
/// let path = node.wait_for_initial_create(Duration::from_secs(10)).await?;
/// # let _ = path;
/// node.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PersistentNode {
    client: Client,
    data: Arc<Mutex<Vec<u8>>>,
    actual: watch::Receiver<Option<String>>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Wakes the task when the data changes.
    poke: Arc<tokio::sync::Notify>,
}

impl PersistentNode {
    /// Keeps a node at `path` (its parents are made as needed) holding `data`, created with
    /// `mode`. Sequential modes create under Curator's protection prefix, and a node created
    /// again gets a new sequence number: see [`PersistentNode::actual_path`].
    pub fn start(
        client: &Client,
        path: &str,
        data: &[u8],
        mode: CreateMode,
    ) -> Result<PersistentNode> {
        crate::path::validate_path(path, mode.is_sequential())?;
        let (actual_tx, actual) = watch::channel(None);
        let (stop, stopped) = watch::channel(false);
        let data = Arc::new(Mutex::new(data.to_vec()));
        let poke = Arc::new(tokio::sync::Notify::new());
        let keeper = Keeper {
            client: client.clone(),
            path: path.to_string(),
            mode,
            data: data.clone(),
            actual: actual_tx,
            poke: poke.clone(),
        };
        let task = tokio::spawn(keeper.run(stopped));
        Ok(PersistentNode {
            client: client.clone(),
            data,
            actual,
            stop,
            task: Some(task),
            poke,
        })
    }

    /// The node's path once created (with its sequence suffix for sequential modes); `None`
    /// before the first create, or while it is being created again.
    pub fn actual_path(&self) -> Option<String> {
        self.actual.borrow().clone()
    }

    /// Waits at most `timeout` for the node to be created; its path.
    pub async fn wait_for_initial_create(&self, timeout: Duration) -> Result<String> {
        let mut rx = self.actual.clone();
        let waited = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(p)) => Ok(p.clone().unwrap_or_default()),
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    /// The data the node is kept with.
    pub fn data(&self) -> Vec<u8> {
        self.data.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the data the node is kept with (set on the server by the task).
    pub fn set_data(&self, data: &[u8]) {
        *self.data.lock().unwrap_or_else(|p| p.into_inner()) = data.to_vec();
        self.poke.notify_one();
    }

    /// Stops keeping the node and deletes it.
    pub async fn close(mut self) -> Result<()> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let path = self.actual_path();
        if let Some(p) = path {
            loop {
                match self.client.delete(&p, None).await {
                    Ok(()) | Err(Error::NoNode) => break,
                    Err(e) if driver::transient(&e) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

impl Drop for PersistentNode {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if self.task.is_some() {
            if let Some(p) = self.actual_path() {
                // Without waiting: the request is sent; its answer is not needed.
                let _ = self.client.delete(&p, None).rawlink(|_, _| {});
            }
        }
    }
}

/// What the node on the server needs, given what a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// It is absent: create it.
    Create,
    /// It is an ephemeral of another (an expired) session: delete it, then create it.
    Replace,
    /// It holds other data: set ours.
    SetData,
    /// It is as it should be.
    Keep,
}

/// The decision: `found` is the node's data and stat (`None`: absent), `session` this
/// client's session id; other data is replaced by ours only when `reset` (after a (re)connect
/// or a [`PersistentNode::set_data`], as Curator does: a change seen live is left alone).
pub(crate) fn decide(
    found: Option<(&[u8], &Stat)>,
    ours: &[u8],
    mode: CreateMode,
    session: i64,
    reset: bool,
) -> Action {
    match found {
        None => Action::Create,
        Some((_, stat)) if mode.is_ephemeral() && stat.ephemeral_owner != session => {
            Action::Replace
        }
        Some((data, _)) if reset && data != ours => Action::SetData,
        Some(_) => Action::Keep,
    }
}

struct Keeper {
    client: Client,
    path: String,
    mode: CreateMode,
    data: Arc<Mutex<Vec<u8>>>,
    actual: watch::Sender<Option<String>>,
    poke: Arc<tokio::sync::Notify>,
}

impl Keeper {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut sessions = self.client.state_events();
        let mut reset = true;
        loop {
            let watch = match self.client.state() {
                SessionState::Closed => return,
                SessionState::Connected | SessionState::ConnectedReadOnly => {
                    match self.ensure(reset).await {
                        Ok(w) => w,
                        Err(Error::Closed) => return,
                        Err(e) => {
                            tracing::debug!(path = %self.path, "persistent node: {e}");
                            None
                        }
                    }
                }
                _ => None,
            };
            let node_changed = async {
                match watch {
                    Some(w) => {
                        w.changed().await;
                    }
                    None => std::future::pending().await,
                }
            };
            reset = tokio::select! {
                _ = stopped.wait_for(|s| *s) => return,
                _ = node_changed => false,
                _ = self.poke.notified() => true,
                ev = sessions.next() => {
                    if ev.is_none() {
                        return;
                    }
                    true
                }
            };
        }
    }

    fn ours(&self) -> Vec<u8> {
        self.data.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Makes the server's node what it should be; the watch on it (set by the last read).
    async fn ensure(&self, reset: bool) -> Result<Option<crate::client::OneshotWatcher>> {
        loop {
            let ours = self.ours();
            let at = self.actual.borrow().clone();
            let found = match &at {
                Some(p) => match self.client.get_data_watch(p).await {
                    Ok((d, s, w)) => Some((d, s, w)),
                    Err(Error::NoNode) => None,
                    Err(e) if driver::transient(&e) => continue,
                    Err(e) => return Err(e),
                },
                None => None,
            };
            let action = decide(
                found.as_ref().map(|(d, s, _)| (d.as_slice(), s)),
                &ours,
                self.mode,
                self.client.session_id(),
                reset,
            );
            match (action, found, at) {
                (Action::Keep, Some((_, _, w)), _) => return Ok(Some(w)),
                (Action::SetData, Some((_, s, _)), Some(p)) => {
                    match self.client.set_data(&p, &ours, Some(s.version)).await {
                        Ok(_) | Err(Error::BadVersion | Error::NoNode) => {}
                        Err(e) if driver::transient(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                (Action::Replace, Some((_, s, _)), Some(p)) => {
                    match self.client.delete(&p, Some(s.version)).await {
                        Ok(()) | Err(Error::NoNode | Error::BadVersion) => {}
                        Err(e) if driver::transient(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                _ => {
                    // Absent (or never created): create it.
                    self.actual.send_replace(None);
                    let created = self.create(&ours).await?;
                    self.actual.send_replace(Some(created));
                }
            }
        }
    }

    async fn create(&self, data: &[u8]) -> Result<String> {
        let opts = CreateOptions {
            mode: self.mode,
            makepath: true,
            ..Default::default()
        };
        if self.mode.is_sequential() {
            return create_protected(&self.client, &self.path, data, &opts)
                .await
                .map(|(p, _)| p);
        }
        loop {
            match self.client.create_with(&self.path, data, &opts).await {
                // Found there: the next read decides whether it is ours.
                Ok(_) | Err(Error::NodeExists) => return Ok(self.path.clone()),
                Err(e) if driver::transient(&e) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(owner: i64) -> Stat {
        Stat {
            ephemeral_owner: owner,
            ..Stat::default()
        }
    }

    #[test]
    fn the_node_is_created_replaced_reset_or_kept() {
        let e = CreateMode::Ephemeral;
        assert_eq!(decide(None, b"x", e, 7, false), Action::Create);
        assert_eq!(
            decide(Some((b"x", &stat(7))), b"x", e, 7, true),
            Action::Keep
        );
        assert_eq!(
            decide(Some((b"y", &stat(7))), b"x", e, 7, true),
            Action::SetData
        );
        assert_eq!(
            decide(Some((b"y", &stat(7))), b"x", e, 7, false),
            Action::Keep,
            "a change seen live is left alone"
        );
        assert_eq!(
            decide(Some((b"x", &stat(6))), b"x", e, 7, false),
            Action::Replace,
            "an expired session's ephemeral"
        );
        assert_eq!(
            decide(
                Some((b"x", &stat(0))),
                b"x",
                CreateMode::Persistent,
                7,
                true
            ),
            Action::Keep
        );
    }
}
