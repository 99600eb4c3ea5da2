//! A fault-injecting TCP proxy to put between a ZooKeeper client and one
//! server.
//!
//! The proxy runs on its own OS thread with its own current-thread tokio
//! runtime, so a test whose runtime is blocked (or a client that stalls its
//! runtime) never stalls the proxy. Every control method is a plain,
//! non-blocking call usable from sync or async code; the connections react
//! to it a moment later on the proxy thread, so assertions on its effects
//! should wait for them (e.g. with [`wait_until`](crate::wait_until) on
//! [`FaultProxy::connection_count`]).
//!
//! Each proxied connection is two pipelines (client to server, server to
//! client): a reader that timestamps the bytes and a writer that forwards
//! them once the configured delay has passed, in order. When either side
//! closes, whatever was already queued towards the other side is flushed,
//! then both sides are closed. Both pipelines also follow ZooKeeper's
//! framing (a 4-byte big-endian length, then the payload), which is how
//! [`FaultProxy::cut_after_reply_to`] recognises requests and replies; the
//! bytes themselves are forwarded untouched, so non-ZooKeeper traffic such
//! as four-letter words passes through as well.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// How long the proxy tries to reach the upstream server for a new client.
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read buffer size per direction.
const CHUNK: usize = 64 * 1024;

/// Control state that connections watch.
#[derive(Clone, Copy, Debug, Default)]
struct Control {
    /// Forward nothing while set.
    blackhole: bool,
    /// Incremented each time the blackhole is switched on.
    blackhole_gen: u64,
    /// Incremented by `drop_connections`.
    drop_epoch: u64,
}

/// A one-shot `cut_after_reply_to` trigger.
#[derive(Clone, Copy, Debug)]
struct Armed {
    id: u64,
    opcode: i32,
}

/// State shared by the handle and the proxy thread.
struct Shared {
    control: watch::Sender<Control>,
    reject: AtomicBool,
    delay_nanos: AtomicU64,
    cut: Mutex<Option<Armed>>,
    next_arm_id: AtomicU64,
    cuts: AtomicU64,
    connections: AtomicUsize,
    accepted: AtomicU64,
}

impl Shared {
    fn cut(&self) -> MutexGuard<'_, Option<Armed>> {
        self.cut.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn blackholed(&self) -> bool {
        self.control.borrow().blackhole
    }

    fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay_nanos.load(Ordering::Relaxed))
    }
}

/// A fault-injecting TCP proxy in front of one ZooKeeper server.
///
/// Clients connect to [`FaultProxy::addr`]; the proxy opens one upstream
/// connection per client. Dropping the proxy stops its thread and closes
/// every connection and the listening socket.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy listening on a fresh `127.0.0.1` port that forwards to
    /// `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<FaultProxy> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .context("binding the fault proxy's listening socket")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the fault proxy's runtime")?;
        let shared = Arc::new(Shared {
            control: watch::Sender::new(Control::default()),
            reject: AtomicBool::new(false),
            delay_nanos: AtomicU64::new(0),
            cut: Mutex::new(None),
            next_arm_id: AtomicU64::new(1),
            cuts: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
        });
        let (shutdown, shutdown_rx) = oneshot::channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(accept_loop(listener, upstream, thread_shared, shutdown_rx));
                // Dropping the runtime drops every connection task, closing
                // their sockets.
                drop(runtime);
            })
            .context("spawning the fault proxy thread")?;
        tracing::debug!(%addr, %upstream, "fault proxy started");
        Ok(FaultProxy {
            addr,
            upstream,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `"127.0.0.1:PORT"` of the proxy, for a client's connect string.
    pub fn connect_string(&self) -> String {
        self.addr.to_string()
    }

    /// The server the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Closes every current proxied connection, both sides, at once. New
    /// connections are accepted as usual.
    pub fn drop_connections(&self) {
        self.shared.control.send_modify(|c| c.drop_epoch += 1);
    }

    /// While on, nothing is forwarded in either direction: bytes are
    /// discarded, and new clients are accepted but never connected upstream,
    /// so both ends see a silent peer, as in a network partition. Switching
    /// it off closes every connection that lived through it (its stream
    /// lost data) and lets new connections work normally.
    pub fn set_blackhole(&self, on: bool) {
        self.shared.control.send_modify(|c| {
            if on && !c.blackhole {
                c.blackhole_gen += 1;
            }
            c.blackhole = on;
        });
    }

    /// While on, new connections are accepted and closed at once (the
    /// client sees end-of-stream before any byte). Existing connections are
    /// left alone; combine with [`FaultProxy::drop_connections`] to keep a
    /// client away from the server until its session expires.
    pub fn set_reject(&self, on: bool) {
        self.shared.reject.store(on, Ordering::SeqCst);
    }

    /// Delays forwarded data in both directions by `delay` (order is kept).
    /// Applies to bytes read from now on.
    pub fn set_delay(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.shared.delay_nanos.store(nanos, Ordering::SeqCst);
    }

    /// Arms a one-shot trigger: once a request of type `opcode` (such as 1
    /// for create, 3 for exists, 4 for getData) passes from a client to the
    /// server, and the server's reply with the same xid has been forwarded
    /// to that client, the proxy closes that connection (both sides). Fires
    /// once per arming; arming again replaces an unfired trigger. Requests
    /// that passed before the arming do not count.
    pub fn cut_after_reply_to(&self, opcode: i32) {
        let id = self.shared.next_arm_id.fetch_add(1, Ordering::SeqCst);
        *self.shared.cut() = Some(Armed { id, opcode });
    }

    /// Disarms an unfired [`FaultProxy::cut_after_reply_to`] trigger.
    pub fn disarm_cut(&self) {
        *self.shared.cut() = None;
    }

    /// Whether a [`FaultProxy::cut_after_reply_to`] trigger is armed and
    /// has not fired yet.
    pub fn cut_armed(&self) -> bool {
        self.shared.cut().is_some()
    }

    /// How many times a [`FaultProxy::cut_after_reply_to`] trigger fired.
    pub fn cuts_total(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Client connections currently open through the proxy (including
    /// blackholed ones; not counting rejected ones).
    pub fn connection_count(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Client connections accepted since the start, including those closed
    /// at once by [`FaultProxy::set_reject`].
    pub fn accepted_total(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .field("connections", &self.connection_count())
            .finish()
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("fault proxy cannot use its listener: {e}");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        let client = match accepted {
            Ok((client, _)) => client,
            Err(e) => {
                tracing::warn!("fault proxy accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if shared.reject.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let guard = ConnGuard(Arc::clone(&shared));
        let fate = Fate::new(&shared);
        tokio::spawn(run_connection(
            client,
            upstream,
            Arc::clone(&shared),
            fate,
            guard,
        ));
    }
}

/// Decrements the open-connection count when a connection task ends (or is
/// dropped with the runtime).
struct ConnGuard(Arc<Shared>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Decides when the control state dooms a connection.
struct Fate {
    rx: watch::Receiver<Control>,
    drop_epoch: u64,
    blackhole_gen: u64,
    tainted: bool,
}

impl Fate {
    /// Captured when the connection is accepted.
    fn new(shared: &Shared) -> Fate {
        let rx = shared.control.subscribe();
        let c = *rx.borrow();
        Fate {
            rx,
            drop_epoch: c.drop_epoch,
            blackhole_gen: c.blackhole_gen,
            tainted: c.blackhole,
        }
    }

    /// Completes when the connection must be closed: `drop_connections`
    /// was called, or a blackhole it lived through was switched off.
    async fn doomed(&mut self) {
        loop {
            let c = *self.rx.borrow_and_update();
            if c.drop_epoch != self.drop_epoch {
                return;
            }
            if c.blackhole || c.blackhole_gen != self.blackhole_gen {
                self.tainted = true;
            }
            if self.tainted && !c.blackhole {
                return;
            }
            if self.rx.changed().await.is_err() {
                return;
            }
        }
    }
}

async fn run_connection(
    client: TcpStream,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    mut fate: Fate,
    _guard: ConnGuard,
) {
    let _ = client.set_nodelay(true);
    if fate.tainted {
        // Accepted during a blackhole: the server never hears of it.
        let (mut rd, _wr) = client.into_split();
        tokio::select! {
            _ = drain(&mut rd) => {}
            _ = fate.doomed() => {}
        }
        return;
    }
    let server = tokio::select! {
        _ = fate.doomed() => return,
        s = tokio::time::timeout(UPSTREAM_CONNECT_TIMEOUT, TcpStream::connect(upstream)) => s,
    };
    let server = match server {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%upstream, "fault proxy cannot reach upstream: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(%upstream, "fault proxy timed out connecting upstream");
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let (client_rd, client_wr) = client.into_split();
    let (server_rd, server_wr) = server.into_split();
    // (arming id, xid) of requests that may trigger a cut once answered.
    let pending: Mutex<Vec<(u64, i32)>> = Mutex::new(Vec::new());
    let ctx = Pipe {
        shared: &shared,
        pending: &pending,
    };
    let (up_tx, up_rx) = mpsc::unbounded_channel();
    let (down_tx, down_rx) = mpsc::unbounded_channel();
    tokio::select! {
        _ = fate.doomed() => {}
        _ = ctx.pump(client_rd, up_tx, up_rx, server_wr, Direction::Request) => {}
        _ = ctx.pump(server_rd, down_tx, down_rx, client_wr, Direction::Reply) => {}
    }
    // Dropping the halves closes both sockets.
}

/// Reads and discards until end-of-stream or an error.
async fn drain(rd: &mut OwnedReadHalf) {
    let mut buf = vec![0u8; CHUNK];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    /// Client to server: frames after the first start with `{xid, type}`.
    Request,
    /// Server to client: frames after the first start with `{xid, zxid, err}`.
    Reply,
}

/// Bytes on their way through one direction.
enum Item {
    Data {
        bytes: Bytes,
        due: Instant,
        /// Offsets (within `bytes`) just past the end of each reply frame
        /// that ends in this chunk, with the reply's xid.
        reply_ends: Vec<(usize, i32)>,
    },
    /// The sender closed its side (or failed).
    Eof,
}

/// Per-connection context shared by both directions.
struct Pipe<'a> {
    shared: &'a Shared,
    pending: &'a Mutex<Vec<(u64, i32)>>,
}

impl Pipe<'_> {
    fn pending(&self) -> MutexGuard<'_, Vec<(u64, i32)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one direction until its writer is done (the source closed and
    /// its queued bytes were flushed, a write failed, or a cut fired).
    async fn pump(
        &self,
        rd: OwnedReadHalf,
        tx: mpsc::UnboundedSender<Item>,
        rx: mpsc::UnboundedReceiver<Item>,
        wr: OwnedWriteHalf,
        dir: Direction,
    ) {
        tokio::select! {
            _ = self.read_side(rd, tx, dir) => {}
            _ = self.write_side(wr, rx) => {}
        }
    }

    /// Reads, parses and queues; never returns (after end-of-stream it
    /// queues [`Item::Eof`] and waits for the writer to finish).
    async fn read_side(
        &self,
        mut rd: OwnedReadHalf,
        tx: mpsc::UnboundedSender<Item>,
        dir: Direction,
    ) {
        let mut parser = FrameParser::new(dir);
        let mut buf = BytesMut::with_capacity(CHUNK);
        loop {
            buf.reserve(CHUNK);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let bytes = buf.split().freeze();
            let mut reply_ends = Vec::new();
            let mut requests = Vec::new();
            parser.feed(&bytes, |event| match event {
                FrameEvent::Request { xid, opcode } => requests.push((xid, opcode)),
                FrameEvent::ReplyEnd { end, xid } => reply_ends.push((end, xid)),
            });
            if self.shared.blackholed() {
                continue;
            }
            if !requests.is_empty() {
                if let Some(armed) = *self.shared.cut() {
                    let mut pending = self.pending();
                    for (xid, opcode) in requests {
                        if opcode == armed.opcode {
                            pending.push((armed.id, xid));
                        }
                    }
                }
            }
            let due = Instant::now() + self.shared.delay();
            let item = Item::Data {
                bytes,
                due,
                reply_ends,
            };
            if tx.send(item).is_err() {
                break;
            }
        }
        let _ = tx.send(Item::Eof);
        std::future::pending::<()>().await;
    }

    /// Forwards queued bytes when due; returns when done.
    async fn write_side(&self, mut wr: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Item>) {
        while let Some(item) = rx.recv().await {
            let (bytes, due, reply_ends) = match item {
                Item::Eof => {
                    let _ = wr.shutdown().await;
                    return;
                }
                Item::Data {
                    bytes,
                    due,
                    reply_ends,
                } => (bytes, due, reply_ends),
            };
            tokio::time::sleep_until(due).await;
            if self.shared.blackholed() {
                continue;
            }
            if let Some(end) = self.cut_point(&reply_ends) {
                let _ = wr.write_all(&bytes[..end]).await;
                let _ = wr.flush().await;
                tracing::debug!("fault proxy cut a connection after a reply");
                return;
            }
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
    }

    /// Where to cut this chunk, if it ends the reply to an armed request:
    /// claims (disarms) the trigger.
    fn cut_point(&self, reply_ends: &[(usize, i32)]) -> Option<usize> {
        if reply_ends.is_empty() {
            return None;
        }
        let mut pending = self.pending();
        if pending.is_empty() {
            return None;
        }
        let mut cut = self.shared.cut();
        let Some(armed) = *cut else {
            pending.clear();
            return None;
        };
        pending.retain(|(id, _)| *id == armed.id);
        let end = reply_ends
            .iter()
            .find(|(_, xid)| pending.iter().any(|(_, p)| p == xid))
            .map(|(end, _)| *end)?;
        *cut = None;
        pending.clear();
        self.shared.cuts.fetch_add(1, Ordering::SeqCst);
        Some(end)
    }
}

/// What the framing parser noticed.
#[derive(Debug, PartialEq, Eq)]
enum FrameEvent {
    /// A request header was read (client to server).
    Request { xid: i32, opcode: i32 },
    /// A reply frame ended at this offset of the chunk (server to client).
    ReplyEnd { end: usize, xid: i32 },
}

/// Follows ZooKeeper's framing in a byte stream without buffering payloads:
/// only the first bytes of each frame (its header) are kept.
#[derive(Debug)]
struct FrameParser {
    dir: Direction,
    /// The next frame is the first of the connection (connect request or
    /// response, which has no header).
    first: bool,
    len_buf: [u8; 4],
    len_have: usize,
    /// Inside a frame: payload bytes still to come.
    remaining: Option<u64>,
    header: [u8; 8],
    header_have: usize,
    header_need: usize,
}

impl FrameParser {
    fn new(dir: Direction) -> FrameParser {
        FrameParser {
            dir,
            first: true,
            len_buf: [0; 4],
            len_have: 0,
            remaining: None,
            header: [0; 8],
            header_have: 0,
            header_need: 0,
        }
    }

    fn feed(&mut self, chunk: &[u8], mut on: impl FnMut(FrameEvent)) {
        let mut i = 0;
        while i < chunk.len() {
            match self.remaining {
                None => {
                    let take = (4 - self.len_have).min(chunk.len() - i);
                    self.len_buf[self.len_have..self.len_have + take]
                        .copy_from_slice(&chunk[i..i + take]);
                    self.len_have += take;
                    i += take;
                    if self.len_have == 4 {
                        self.len_have = 0;
                        let len = u64::try_from(i32::from_be_bytes(self.len_buf)).unwrap_or(0);
                        let full_header = match self.dir {
                            _ if self.first => 0,
                            Direction::Request => 8,
                            Direction::Reply => 4,
                        };
                        self.first = false;
                        self.header_have = 0;
                        self.header_need = full_header.min(len as usize);
                        self.remaining = Some(len);
                        if len == 0 {
                            self.frame_done(i, &mut on);
                        }
                    }
                }
                Some(remaining) => {
                    let take =
                        (chunk.len() - i).min(usize::try_from(remaining).unwrap_or(usize::MAX));
                    if self.header_have < self.header_need {
                        let h = (self.header_need - self.header_have).min(take);
                        self.header[self.header_have..self.header_have + h]
                            .copy_from_slice(&chunk[i..i + h]);
                        self.header_have += h;
                        if self.header_have == 8 && self.dir == Direction::Request {
                            on(FrameEvent::Request {
                                xid: self.be_i32(0),
                                opcode: self.be_i32(4),
                            });
                        }
                    }
                    i += take;
                    let remaining = remaining - take as u64;
                    self.remaining = Some(remaining);
                    if remaining == 0 {
                        self.frame_done(i, &mut on);
                    }
                }
            }
        }
    }

    fn frame_done(&mut self, end: usize, on: &mut impl FnMut(FrameEvent)) {
        if self.dir == Direction::Reply && self.header_have >= 4 {
            on(FrameEvent::ReplyEnd {
                end,
                xid: self.be_i32(0),
            });
        }
        self.remaining = None;
        self.header_have = 0;
        self.header_need = 0;
    }

    fn be_i32(&self, at: usize) -> i32 {
        i32::from_be_bytes(self.header[at..at + 4].try_into().expect("4 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn request(xid: i32, opcode: i32, body: &[u8]) -> Vec<u8> {
        let mut p = xid.to_be_bytes().to_vec();
        p.extend_from_slice(&opcode.to_be_bytes());
        p.extend_from_slice(body);
        frame(&p)
    }

    fn reply(xid: i32, body: &[u8]) -> Vec<u8> {
        let mut p = xid.to_be_bytes().to_vec();
        p.extend_from_slice(&7i64.to_be_bytes());
        p.extend_from_slice(&0i32.to_be_bytes());
        p.extend_from_slice(body);
        frame(&p)
    }

    /// Feeds `stream` in pieces of `step` bytes; events carry offsets
    /// relative to the whole stream.
    fn events(dir: Direction, stream: &[u8], step: usize) -> Vec<FrameEvent> {
        let mut parser = FrameParser::new(dir);
        let mut out = Vec::new();
        for (n, piece) in stream.chunks(step).enumerate() {
            parser.feed(piece, |e| {
                out.push(match e {
                    FrameEvent::ReplyEnd { end, xid } => FrameEvent::ReplyEnd {
                        end: end + n * step,
                        xid,
                    },
                    other => other,
                })
            });
        }
        out
    }

    #[test]
    fn parses_requests_in_any_split() {
        let mut stream = frame(&[0u8; 45]); // connect request
        stream.extend(request(1, 3, b"\0\0\0\x01/\0"));
        stream.extend(request(-2, 11, b""));
        stream.extend(request(2, 4, b"\0\0\0\x01/\0"));
        for step in 1..stream.len() {
            assert_eq!(
                events(Direction::Request, &stream, step),
                vec![
                    FrameEvent::Request { xid: 1, opcode: 3 },
                    FrameEvent::Request {
                        xid: -2,
                        opcode: 11
                    },
                    FrameEvent::Request { xid: 2, opcode: 4 },
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn parses_reply_ends_in_any_split() {
        let mut stream = frame(&[0u8; 36]); // connect response
        let a = reply(1, b"stat-bytes");
        let b = reply(-1, b"");
        stream.extend(&a);
        let end_a = stream.len();
        stream.extend(&b);
        let end_b = stream.len();
        stream.extend(frame(&[])); // an empty frame: no xid
        for step in 1..=stream.len() {
            assert_eq!(
                events(Direction::Reply, &stream, step),
                vec![
                    FrameEvent::ReplyEnd { end: end_a, xid: 1 },
                    FrameEvent::ReplyEnd {
                        end: end_b,
                        xid: -1
                    },
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn four_letter_words_do_not_confuse_the_parser() {
        assert!(events(Direction::Request, b"ruok", 4).is_empty());
        assert!(events(Direction::Reply, b"imok", 4).is_empty());
    }
}
