//! Kazoo's `SetPartitioner`: members of a party split a set of items among themselves, each
//! item held by exactly one member through a lock of its own. Kazoo's node layout, so Kazoo and
//! wazoo members of one partitioner split a set together.
//!
//! Layout: members are ephemeral children `{path}/party/{uuid-hex}-{identifier}` (Kazoo's
//! `ShallowParty`: the identifier is in the name, after the first `-`); item `x` is a [`Lock`]
//! on `{path}/locks/x`. Allocation waits until the party has not changed for `time_boundary`,
//! splits the sorted set among the sorted identifiers (member `i` of `n` takes items `i`,
//! `i + n`, ...), and takes each of its items' locks; a party change meanwhile starts it over.
//!
//! States (Kazoo's): `Allocating` while it does so; `Acquired` once every lock is held;
//! `Release` when the party changed or the connection dropped while acquired (call
//! [`SetPartitioner::release_set`] to allocate again); `Failure` after a session loss or
//! [`SetPartitioner::finish`] (the member has left: make a new partitioner).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::client::{Client, CreateOptions};
use crate::error::{Error, Result};
use crate::proto::records::{CreateMode, WatchedEvent};
use crate::recipe::driver::{self, join};
use crate::recipe::lock::Lock;
use crate::session::SessionState;

/// How long a lock is waited for before the party is checked for changes (Kazoo's
/// `max_reaction_time`).
const REACTION_TIME: Duration = Duration::from_secs(1);

/// Where a [`SetPartitioner`] stands (Kazoo's `PartitionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PartitionState {
    /// Waiting for the party to settle and taking this member's items' locks.
    Allocating,
    /// Every item of this member's partition is locked: work on them.
    Acquired,
    /// The party changed, or the connection dropped, since the partition was acquired (or
    /// while it was allocated): stop working on the items and call
    /// [`SetPartitioner::release_set`].
    Release,
    /// The session was lost or [`SetPartitioner::finish`] was called: the member has left.
    Failure,
}

impl PartitionState {
    /// The state after a session state change (Kazoo's: a lost session fails the partitioner,
    /// a dropped connection asks for a release).
    pub(crate) fn on_session(self, session: SessionState) -> PartitionState {
        match (self, session) {
            (PartitionState::Failure, _) => PartitionState::Failure,
            (_, SessionState::Lost | SessionState::Closed) => PartitionState::Failure,
            (PartitionState::Allocating | PartitionState::Acquired, SessionState::Suspended) => {
                PartitionState::Release
            }
            (s, _) => s,
        }
    }
}

/// A stream of a [`SetPartitioner`]'s states (see [`SetPartitioner::state_events`]). Quick
/// successive changes may be seen as the last one only.
#[derive(Debug, Clone)]
pub struct PartitionEvents {
    rx: watch::Receiver<PartitionState>,
}

impl PartitionEvents {
    /// The current state.
    pub fn current(&self) -> PartitionState {
        *self.rx.borrow()
    }

    /// Returns the current state if it satisfies `f`, else waits for a state that does; `None`
    /// once the partitioner is gone.
    pub async fn wait_for(
        &mut self,
        mut f: impl FnMut(&PartitionState) -> bool,
    ) -> Option<PartitionState> {
        self.rx.wait_for(|s| f(s)).await.ok().map(|s| *s)
    }
}

/// Kazoo's `SetPartitioner`: this member's share of a set, split with the other members of the
/// party at a path. Needs a tokio runtime (it runs a task).
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// use std::time::Duration;
/// use wazoo::{PartitionState, SetPartitioner};
/// let items = ["a", "b", "c", "d"];
/// let mut p = SetPartitioner::start(&zk, "/work", &items, "host-a", Duration::from_secs(1))
///     .await?;
/// let mut states = p.state_events();
/// loop {
///     match states.wait_for(|s| *s != PartitionState::Allocating).await {
///         Some(PartitionState::Acquired) => println!("mine: {:?}", p.partition()),
///         Some(PartitionState::Release) => p.release_set().await,
///         _ => break,
///     }
///     states.wait_for(|s| *s != PartitionState::Acquired).await;
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SetPartitioner {
    state: watch::Receiver<PartitionState>,
    partition: Arc<Mutex<Vec<String>>>,
    commands: mpsc::UnboundedSender<Command>,
    task: Option<tokio::task::JoinHandle<()>>,
}

#[derive(Debug)]
enum Command {
    Release(oneshot::Sender<()>),
    Finish,
}

impl SetPartitioner {
    /// Joins the partitioner at `path` as `identifier` (a valid node name; unique among the
    /// members) and starts allocating `set`. `time_boundary` is how long the party must stay
    /// unchanged before the set is split (Kazoo's default is 30 s).
    pub async fn start<S: AsRef<str>>(
        client: &Client,
        path: &str,
        set: &[S],
        identifier: &str,
        time_boundary: Duration,
    ) -> Result<SetPartitioner> {
        crate::path::validate_path(path, false)?;
        if identifier.is_empty() || identifier.contains('/') {
            return Err(Error::InvalidArgument(format!(
                "a partitioner member's identifier must be a node name: {identifier:?}"
            )));
        }
        let party = join(path, "party");
        client.ensure_path(&join(path, "locks")).await?;
        client.ensure_path(&party).await?;
        let node = join(&party, &format!("{}-{identifier}", driver::uuid_hex()));
        let opts = CreateOptions {
            mode: CreateMode::Ephemeral,
            ..Default::default()
        };
        loop {
            match client
                .create_with(&node, identifier.as_bytes(), &opts)
                .await
            {
                Ok(_) | Err(Error::NodeExists) => break,
                Err(e) if driver::transient(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        let (state_tx, state) = watch::channel(PartitionState::Allocating);
        let (commands, rx) = mpsc::unbounded_channel();
        let partition = Arc::new(Mutex::new(Vec::new()));
        let mut items: Vec<String> = set.iter().map(|s| s.as_ref().to_string()).collect();
        items.sort();
        items.dedup();
        let member = Member {
            client: client.clone(),
            path: path.to_string(),
            party,
            node,
            identifier: identifier.to_string(),
            items,
            time_boundary,
            state: state_tx,
            partition: partition.clone(),
            locks: Vec::new(),
            sessions: client.state_events(),
            party_changed: None,
        };
        let task = tokio::spawn(member.run(rx));
        Ok(SetPartitioner {
            state,
            partition,
            commands,
            task: Some(task),
        })
    }

    /// The current state.
    pub fn state(&self) -> PartitionState {
        *self.state.borrow()
    }

    /// The state's changes.
    pub fn state_events(&self) -> PartitionEvents {
        PartitionEvents {
            rx: self.state.clone(),
        }
    }

    /// This member's items (sorted) while `Acquired`; empty otherwise.
    pub fn partition(&self) -> Vec<String> {
        if self.state() == PartitionState::Acquired {
            self.partition
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        } else {
            Vec::new()
        }
    }

    /// Waits until `Acquired` (or `Failure`), at most `timeout`; the state then.
    pub async fn wait_for_acquire(&self, timeout: Duration) -> PartitionState {
        let mut ev = self.state_events();
        let until =
            ev.wait_for(|s| matches!(s, PartitionState::Acquired | PartitionState::Failure));
        let _ = tokio::time::timeout(timeout, until).await;
        self.state()
    }

    /// Releases this member's locks and allocates again (Kazoo's `release_set`); returns once
    /// the locks are released. Nothing happens after a `Failure`.
    pub async fn release_set(&mut self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Release(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Releases the locks and leaves the party (Kazoo's `finish`); the state is `Failure`.
    pub async fn finish(mut self) {
        let _ = self.commands.send(Command::Finish);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SetPartitioner {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Finish);
    }
}

/// The member's task: allocation, then waiting for a change or a command.
struct Member {
    client: Client,
    path: String,
    party: String,
    node: String,
    identifier: String,
    items: Vec<String>,
    time_boundary: Duration,
    state: watch::Sender<PartitionState>,
    partition: Arc<Mutex<Vec<String>>>,
    locks: Vec<Lock>,
    sessions: crate::client::StateEvents,
    /// The party's watch while acquired: it fires on a party change.
    party_changed: Option<PartyChanged>,
}

type PartyChanged = Pin<Box<dyn Future<Output = WatchedEvent> + Send>>;

/// How an allocation or a wait ended.
enum Outcome {
    /// Go on in the state now set.
    Settled,
    /// Allocate again (the party changed while allocating).
    Restart,
    /// Stop (finish, failure).
    Stop,
}

impl Member {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        'outer: loop {
            self.set(PartitionState::Allocating);
            let outcome = loop {
                match self.allocate(&mut commands).await {
                    Outcome::Restart => {
                        self.release_locks().await;
                        continue;
                    }
                    o => break o,
                }
            };
            if let Outcome::Stop = outcome {
                break;
            }
            // Acquired or Release: wait for a command (and, while acquired, for a change).
            let mut party_changed = self.party_changed.take();
            loop {
                let cmd = tokio::select! {
                    c = commands.recv() => c,
                    _ = fired(&mut party_changed) => {
                        party_changed = None;
                        if self.current() == PartitionState::Acquired {
                            self.set(PartitionState::Release);
                        }
                        continue;
                    }
                    ev = self.sessions.next() => {
                        match ev {
                            Some(ev) => self.on_session(ev.state),
                            None => self.set(PartitionState::Failure),
                        }
                        if self.current() == PartitionState::Failure {
                            break 'outer;
                        }
                        continue;
                    }
                };
                match cmd {
                    Some(Command::Release(ack)) => {
                        self.release_locks().await;
                        let _ = ack.send(());
                        continue 'outer;
                    }
                    Some(Command::Finish) | None => break 'outer,
                }
            }
        }
        self.release_locks().await;
        self.set(PartitionState::Failure);
        loop {
            match self.client.delete(&self.node, None).await {
                Err(e) if driver::transient(&e) => continue,
                _ => break,
            }
        }
    }

    fn current(&self) -> PartitionState {
        *self.state.borrow()
    }

    fn set(&self, s: PartitionState) {
        self.state.send_if_modified(|cur| {
            let changed = *cur != s;
            *cur = s;
            changed
        });
    }

    fn on_session(&self, session: SessionState) {
        self.set(self.current().on_session(session));
    }

    async fn release_locks(&mut self) {
        for mut lock in self.locks.drain(..) {
            let _ = lock.release().await;
        }
    }

    /// Waits for the party to settle, splits the set and takes this member's locks.
    async fn allocate(&mut self, commands: &mut mpsc::UnboundedReceiver<Command>) -> Outcome {
        let (members, mut changed) = loop {
            let (children, watch) = match self.client.get_children_watch(&self.party).await {
                Ok((c, _, w)) => (c, w),
                Err(e) if driver::transient(&e) => continue,
                Err(e) => {
                    tracing::warn!(path = %self.path, "partitioner: party: {e}");
                    return Outcome::Stop;
                }
            };
            let mut changed: PartyChanged = Box::pin(watch.changed());
            tokio::select! {
                _ = tokio::time::sleep(self.time_boundary) => break (children, changed),
                _ = &mut changed => continue,
                c = commands.recv() => return self.on_command_while_allocating(c),
                ev = self.sessions.next() => {
                    if let Some(o) = self.session_while_allocating(ev.map(|e| e.state)) {
                        return o;
                    }
                    continue;
                }
            }
        };
        let ids: Vec<String> = members.iter().map(|m| member_id(m).to_string()).collect();
        let Some(mine) = partition_for(&self.identifier, &ids, &self.items) else {
            tracing::warn!(path = %self.path, "partitioner: this member is not in the party");
            return Outcome::Stop;
        };
        for item in &mine {
            let mut lock =
                match Lock::new(&self.client, &join(&join(&self.path, "locks"), item), "") {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(path = %self.path, %item, "partitioner: {e}");
                        return Outcome::Stop;
                    }
                };
            loop {
                tokio::select! {
                    r = lock.acquire(Some(REACTION_TIME)) => match r {
                        Ok(_) => break,
                        Err(Error::Timeout(_)) => {}
                        Err(e) if driver::transient(&e) => {}
                        Err(e) => {
                            tracing::warn!(path = %self.path, %item, "partitioner: lock: {e}");
                            return Outcome::Stop;
                        }
                    },
                    _ = &mut changed => return Outcome::Restart,
                    c = commands.recv() => return self.on_command_while_allocating(c),
                    ev = self.sessions.next() => {
                        if let Some(o) = self.session_while_allocating(ev.map(|e| e.state)) {
                            return o;
                        }
                    }
                }
            }
            self.locks.push(lock);
        }
        if futures_ready(&mut changed).await {
            return Outcome::Restart;
        }
        *self.partition.lock().unwrap_or_else(|p| p.into_inner()) = mine;
        self.set(PartitionState::Acquired);
        // While acquired, a party change asks for a release.
        self.party_changed = Some(changed);
        Outcome::Settled
    }

    fn on_command_while_allocating(&mut self, c: Option<Command>) -> Outcome {
        match c {
            // Nothing to release yet: allocation starts over.
            Some(Command::Release(ack)) => {
                let _ = ack.send(());
                Outcome::Restart
            }
            Some(Command::Finish) | None => Outcome::Stop,
        }
    }

    /// A session change while allocating: `Some` ends the allocation.
    fn session_while_allocating(&mut self, s: Option<SessionState>) -> Option<Outcome> {
        match s {
            None => Some(Outcome::Stop),
            Some(s) => {
                self.on_session(s);
                match self.current() {
                    PartitionState::Failure => Some(Outcome::Stop),
                    PartitionState::Release => Some(Outcome::Settled),
                    _ => None,
                }
            }
        }
    }
}

/// Waits for the party's watch, if there is one (else forever).
async fn fired(changed: &mut Option<PartyChanged>) {
    match changed {
        Some(f) => {
            f.await;
        }
        None => std::future::pending().await,
    }
}

/// Whether a future is already done (polled once, without waiting).
async fn futures_ready<F: std::future::Future + Unpin>(f: &mut F) -> bool {
    tokio::select! {
        biased;
        _ = f => true,
        _ = std::future::ready(()) => false,
    }
}

/// A `ShallowParty` member node's identifier: what follows the first `-`.
pub(crate) fn member_id(node: &str) -> &str {
    node.split_once('-').map_or(node, |(_, id)| id)
}

/// Kazoo's default partition function: the sorted items, from this member's index among the
/// sorted identifiers, every `n`th. `None` if `identifier` is not a member.
pub(crate) fn partition_for(
    identifier: &str,
    members: &[String],
    items: &[String],
) -> Option<Vec<String>> {
    let mut workers: Vec<&str> = members.iter().map(String::as_str).collect();
    workers.sort_unstable();
    let i = workers.iter().position(|w| *w == identifier)?;
    let mut all: Vec<&String> = items.iter().collect();
    all.sort();
    Some(
        all.into_iter()
            .skip(i)
            .step_by(workers.len())
            .cloned()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_set_is_split_as_kazoos_default_partitioner_does() {
        let members = strings(&["wazoo", "kazoo"]);
        let items = strings(&["f", "b", "d", "a", "c", "e"]);
        assert_eq!(
            partition_for("kazoo", &members, &items).unwrap(),
            ["a", "c", "e"]
        );
        assert_eq!(
            partition_for("wazoo", &members, &items).unwrap(),
            ["b", "d", "f"]
        );
        assert_eq!(partition_for("nobody", &members, &items), None);
        let three = strings(&["m1", "m2", "m3"]);
        let mut all: Vec<String> = three
            .iter()
            .flat_map(|m| partition_for(m, &three, &items).unwrap())
            .collect();
        all.sort();
        assert_eq!(
            all,
            ["a", "b", "c", "d", "e", "f"],
            "each item exactly once"
        );
    }

    #[test]
    fn shallow_party_names_carry_the_identifier_after_the_first_dash() {
        assert_eq!(member_id("0123abcd-host-a"), "host-a");
        assert_eq!(member_id("plain"), "plain");
    }

    #[test]
    fn session_changes_follow_kazoo() {
        use PartitionState::*;
        assert_eq!(Acquired.on_session(SessionState::Suspended), Release);
        assert_eq!(Allocating.on_session(SessionState::Suspended), Release);
        assert_eq!(Release.on_session(SessionState::Connected), Release);
        assert_eq!(Acquired.on_session(SessionState::Connected), Acquired);
        assert_eq!(Acquired.on_session(SessionState::Lost), Failure);
        assert_eq!(Failure.on_session(SessionState::Connected), Failure);
    }
}
