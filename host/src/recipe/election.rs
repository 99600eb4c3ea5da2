//! Kazoo's `Election` (a [`Lock`] whose holder is the leader; its identifier is the lock node's
//! data, so Kazoo and wazoo contenders on one path elect one leader between them) and a
//! Curator-style [`LeaderLatch`] that keeps contending in the background and answers
//! `has_leadership()` at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::recipe::lock::{FencingToken, Lock, LockEvents, LockState, StateCell};

/// Kazoo's leader election: [`Election::run`] waits to be elected, runs the leader's work and
/// steps down when it returns.
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// let mut election = wazoo::Election::new(&zk, "/election/app", "host-a")?;
/// election.run(|token| async move {
///     println!("leading with token {}", token.sequence);
/// }).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Election {
    lock: Lock,
}

impl Election {
    /// A contender named `identifier` in the election at `path`.
    pub fn new(client: &Client, path: &str, identifier: &str) -> Result<Election> {
        Ok(Election {
            lock: Lock::new(client, path, identifier)?,
        })
    }

    /// Waits until elected, then runs `leader` while leading. Returns its output after stepping
    /// down, or [`Error::SessionExpired`] if the session was lost while it ran (the work is
    /// dropped then: another contender may lead already). While the session is suspended the
    /// work goes on; watch [`Election::state_events`] to pause it.
    pub async fn run<F, Fut, T>(&mut self, leader: F) -> Result<T>
    where
        F: FnOnce(FencingToken) -> Fut,
        Fut: Future<Output = T>,
    {
        let token = self.lock.acquire(None).await?;
        let mut events = self.lock.state_events();
        let out = tokio::select! {
            out = leader(token) => Ok(out),
            _ = events.wait_for(|s| *s == LockState::Lost) => Err(Error::SessionExpired),
        };
        self.lock.release().await?;
        out
    }

    /// The contenders' identifiers, the leader first.
    pub async fn contenders(&self) -> Result<Vec<String>> {
        self.lock.contenders().await
    }

    /// This contender's state (`Held` while it leads).
    pub fn state_events(&self) -> LockEvents {
        self.lock.state_events()
    }
}

/// A contender that keeps contending until closed (Curator's `LeaderLatch`, on Kazoo's lock
/// layout): it leads while it holds the lock, and contends again after a session loss.
///
/// [`LeaderLatch::has_leadership`] is true only while the lock is held *and* the session is
/// connected: a suspended leader may have lost the lock, so it reads false until the session
/// reconnects (and true again if the session survived). Needs a tokio runtime (it runs a task).
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// let latch = wazoo::LeaderLatch::start(&zk, "/election/app", "host-a")?;
/// let mut events = latch.events();
/// events.wait_for(|s| *s == wazoo::LockState::Held).await;
/// assert!(latch.has_leadership());
/// latch.close().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LeaderLatch {
    state: Arc<StateCell>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaderLatch {
    /// Joins the election at `path` as `identifier` and keeps contending in a task.
    pub fn start(client: &Client, path: &str, identifier: &str) -> Result<LeaderLatch> {
        let mut lock = Lock::new(client, path, identifier)?;
        let state = lock.state_cell();
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let contend = async {
                    lock.acquire(None).await?;
                    // Lead until the session is lost, then contend again.
                    let mut ev = lock.state_events();
                    ev.wait_for(|s| *s == LockState::Lost).await;
                    Ok::<_, Error>(())
                };
                tokio::select! {
                    r = contend => match r {
                        Ok(()) => {}
                        Err(Error::Closed) => return,
                        Err(e) => {
                            tracing::warn!(path = %lock.path(), "leader latch: {e}; contending again");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    },
                    _ = async { let _ = stopped.wait_for(|s| *s).await; } => {
                        let _ = lock.release().await;
                        return;
                    }
                }
            }
        });
        Ok(LeaderLatch { state, stop, task })
    }

    /// Whether this contender leads now (holds the lock with the session connected).
    pub fn has_leadership(&self) -> bool {
        self.state.get() == LockState::Held
    }

    /// Leadership changes: `Held` when it becomes leader, `Suspended` / `Lost` when it may have
    /// lost or has lost it, `Acquiring` while it contends.
    pub fn events(&self) -> LockEvents {
        self.state.subscribe()
    }

    /// Leaves the election (releasing the leadership if held) and waits for the task to end.
    pub async fn close(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
