//! The session actor's loop: connect (hosts shuffled and re-resolved every cycle, bounded
//! jittered backoff, client-side expiry), prime the connection (auth, SetWatches2, queued
//! requests), then serve it (requests out, replies and notifications in, pings, dead-connection
//! detection, read-only probing) until it drops, and again.
//!
//! The actor is always in one [`Phase`]; every command enters through [`Actor::command`], whose
//! match says what each phase does with it, and closing goes through [`Actor::close`] and ends
//! in [`Actor::finish`]. What outlives a connection is the [`Session`]; what lives as long as
//! one is its [`Connection`].

use std::time::Duration;

use tokio::sync::mpsc::{self, error::TryRecvError};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::connect::{self, Attempt, Established, Failed};
use super::connection::{Connection, Disconnect, Io};
use super::hosts::{self, ConnectString};
use super::pending::Reply;
use super::state::{Granted, Session};
use super::{Command, SessionConfig, SessionState, Snapshot};
use crate::error::Error;
use crate::proto::records::KeeperState;

/// Commands taken in one go before the loop looks at the socket again.
const BATCH: usize = 512;
/// Why a session that no server took within its timeout is given up.
const UNHEARD: &str = "no server accepted the session within its timeout (client-side expiry)";

/// Starts a session actor on a thread of its own (with its own single-threaded runtime), so no
/// callback, however busy, can starve its pings.
pub(crate) fn spawn(
    cfg: SessionConfig,
    cs: ConnectString,
) -> std::io::Result<(mpsc::UnboundedSender<Command>, watch::Receiver<Snapshot>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let (snap_tx, snap_rx) = watch::channel(Snapshot {
        state: SessionState::Lost,
        session_id: 0,
        negotiated_timeout: cfg.session_timeout,
        failure: None,
    });
    let on_caller = cfg.on_caller_runtime;
    let actor = Actor::new(cfg, cs, rx, snap_tx);
    if on_caller {
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(actor.run());
                return Ok((tx, snap_rx));
            }
            Err(e) => {
                return Err(std::io::Error::other(format!(
                    "no tokio runtime to run the session on: {e}"
                )))
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("wazoo-session".into())
        .spawn(move || rt.block_on(actor.run()))?;
    Ok((tx, snap_rx))
}

/// Where the actor is in the client's life. The session (its id once a server granted one,
/// its watches, its queued requests) is apart, in [`Session`]: it outlives connections.
enum Phase {
    /// No connection: trying servers or backing off. Requests wait in the session's queue.
    Connecting,
    /// A connection is up and primed: requests go out as they come.
    Serving(Connection),
    /// closeSession is on its way: the connection stays until the server answers or the
    /// timers give up; new requests fail with `Closed`.
    Closing(Connection),
    /// The client is closed: once [`Actor::finish`] has told everyone still waiting, every
    /// command is refused.
    Closed,
}

struct Actor {
    rx: mpsc::UnboundedReceiver<Command>,
    phase: Phase,
    session: Session,
}

impl Actor {
    fn new(
        cfg: SessionConfig,
        cs: ConnectString,
        rx: mpsc::UnboundedReceiver<Command>,
        snap: watch::Sender<Snapshot>,
    ) -> Actor {
        Actor {
            rx,
            phase: Phase::Connecting,
            session: Session::new(cfg, cs, snap),
        }
    }

    async fn run(mut self) {
        loop {
            match self.phase {
                Phase::Connecting => self.connect().await,
                Phase::Serving(_) | Phase::Closing(_) => self.serve().await,
                Phase::Closed => break,
            }
        }
        self.finish();
    }

    /// Every command enters here, whatever the phase. None: every client handle is gone,
    /// which closes the session.
    fn command(&mut self, cmd: Option<Command>) {
        let s = &mut self.session;
        match (cmd, &mut self.phase) {
            (None, _) => self.close(None),
            (Some(Command::Close(w)), _) => self.close(Some(w)),
            (Some(Command::Listen(l)), _) => s.listen(l),
            (Some(Command::Unlisten(id)), _) => s.unlisten(id),
            (Some(Command::Request(r)), Phase::Connecting) => s.queue(r),
            (Some(Command::Request(r)), Phase::Serving(c)) => s.submit(r, c),
            (Some(Command::Request(r)), Phase::Closing(_) | Phase::Closed) => {
                let seq = s.stamp();
                r.reply.complete(seq, Err(Error::Closed));
            }
            (
                Some(Command::AddAuth {
                    scheme,
                    auth,
                    reply,
                }),
                phase,
            ) => match phase {
                Phase::Connecting => {
                    s.add_auth(scheme, auth, reply);
                }
                Phase::Serving(c) | Phase::Closing(c) => {
                    c.send_auth(s.add_auth(scheme, auth, reply))
                }
                Phase::Closed => {
                    let _ = reply.send(Err(Error::Closed));
                }
            },
            (Some(Command::Prune { path }), phase) => match phase {
                // Offline: forget dead watchers now; the restore will not include them.
                Phase::Connecting => {
                    s.watches.prune(&path);
                }
                Phase::Serving(c) | Phase::Closing(c) => {
                    for kind in s.watches.prune(&path) {
                        s.remove_on_server(&path, kind, c);
                    }
                }
                Phase::Closed => {}
            },
        }
    }

    /// The client closes (`waiter`, when given, hears once it is done): the one way into
    /// [`Phase::Closing`] (a connection says goodbye first) and [`Phase::Closed`].
    fn close(&mut self, waiter: Option<oneshot::Sender<()>>) {
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            // No connection to say goodbye on.
            Phase::Connecting => {}
            Phase::Serving(mut conn) => {
                self.session.flush_queued(&mut conn);
                conn.send_close();
                self.phase = Phase::Closing(conn);
            }
            Phase::Closing(conn) => self.phase = Phase::Closing(conn),
            Phase::Closed => {
                if let Some(w) = waiter {
                    let _ = w.send(());
                }
                return;
            }
        }
        self.session.close_waiters.extend(waiter);
    }

    /// Everything still waiting learns the client is closed.
    fn finish(&mut self) {
        let s = &mut self.session;
        let queued: Vec<_> = s.queued.drain().map(|(_, r)| r).collect();
        for r in queued {
            let seq = s.stamp();
            r.reply.complete(seq, Err(Error::Closed));
        }
        for a in s.auths.drain(..) {
            if let Some(w) = a.waiter {
                let _ = w.send(Err(Error::Closed));
            }
        }
        let seq = s.stamp();
        s.watches.clear(seq, KeeperState::Closed);
        s.set_state(SessionState::Closed, KeeperState::Closed);
        for w in s.close_waiters.drain(..) {
            let _ = w.send(());
        }
        // Anything sent after this point finds the channel closed.
        self.rx.close();
        while let Ok(cmd) = self.rx.try_recv() {
            self.command(Some(cmd));
        }
    }

    /// Tries servers until one takes the session, handling commands meanwhile. Ends in
    /// [`Phase::Serving`], or in [`Phase::Closed`] when the client was closed first.
    async fn connect(&mut self) {
        let mut cycle: u32 = 0;
        loop {
            if self.session.unheard_too_long() {
                self.session.expire(UNHEARD);
            }
            let addrs = self.session.resolve().await;
            let per_host = self.session.cfg.connect_timeout.unwrap_or_else(|| {
                (self.session.timeout() / addrs.len().max(1) as u32).max(Duration::from_millis(500))
            });
            let mut fatal: Option<Error> = None;
            let mut every_server = true;
            for (addr, hi) in addrs {
                let s = &self.session;
                let host = &s.hosts[hi];
                let attempt = connect::handshake(Attempt {
                    addr,
                    host: host.host.clone(),
                    tls: hosts::tls_for(&s.cfg.tls, host).cloned(),
                    sasl: s.cfg.sasl.clone(),
                    req: s.connect_request(),
                    timeout: per_host,
                    max_frame: s.cfg.max_frame,
                });
                tokio::pin!(attempt);
                let res = loop {
                    tokio::select! {
                        r = &mut attempt => break r,
                        cmd = self.rx.recv() => {
                            self.command(cmd);
                            if !matches!(self.phase, Phase::Connecting) {
                                return;
                            }
                        }
                    }
                };
                match res {
                    Ok(est) if est.resp.timeout_ms <= 0 => {
                        every_server = false;
                        self.session
                            .expire("the server reports the session expired");
                    }
                    Ok(est) => {
                        self.session.clear_failure();
                        self.connected(est);
                        return;
                    }
                    Err(Failed::Transient(e)) => {
                        every_server = false;
                        debug!(%addr, "connect failed: {e}");
                    }
                    Err(Failed::Fatal(e)) => {
                        if self.session.failure() == Some(&e) {
                            debug!(%addr, "connect failed again: {e}");
                        } else {
                            warn!(%addr, "connect failed: {e}");
                        }
                        fatal = Some(e);
                    }
                }
                if self.session.unheard_too_long() {
                    self.session.expire(UNHEARD);
                }
            }
            if let Some(e) = fatal {
                self.session.report_failure(e, every_server);
            }
            // A full pass failed: back off, bounded and jittered, still handling commands.
            cycle = cycle.saturating_add(1);
            let base = Duration::from_millis(50).saturating_mul(1u32 << cycle.min(10));
            let cap = base.min(self.session.cfg.max_backoff);
            let pause = cap.mul_f64(0.5 + 0.5 * self.session.rng.unit());
            let sleep = tokio::time::sleep(pause);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = self.rx.recv() => {
                        self.command(cmd);
                        if !matches!(self.phase, Phase::Connecting) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// A server took the session: primes the connection, in the Java client's order (auth,
    /// watches, then queued requests), and serves it.
    fn connected(&mut self, est: Established) {
        let s = &mut self.session;
        let resp = &est.resp;
        let addr = est.addr;
        let new_session = resp.session_id != s.id();
        let read_only = resp.read_only;
        s.current = Some(Granted {
            id: resp.session_id,
            passwd: resp.passwd.clone(),
            timeout: Duration::from_millis(resp.timeout_ms as u64),
        });
        if !read_only {
            s.seen_rw = true;
        }
        info!(
            %addr,
            session_id = format_args!("{:#x}", resp.session_id),
            timeout_ms = resp.timeout_ms,
            read_only,
            new_session,
            "connected"
        );
        let (state, ks) = if read_only {
            (
                SessionState::ConnectedReadOnly,
                KeeperState::ConnectedReadOnly,
            )
        } else {
            (SessionState::Connected, KeeperState::SyncConnected)
        };

        let mut conn = Connection::new(est, s.timeout(), s.last_xid);
        for a in &s.auths {
            conn.send_auth(a);
        }
        let restore = s.watches.take_restore_list();
        if !restore.is_empty() {
            for f in restore.into_frames(s.last_zxid, s.cfg.set_watches_batch) {
                conn.send_set_watches(f);
            }
        }
        s.pump(&mut conn);
        s.set_state(state, ks);
        if read_only {
            conn.probe(Box::pin(connect::probe_read_write(
                s.hosts.clone(),
                addr,
                s.cfg.tls.clone(),
            )));
        }
        self.phase = Phase::Serving(conn);
    }

    /// Serves the connection until it ends.
    async fn serve(&mut self) {
        loop {
            let io = match &mut self.phase {
                Phase::Serving(c) | Phase::Closing(c) => c.next(&mut self.rx).await,
                Phase::Connecting | Phase::Closed => return,
            };
            let ended = match io {
                Io::Read => self.take_frames().err(),
                Io::Command(cmd) => {
                    self.commands(cmd);
                    None
                }
                Io::Ended(why) => Some(why),
            };
            // Replies opened the window, or commands queued behind it: owners take turns.
            if let Phase::Serving(c) = &mut self.phase {
                if !self.session.queued.is_empty() {
                    self.session.pump(c);
                }
            }
            if let Some(why) = ended {
                return self.disconnect(why);
            }
        }
    }

    /// Handles every complete frame the connection has read.
    fn take_frames(&mut self) -> Result<(), Disconnect> {
        match &mut self.phase {
            Phase::Serving(c) | Phase::Closing(c) => self.session.take_frames(c),
            Phase::Connecting | Phase::Closed => Ok(()),
        }
    }

    /// A command and those queued behind it, up to a batch or until the write buffer is full.
    fn commands(&mut self, first: Option<Command>) {
        let mut cmd = first;
        let mut n = 0;
        loop {
            let last = cmd.is_none();
            self.command(cmd);
            n += 1;
            let room = match &self.phase {
                Phase::Serving(c) | Phase::Closing(c) => c.has_room(),
                Phase::Connecting | Phase::Closed => true,
            };
            if last || n >= BATCH || !room {
                break;
            }
            match self.rx.try_recv() {
                Ok(c) => cmd = Some(c),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => cmd = None,
            }
        }
    }

    /// The connection ended: what was in flight fails, and the actor connects again (or,
    /// closing, stops).
    fn disconnect(&mut self, why: Disconnect) {
        let (conn, closing) = match std::mem::replace(&mut self.phase, Phase::Connecting) {
            Phase::Serving(c) => (c, false),
            Phase::Closing(c) => (c, true),
            other => {
                self.phase = other;
                return;
            }
        };
        let s = &mut self.session;
        s.last_contact = conn.last_heard();
        let addr = conn.addr();
        match &why {
            Disconnect::Closed => debug!("session closed"),
            other => info!(%addr, "connection lost: {other:?}"),
        }
        if let Disconnect::MoveTo(a) = why {
            s.prefer = Some(a);
        }
        if let Disconnect::Protocol(e) = &why {
            warn!(%addr, "closing the connection: {e}");
        }
        let mut pending = conn.into_pending();
        s.last_xid = pending.last_xid();
        let in_flight_err = if closing {
            Error::Closed
        } else {
            Error::ConnectionLoss
        };
        s.watches.forget_adding();
        for p in pending.drain() {
            match p.reply {
                Reply::User(sink) => {
                    let seq = s.stamp();
                    sink.complete(seq, Err(in_flight_err.clone()));
                }
                Reply::Internal | Reply::Close => {}
            }
        }
        if closing {
            self.phase = Phase::Closed;
        } else {
            s.set_state(SessionState::Suspended, KeeperState::Disconnected);
        }
    }
}
