//! What outlives a connection: the session's identity, its state and who listens to it, the
//! requests queued while there is no connection, credentials, the watch registry, and what
//! connecting needs (hosts, preferences, backoff randomness, the failure a person must fix).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use super::fair::FairQueue;
use super::hosts::{ConnectString, HostPort};
use super::watches::WatchRegistry;
use super::{
    ConnectFailure, Listener, ListenerId, Request, SessionConfig, SessionEvent, SessionState,
    Snapshot,
};
use crate::error::{Error, Result};
use crate::path::Chroot;
use crate::proto::records::{ConnectRequest, KeeperState};
use crate::rand::Rng;

/// A session the servers know: it exists from the first handshake that grants it until it
/// expires.
pub(super) struct Granted {
    pub id: i64,
    pub passwd: Vec<u8>,
    /// The timeout the server granted.
    pub timeout: Duration,
}

/// Credentials added with `add_auth`, sent again on every connection.
pub(super) struct Auth {
    pub id: u64,
    pub scheme: String,
    pub data: Vec<u8>,
    /// Told once the first server answers.
    pub waiter: Option<oneshot::Sender<Result<()>>>,
}

/// The session, apart from its connection.
pub(super) struct Session {
    pub cfg: SessionConfig,
    pub hosts: Vec<HostPort>,
    pub chroot: Chroot,
    snap: watch::Sender<Snapshot>,
    listeners: Vec<Listener>,
    /// The stamp of the last event handed out (state change, notification, reply).
    seq: u64,
    state: SessionState,
    /// None before the first session and after one is lost.
    pub current: Option<Granted>,
    pub last_zxid: i64,
    /// Whether a read-write server was ever seen (until then a read-only session asks for a
    /// new session id on each connection).
    pub seen_rw: bool,
    /// The last xid given out, carried from connection to connection.
    pub last_xid: i32,
    /// Requests waiting for a connection.
    /// Requests waiting for the socket: while there is no connection, and while the connection
    /// has [`FAIR_WINDOW`](super::connection::FAIR_WINDOW) unanswered. Owners take turns.
    pub queued: FairQueue<Request>,
    pub watches: WatchRegistry,
    pub auths: Vec<Auth>,
    next_auth_id: u64,
    /// Who waits for the close to finish.
    pub close_waiters: Vec<oneshot::Sender<()>>,
    /// When a server was last heard from (client-side expiry counts from it).
    pub last_contact: Instant,
    /// The server to try first next time (a read-write server a probe found).
    pub prefer: Option<SocketAddr>,
    pub rng: Rng,
    /// Why connecting keeps failing, when a person must fix it (published in the snapshot).
    failure: Option<ConnectFailure>,
}

impl Session {
    pub(super) fn new(
        cfg: SessionConfig,
        cs: ConnectString,
        snap: watch::Sender<Snapshot>,
    ) -> Session {
        Session {
            cfg,
            hosts: cs.hosts,
            chroot: cs.chroot,
            snap,
            listeners: Vec::new(),
            seq: 0,
            state: SessionState::Lost,
            current: None,
            last_zxid: 0,
            seen_rw: false,
            last_xid: 0,
            queued: FairQueue::default(),
            watches: WatchRegistry::default(),
            auths: Vec::new(),
            next_auth_id: 0,
            close_waiters: Vec::new(),
            last_contact: Instant::now(),
            prefer: None,
            rng: Rng::new(),
            failure: None,
        }
    }

    /// The next sequence stamp.
    pub(super) fn stamp(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The session id (0 when there is none).
    pub(super) fn id(&self) -> i64 {
        self.current.as_ref().map_or(0, |s| s.id)
    }

    /// The negotiated timeout (the one asked for while there is no session).
    pub(super) fn timeout(&self) -> Duration {
        self.current
            .as_ref()
            .map_or(self.cfg.session_timeout, |s| s.timeout)
    }

    fn event(&self, state: SessionState, keeper_state: KeeperState) -> SessionEvent {
        SessionEvent {
            state,
            keeper_state,
            session_id: self.id(),
        }
    }

    pub(super) fn publish(&self) {
        self.snap.send_replace(Snapshot {
            state: self.state,
            session_id: self.id(),
            negotiated_timeout: self.timeout(),
            failure: self.failure.clone(),
        });
    }

    /// Moves to `state`; listeners hear only real changes.
    pub(super) fn set_state(&mut self, state: SessionState, keeper_state: KeeperState) {
        if state == self.state {
            return;
        }
        info!(from = ?self.state, to = ?state, session_id = format_args!("{:#x}", self.id()), "session state");
        self.state = state;
        self.publish();
        let ev = self.event(state, keeper_state);
        let seq = self.stamp();
        self.listeners.retain(|l| l.tell(seq, &ev));
    }

    /// A new listener: it hears the current state first, then every change.
    pub(super) fn listen(&mut self, l: Listener) {
        let ks = match self.state {
            SessionState::Connected => KeeperState::SyncConnected,
            SessionState::ConnectedReadOnly => KeeperState::ConnectedReadOnly,
            SessionState::Suspended => KeeperState::Disconnected,
            SessionState::Lost => KeeperState::Expired,
            SessionState::Closed => KeeperState::Closed,
        };
        let seq = self.stamp();
        if l.tell(seq, &self.event(self.state, ks)) {
            self.listeners.push(l);
        }
    }

    pub(super) fn unlisten(&mut self, id: ListenerId) {
        self.listeners
            .retain(|l| !matches!(l, Listener::Lane { id: i, .. } if *i == id));
    }

    /// Tells listeners of a raw state that is not a state change (auth failure).
    pub(super) fn tell(&mut self, keeper_state: KeeperState) {
        let ev = self.event(self.state, keeper_state);
        let seq = self.stamp();
        self.listeners.retain(|l| l.tell(seq, &ev));
    }

    /// A request while there is no connection: it waits, unless the queue is full.
    pub(super) fn queue(&mut self, r: Request) {
        if self.queued.len() >= self.cfg.max_queued {
            let seq = self.stamp();
            r.reply
                .complete(seq, Err(Error::QueueFull(self.cfg.max_queued)));
        } else {
            let bytes = r.frame.len();
            self.queued.push(r.owner, r, bytes);
        }
    }

    /// New credentials, kept for every later connection.
    pub(super) fn add_auth(
        &mut self,
        scheme: String,
        data: Vec<u8>,
        waiter: oneshot::Sender<Result<()>>,
    ) -> &Auth {
        let id = self.next_auth_id;
        self.next_auth_id += 1;
        self.auths.push(Auth {
            id,
            scheme,
            data,
            waiter: Some(waiter),
        });
        let last = self.auths.len() - 1;
        &self.auths[last]
    }

    /// Whether the session outlived its timeout without a server (client-side expiry is due).
    pub(super) fn unheard_too_long(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|s| self.last_contact.elapsed() >= s.timeout)
    }

    /// The session is gone: queued requests fail, watchers hear it, a new session follows.
    pub(super) fn expire(&mut self, why: &str) {
        warn!(
            session_id = format_args!("{:#x}", self.id()),
            "session expired: {why}"
        );
        let queued: Vec<Request> = self.queued.drain().map(|(_, r)| r).collect();
        for r in queued {
            let seq = self.stamp();
            r.reply.complete(seq, Err(Error::SessionExpired));
        }
        let seq = self.stamp();
        self.watches.clear(seq, KeeperState::Expired);
        self.set_state(SessionState::Lost, KeeperState::Expired);
        self.current = None;
        self.publish();
        self.last_contact = Instant::now();
    }

    /// The handshake to send: this session's id and password, or a new session's.
    pub(super) fn connect_request(&self) -> ConnectRequest {
        ConnectRequest {
            last_zxid_seen: self.last_zxid,
            timeout_ms: self.cfg.session_timeout.as_millis() as i32,
            session_id: if self.seen_rw || !self.cfg.allow_read_only {
                self.id()
            } else {
                0
            },
            passwd: self
                .current
                .as_ref()
                .map_or_else(|| vec![0; 16], |s| s.passwd.clone()),
            read_only: self.cfg.allow_read_only,
        }
    }

    /// Every server's addresses, each with the index of its host in the connect string.
    pub(super) async fn resolve(&mut self) -> Vec<(SocketAddr, usize)> {
        let mut out: Vec<(SocketAddr, usize)> = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            match tokio::net::lookup_host((h.host.as_str(), h.port)).await {
                Ok(addrs) => {
                    for a in addrs {
                        if !out.iter().any(|(b, _)| *b == a) {
                            out.push((a, i));
                        }
                    }
                }
                Err(e) => warn!(host = %h.host, port = h.port, "cannot resolve: {e}"),
            }
        }
        self.rng.shuffle(&mut out);
        if let Some(p) = self.prefer.take() {
            if let Some(pos) = out.iter().position(|(a, _)| *a == p) {
                let first = out.remove(pos);
                out.insert(0, first);
            }
        }
        out
    }

    /// The error connecting last failed with for a reason a person must fix.
    pub(super) fn failure(&self) -> Option<&Error> {
        self.failure.as_ref().map(|f| &f.error)
    }

    /// A server took the session: whatever kept failing is fixed.
    pub(super) fn clear_failure(&mut self) {
        if self.failure.take().is_some() {
            self.publish();
        }
    }

    /// Connecting failed for a reason a person must fix: say so once, and publish it so that
    /// [`crate::ClientBuilder::connect`] can return it.
    pub(super) fn report_failure(&mut self, error: Error, every_server: bool) {
        let new = self.failure() != Some(&error);
        if new
            && matches!(
                error,
                Error::AuthFailed | Error::SessionClosedRequireSaslAuth
            )
        {
            self.tell(KeeperState::AuthFailed);
        }
        self.failure = Some(ConnectFailure {
            error,
            every_server,
        });
        self.publish();
    }
}
