//! Kazoo's `Barrier` (work waits while a node exists) and `DoubleBarrier` (members enter until
//! `n` have joined, and leave until all have left), with Kazoo's layouts: a double barrier's
//! members are ephemeral children `{path}/{uuid-hex}` holding their identifiers, and the
//! barrier opens when `{path}/ready` is created.

use std::time::Duration;

use crate::client::{Client, OneshotWatcher};
use crate::error::{Error, Result};
use crate::proto::records::{CreateMode, EventType, KeeperState};
use crate::recipe::driver::{self, join, Reply, Request, Response};

/// A barrier: [`Barrier::wait`] returns once the node at its path is gone (Kazoo's `Barrier`).
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// let barrier = wazoo::Barrier::new(&zk, "/barriers/deploy")?;
/// barrier.create().await?;
/// // elsewhere: barrier.wait(None).await? returns once someone calls remove()
/// barrier.remove().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Barrier {
    client: Client,
    path: String,
}

impl Barrier {
    /// The barrier at `path`.
    pub fn new(client: &Client, path: &str) -> Result<Barrier> {
        crate::path::validate_path(path, false)?;
        Ok(Barrier {
            client: client.clone(),
            path: path.to_string(),
        })
    }

    /// Puts the barrier up (creates its node and parents; fine if it is up).
    pub async fn create(&self) -> Result<()> {
        self.client.ensure_path(&self.path).await
    }

    /// Takes the barrier down; false if it was not up.
    pub async fn remove(&self) -> Result<bool> {
        match self.client.delete(&self.path, None).await {
            Ok(()) => Ok(true),
            Err(Error::NoNode) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until the barrier is down: true once it is, false if `timeout` ran out first.
    /// Unlike Kazoo's, a change to the node's data does not end the wait, and a dropped
    /// connection is ridden out (the watch is restored on reconnect).
    pub async fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        let mut core = Gone::new(&self.path);
        let run = drive_gone(&self.client, &mut core);
        match timeout {
            None => run.await,
            Some(t) => tokio::time::timeout(t, run).await.unwrap_or(Ok(false)),
        }
    }
}

/// Drives a [`Gone`] core: true when the node is gone.
async fn drive_gone(client: &Client, core: &mut Gone) -> Result<bool> {
    let mut step = core.start();
    let mut watcher = None;
    loop {
        step = match step {
            Step::Send(req) => {
                let (reply, w) = driver::send(client, req).await;
                watcher = w;
                core.on_reply(reply)
            }
            Step::Wait => {
                wait_watch(watcher.take()).await?;
                core.on_watch()
            }
            Step::Done => return Ok(true),
            Step::Failed(e) => return Err(e),
        }
    }
}

/// Waits for a one-shot watch; `Closed` ends the wait with an error, anything else (a change,
/// a session loss) means "look again".
async fn wait_watch(w: Option<OneshotWatcher>) -> Result<()> {
    let Some(w) = w else { return Ok(()) };
    let ev = w.changed().await;
    if (ev.event_type, ev.keeper_state) == (EventType::None, KeeperState::Closed) {
        return Err(Error::Closed);
    }
    Ok(())
}

/// What a barrier core wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Send(Request),
    /// Wait for the watch the last request left, then call `on_watch`.
    Wait,
    Done,
    Failed(Error),
}

/// Waits until a node is gone (the barrier's wait, and a double barrier member's wait for
/// another to leave).
#[derive(Debug, Clone)]
pub(crate) struct Gone {
    path: String,
}

impl Gone {
    pub(crate) fn new(path: &str) -> Gone {
        Gone {
            path: path.to_string(),
        }
    }
    pub(crate) fn start(&mut self) -> Step {
        Step::Send(Request::ExistsWatch(self.path.clone()))
    }
    pub(crate) fn on_reply(&mut self, reply: Reply) -> Step {
        match reply {
            Ok(Response::Absent) => Step::Done,
            Ok(_) => Step::Wait,
            Err(e) if driver::transient(&e) || e == Error::SessionExpired => self.start(),
            Err(e) => Step::Failed(e),
        }
    }
    pub(crate) fn on_watch(&mut self) -> Step {
        self.start()
    }
}

/// Kazoo's `DoubleBarrier`: [`DoubleBarrier::enter`] waits until `n` members have entered,
/// [`DoubleBarrier::leave`] until every member has left.
///
/// A member's node is ephemeral: a member whose session is lost is no longer in the barrier
/// (as Kazoo says, listen for session loss).
#[derive(Debug)]
pub struct DoubleBarrier {
    client: Client,
    core: DoubleCore,
}

impl DoubleBarrier {
    /// A member named `identifier` of the barrier at `path` for `n` members.
    pub fn new(client: &Client, path: &str, n: usize, identifier: &str) -> Result<DoubleBarrier> {
        crate::path::validate_path(path, false)?;
        Ok(DoubleBarrier {
            client: client.clone(),
            core: DoubleCore::new(path, n, identifier.as_bytes()),
        })
    }

    /// Enters, and waits until `n` members have.
    pub async fn enter(&mut self) -> Result<()> {
        let step = self.core.enter();
        self.drive(step).await
    }

    /// Leaves, and waits until every member has.
    pub async fn leave(&mut self) -> Result<()> {
        let step = self.core.leave();
        self.drive(step).await
    }

    async fn drive(&mut self, mut step: Step) -> Result<()> {
        let mut watcher = None;
        loop {
            step = match step {
                Step::Send(req) => {
                    let (reply, w) = driver::send(&self.client, req).await;
                    watcher = w;
                    self.core.on_reply(reply)
                }
                Step::Wait => {
                    wait_watch(watcher.take()).await?;
                    self.core.on_watch()
                }
                Step::Done => return Ok(()),
                Step::Failed(e) => return Err(e),
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Ensure,
    Join,
    WatchReady,
    Count { ready: bool },
    Open,
    WaitReady,
    DropReady,
    List,
    DeleteOwn { then_watch: String },
    WatchGone,
    WaitGone,
    LeaveLast,
}

/// The double barrier state machine for one member.
#[derive(Debug, Clone)]
pub(crate) struct DoubleCore {
    path: String,
    n: usize,
    data: Vec<u8>,
    name: String,
    phase: Phase,
}

impl DoubleCore {
    pub(crate) fn new(path: &str, n: usize, data: &[u8]) -> DoubleCore {
        DoubleCore {
            path: path.to_string(),
            n,
            data: data.to_vec(),
            name: driver::uuid_hex(),
            phase: Phase::Ensure,
        }
    }

    fn ready(&self) -> String {
        join(&self.path, "ready")
    }

    fn own(&self) -> String {
        join(&self.path, &self.name)
    }

    fn send(&mut self, phase: Phase, req: Request) -> Step {
        self.phase = phase;
        Step::Send(req)
    }

    pub(crate) fn enter(&mut self) -> Step {
        self.send(Phase::Ensure, Request::EnsurePath(self.path.clone()))
    }

    fn join_(&mut self) -> Step {
        let req = Request::Create {
            path: self.own(),
            data: self.data.clone(),
            mode: CreateMode::Ephemeral,
        };
        self.send(Phase::Join, req)
    }

    fn watch_ready(&mut self) -> Step {
        let req = Request::ExistsWatch(self.ready());
        self.send(Phase::WatchReady, req)
    }

    pub(crate) fn leave(&mut self) -> Step {
        let req = Request::Delete {
            path: self.ready(),
            version: -1,
        };
        self.send(Phase::DropReady, req)
    }

    fn list(&mut self) -> Step {
        let req = Request::GetChildren(self.path.clone());
        self.send(Phase::List, req)
    }

    pub(crate) fn on_reply(&mut self, reply: Reply) -> Step {
        let transient = matches!(&reply, Err(e) if driver::transient(e));
        match (self.phase.clone(), reply) {
            (Phase::Ensure, Ok(_)) => self.join_(),
            (Phase::Ensure, _) if transient => self.enter(),
            // Already in (a retried create whose first reply was lost).
            (Phase::Join, Ok(_) | Err(Error::NodeExists)) => self.watch_ready(),
            (Phase::Join, Err(Error::SessionExpired)) => self.join_(),
            (Phase::Join, _) if transient => self.join_(),
            (Phase::WatchReady, Ok(r)) => {
                let ready = r != Response::Absent;
                let req = Request::GetChildren(self.path.clone());
                self.send(Phase::Count { ready }, req)
            }
            (Phase::WatchReady, _) if transient => self.watch_ready(),
            (Phase::Count { ready }, Ok(Response::Children(c))) => {
                let members = c.iter().filter(|c| *c != "ready").count();
                if ready {
                    Step::Done
                } else if members < self.n {
                    self.phase = Phase::WaitReady;
                    Step::Wait
                } else {
                    let req = Request::EnsurePath(self.ready());
                    self.send(Phase::Open, req)
                }
            }
            (Phase::Count { .. }, _) if transient => self.watch_ready(),
            (Phase::Open, Ok(_)) => Step::Done,
            (Phase::Open, _) if transient => {
                let req = Request::EnsurePath(self.ready());
                self.send(Phase::Open, req)
            }
            (Phase::DropReady, Ok(_) | Err(Error::NoNode)) => self.list(),
            (Phase::DropReady, _) if transient => self.leave(),
            (Phase::List, Ok(Response::Children(c))) => self.decide(c),
            (Phase::List, _) if transient => self.list(),
            (Phase::LeaveLast, Ok(_) | Err(Error::NoNode)) => Step::Done,
            (Phase::LeaveLast, _) if transient => self.list(),
            (Phase::DeleteOwn { then_watch }, Ok(_) | Err(Error::NoNode)) => {
                let req = Request::ExistsWatch(join(&self.path, &then_watch));
                self.send(Phase::WatchGone, req)
            }
            (Phase::DeleteOwn { .. }, _) if transient => self.list(),
            (Phase::WatchGone, Ok(Response::Absent)) => self.list(),
            (Phase::WatchGone, Ok(_)) => {
                self.phase = Phase::WaitGone;
                Step::Wait
            }
            (Phase::WatchGone, _) if transient => self.list(),
            (_, Err(e)) => Step::Failed(e),
            (phase, Ok(r)) => Step::Failed(Error::InvalidArgument(format!(
                "double barrier: unexpected reply {r:?} in {phase:?}"
            ))),
        }
    }

    /// Kazoo's leave: the lowest member waits for the highest to go; every other member
    /// deletes its node and waits for the lowest to go.
    fn decide(&mut self, children: Vec<String>) -> Step {
        let mut members: Vec<String> = children.into_iter().filter(|c| c != "ready").collect();
        members.sort();
        if members.is_empty() {
            return Step::Done;
        }
        if members.len() == 1 && members[0] == self.name {
            let req = Request::Delete {
                path: self.own(),
                version: -1,
            };
            return self.send(Phase::LeaveLast, req);
        }
        if members[0] == self.name {
            let last = members[members.len() - 1].clone();
            let req = Request::ExistsWatch(join(&self.path, &last));
            return self.send(Phase::WatchGone, req);
        }
        let req = Request::Delete {
            path: self.own(),
            version: -1,
        };
        self.send(
            Phase::DeleteOwn {
                then_watch: members[0].clone(),
            },
            req,
        )
    }

    pub(crate) fn on_watch(&mut self) -> Step {
        match self.phase {
            // The ready node appeared (or something changed): look again.
            Phase::WaitReady => self.watch_ready(),
            _ => self.list(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kids(v: &[&str]) -> Reply {
        Ok(Response::Children(
            v.iter().map(|s| s.to_string()).collect(),
        ))
    }

    #[test]
    fn a_barrier_wait_ends_when_the_node_is_gone() {
        let mut g = Gone::new("/b");
        assert_eq!(g.start(), Step::Send(Request::ExistsWatch("/b".into())));
        assert_eq!(
            g.on_reply(Ok(Response::Stat(Default::default()))),
            Step::Wait
        );
        assert_eq!(g.on_watch(), Step::Send(Request::ExistsWatch("/b".into())));
        assert_eq!(g.on_reply(Ok(Response::Absent)), Step::Done);
    }

    #[test]
    fn entering_waits_for_n_members_and_the_last_opens_it() {
        let mut d = DoubleCore::new("/d", 2, b"me");
        d.enter();
        assert!(matches!(
            d.on_reply(Ok(Response::Unit)),
            Step::Send(Request::Create {
                mode: CreateMode::Ephemeral,
                ..
            })
        ));
        assert_eq!(
            d.on_reply(Err(Error::NodeExists)),
            Step::Send(Request::ExistsWatch("/d/ready".into()))
        );
        assert_eq!(
            d.on_reply(Ok(Response::Absent)),
            Step::Send(Request::GetChildren("/d".into()))
        );
        let me = d.name.clone();
        assert_eq!(d.on_reply(kids(&[&me])), Step::Wait);
        // The watch fired: ready now exists.
        d.on_watch();
        d.on_reply(Ok(Response::Stat(Default::default())));
        assert_eq!(d.on_reply(kids(&[&me, "other"])), Step::Done);

        let mut last = DoubleCore::new("/d", 2, b"");
        last.enter();
        last.on_reply(Ok(Response::Unit));
        last.on_reply(Ok(Response::Unit));
        last.on_reply(Ok(Response::Absent));
        assert_eq!(
            last.on_reply(kids(&["a", "b"])),
            Step::Send(Request::EnsurePath("/d/ready".into()))
        );
    }

    #[test]
    fn leaving_lowest_waits_for_highest_others_delete_and_wait_for_lowest() {
        let mut d = DoubleCore::new("/d", 2, b"");
        d.name = "a".into();
        d.leave();
        assert_eq!(
            d.on_reply(Err(Error::NoNode)),
            Step::Send(Request::GetChildren("/d".into()))
        );
        assert_eq!(
            d.on_reply(kids(&["c", "a", "b"])),
            Step::Send(Request::ExistsWatch("/d/c".into()))
        );
        let mut d = DoubleCore::new("/d", 2, b"");
        d.name = "b".into();
        d.leave();
        d.on_reply(Ok(Response::Unit));
        assert_eq!(
            d.on_reply(kids(&["a", "b"])),
            Step::Send(Request::Delete {
                path: "/d/b".into(),
                version: -1
            })
        );
        assert_eq!(
            d.on_reply(Ok(Response::Unit)),
            Step::Send(Request::ExistsWatch("/d/a".into()))
        );
        assert_eq!(d.on_reply(Ok(Response::Absent)), d.list());
        assert_eq!(d.on_reply(kids(&[])), Step::Done);
    }
}
