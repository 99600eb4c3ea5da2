//! The session actor's loop: connect (hosts shuffled and re-resolved every cycle, bounded
//! jittered backoff, client-side expiry), prime the connection (auth, SetWatches2, queued
//! requests), then serve it (requests out, replies and notifications in, pings, dead-connection
//! detection, read-only probing) until it drops, and again.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::hosts::{self, ConnectString, HostPort, TlsSetting};
use super::sasl::{self, SaslConfig, SaslFailure};
use super::transport::Transport;
use super::watches::{WatchKind, WatchRegistry};
use super::{
    Command, ConnectFailure, Effect, Listener, ListenerId, ReplySink, Request, SessionConfig,
    SessionEvent, SessionState, Snapshot,
};
use crate::error::{Error, Result};
use crate::path::Chroot;
use crate::proto::codec::Reader;
use crate::proto::frame::next_frame;
use crate::proto::ops::{self, op, OpCode};
use crate::proto::records::{
    ConnectRequest, ConnectResponse, EventType, KeeperState, ReplyHeader, WatchedEvent,
    WatcherType, REPLY_HEADER_LEN, XID_AUTH, XID_NOTIFICATION, XID_PING, XID_SET_WATCHES,
};
use crate::rand::Rng;
use crate::tls::{TlsConnector, TlsFailure};

/// Stop taking new commands while this much is waiting to be written.
const HIGH_WATER: usize = 4 * 1024 * 1024;
/// Commands taken in one go before the loop looks at the socket again.
const BATCH: usize = 512;
/// Corking: while at least this many requests sent earlier still await their replies, new
/// requests wait in the write buffer. The server has that much work queued anyway, so holding
/// them costs no throughput, and one large `writev` replaces many small ones (on loopback each
/// also pays for waking the server). Below it, and for sequential callers, writes go at once.
const CORK_AWAITING: usize = 64;
/// ... unless this much is waiting to be written.
const CORK_BYTES: usize = 256 * 1024;
/// Room kept free in the read buffer before each read, so one read takes a whole burst.
const READ_ROOM: usize = 32 * 1024;
/// The smallest reply the server sends (length prefix and reply header, no body).
const MIN_REPLY: usize = 4 + REPLY_HEADER_LEN;
/// The most the socket's receive low-water mark is raised to (see [`RecvLowat`]).
const MAX_LOWAT: usize = 16 * 1024;
/// How long `close` waits for the server's answer.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

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

/// Why a connection ended (logged through `Debug`).
#[derive(Debug)]
#[allow(dead_code)]
enum Disconnect {
    Eof,
    Io(std::io::Error),
    Protocol(Error),
    Timeout,
    MoveTo(SocketAddr),
    Closed,
}

enum Reply {
    User(ReplySink),
    Internal,
    Close,
}

struct InFlight {
    xid: i32,
    opcode: OpCode,
    reply: Reply,
    effect: Effect,
}

struct Auth {
    id: u64,
    scheme: String,
    data: Vec<u8>,
    waiter: Option<oneshot::Sender<Result<()>>>,
}

struct Established {
    stream: Transport,
    rbuf: BytesMut,
    resp: ConnectResponse,
    addr: SocketAddr,
}

type Probe = Pin<Box<dyn Future<Output = SocketAddr> + Send>>;

struct Actor {
    cfg: SessionConfig,
    hosts: Vec<HostPort>,
    chroot: Chroot,
    rx: mpsc::UnboundedReceiver<Command>,
    snap: watch::Sender<Snapshot>,
    listeners: Vec<Listener>,
    /// SetWatches2 batches of this connection not yet answered.
    set_watches_pending: usize,
    /// The stamp of the last event handed out (state change, notification, reply).
    seq: u64,
    state: SessionState,
    session_id: i64,
    passwd: Vec<u8>,
    timeout: Duration,
    last_zxid: i64,
    seen_rw: bool,
    xid: i32,
    /// Requests in the write buffer not yet handed to the socket (the newest `unsent` entries
    /// of the in-flight queue).
    unsent: usize,
    queued: VecDeque<Request>,
    watches: WatchRegistry,
    auths: Vec<Auth>,
    next_auth_id: u64,
    closed: bool,
    close_waiters: Vec<oneshot::Sender<()>>,
    last_contact: Instant,
    /// Something arrived since `last_contact` was last brought up to date (done per tick and
    /// when a connection ends, not per read).
    heard: bool,
    prefer: Option<SocketAddr>,
    rng: Rng,
    /// Why connecting keeps failing, when a person must fix it (published in the snapshot).
    failure: Option<ConnectFailure>,
}

impl Actor {
    fn new(
        cfg: SessionConfig,
        cs: ConnectString,
        rx: mpsc::UnboundedReceiver<Command>,
        snap: watch::Sender<Snapshot>,
    ) -> Actor {
        Actor {
            timeout: cfg.session_timeout,
            cfg,
            hosts: cs.hosts,
            chroot: cs.chroot,
            rx,
            snap,
            listeners: Vec::new(),
            seq: 0,
            set_watches_pending: 0,
            state: SessionState::Lost,
            session_id: 0,
            passwd: vec![0; 16],
            last_zxid: 0,
            seen_rw: false,
            xid: 0,
            unsent: 0,
            queued: VecDeque::new(),
            watches: WatchRegistry::default(),
            auths: Vec::new(),
            next_auth_id: 0,
            closed: false,
            close_waiters: Vec::new(),
            last_contact: Instant::now(),
            heard: false,
            prefer: None,
            rng: Rng::new(),
            failure: None,
        }
    }

    /// The next sequence stamp.
    fn stamp(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    async fn run(mut self) {
        while !self.closed {
            let Some(est) = self.connect().await else {
                break;
            };
            self.serve(est).await;
        }
        self.finish();
    }

    /// Everything still waiting learns the client is closed.
    fn finish(&mut self) {
        for r in std::mem::take(&mut self.queued) {
            let seq = self.stamp();
            r.reply.complete(seq, Err(Error::Closed));
        }
        for a in self.auths.drain(..) {
            if let Some(w) = a.waiter {
                let _ = w.send(Err(Error::Closed));
            }
        }
        let seq = self.stamp();
        self.watches.clear(seq, KeeperState::Closed);
        self.set_state(SessionState::Closed, KeeperState::Closed);
        for w in self.close_waiters.drain(..) {
            let _ = w.send(());
        }
        // Anything sent after this point finds the channel closed.
        self.rx.close();
        while let Ok(cmd) = self.rx.try_recv() {
            self.refuse(cmd);
        }
    }

    fn refuse(&mut self, cmd: Command) {
        match cmd {
            Command::Request(r) => {
                let seq = self.stamp();
                r.reply.complete(seq, Err(Error::Closed));
            }
            Command::AddAuth { reply, .. } => {
                let _ = reply.send(Err(Error::Closed));
            }
            Command::Listen(l) => {
                let seq = self.stamp();
                l.tell(seq, &self.event(SessionState::Closed, KeeperState::Closed));
            }
            Command::Unlisten(_) | Command::Prune { .. } => {}
            Command::Close(w) => {
                let _ = w.send(());
            }
        }
    }

    fn event(&self, state: SessionState, keeper_state: KeeperState) -> SessionEvent {
        SessionEvent {
            state,
            keeper_state,
            session_id: self.session_id,
        }
    }

    fn publish(&self) {
        self.snap.send_replace(Snapshot {
            state: self.state,
            session_id: self.session_id,
            negotiated_timeout: self.timeout,
            failure: self.failure.clone(),
        });
    }

    /// Moves to `state`; listeners hear only real changes.
    fn set_state(&mut self, state: SessionState, keeper_state: KeeperState) {
        if state == self.state {
            return;
        }
        info!(from = ?self.state, to = ?state, session_id = format_args!("{:#x}", self.session_id), "session state");
        self.state = state;
        self.publish();
        let ev = self.event(state, keeper_state);
        let seq = self.stamp();
        self.listeners.retain(|l| l.tell(seq, &ev));
    }

    /// A new listener: it hears the current state first, then every change.
    fn listen(&mut self, l: Listener) -> bool {
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
        true
    }

    fn unlisten(&mut self, id: ListenerId) {
        self.listeners
            .retain(|l| !matches!(l, Listener::Lane { id: i, .. } if *i == id));
    }

    /// Tells listeners of a raw state that is not a state change (auth failure).
    fn tell(&mut self, keeper_state: KeeperState) {
        let ev = self.event(self.state, keeper_state);
        let seq = self.stamp();
        self.listeners.retain(|l| l.tell(seq, &ev));
    }

    /// The session is gone: queued requests fail, watchers hear it, a new session follows.
    fn expire(&mut self, why: &str) {
        warn!(
            session_id = format_args!("{:#x}", self.session_id),
            "session expired: {why}"
        );
        for r in std::mem::take(&mut self.queued) {
            let seq = self.stamp();
            r.reply.complete(seq, Err(Error::SessionExpired));
        }
        let seq = self.stamp();
        self.watches.clear(seq, KeeperState::Expired);
        self.set_state(SessionState::Lost, KeeperState::Expired);
        self.session_id = 0;
        self.passwd = vec![0; 16];
        self.timeout = self.cfg.session_timeout;
        self.publish();
        self.last_contact = Instant::now();
    }

    /// A command that arrives while there is no connection. Returns false once the client is
    /// closing.
    fn offline_command(&mut self, cmd: Option<Command>) -> bool {
        match cmd {
            None => {
                self.closed = true;
                false
            }
            Some(Command::Request(r)) => {
                if self.queued.len() >= self.cfg.max_queued {
                    let seq = self.stamp();
                    r.reply
                        .complete(seq, Err(Error::QueueFull(self.cfg.max_queued)));
                } else {
                    self.queued.push_back(r);
                }
                true
            }
            Some(Command::AddAuth {
                scheme,
                auth,
                reply,
            }) => {
                self.push_auth(scheme, auth, Some(reply));
                true
            }
            Some(Command::Listen(l)) => self.listen(l),
            Some(Command::Unlisten(id)) => {
                self.unlisten(id);
                true
            }
            Some(Command::Prune { path }) => {
                // Offline: forget dead watchers now; the restore will not include them.
                self.watches.prune(&path);
                true
            }
            Some(Command::Close(w)) => {
                self.close_waiters.push(w);
                self.closed = true;
                false
            }
        }
    }

    fn push_auth(
        &mut self,
        scheme: String,
        data: Vec<u8>,
        waiter: Option<oneshot::Sender<Result<()>>>,
    ) -> u64 {
        let id = self.next_auth_id;
        self.next_auth_id += 1;
        self.auths.push(Auth {
            id,
            scheme,
            data,
            waiter,
        });
        id
    }

    /// Every server's addresses, each with the index of its host in the connect string.
    async fn resolve(&mut self) -> Vec<(SocketAddr, usize)> {
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

    /// Connecting failed for a reason a person must fix: say so once, and publish it so that
    /// [`crate::ClientBuilder::connect`] can return it.
    fn report_failure(&mut self, error: Error, every_server: bool) {
        let new = self.failure.as_ref().map(|f| &f.error) != Some(&error);
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

    /// Tries servers until one takes the session, handling commands meanwhile. None when the
    /// client was closed first.
    async fn connect(&mut self) -> Option<Established> {
        let mut cycle: u32 = 0;
        loop {
            if self.session_id != 0 && self.last_contact.elapsed() >= self.timeout {
                self.expire(
                    "no server accepted the session within its timeout (client-side expiry)",
                );
            }
            let addrs = self.resolve().await;
            let per_host = self.cfg.connect_timeout.unwrap_or_else(|| {
                (self.timeout / addrs.len().max(1) as u32).max(Duration::from_millis(500))
            });
            let mut fatal: Option<Error> = None;
            let mut every_server = true;
            for (addr, hi) in addrs {
                let host = &self.hosts[hi];
                let tls = hosts::tls_for(&self.cfg.tls, host).cloned();
                let host = host.host.clone();
                let req = ConnectRequest {
                    last_zxid_seen: self.last_zxid,
                    timeout_ms: self.cfg.session_timeout.as_millis() as i32,
                    session_id: if self.seen_rw || !self.cfg.allow_read_only {
                        self.session_id
                    } else {
                        0
                    },
                    passwd: self.passwd.clone(),
                    read_only: self.cfg.allow_read_only,
                };
                let attempt = handshake(
                    addr,
                    host,
                    tls,
                    self.cfg.sasl.clone(),
                    req,
                    per_host,
                    self.cfg.max_frame,
                );
                tokio::pin!(attempt);
                let res = loop {
                    tokio::select! {
                        r = &mut attempt => break r,
                        cmd = self.rx.recv() => if !self.offline_command(cmd) { return None },
                    }
                };
                match res {
                    Ok(est) if est.resp.timeout_ms <= 0 => {
                        every_server = false;
                        self.expire("the server reports the session expired");
                    }
                    Ok(est) => {
                        if self.failure.take().is_some() {
                            self.publish();
                        }
                        return Some(est);
                    }
                    Err(Failed::Transient(e)) => {
                        every_server = false;
                        debug!(%addr, "connect failed: {e}");
                    }
                    Err(Failed::Fatal(e)) => {
                        if self.failure.as_ref().map(|f| &f.error) == Some(&e) {
                            debug!(%addr, "connect failed again: {e}");
                        } else {
                            warn!(%addr, "connect failed: {e}");
                        }
                        fatal = Some(e);
                    }
                }
                if self.session_id != 0 && self.last_contact.elapsed() >= self.timeout {
                    self.expire(
                        "no server accepted the session within its timeout (client-side expiry)",
                    );
                }
            }
            if let Some(e) = fatal {
                self.report_failure(e, every_server);
            }
            // A full pass failed: back off, bounded and jittered, still handling commands.
            cycle = cycle.saturating_add(1);
            let base = Duration::from_millis(50).saturating_mul(1u32 << cycle.min(10));
            let cap = base.min(self.cfg.max_backoff);
            let pause = cap.mul_f64(0.5 + 0.5 * self.rng.unit());
            let sleep = tokio::time::sleep(pause);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = self.rx.recv() => if !self.offline_command(cmd) { return None },
                }
            }
        }
    }

    fn next_xid(&mut self) -> i32 {
        self.xid = if self.xid == i32::MAX {
            1
        } else {
            self.xid + 1
        };
        self.xid
    }

    fn write_request(
        &mut self,
        mut req: Request,
        wbuf: &mut BytesMut,
        inflight: &mut VecDeque<InFlight>,
    ) {
        if let Effect::Watch { kind, path, .. } = &req.effect {
            if let Some(e) = self.watches.mode_conflict(*kind, path) {
                let seq = self.stamp();
                req.reply.complete(seq, Err(e));
                return;
            }
            match kind {
                WatchKind::Persistent | WatchKind::PersistentRecursive => {
                    self.watches.adding(*kind, path)
                }
                // A persistent watch here already sees what this one-shot watch would: ask
                // the server for none (it would replace the persistent one), register it
                // here only. The read's watch flag is the last byte of its frame.
                k if self.watches.shadowed(*k, path) => {
                    if let Some(flag) = req.frame.last_mut() {
                        *flag = 0;
                    }
                }
                _ => {}
            }
        }
        self.write_frame(
            req.frame,
            Reply::User(req.reply),
            req.effect,
            wbuf,
            inflight,
        );
    }

    fn write_internal(
        &mut self,
        frame: BytesMut,
        reply: Reply,
        wbuf: &mut BytesMut,
        inflight: &mut VecDeque<InFlight>,
    ) {
        self.write_frame(frame, reply, Effect::None, wbuf, inflight);
    }

    /// Gives a frame its xid, queues it for writing and remembers it as in flight.
    fn write_frame(
        &mut self,
        mut frame: BytesMut,
        reply: Reply,
        effect: Effect,
        wbuf: &mut BytesMut,
        inflight: &mut VecDeque<InFlight>,
    ) {
        let xid = self.next_xid();
        ops::seal_frame(&mut frame, xid);
        let opcode = ops::frame_opcode(&frame);
        wbuf.extend_from_slice(&frame);
        self.unsent += 1;
        inflight.push_back(InFlight {
            xid,
            opcode,
            reply,
            effect,
        });
    }

    fn write_auth(auth: &Auth, wbuf: &mut BytesMut, auth_inflight: &mut VecDeque<u64>) {
        let mut f = ops::start_frame(op::AUTH, 16 + auth.scheme.len() + auth.data.len());
        ops::write_auth(&mut f, &auth.scheme, &auth.data);
        ops::seal_frame(&mut f, XID_AUTH);
        wbuf.extend_from_slice(&f);
        auth_inflight.push_back(auth.id);
    }

    /// Serves one connection until it ends, then fails what was in flight.
    async fn serve(&mut self, est: Established) {
        let Established {
            mut stream,
            mut rbuf,
            resp,
            addr,
        } = est;
        let new_session = resp.session_id != self.session_id;
        self.session_id = resp.session_id;
        self.passwd = resp.passwd.clone();
        self.timeout = Duration::from_millis(resp.timeout_ms as u64);
        self.last_contact = Instant::now();
        if !resp.read_only {
            self.seen_rw = true;
        }
        info!(
            %addr,
            session_id = format_args!("{:#x}", self.session_id),
            timeout_ms = resp.timeout_ms,
            read_only = resp.read_only,
            new_session,
            "connected"
        );
        let (state, ks) = if resp.read_only {
            (
                SessionState::ConnectedReadOnly,
                KeeperState::ConnectedReadOnly,
            )
        } else {
            (SessionState::Connected, KeeperState::SyncConnected)
        };

        let mut wbuf = BytesMut::with_capacity(64 * 1024);
        self.unsent = 0;
        let mut inflight: VecDeque<InFlight> = VecDeque::new();
        let mut auth_inflight: VecDeque<u64> = VecDeque::new();
        // Prime, in the Java client's order: auth, watches, then queued requests.
        for a in &self.auths {
            Self::write_auth(a, &mut wbuf, &mut auth_inflight);
        }
        let restore = self.watches.take_restore_list();
        self.set_watches_pending = 0;
        if !restore.is_empty() {
            for mut f in restore.into_frames(self.last_zxid, self.cfg.set_watches_batch) {
                ops::seal_frame(&mut f, XID_SET_WATCHES);
                wbuf.extend_from_slice(&f);
                self.set_watches_pending += 1;
            }
        }
        while let Some(r) = self.queued.pop_front() {
            self.write_request(r, &mut wbuf, &mut inflight);
        }
        self.set_state(state, ks);

        let mut probe: Option<Probe> = if resp.read_only {
            Some(Box::pin(probe_read_write(
                self.hosts.clone(),
                addr,
                self.cfg.tls.clone(),
            )))
        } else {
            None
        };
        let why = self
            .serve_loop(
                &mut stream,
                &mut rbuf,
                &mut wbuf,
                &mut inflight,
                &mut auth_inflight,
                &mut probe,
            )
            .await;
        if std::mem::take(&mut self.heard) {
            self.last_contact = Instant::now();
        }
        match &why {
            Disconnect::Closed => debug!("session closed"),
            other => info!(%addr, "connection lost: {other:?}"),
        }
        if let Disconnect::MoveTo(a) = why {
            self.prefer = Some(a);
        }
        if let Disconnect::Protocol(e) = &why {
            warn!(%addr, "closing the connection: {e}");
        }
        drop(stream);
        let in_flight_err = if self.closed {
            Error::Closed
        } else {
            Error::ConnectionLoss
        };
        self.watches.forget_adding();
        for p in inflight.drain(..) {
            match p.reply {
                Reply::User(sink) => {
                    let seq = self.stamp();
                    sink.complete(seq, Err(in_flight_err.clone()));
                }
                Reply::Internal | Reply::Close => {}
            }
        }
        if !self.closed {
            self.set_state(SessionState::Suspended, KeeperState::Disconnected);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve_loop(
        &mut self,
        stream: &mut Transport,
        rbuf: &mut BytesMut,
        wbuf: &mut BytesMut,
        inflight: &mut VecDeque<InFlight>,
        auth_inflight: &mut VecDeque<u64>,
        probe: &mut Option<Probe>,
    ) -> Disconnect {
        let mut lowat = RecvLowat::new(stream.tcp());
        let (mut rd, mut wr) = stream.split();
        // Liveness is judged at tick granularity: the loop only notes that something was
        // received or sent, and the tick turns that into a time (no clock read per batch).
        let mut last_send = Instant::now();
        let mut last_recv = last_send;
        let mut sent = false;
        let mut flushing = false;
        let mut tick = tokio::time::interval((self.timeout / 10).max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing_since: Option<Instant> = None;
        if self.closed {
            // Closed while connecting: say goodbye properly.
            self.write_internal(ops::start_frame(op::CLOSE, 0), Reply::Close, wbuf, inflight);
            closing_since = Some(Instant::now());
        }
        loop {
            let take_commands = wbuf.len() < HIGH_WATER;
            let write = !wbuf.is_empty()
                && (flushing
                    || inflight.len() - self.unsent < CORK_AWAITING
                    || wbuf.len() >= CORK_BYTES
                    || closing_since.is_some());
            if rbuf.capacity() - rbuf.len() < READ_ROOM {
                rbuf.reserve(2 * READ_ROOM);
            }
            lowat.update(inflight.len() - self.unsent);
            tokio::select! {
                biased;
                r = rd.read_buf(rbuf) => {
                    match r {
                        Ok(0) => return if closing_since.is_some() { Disconnect::Closed } else { Disconnect::Eof },
                        Err(e) => return Disconnect::Io(e),
                        Ok(_) => {}
                    }
                    self.heard = true;
                    lowat.read();
                    if let Err(d) = self.take_frames(rbuf, wbuf, inflight, auth_inflight) {
                        return d;
                    }
                }
                r = wr.write_buf(wbuf), if write => {
                    if let Err(e) = r {
                        return Disconnect::Io(e);
                    }
                    // Once started, a flush goes on until the buffer is empty.
                    flushing = !wbuf.is_empty();
                    if !flushing {
                        self.unsent = 0;
                    }
                    sent = true;
                }
                cmd = self.rx.recv(), if take_commands => {
                    let mut cmd = cmd;
                    let mut n = 0;
                    loop {
                        match cmd {
                            None => {
                                // Every client handle is gone: close the session.
                                if closing_since.is_none() {
                                    self.closed = true;
                                    self.write_internal(ops::start_frame(op::CLOSE, 0), Reply::Close, wbuf, inflight);
                                    closing_since = Some(Instant::now());
                                }
                                break;
                            }
                            Some(Command::Request(r)) if closing_since.is_some() => {
                                let seq = self.stamp();
                                r.reply.complete(seq, Err(Error::Closed));
                            }
                            Some(Command::Request(r)) => self.write_request(r, wbuf, inflight),
                            Some(Command::AddAuth { scheme, auth, reply }) => {
                                let id = self.push_auth(scheme, auth, Some(reply));
                                let a = self.auths.last().expect("just pushed");
                                debug_assert_eq!(a.id, id);
                                Self::write_auth(a, wbuf, auth_inflight);
                            }
                            Some(Command::Listen(l)) => {
                                self.listen(l);
                            }
                            Some(Command::Unlisten(id)) => self.unlisten(id),
                            Some(Command::Prune { path }) => {
                                for kind in self.watches.prune(&path) {
                                    self.remove_on_server(&path, kind, wbuf, inflight);
                                }
                            }
                            Some(Command::Close(w)) => {
                                self.close_waiters.push(w);
                                if closing_since.is_none() {
                                    self.closed = true;
                                    self.write_internal(ops::start_frame(op::CLOSE, 0), Reply::Close, wbuf, inflight);
                                    closing_since = Some(Instant::now());
                                }
                            }
                        }
                        n += 1;
                        if n >= BATCH || wbuf.len() >= HIGH_WATER {
                            break;
                        }
                        match self.rx.try_recv() {
                            Ok(c) => cmd = Some(c),
                            Err(mpsc::error::TryRecvError::Empty) => break,
                            Err(mpsc::error::TryRecvError::Disconnected) => cmd = None,
                        }
                    }
                }
                () = lowat.expired(), if lowat.waiting() => {
                    // Replies are trickling in below the mark: take what is there (a
                    // non-blocking read returns whatever has arrived, mark or not).
                    lowat.missed();
                    match rd.try_read_buf(rbuf) {
                        Ok(0) => return if closing_since.is_some() { Disconnect::Closed } else { Disconnect::Eof },
                        Ok(_) => {
                            self.heard = true;
                            if let Err(d) = self.take_frames(rbuf, wbuf, inflight, auth_inflight) {
                                return d;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Disconnect::Io(e),
                    }
                }
                now = tick.tick() => {
                    let now = now.into_std();

                    if std::mem::take(&mut self.heard) {
                        last_recv = now;
                        self.last_contact = now;
                    }
                    if std::mem::take(&mut sent) {
                        last_send = now;
                    }
                    if let Some(since) = closing_since {
                        if since.elapsed() >= CLOSE_WAIT {
                            warn!("the server did not answer closeSession in time");
                            return Disconnect::Closed;
                        }
                    }
                    if last_recv.elapsed() >= self.timeout * 2 / 3 {
                        return Disconnect::Timeout;
                    }
                    if last_send.elapsed() >= self.timeout / 3 {
                        let mut f = ops::start_frame(op::PING, 0);
                        ops::seal_frame(&mut f, XID_PING);
                        wbuf.extend_from_slice(&f);
                        last_send = now;
                        // A ping is never corked: the server must hear from us.
                        flushing = true;
                    }
                }
                addr = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                    info!(%addr, "found a read-write server; moving there");
                    return Disconnect::MoveTo(addr);
                }
            }
        }
    }

    /// Handles every complete frame in `rbuf`.
    fn take_frames(
        &mut self,
        rbuf: &mut BytesMut,
        wbuf: &mut BytesMut,
        inflight: &mut VecDeque<InFlight>,
        auth_inflight: &mut VecDeque<u64>,
    ) -> std::result::Result<(), Disconnect> {
        while let Some(frame) =
            next_frame(rbuf, self.cfg.max_frame).map_err(Disconnect::Protocol)?
        {
            self.on_frame(frame, wbuf, inflight, auth_inflight)?;
        }
        Ok(())
    }

    /// Removes a watch nobody wants any more from the server. ZooKeeper 3.8 removes persistent
    /// watches only with type Any (3); when no other watch is left at the path that is exact,
    /// else the per-mode type (3.9+) is tried.
    fn remove_on_server(
        &mut self,
        path: &str,
        kind: WatcherType,
        wbuf: &mut BytesMut,
        inflight: &mut VecDeque<InFlight>,
    ) {
        // ZooKeeper 3.8 removes a persistent watch only with `Any` (see
        // `WatcherType::wire_code`); the one-shot watches that takes along are armed again.
        let mut f = ops::start_frame(op::REMOVE_WATCHES, path.len() + 8);
        ops::write_path_version(&mut f, path, kind.wire_code());
        self.write_internal(f, Reply::Internal, wbuf, inflight);
        if kind.is_persistent() {
            self.rearm_uncovered(path, wbuf, inflight);
        }
    }

    /// This session's persistent watch at `path` left the server: sets again the one-shot
    /// watches it covered there (see [`WatchRegistry::shadowed`]), which were registered here
    /// only. Their watchers stay registered; these requests only arm the server.
    fn rearm_uncovered(
        &mut self,
        path: &str,
        wbuf: &mut BytesMut,
        inflight: &mut VecDeque<InFlight>,
    ) {
        let (data, child) = self.watches.uncovered(path);
        for (needed, opcode) in [(data, op::EXISTS), (child, op::GET_CHILDREN2)] {
            if needed {
                let mut f = ops::start_frame(opcode, path.len() + 8);
                ops::write_path_watch(&mut f, path, true);
                self.write_internal(f, Reply::Internal, wbuf, inflight);
            }
        }
    }

    /// Handles one frame from the server.
    fn on_frame(
        &mut self,
        mut frame: BytesMut,
        wbuf: &mut BytesMut,
        inflight: &mut VecDeque<InFlight>,
        auth_inflight: &mut VecDeque<u64>,
    ) -> std::result::Result<(), Disconnect> {
        let mut r = Reader::new(&frame);
        let h = ReplyHeader::read(&mut r).map_err(Disconnect::Protocol)?;
        match h.xid {
            XID_NOTIFICATION => {
                let (ty, state, path) = WatchedEvent::read(&mut r).map_err(Disconnect::Protocol)?;
                let ev = WatchedEvent {
                    event_type: EventType::from_code(ty),
                    keeper_state: KeeperState::from_code(state),
                    path: self.chroot.strip(&path).to_string(),
                    zxid: h.zxid,
                };
                let seq = self.stamp();
                let emptied = self.watches.dispatch(seq, &path, ev);
                for (kind, p) in emptied {
                    // Nobody listens any more: remove the watch on the server too.
                    let kind = if kind == WatchKind::Persistent {
                        WatcherType::Persistent
                    } else {
                        WatcherType::PersistentRecursive
                    };
                    self.remove_on_server(&p, kind, wbuf, inflight);
                }
            }
            XID_PING => {}
            XID_AUTH => {
                let Some(id) = auth_inflight.pop_front() else {
                    return Err(Disconnect::Protocol(Error::MalformedResponse(
                        "an auth reply nobody asked for".into(),
                    )));
                };
                let Some(pos) = self.auths.iter().position(|a| a.id == id) else {
                    return Ok(());
                };
                if h.err == 0 {
                    if let Some(w) = self.auths[pos].waiter.take() {
                        let _ = w.send(Ok(()));
                    }
                } else {
                    let a = self.auths.remove(pos);
                    warn!(scheme = %a.scheme, "authentication failed");
                    if let Some(w) = a.waiter {
                        let _ = w.send(Err(Error::AuthFailed));
                    }
                    self.tell(KeeperState::AuthFailed);
                }
            }
            XID_SET_WATCHES => {
                self.set_watches_pending = self.set_watches_pending.saturating_sub(1);
                if self.set_watches_pending == 0 {
                    // Every watch is armed again: from here on no change goes unreported, so
                    // this is the moment to tell persistent watchers to re-read.
                    let chroot = self.chroot.clone();
                    let seq = self.stamp();
                    self.watches.resync(seq, |p| chroot.strip(p).to_string());
                }
                if h.err != 0 {
                    warn!(
                        err = h.err,
                        "the server refused to restore watches: {}",
                        Error::from_code(h.err)
                    );
                }
            }
            xid => {
                let Some(p) = inflight.pop_front() else {
                    return Err(Disconnect::Protocol(Error::MalformedResponse(format!(
                        "reply for xid {xid} with no request in flight"
                    ))));
                };
                if p.xid != xid {
                    let e = Error::MalformedResponse(format!(
                        "reply for xid {xid} while xid {} was next",
                        p.xid
                    ));
                    inflight.push_front(p);
                    return Err(Disconnect::Protocol(e));
                }
                if h.zxid > 0 && h.zxid > self.last_zxid {
                    self.last_zxid = h.zxid;
                }
                let seq = self.stamp();
                if let Some(path) = self.apply_effect(seq, p.effect, h.err) {
                    self.rearm_uncovered(&path, wbuf, inflight);
                }
                match p.reply {
                    Reply::User(sink) => {
                        let res = if h.err == 0 {
                            {
                                frame.advance(REPLY_HEADER_LEN);
                                Ok(frame.freeze())
                            }
                        } else {
                            Err(Error::from_code(h.err))
                        };
                        sink.complete(seq, res);
                    }
                    Reply::Internal => {
                        if h.err != 0 {
                            debug!(
                                opcode = ?p.opcode,
                                "internal request failed: {}",
                                Error::from_code(h.err)
                            );
                        }
                    }
                    Reply::Close => return Err(Disconnect::Closed),
                }
            }
        }
        Ok(())
    }

    /// Applies a request's effect on the registry once its reply came. Returns a path whose
    /// persistent watch left the server, for [`Actor::rearm_uncovered`].
    fn apply_effect(&mut self, seq: u64, effect: Effect, err: i32) -> Option<String> {
        match effect {
            Effect::None => None,
            Effect::Watch { kind, path, sink } => {
                self.watches.added(kind, &path);
                let kind = match (kind, err) {
                    (WatchKind::Exist, 0) => Some(WatchKind::Data),
                    (WatchKind::Exist, -101) => Some(WatchKind::Exist),
                    (k, 0) => Some(k),
                    _ => None,
                };
                if let Some(k) = kind {
                    self.watches.add(k, path, sink);
                }
                None
            }
            Effect::RemoveWatches {
                path,
                user_path,
                watcher_type,
            } => {
                if err != 0 {
                    return None;
                }
                self.watches.remove(seq, &path, watcher_type, &user_path);
                watcher_type.is_persistent().then_some(path)
            }
        }
    }
}

/// Why a connection attempt failed.
enum Failed {
    /// The network's or the server's doing (refused, reset, timed out): try the next server.
    Transient(String),
    /// Certificates or credentials a person must fix.
    Fatal(Error),
}

impl Failed {
    /// An I/O error of a connection, TLS errors sorted out.
    fn io(tls: Option<&TlsConnector>, addr: SocketAddr, e: std::io::Error) -> Failed {
        match tls {
            Some(t) => t.classify(&addr.to_string(), e).into(),
            None => Failed::Transient(e.to_string()),
        }
    }
}

impl From<TlsFailure> for Failed {
    fn from(f: TlsFailure) -> Failed {
        match f {
            TlsFailure::Io(e) => Failed::Transient(e.to_string()),
            TlsFailure::Fatal(e) => Failed::Fatal(e),
        }
    }
}

/// Connects (over TLS when `tls` is given, verifying `host`), runs the handshake and, with
/// `sasl`, the SASL exchange, all within `timeout`.
#[allow(clippy::too_many_arguments)]
async fn handshake(
    addr: SocketAddr,
    host: String,
    tls: Option<TlsConnector>,
    sasl: Option<SaslConfig>,
    req: ConnectRequest,
    timeout: Duration,
    max_frame: usize,
) -> std::result::Result<Established, Failed> {
    let fut = async {
        let tls = tls.as_ref();
        let mut stream = Transport::connect(addr, &host, tls).await?;
        let mut b = BytesMut::with_capacity(64);
        b.put_i32(0);
        req.write(&mut b);
        let len = (b.len() - 4) as i32;
        b[0..4].copy_from_slice(&len.to_be_bytes());
        stream
            .write_all(&b)
            .await
            .map_err(|e| Failed::io(tls, addr, e))?;
        stream.flush().await.map_err(|e| Failed::io(tls, addr, e))?;
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        loop {
            if let Some(f) =
                next_frame(&mut rbuf, max_frame).map_err(|e| Failed::Transient(e.to_string()))?
            {
                let resp =
                    ConnectResponse::read(&f).map_err(|e| Failed::Transient(e.to_string()))?;
                if let (Some(cfg), true) = (&sasl, resp.timeout_ms > 0) {
                    match sasl::exchange(&mut stream, &mut rbuf, max_frame, cfg).await {
                        Ok(()) => debug!(%addr, user = cfg.user(), "SASL DIGEST-MD5 authenticated"),
                        Err(SaslFailure::Io(e)) => return Err(Failed::io(tls, addr, e)),
                        Err(SaslFailure::Fatal(e)) => {
                            if matches!(e, Error::AuthFailed | Error::SessionClosedRequireSaslAuth)
                            {
                                warn!(
                                    %addr,
                                    user = cfg.user(),
                                    "the server refused the SASL credentials: wrong user name \
                                     or password ({e})"
                                );
                            }
                            return Err(Failed::Fatal(e));
                        }
                    }
                }
                debug!(%addr, tls = stream.is_tls(), sasl = sasl.is_some(), "handshake done");
                return Ok(Established {
                    stream,
                    rbuf,
                    resp,
                    addr,
                });
            }
            let n = stream
                .read_buf(&mut rbuf)
                .await
                .map_err(|e| Failed::io(tls, addr, e))?;
            if n == 0 {
                return Err(Failed::Transient(
                    "the server closed the connection during the handshake".to_string(),
                ));
            }
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Failed::Transient(format!(
            "no handshake within {timeout:?}"
        ))),
    }
}

/// Asks every other server `isro` (over TLS for those that use it) until one answers `rw`
/// (100 ms, doubling to 60 s).
async fn probe_read_write(
    hosts: Vec<HostPort>,
    current: SocketAddr,
    tls: Option<TlsSetting>,
) -> SocketAddr {
    let mut delay = Duration::from_millis(100);
    loop {
        tokio::time::sleep(delay).await;
        for h in &hosts {
            let Ok(addrs) = tokio::net::lookup_host((h.host.as_str(), h.port)).await else {
                continue;
            };
            for a in addrs {
                if a == current {
                    continue;
                }
                if isro(a, &h.host, hosts::tls_for(&tls, h)).await.as_deref() == Some("rw") {
                    return a;
                }
            }
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// The four-letter word `isro`: `rw` or `ro`, or None when the server did not answer in time.
async fn isro(addr: SocketAddr, host: &str, tls: Option<&TlsConnector>) -> Option<String> {
    let fut = async {
        let mut s = Transport::connect(addr, host, tls).await.ok()?;
        s.write_all(b"isro").await.ok()?;
        s.flush().await.ok()?;
        // The server answers two bytes and closes; over TLS it may close without close_notify,
        // which reads as an error after the answer: keep what came.
        let mut out = Vec::new();
        let mut buf = [0u8; 16];
        while out.len() < 2 {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8(out).ok()
    };
    tokio::time::timeout(Duration::from_secs(1), fut)
        .await
        .ok()
        .flatten()
}

/// The session socket's receive low-water mark (`SO_RCVLOWAT`): while many replies are due,
/// the kernel wakes the actor only once enough bytes for several of them have arrived, so one
/// read takes a batch instead of one reply per wake-up (on a 2-core machine with the server
/// next door, one wake-up per reply was most of the client's CPU).
///
/// The mark never exceeds what the replies still due must add up to (each is at least
/// [`MIN_REPLY`] bytes), and an end of stream is reported whatever the mark, so nothing can
/// wait for bytes that never come. It adapts to how fast replies arrive: a mark reached doubles
/// the cap (up to [`MAX_LOWAT`]); a mark not reached within [`LOWAT_WAIT`] halves it (down to
/// [`MIN_LOWAT`]) and the actor reads what is there anyway, so a reply waits at most that long
/// (plus the timer's 1 ms granularity). Values are powers of two so the option changes a few
/// times per burst, not per read. Only while at least [`CORK_AWAITING`] replies are due:
/// sequential callers never see it.
struct RecvLowat {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
    /// The mark now set on the socket (1: none).
    current: usize,
    /// The most the mark may be raised to now.
    cap: usize,
    /// When the actor reads anyway although the mark is not reached.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// See [`RecvLowat`].
const LOWAT_WAIT: Duration = Duration::from_millis(1);
/// See [`RecvLowat`].
const MIN_LOWAT: usize = 512;

impl RecvLowat {
    fn new(stream: &TcpStream) -> RecvLowat {
        #[cfg(target_os = "linux")]
        let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
        #[cfg(not(target_os = "linux"))]
        let _ = stream;
        RecvLowat {
            #[cfg(target_os = "linux")]
            fd,
            current: 1,
            cap: MAX_LOWAT,
            timer: Box::pin(tokio::time::sleep(LOWAT_WAIT)),
        }
    }

    /// Whether the wait timer is armed (the mark is raised).
    fn waiting(&self) -> bool {
        self.current > 1
    }

    /// The wait timer.
    async fn expired(&mut self) {
        self.timer.as_mut().await
    }

    /// The socket was readable: with a mark set, it was reached.
    fn read(&mut self) {
        if self.current > 1 {
            self.cap = (self.cap * 2).min(MAX_LOWAT);
            self.restart();
        }
    }

    /// The mark was not reached in time.
    fn missed(&mut self) {
        self.cap = (self.cap / 2).max(MIN_LOWAT);
        self.restart();
    }

    fn restart(&mut self) {
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + LOWAT_WAIT);
    }

    /// Sets the mark for `due` replies still awaited.
    fn update(&mut self, due: usize) {
        let want = if due < CORK_AWAITING {
            1
        } else {
            let bytes = ((due - CORK_AWAITING / 2) * MIN_REPLY).min(self.cap);
            1usize << (usize::BITS - 1 - bytes.leading_zeros())
        };
        if want != self.current {
            if self.current == 1 {
                self.restart();
            }
            self.set(want);
        }
    }

    fn set(&mut self, value: usize) {
        self.current = value;
        #[cfg(target_os = "linux")]
        {
            let v = value as libc::c_int;
            // SAFETY: `fd` is the open socket this value belongs to (it outlives the serve
            // loop that owns `self`), and the option value is a valid `c_int` of the given size.
            let rc = unsafe {
                libc::setsockopt(
                    self.fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVLOWAT,
                    (&v as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                // Not fatal: without the mark reads are merely smaller.
                debug!("SO_RCVLOWAT: {}", std::io::Error::last_os_error());
                self.current = 1;
            }
        }
    }
}
