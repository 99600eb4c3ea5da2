//! The session as a client sees it: its state, state listeners, closing, credentials.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::dispatch::CallbackInfo;
use crate::error::{Error, Result};
use crate::proto::ops::{self, op};
use crate::proto::records::{ClientInfo, KeeperState};
use crate::session::{Command, Effect, Listener, ListenerId, SessionEvent, SessionState};

use super::decode::dec_whoami;
use super::{Client, Pending};

/// A stream of session state changes (see [`Client::state_events`]).
#[derive(Debug)]
pub struct StateEvents {
    rx: mpsc::UnboundedReceiver<SessionEvent>,
}

impl StateEvents {
    /// The next state change; `None` once the client is closed and the `Closed` event was read.
    pub async fn next(&mut self) -> Option<SessionEvent> {
        self.rx.recv().await
    }
}

impl Client {
    // ---- session ----

    /// The session's current state.
    pub fn state(&self) -> SessionState {
        self.inner.snap.borrow().state
    }

    /// The session id (0 while there is none).
    pub fn session_id(&self) -> i64 {
        self.inner.snap.borrow().session_id
    }

    /// The session timeout the server granted.
    pub fn negotiated_timeout(&self) -> Duration {
        self.inner.snap.borrow().negotiated_timeout
    }

    /// Every session state change from now on, as a stream (the first event is the current
    /// state).
    pub fn state_events(&self) -> StateEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        if self
            .send(Command::Listen(Listener::Channel(tx.clone())))
            .is_err()
        {
            let _ = tx.send(SessionEvent {
                state: SessionState::Closed,
                keeper_state: KeeperState::Closed,
                session_id: 0,
            });
        }
        StateEvents { rx }
    }

    /// Adds a state listener: `f` runs on the session lane for the current state, then for
    /// every change. It may call ZooKeeper (blocking or async) without risk of deadlock: the
    /// session actor never waits for it.
    pub fn add_listener(
        &self,
        f: impl Fn(SessionEvent, CallbackInfo) + Send + Sync + 'static,
    ) -> ListenerId {
        let id = ListenerId::next();
        let _ = self.send(Command::Listen(Listener::Lane {
            id,
            lanes: self.lanes.clone(),
            f: Arc::new(f),
        }));
        id
    }

    /// Removes a state listener; it hears nothing queued after this call.
    pub fn remove_listener(&self, id: ListenerId) {
        let _ = self.send(Command::Unlisten(id));
    }

    /// Closes the session (its ephemerals go at once) and stops the client. Requests still
    /// waiting fail with [`Error::Closed`]. Idempotent.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Adds credentials to the session, e.g. `add_auth("digest", b"user:password")`; they are
    /// replayed on every reconnect.
    pub async fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::AddAuth {
            scheme: scheme.to_string(),
            auth: auth.to_vec(),
            reply,
        })?;
        rx.await.map_err(|_| Error::Closed)?
    }

    /// The identities the server associates with this session (ZooKeeper 3.7+).
    pub fn whoami(&self) -> Pending<Vec<ClientInfo>> {
        self.pending(
            Ok((ops::start_frame(op::WHO_AM_I, 0), Effect::None)),
            dec_whoami,
        )
    }
}
