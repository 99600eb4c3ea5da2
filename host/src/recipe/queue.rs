//! Kazoo's `Queue`: items are persistent sequential children `{path}/entry-{priority:03}-{seq}`
//! (a lower priority number goes first, then the order of putting), taken by reading the first
//! in name order and deleting it. Kazoo and wazoo producers and consumers share one queue.
//!
//! As Kazoo's, it does not offer reliable consumption: an item is removed before it is
//! processed, and an item whose delete lost its reply with the connection is given up rather
//! than risk handing it to two consumers.

use crate::client::{Client, CreateOptions};
use crate::error::{Error, Result};
use crate::proto::records::CreateMode;
use crate::recipe::driver::{self, join, Reply, Request, Response};

/// A distributed FIFO queue with priorities (Kazoo's `Queue`).
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// let mut q = wazoo::Queue::new(&zk, "/jobs")?;
/// q.put(b"urgent", 10).await?;
/// q.put(b"later", 100).await?;
/// assert_eq!(q.get().await?.as_deref(), Some(&b"urgent"[..]));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Queue {
    client: Client,
    path: String,
    /// Names listed by the last get and not yet taken (Kazoo keeps them too).
    cache: Vec<String>,
}

/// Kazoo's default priority.
pub const DEFAULT_PRIORITY: u16 = 100;

impl Queue {
    /// The queue at `path` (created on first use).
    pub fn new(client: &Client, path: &str) -> Result<Queue> {
        crate::path::validate_path(path, false)?;
        Ok(Queue {
            client: client.clone(),
            path: path.to_string(),
            cache: Vec::new(),
        })
    }

    /// Puts an item with a priority from 0 (first) to 999 (Kazoo's default is
    /// [`DEFAULT_PRIORITY`]). As with Kazoo, [`Error::ConnectionLoss`] leaves it unknown
    /// whether the item went in (the name is Kazoo's, without a protection prefix, so that
    /// Kazoo's consumers order it by priority).
    pub async fn put(&self, value: &[u8], priority: u16) -> Result<()> {
        let path = entry_path(&self.path, priority)?;
        let opts = CreateOptions {
            mode: CreateMode::PersistentSequential,
            makepath: true,
            ..Default::default()
        };
        self.client.create_with(&path, value, &opts).await?;
        Ok(())
    }

    /// Takes the first item, or None if the queue is empty.
    pub async fn get(&mut self) -> Result<Option<Vec<u8>>> {
        let mut core = QueueGet::new(&self.path, std::mem::take(&mut self.cache));
        let mut step = core.start();
        loop {
            match step {
                GetStep::Send(req) => {
                    let (reply, _) = driver::send(&self.client, req).await;
                    step = core.on_reply(reply);
                }
                GetStep::Done(r) => {
                    self.cache = core.into_cache();
                    return r;
                }
            }
        }
    }

    /// How many items are queued.
    pub async fn len(&self) -> Result<usize> {
        match self.client.exists(&self.path).await? {
            Some(stat) => Ok(stat.num_children.max(0) as usize),
            None => Ok(0),
        }
    }

    /// Whether the queue is empty.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }
}

/// `{path}/entry-{priority:03}-`: Kazoo's entry name before the sequence number.
fn entry_path(path: &str, priority: u16) -> Result<String> {
    if priority > 999 {
        return Err(Error::InvalidArgument(format!(
            "queue priority {priority} is not between 0 and 999"
        )));
    }
    Ok(join(path, &format!("entry-{priority:03}-")))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GetStep {
    Send(Request),
    Done(Result<Option<Vec<u8>>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    List,
    Read(String),
    Delete(String, Vec<u8>),
}

/// One take from the queue.
#[derive(Debug, Clone)]
pub(crate) struct QueueGet {
    path: String,
    /// Names still to try, first first.
    names: Vec<String>,
    listed: bool,
    phase: Phase,
}

impl QueueGet {
    pub(crate) fn new(path: &str, cache: Vec<String>) -> QueueGet {
        QueueGet {
            path: path.to_string(),
            names: cache,
            listed: false,
            phase: Phase::List,
        }
    }

    pub(crate) fn into_cache(self) -> Vec<String> {
        self.names
    }

    pub(crate) fn start(&mut self) -> GetStep {
        self.next()
    }

    fn list(&mut self) -> GetStep {
        self.phase = Phase::List;
        GetStep::Send(Request::GetChildren(self.path.clone()))
    }

    /// Tries the first cached name, or lists when none is left (once per take: an empty
    /// listing means an empty queue).
    fn next(&mut self) -> GetStep {
        match self.names.first() {
            Some(n) => {
                let p = join(&self.path, n);
                self.phase = Phase::Read(p.clone());
                GetStep::Send(Request::GetData {
                    path: p,
                    watch: false,
                })
            }
            None if !self.listed => self.list(),
            None => GetStep::Done(Ok(None)),
        }
    }

    pub(crate) fn on_reply(&mut self, reply: Reply) -> GetStep {
        match (self.phase.clone(), reply) {
            (Phase::List, Ok(Response::Children(mut c))) => {
                self.listed = true;
                c.sort(); // Kazoo's order: by name, so by priority, then sequence

                self.names = c;
                self.next()
            }
            (Phase::List, Err(Error::NoNode)) => GetStep::Done(Ok(None)),
            (Phase::List, Err(e)) if driver::transient(&e) => self.list(),
            (Phase::Read(p), Ok(Response::Data(data, _))) => {
                self.phase = Phase::Delete(p.clone(), data);
                GetStep::Send(Request::Delete {
                    path: p,
                    version: -1,
                })
            }
            (Phase::Read(_), Err(e)) if driver::transient(&e) => self.next(),
            (Phase::Delete(_, data), Ok(_)) => {
                self.names.remove(0);
                GetStep::Done(Ok(Some(data)))
            }
            // Someone else took it (or, after a lost reply, maybe we did: given up, as Kazoo).
            (Phase::Read(_) | Phase::Delete(..), Err(Error::NoNode)) => {
                self.names.remove(0);
                self.next()
            }
            (Phase::Delete(..), Err(e)) if driver::transient(&e) => {
                // Send the delete again: NoNode then means it went (ours or another's).
                let GetStep::Send(req) = self.retry_delete() else {
                    return self.next();
                };
                GetStep::Send(req)
            }
            (_, Err(e)) => GetStep::Done(Err(e)),
            (phase, Ok(r)) => GetStep::Done(Err(Error::InvalidArgument(format!(
                "queue: unexpected reply {r:?} in {phase:?}"
            )))),
        }
    }

    fn retry_delete(&mut self) -> GetStep {
        match &self.phase {
            Phase::Delete(p, _) => GetStep::Send(Request::Delete {
                path: p.clone(),
                version: -1,
            }),
            _ => self.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::records::Stat;

    fn names(v: &[&str]) -> Reply {
        Ok(Response::Children(
            v.iter().map(|s| s.to_string()).collect(),
        ))
    }

    #[test]
    fn entry_names_are_kazoos() {
        assert_eq!(entry_path("/q", 7).unwrap(), "/q/entry-007-");
        assert!(entry_path("/q", 1000).is_err());
    }

    #[test]
    fn takes_the_first_by_priority_then_sequence() {
        let mut g = QueueGet::new("/q", vec![]);
        assert_eq!(g.start(), GetStep::Send(Request::GetChildren("/q".into())));
        let step = g.on_reply(names(&[
            "entry-100-0000000001",
            "entry-050-0000000003",
            "entry-050-0000000002",
        ]));
        assert_eq!(
            step,
            GetStep::Send(Request::GetData {
                path: "/q/entry-050-0000000002".into(),
                watch: false
            })
        );
        assert!(matches!(
            g.on_reply(Ok(Response::Data(b"x".to_vec(), Stat::default()))),
            GetStep::Send(Request::Delete { .. })
        ));
        assert_eq!(
            g.on_reply(Ok(Response::Unit)),
            GetStep::Done(Ok(Some(b"x".to_vec())))
        );
        assert_eq!(
            g.into_cache(),
            vec!["entry-050-0000000003", "entry-100-0000000001"]
        );
    }

    #[test]
    fn an_item_taken_by_another_moves_on_and_empty_is_none() {
        let mut g = QueueGet::new("/q", vec!["entry-100-0000000001".into()]);
        g.start();
        assert_eq!(
            g.on_reply(Err(Error::NoNode)),
            GetStep::Send(Request::GetChildren("/q".into()))
        );
        assert_eq!(g.on_reply(names(&[])), GetStep::Done(Ok(None)));
    }
}
