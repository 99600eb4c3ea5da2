//! One connection to a server and everything that lives as long as it: the socket, the read and
//! write buffers, the in-flight queue, the timers, the receive low-water mark, the read-write
//! probe. [`Connection::next`] waits on all of them at once and hands the actor only what it
//! must act on (bytes to read, commands, the end); writing, corking, pings and timeouts are
//! handled here.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::connect::Established;
use super::lowat::RecvLowat;
use super::pending::{InFlight, Pending, Reply};
use super::state::Auth;
use super::timers::{Due, Timers};
use super::transport::Transport;
use super::{Command, Effect};
use crate::error::Error;
use crate::proto::frame::next_frame;
use crate::proto::ops::{self, op};
use crate::proto::records::{XID_AUTH, XID_PING, XID_SET_WATCHES};

/// Stop taking new commands while this much is waiting to be written.
const HIGH_WATER: usize = 4 * 1024 * 1024;
/// Corking: while at least this many requests sent earlier still await their replies, new
/// requests wait in the write buffer. The server has that much work queued anyway, so holding
/// them costs no throughput, and one large `writev` replaces many small ones (on loopback each
/// also pays for waking the server). Below it, and for sequential callers, writes go at once.
pub(super) const CORK_AWAITING: usize = 64;
/// Fair queuing: requests are handed to the connection (its write buffer and the server) only
/// while fewer than this many are there unanswered; the rest wait in the session's fair queue,
/// where owners take turns. Large enough to keep the server busy and the writes batched, small
/// enough that a request arriving behind another owner's backlog waits for at most this many
/// plus one round.
pub(super) const FAIR_WINDOW: usize = 512;
/// ... unless this much is waiting to be written.
const CORK_BYTES: usize = 256 * 1024;
/// Room kept free in the read buffer before each read, so one read takes a whole burst.
const READ_ROOM: usize = 32 * 1024;

/// Why a connection ended (logged through `Debug`).
#[derive(Debug)]
#[allow(dead_code)]
pub(super) enum Disconnect {
    Eof,
    Io(std::io::Error),
    Protocol(Error),
    Timeout,
    MoveTo(SocketAddr),
    Closed,
}

/// What [`Connection::next`] hands the actor.
pub(super) enum Io {
    /// Bytes arrived: complete frames may wait in the read buffer ([`Connection::next_frame`]).
    Read,
    /// A command (None: every client handle is gone).
    Command(Option<Command>),
    /// The connection ended.
    Ended(Disconnect),
}

/// The search for a read-write server while this connection is to a read-only one.
pub(super) type Probe = Pin<Box<dyn Future<Output = SocketAddr> + Send>>;

/// A connection, from the handshake to its end.
pub(super) struct Connection {
    stream: Transport,
    addr: SocketAddr,
    max_frame: usize,
    rbuf: BytesMut,
    wbuf: BytesMut,
    /// What was sent and awaits an answer.
    pub pending: Pending,
    timers: Timers,
    lowat: RecvLowat,
    /// Once started, a flush goes on until the buffer is empty.
    flushing: bool,
    probe: Option<Probe>,
}

impl Connection {
    /// A connection just through its handshake, with the negotiated `timeout`; its xids
    /// continue after `last_xid`.
    pub(super) fn new(est: Established, timeout: Duration, last_xid: i32) -> Connection {
        let Established {
            mut stream,
            rbuf,
            addr,
            max_frame,
            ..
        } = est;
        let lowat = RecvLowat::new(stream.tcp());
        Connection {
            stream,
            addr,
            max_frame,
            rbuf,
            wbuf: BytesMut::with_capacity(64 * 1024),
            pending: Pending::new(last_xid),
            timers: Timers::new(timeout),
            lowat,
            flushing: false,
            probe: None,
        }
    }

    /// The server's address.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Looks for a read-write server meanwhile (this one is read-only); the connection ends
    /// with [`Disconnect::MoveTo`] once one is found.
    pub(super) fn probe(&mut self, probe: Probe) {
        self.probe = Some(probe);
    }

    /// Whether more commands may be taken before the write buffer drains.
    pub(super) fn has_room(&self) -> bool {
        self.wbuf.len() < HIGH_WATER
    }

    /// Whether the connection takes another request now (see [`FAIR_WINDOW`]).
    pub(super) fn window_open(&self) -> bool {
        self.pending.len() < FAIR_WINDOW
    }

    /// When the server was last heard from.
    pub(super) fn last_heard(&self) -> std::time::Instant {
        self.timers.last_heard()
    }

    /// Gives a frame its xid, queues it for writing and remembers it as in flight.
    pub(super) fn send(&mut self, mut frame: BytesMut, reply: Reply, effect: Effect) {
        let xid = self.pending.next_xid();
        ops::seal_frame(&mut frame, xid);
        let opcode = ops::frame_opcode(&frame);
        self.wbuf.extend_from_slice(&frame);
        self.pending.push(InFlight {
            xid,
            opcode,
            reply,
            effect,
        });
    }

    /// Queues an auth packet.
    pub(super) fn send_auth(&mut self, auth: &Auth) {
        let mut f = ops::start_frame(op::AUTH, 16 + auth.scheme.len() + auth.data.len());
        ops::write_auth(&mut f, &auth.scheme, &auth.data);
        ops::seal_frame(&mut f, XID_AUTH);
        self.wbuf.extend_from_slice(&f);
        self.pending.auth_sent(auth.id);
    }

    /// Queues a SetWatches2 batch.
    pub(super) fn send_set_watches(&mut self, mut frame: BytesMut) {
        ops::seal_frame(&mut frame, XID_SET_WATCHES);
        self.wbuf.extend_from_slice(&frame);
        self.pending.set_watches_sent();
    }

    /// Sends closeSession; its answer (or [`timers`](super::timers)' patience running out)
    /// ends the connection.
    pub(super) fn send_close(&mut self) {
        self.send(ops::start_frame(op::CLOSE, 0), Reply::Close, Effect::None);
        self.timers.closing();
    }

    /// The next complete frame in the read buffer.
    pub(super) fn next_frame(&mut self) -> Result<Option<BytesMut>, Disconnect> {
        next_frame(&mut self.rbuf, self.max_frame).map_err(Disconnect::Protocol)
    }

    /// The connection ended: drops the socket, leaving what was still in flight.
    pub(super) fn into_pending(self) -> Pending {
        self.pending
    }

    /// Writes, reads, pings and watches the time until there is something for the actor.
    pub(super) async fn next(&mut self, rx: &mut mpsc::UnboundedReceiver<Command>) -> Io {
        loop {
            let take_commands = self.has_room();
            let write = !self.wbuf.is_empty()
                && (self.flushing
                    || self.pending.awaiting() < CORK_AWAITING
                    || self.wbuf.len() >= CORK_BYTES
                    || self.timers.is_closing());
            if self.rbuf.capacity() - self.rbuf.len() < READ_ROOM {
                self.rbuf.reserve(2 * READ_ROOM);
            }
            self.lowat.update(self.pending.awaiting());
            let eof = if self.timers.is_closing() {
                Disconnect::Closed
            } else {
                Disconnect::Eof
            };
            let (mut rd, mut wr) = self.stream.split();
            tokio::select! {
                biased;
                r = rd.read_buf(&mut self.rbuf) => {
                    match r {
                        Ok(0) => return Io::Ended(eof),
                        Err(e) => return Io::Ended(Disconnect::Io(e)),
                        Ok(_) => {}
                    }
                    self.timers.heard();
                    self.lowat.read();
                    return Io::Read;
                }
                r = wr.write_buf(&mut self.wbuf), if write => {
                    if let Err(e) = r {
                        return Io::Ended(Disconnect::Io(e));
                    }
                    // Once started, a flush goes on until the buffer is empty.
                    self.flushing = !self.wbuf.is_empty();
                    if !self.flushing {
                        self.pending.all_sent();
                    }
                    self.timers.sent();
                }
                cmd = rx.recv(), if take_commands => return Io::Command(cmd),
                () = self.lowat.expired(), if self.lowat.waiting() => {
                    // Replies are trickling in below the mark: take what is there (a
                    // non-blocking read returns whatever has arrived, mark or not).
                    self.lowat.missed();
                    match rd.try_read_buf(&mut self.rbuf) {
                        Ok(0) => return Io::Ended(eof),
                        Ok(_) => {
                            self.timers.heard();
                            return Io::Read;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Io::Ended(Disconnect::Io(e)),
                    }
                }
                due = self.timers.tick() => match due {
                    Due::Nothing => {}
                    Due::CloseExpired => {
                        warn!("the server did not answer closeSession in time");
                        return Io::Ended(Disconnect::Closed);
                    }
                    Due::Dead => return Io::Ended(Disconnect::Timeout),
                    Due::Ping => {
                        let mut f = ops::start_frame(op::PING, 0);
                        ops::seal_frame(&mut f, XID_PING);
                        self.wbuf.extend_from_slice(&f);
                        // A ping is never corked: the server must hear from us.
                        self.flushing = true;
                    }
                },
                addr = async { self.probe.as_mut().expect("guarded").await }, if self.probe.is_some() => {
                    info!(%addr, "found a read-write server; moving there");
                    return Io::Ended(Disconnect::MoveTo(addr));
                }
            }
        }
    }
}
