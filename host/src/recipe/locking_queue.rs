//! Kazoo's `LockingQueue`: an item is locked while it is processed instead of removed, so an
//! item whose consumer dies goes back to the queue. Kazoo's layout: items are persistent
//! sequential `{path}/entries/entry-{priority:03}-{seq}`; a consumer locks one by creating the
//! ephemeral `{path}/taken/{entry name}` holding its id, and consumes it by deleting both in one
//! transaction.
//!
//! Session states: SUSPENDED means the consumer may have lost its item's lock (check
//! [`LockingQueue::holds_lock`] before consuming); LOST means it has (the lock node went with the
//! session, the item is available to others again); a reconnect within the session keeps it.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use crate::client::{Client, CreateOptions, OneshotWatcher};
use crate::error::{Error, Result};
use crate::proto::multi::Op;
use crate::proto::records::{CreateMode, EventType, KeeperState};
use crate::recipe::driver::{self, join, Reply, Request, Response};

/// Kazoo's `LockingQueue`: [`LockingQueue::get`] locks and returns the first free item,
/// [`LockingQueue::consume`] removes it, [`LockingQueue::release`] puts it back.
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// let mut q = wazoo::LockingQueue::new(&zk, "/jobs")?;
/// q.put(b"job-1", 100).await?;
/// if let Some(job) = q.get(Some(std::time::Duration::from_secs(5))).await? {
///     // ... process job ...
///     q.consume().await?;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LockingQueue {
    client: Client,
    entries: String,
    taken: String,
    id: Vec<u8>,
    /// The locked item: its name and value.
    processing: Option<(String, Vec<u8>)>,
}

impl LockingQueue {
    /// The queue at `path` (its `entries` and `taken` nodes are created on first use).
    pub fn new(client: &Client, path: &str) -> Result<LockingQueue> {
        crate::path::validate_path(path, false)?;
        Ok(LockingQueue {
            client: client.clone(),
            entries: join(path, "entries"),
            taken: join(path, "taken"),
            id: driver::uuid_hex().into_bytes(),
            processing: None,
        })
    }

    async fn ensure(&self) -> Result<()> {
        self.client.ensure_path(&self.entries).await?;
        self.client.ensure_path(&self.taken).await
    }

    fn entry(&self, priority: u16) -> Result<String> {
        if priority > 999 {
            return Err(Error::InvalidArgument(format!(
                "queue priority {priority} is not between 0 and 999"
            )));
        }
        Ok(join(&self.entries, &format!("entry-{priority:03}-")))
    }

    /// Puts an item with a priority from 0 (first) to 999.
    pub async fn put(&self, value: &[u8], priority: u16) -> Result<()> {
        let path = self.entry(priority)?;
        self.ensure().await?;
        let opts = CreateOptions {
            mode: CreateMode::PersistentSequential,
            ..Default::default()
        };
        self.client
            .create_with(&path, value, &opts)
            .await
            .map(|_| ())
    }

    /// Puts several items at once: all or none.
    pub async fn put_all(&self, values: &[&[u8]], priority: u16) -> Result<()> {
        let path = self.entry(priority)?;
        self.ensure().await?;
        let ops: Vec<Op> = values
            .iter()
            .map(|v| Op::create(path.clone(), v.to_vec(), CreateMode::PersistentSequential))
            .collect();
        self.client.multi(&ops).await.map(|_| ())
    }

    /// Locks and returns the first free item, waiting at most `timeout` (None: until there is
    /// one); None if the time ran out. An item got before and neither consumed nor released is
    /// returned again.
    pub async fn get(&mut self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>> {
        if let Some((_, v)) = &self.processing {
            return Ok(Some(v.clone()));
        }
        self.ensure().await?;
        let mut core = TakeCore::new(&self.entries, &self.taken, &self.id);
        let run = drive(&self.client, &mut core);
        let got = match timeout {
            None => run.await?,
            Some(t) => match tokio::time::timeout(t, run).await {
                Ok(r) => r?,
                Err(_) => {
                    // A lock taken just as the time ran out is given back.
                    if let Some(name) = core.locking() {
                        let _ = self.client.delete(&join(&self.taken, &name), None).await;
                    }
                    None
                }
            },
        };
        self.processing = got.clone();
        Ok(got.map(|(_, v)| v))
    }

    /// Whether this consumer still holds its item's lock (read after a sync, as Kazoo does).
    pub async fn holds_lock(&self) -> Result<bool> {
        let Some((name, _)) = &self.processing else {
            return Ok(false);
        };
        let path = join(&self.taken, name);
        self.client.sync(&path).await?;
        match self.client.get_data(&path).await {
            Ok((data, _)) => Ok(data == self.id),
            Err(Error::NoNode) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes the item being processed from the queue; false if none is, or its lock was lost.
    pub async fn consume(&mut self) -> Result<bool> {
        self.finish(true).await
    }

    /// Puts the item being processed back (removes its lock); false if none is, or its lock
    /// was lost.
    pub async fn release(&mut self) -> Result<bool> {
        self.finish(false).await
    }

    async fn finish(&mut self, consume: bool) -> Result<bool> {
        if !self.holds_lock().await? {
            self.processing = None;
            return Ok(false);
        }
        let Some((name, _)) = self.processing.clone() else {
            return Ok(false);
        };
        let mut ops = Vec::new();
        if consume {
            ops.push(Op::delete(join(&self.entries, &name), -1));
        }
        ops.push(Op::delete(join(&self.taken, &name), -1));
        self.client.multi(&ops).await?;
        self.processing = None;
        Ok(true)
    }

    /// How many items are queued, locked ones included.
    pub async fn len(&self) -> Result<usize> {
        match self.client.exists(&self.entries).await? {
            Some(s) => Ok(s.num_children.max(0) as usize),
            None => Ok(0),
        }
    }

    /// Whether no item is queued.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }
}

/// Drives a [`TakeCore`] until it has an item.
async fn drive(client: &Client, core: &mut TakeCore) -> Result<Option<(String, Vec<u8>)>> {
    let mut step = core.start();
    let mut watchers = Vec::new();
    loop {
        step = match step {
            Take::Send(req) => {
                let (reply, w) = driver::send(client, req).await;
                watchers.extend(w);
                core.on_reply(reply)
            }
            Take::Wait => {
                let ev = any_fired(std::mem::take(&mut watchers)).await;
                if (ev.0, ev.1) == (EventType::None, KeeperState::Closed) {
                    return Err(Error::Closed);
                }
                core.start()
            }
            Take::Got(name, value) => return Ok(Some((name, value))),
            Take::Failed(e) => return Err(e),
        }
    }
}

/// Waits until one of the watchers fires (the others are dropped; their server watches fire
/// later into nothing).
async fn any_fired(watchers: Vec<OneshotWatcher>) -> (EventType, KeeperState) {
    type Fired = Pin<Box<dyn Future<Output = crate::proto::records::WatchedEvent> + Send>>;
    let mut futs: Vec<Fired> = watchers
        .into_iter()
        .map(|w| Box::pin(w.changed()) as Fired)
        .collect();
    if futs.is_empty() {
        return (EventType::None, KeeperState::SyncConnected);
    }
    std::future::poll_fn(|cx| {
        for f in futs.iter_mut() {
            if let Poll::Ready(ev) = f.as_mut().poll(cx) {
                return Poll::Ready((ev.event_type, ev.keeper_state));
            }
        }
        Poll::Pending
    })
    .await
}

/// What the take core wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Take {
    Send(Request),
    /// Wait for either children watch, then start again.
    Wait,
    Got(String, Vec<u8>),
    Failed(Error),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    ListEntries,
    ListTaken(Vec<String>),
    Lock(String, Vec<String>),
    Read(String, Vec<String>),
    Unlock(Vec<String>),
}

/// Taking one item: list entries and locks (both watched), lock the first free item, read it.
#[derive(Debug, Clone)]
pub(crate) struct TakeCore {
    entries: String,
    taken: String,
    id: Vec<u8>,
    phase: Phase,
}

impl TakeCore {
    pub(crate) fn new(entries: &str, taken: &str, id: &[u8]) -> TakeCore {
        TakeCore {
            entries: entries.to_string(),
            taken: taken.to_string(),
            id: id.to_vec(),
            phase: Phase::ListEntries,
        }
    }

    /// The item whose lock is being created or is held, if any (to give back on a timeout).
    pub(crate) fn locking(&self) -> Option<String> {
        match &self.phase {
            Phase::Lock(n, _) | Phase::Read(n, _) => Some(n.clone()),
            _ => None,
        }
    }

    pub(crate) fn start(&mut self) -> Take {
        self.phase = Phase::ListEntries;
        Take::Send(Request::GetChildrenWatch(self.entries.clone()))
    }

    /// Locks the first of `free`, or waits when there is none.
    fn try_first(&mut self, mut free: Vec<String>) -> Take {
        if free.is_empty() {
            return Take::Wait;
        }
        let name = free.remove(0);
        self.phase = Phase::Lock(name.clone(), free);
        Take::Send(Request::Create {
            path: join(&self.taken, &name),
            data: self.id.clone(),
            mode: CreateMode::Ephemeral,
        })
    }

    pub(crate) fn on_reply(&mut self, reply: Reply) -> Take {
        let transient =
            matches!(&reply, Err(e) if driver::transient(e) || *e == Error::SessionExpired);
        match (self.phase.clone(), reply) {
            (Phase::ListEntries, Ok(Response::Children(mut entries))) => {
                entries.sort();
                self.phase = Phase::ListTaken(entries);
                Take::Send(Request::GetChildrenWatch(self.taken.clone()))
            }
            (Phase::ListTaken(entries), Ok(Response::Children(taken))) => {
                let free = entries.into_iter().filter(|e| !taken.contains(e)).collect();
                self.try_first(free)
            }
            (Phase::Lock(name, rest), Ok(_)) => {
                self.phase = Phase::Read(name.clone(), rest);
                Take::Send(Request::GetData {
                    path: join(&self.entries, &name),
                    watch: false,
                })
            }
            // Someone else locked it first: try the next.
            (Phase::Lock(_, rest), Err(Error::NodeExists)) => self.try_first(rest),
            (Phase::Read(name, _), Ok(Response::Data(value, _))) => Take::Got(name, value),
            // Consumed meanwhile: give our lock back, then go on.
            (Phase::Read(name, rest), Err(Error::NoNode)) => {
                self.phase = Phase::Unlock(rest);
                Take::Send(Request::Delete {
                    path: join(&self.taken, &name),
                    version: -1,
                })
            }
            (Phase::Unlock(rest), Ok(_) | Err(Error::NoNode)) => self.try_first(rest),
            (_, _) if transient => self.start(),
            (_, Err(e)) => Take::Failed(e),
            (phase, Ok(r)) => Take::Failed(Error::InvalidArgument(format!(
                "locking queue: unexpected reply {r:?} in {phase:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::records::Stat;

    fn kids(v: &[&str]) -> Reply {
        Ok(Response::Children(
            v.iter().map(|s| s.to_string()).collect(),
        ))
    }

    #[test]
    fn takes_the_first_free_item_and_skips_locked_ones() {
        let mut t = TakeCore::new("/q/entries", "/q/taken", b"me");
        assert_eq!(
            t.start(),
            Take::Send(Request::GetChildrenWatch("/q/entries".into()))
        );
        assert_eq!(
            t.on_reply(kids(&[
                "entry-100-0000000002",
                "entry-001-0000000003",
                "entry-100-0000000001"
            ])),
            Take::Send(Request::GetChildrenWatch("/q/taken".into()))
        );
        assert_eq!(
            t.on_reply(kids(&["entry-001-0000000003"])),
            Take::Send(Request::Create {
                path: "/q/taken/entry-100-0000000001".into(),
                data: b"me".to_vec(),
                mode: CreateMode::Ephemeral
            })
        );
        // Another consumer locked it first.
        assert!(matches!(
            t.on_reply(Err(Error::NodeExists)),
            Take::Send(Request::Create { ref path, .. }) if path == "/q/taken/entry-100-0000000002"
        ));
        assert_eq!(
            t.on_reply(Ok(Response::Created(String::new(), Stat::default()))),
            Take::Send(Request::GetData {
                path: "/q/entries/entry-100-0000000002".into(),
                watch: false
            })
        );
        assert_eq!(t.locking().as_deref(), Some("entry-100-0000000002"));
        assert_eq!(
            t.on_reply(Ok(Response::Data(b"v".to_vec(), Stat::default()))),
            Take::Got("entry-100-0000000002".into(), b"v".to_vec())
        );
    }

    #[test]
    fn nothing_free_waits_and_a_consumed_item_is_unlocked() {
        let mut t = TakeCore::new("/q/entries", "/q/taken", b"me");
        t.start();
        t.on_reply(kids(&["entry-100-0000000001"]));
        assert_eq!(t.on_reply(kids(&["entry-100-0000000001"])), Take::Wait);
        t.start();
        t.on_reply(kids(&["entry-100-0000000001"]));
        t.on_reply(kids(&[]));
        t.on_reply(Ok(Response::Created(String::new(), Stat::default())));
        assert_eq!(
            t.on_reply(Err(Error::NoNode)),
            Take::Send(Request::Delete {
                path: "/q/taken/entry-100-0000000001".into(),
                version: -1
            })
        );
        assert_eq!(t.on_reply(Ok(Response::Unit)), Take::Wait);
    }
}
