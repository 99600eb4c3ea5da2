//! Self-test of the harness against real ZooKeeper servers: standalone
//! start, stop and restart; an ensemble's election and failover; read-only
//! mode; and every fault of the proxy, driven by hand-made protocol bytes
//! (this test does not depend on the wazoo client).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wazoo_tests::frames::{self, be_i32, be_i64, frame, put_string};
use wazoo_tests::{four_letter_word, shared_server, wait_until, Ensemble, FaultProxy, ZkServer};

const WAIT: Duration = Duration::from_secs(30);
/// How long a read must stay silent to count as "nothing arrives".
const SILENCE: Duration = Duration::from_millis(500);

const OP_CREATE: i32 = 1;
const OP_EXISTS: i32 = 3;
const OP_GET_DATA: i32 = 4;
const ERR_OK: i32 = 0;
const ERR_NO_NODE: i32 = -101;

// ---------------------------------------------------------------------------
// A minimal hand-made ZooKeeper client: just enough framing for the tests.

/// Reads one length-prefixed frame, failing after `WAIT`.
async fn read_frame(stream: &mut TcpStream) -> Vec<u8> {
    tokio::time::timeout(WAIT, frames::read_frame(stream))
        .await
        .expect("a frame in time")
        .expect("a whole frame before the end of the stream")
}

/// Waits until the peer closes: a read returns end-of-stream or an error.
async fn assert_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what}: the connection was not closed within {WAIT:?}"));
    match read {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("{what}: expected the connection closed, read {n} bytes"),
    }
}

/// Asserts nothing arrives for `SILENCE` (and the connection stays open).
async fn assert_silent(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    if let Ok(read) = tokio::time::timeout(SILENCE, stream.read(&mut buf)).await {
        panic!("{what}: expected silence, got {read:?}");
    }
}

/// A session opened by hand.
struct RawSession {
    stream: TcpStream,
    session_id: i64,
    passwd: Vec<u8>,
    timeout_ms: i32,
    read_only: bool,
}

impl RawSession {
    /// A new session (10 s timeout) that refuses read-only servers.
    async fn connect(addr: SocketAddr) -> RawSession {
        RawSession::handshake(addr, 0, &[0; 16], false)
            .await
            .expect("the server accepted a new session")
    }

    /// Sends a ConnectRequest for `session_id` (0: a new session); `None`
    /// if the server refuses (an empty answer, or none).
    async fn handshake(
        addr: SocketAddr,
        session_id: i64,
        passwd: &[u8],
        can_be_read_only: bool,
    ) -> Option<RawSession> {
        let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut req = Vec::new();
        req.extend_from_slice(&0i32.to_be_bytes()); // protocolVersion
        req.extend_from_slice(&0i64.to_be_bytes()); // lastZxidSeen
        req.extend_from_slice(&10_000i32.to_be_bytes()); // timeOut
        req.extend_from_slice(&session_id.to_be_bytes());
        req.extend_from_slice(&(passwd.len() as i32).to_be_bytes());
        req.extend_from_slice(passwd);
        req.push(u8::from(can_be_read_only));
        stream
            .write_all(&frame(&req))
            .await
            .expect("send ConnectRequest");
        let mut len = [0u8; 4];
        let read = tokio::time::timeout(WAIT, stream.read_exact(&mut len))
            .await
            .expect("an answer to the ConnectRequest in time");
        if read.is_err() {
            return None;
        }
        let mut resp = vec![0u8; be_i32(&len) as usize];
        stream.read_exact(&mut resp).await.expect("ConnectResponse");
        if resp.is_empty() {
            // ZooKeeper's refusal: an empty frame, then it closes.
            return None;
        }
        // protocolVersion, timeOut, sessionId, passwd, readOnly
        let passwd_len = be_i32(&resp[16..]) as usize;
        Some(RawSession {
            timeout_ms: be_i32(&resp[4..]),
            session_id: be_i64(&resp[8..]),
            passwd: resp[20..20 + passwd_len].to_vec(),
            read_only: resp.get(20 + passwd_len) == Some(&1),
            stream,
        })
    }

    async fn send(&mut self, xid: i32, opcode: i32, body: &[u8]) {
        let mut payload = xid.to_be_bytes().to_vec();
        payload.extend_from_slice(&opcode.to_be_bytes());
        payload.extend_from_slice(body);
        self.stream
            .write_all(&frame(&payload))
            .await
            .expect("send a request");
    }

    /// Sends a path request (`exists` or `getData`, no watch) without waiting.
    async fn send_path_request(&mut self, xid: i32, opcode: i32, path: &str) {
        let mut body = Vec::new();
        put_string(&mut body, path);
        body.push(0); // watch
        self.send(xid, opcode, &body).await;
    }

    /// Reads the next reply: (xid, err).
    async fn reply(&mut self) -> (i32, i32) {
        let r = read_frame(&mut self.stream).await;
        (be_i32(&r), be_i32(&r[12..]))
    }

    /// A request/reply round trip; returns the reply's error code.
    async fn path_request(&mut self, xid: i32, opcode: i32, path: &str) -> i32 {
        self.send_path_request(xid, opcode, path).await;
        let (rxid, err) = self.reply().await;
        assert_eq!(rxid, xid, "reply to the request just sent");
        err
    }

    async fn create(&mut self, xid: i32, path: &str) -> i32 {
        self.create_with_flags(xid, path, 0).await
    }

    /// `flags`: 0 persistent, 1 ephemeral.
    async fn create_with_flags(&mut self, xid: i32, path: &str, flags: i32) -> i32 {
        let mut body = Vec::new();
        put_string(&mut body, path);
        body.extend_from_slice(&0i32.to_be_bytes()); // data: empty buffer
        body.extend_from_slice(&1i32.to_be_bytes()); // one ACL
        body.extend_from_slice(&31i32.to_be_bytes()); // perms: all
        put_string(&mut body, "world");
        put_string(&mut body, "anyone");
        body.extend_from_slice(&flags.to_be_bytes());
        self.send(xid, OP_CREATE, &body).await;
        let (rxid, err) = self.reply().await;
        assert_eq!(rxid, xid);
        err
    }
}

// ---------------------------------------------------------------------------
// Servers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_server_serves_stops_and_restarts_on_the_same_port_with_its_data() {
    wazoo_tests::init_tracing();
    let t = Instant::now();
    let server = ZkServer::start().expect("start ZooKeeper");
    eprintln!("standalone start: {:?}", t.elapsed());
    let addr = server.addr();
    assert_eq!(server.connect_string(), addr.to_string());
    assert!(addr.ip().is_loopback());
    assert!(server.is_running());
    let srvr = server.four_letter("srvr").unwrap();
    assert!(srvr.contains("Mode: standalone"), "{srvr}");
    assert_eq!(server.four_letter("ruok").unwrap(), "imok");
    assert_eq!(server.four_letter("isro").unwrap(), "rw");

    let mut s = RawSession::connect(addr).await;
    assert!(s.session_id != 0);
    assert_eq!(s.timeout_ms, 10_000);
    assert_eq!(s.create(1, "/persist").await, ERR_OK);
    drop(s);

    server.stop();
    assert!(!server.is_running());
    assert!(
        server.four_letter("ruok").is_err(),
        "nothing listens any more"
    );
    assert!(server.data_dir().exists(), "stop keeps the data");
    server.stop(); // idempotent

    let t = Instant::now();
    server.start_again().expect("start again");
    eprintln!("standalone restart: {:?}", t.elapsed());
    assert!(server.start_again().is_err(), "it is already running");
    assert_eq!(server.addr(), addr, "same port");
    assert!(server
        .four_letter("srvr")
        .unwrap()
        .contains("Mode: standalone"));
    let mut s = RawSession::connect(addr).await;
    assert_eq!(s.path_request(1, OP_EXISTS, "/persist").await, ERR_OK);
    assert_eq!(s.path_request(2, OP_EXISTS, "/never").await, ERR_NO_NODE);
    drop(s);

    let dir = server.data_dir().parent().unwrap().to_path_buf();
    drop(server);
    if std::env::var_os("WAZOO_KEEP_TEST_DIRS").is_none() {
        assert!(!dir.exists(), "drop removes {}", dir.display());
    }
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "drop killed the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builder_settings_reach_the_server() {
    wazoo_tests::init_tracing();
    let server = ZkServer::builder()
        .tick_time(500)
        .max_session_timeout(3000)
        .extended_types(true)
        .start()
        .expect("start ZooKeeper");
    let conf = server.four_letter("conf").unwrap();
    assert!(conf.contains("tickTime=500"), "{conf}");
    assert!(conf.contains("minSessionTimeout=1000"), "{conf}");
    assert!(conf.contains("maxSessionTimeout=3000"), "{conf}");
    // A session asking for 10 s gets the maximum.
    let s = RawSession::connect(server.addr()).await;
    assert_eq!(s.timeout_ms, 3000);
    let envi = server.four_letter("envi").unwrap();
    assert!(
        envi.contains("java.version=17") || envi.contains("java.version="),
        "{envi}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_failures_are_loud_and_quote_the_log() {
    wazoo_tests::init_tracing();
    // ZooKeeper refuses tickTime=0 and exits.
    let err = format!(
        "{:#}",
        ZkServer::builder().tick_time(0).start().unwrap_err()
    );
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("log tail"), "{err}");
    assert!(err.contains("tickTime is not set"), "{err}");
    // Too short a wait names what was awaited.
    let err = ZkServer::builder()
        .startup_timeout(Duration::from_millis(1))
        .start()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("timed out after 1ms waiting for ZooKeeper on 127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("log tail"), "{err}");
}

fn count_modes(ens: &Ensemble) -> (usize, usize) {
    let modes: Vec<String> = (0..ens.len()).filter_map(|i| ens.mode(i).ok()).collect();
    let leaders = modes.iter().filter(|m| *m == "leader").count();
    let followers = modes.iter().filter(|m| *m == "follower").count();
    (leaders, followers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensemble_of_three_elects_one_leader_and_fails_over() {
    wazoo_tests::init_tracing();
    let t = Instant::now();
    let ens = Ensemble::start(3).expect("start an ensemble");
    eprintln!("ensemble of 3 start: {:?}", t.elapsed());
    assert_eq!(ens.len(), 3);
    let addrs: Vec<String> = (0..3).map(|i| ens.member_addr(i).to_string()).collect();
    assert_eq!(ens.connect_string(), addrs.join(","));
    assert_eq!(count_modes(&ens), (1, 2), "one leader, two followers");
    let leader = ens.leader().unwrap();
    assert_eq!(ens.mode(leader).unwrap(), "leader");

    // Writes through one member are seen through another.
    let mut a = RawSession::connect(ens.member_addr(0)).await;
    assert_eq!(a.create(1, "/shared").await, ERR_OK);
    drop(a);

    let t = Instant::now();
    ens.stop(leader);
    assert!(!ens.is_running(leader));
    assert!(ens.mode(leader).is_err(), "a stopped member has no mode");
    ens.wait_quorum(WAIT).expect("quorum again");
    eprintln!("failover after killing the leader: {:?}", t.elapsed());
    let new_leader = ens.leader().unwrap();
    assert_ne!(new_leader, leader);
    assert_eq!(count_modes(&ens), (1, 1));
    let other = (0..3).find(|i| *i != leader && *i != new_leader).unwrap();
    let mut b = RawSession::connect(ens.member_addr(other)).await;
    assert_eq!(b.path_request(1, OP_EXISTS, "/shared").await, ERR_OK);
    drop(b);

    let t = Instant::now();
    ens.start_again(leader).expect("restart the old leader");
    eprintln!("old leader rejoined: {:?}", t.elapsed());
    assert_eq!(ens.mode(leader).unwrap(), "follower");
    ens.wait_quorum(WAIT).unwrap();
    assert_eq!(count_modes(&ens), (1, 2));

    // Without a majority there is no quorum to wait for.
    ens.stop(new_leader);
    ens.stop(other);
    let err = ens.wait_quorum(WAIT).unwrap_err().to_string();
    assert!(err.contains("only 1 of 3"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cut_off_from_the_quorum_serves_read_only() {
    wazoo_tests::init_tracing();
    let ens = Ensemble::builder(3)
        .read_only(true)
        .start()
        .expect("start an ensemble");
    assert_eq!(ens.four_letter(0, "isro").unwrap(), "rw");
    let mut rw = RawSession::handshake(ens.member_addr(0), 0, &[0; 16], true)
        .await
        .expect("a session");
    assert!(!rw.read_only);
    assert_eq!(rw.create(1, "/before").await, ERR_OK);
    // An ephemeral upgrades the (local) session to a global one.
    assert_eq!(rw.create_with_flags(2, "/owner", 1).await, ERR_OK);
    ens.stop(1);
    ens.stop(2);
    let t = Instant::now();
    wait_until("member 0 serves read-only", WAIT, || {
        ens.mode(0).is_ok_and(|m| m == "read-only")
    })
    .await
    .unwrap();
    eprintln!("read-only after losing quorum: {:?}", t.elapsed());
    assert_eq!(ens.four_letter(0, "isro").unwrap(), "ro");

    // What ZooKeeper 3.8 does with sessions there: the global session
    // cannot move to the read-only server ("Refusing global session
    // reconnection in RO mode"), a client that does not accept read-only
    // servers is refused, and a new session from a client that does is
    // accepted, flagged read-only (this needs local sessions, which
    // `read_only(true)` turns on).
    let addr = ens.member_addr(0);
    let old = RawSession::handshake(addr, rw.session_id, &rw.passwd, true).await;
    assert!(
        old.is_none(),
        "the read-write session was not resumed read-only"
    );
    let strict = RawSession::handshake(addr, 0, &[0; 16], false).await;
    assert!(
        strict.is_none(),
        "a client refusing read-only servers is refused"
    );
    let mut ro = RawSession::handshake(addr, 0, &[0; 16], true)
        .await
        .expect("a new read-only session");
    assert!(ro.read_only);
    assert_eq!(ro.path_request(1, OP_EXISTS, "/before").await, ERR_OK);
    let t = Instant::now();
    ens.start_again(1).expect("member 1 back: quorum again");
    ens.wait_quorum(WAIT).unwrap();
    eprintln!("quorum back after restarting one member: {:?}", t.elapsed());
    assert_eq!(ens.four_letter(0, "isro").unwrap(), "rw");
}

// ---------------------------------------------------------------------------
// Proxy

/// Waits until the shared server's `cons` no longer lists a connection of
/// `session_id` (the proxy closed the upstream side too).
async fn server_forgets_connection(session_id: i64) {
    let needle = format!("sid=0x{session_id:x}");
    wait_until(
        &format!("the server drops the connection of {needle}"),
        WAIT,
        || {
            shared_server()
                .four_letter("cons")
                .is_ok_and(|cons| !cons.contains(&needle))
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_forwards_four_letter_words_and_sessions() {
    wazoo_tests::init_tracing();
    let proxy = FaultProxy::start(shared_server().addr()).unwrap();
    assert_eq!(proxy.upstream(), shared_server().addr());
    assert_eq!(proxy.connect_string(), proxy.addr().to_string());
    let answer = four_letter_word(proxy.addr(), "ruok", WAIT).unwrap();
    assert_eq!(answer, "imok");
    assert_eq!(proxy.accepted_total(), 1);
    wait_until("the 4lw connection is gone", WAIT, || {
        proxy.connection_count() == 0
    })
    .await
    .unwrap();

    let mut s = RawSession::connect(proxy.addr()).await;
    assert_eq!(proxy.connection_count(), 1);
    assert_eq!(s.path_request(1, OP_EXISTS, "/").await, ERR_OK);
    assert_eq!(s.path_request(2, OP_GET_DATA, "/zookeeper").await, ERR_OK);
    drop(s);
    wait_until("the session's connection is gone", WAIT, || {
        proxy.connection_count() == 0
    })
    .await
    .unwrap();
    assert_eq!(proxy.accepted_total(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_connections_closes_both_sides_and_new_ones_work() {
    wazoo_tests::init_tracing();
    let proxy = FaultProxy::start(shared_server().addr()).unwrap();
    let mut a = RawSession::connect(proxy.addr()).await;
    let mut b = RawSession::connect(proxy.addr()).await;
    assert_eq!(proxy.connection_count(), 2);
    let cons = shared_server().four_letter("cons").unwrap();
    assert!(
        cons.contains(&format!("sid=0x{:x}", a.session_id)),
        "{cons}"
    );
    proxy.drop_connections();
    assert_closed(&mut a.stream, "a").await;
    assert_closed(&mut b.stream, "b").await;
    wait_until("no proxied connection", WAIT, || {
        proxy.connection_count() == 0
    })
    .await
    .unwrap();
    // The server side was closed too: the server no longer lists them.
    server_forgets_connection(a.session_id).await;
    server_forgets_connection(b.session_id).await;
    let mut c = RawSession::connect(proxy.addr()).await;
    assert_eq!(c.path_request(1, OP_EXISTS, "/").await, ERR_OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_silences_connections_and_switching_it_off_closes_them() {
    wazoo_tests::init_tracing();
    let proxy = FaultProxy::start(shared_server().addr()).unwrap();
    let mut s = RawSession::connect(proxy.addr()).await;
    proxy.set_blackhole(true);
    s.send_path_request(1, OP_EXISTS, "/").await;
    assert_silent(&mut s.stream, "a request during the blackhole").await;

    // A new client is accepted but hears nothing, not even for a 4lw.
    let mut late = TcpStream::connect(proxy.addr()).await.unwrap();
    late.write_all(b"ruok").await.unwrap();
    assert_silent(&mut late, "a 4lw during the blackhole").await;
    assert_eq!(proxy.connection_count(), 2);

    proxy.set_blackhole(false);
    assert_closed(&mut s.stream, "the session's connection").await;
    assert_closed(&mut late, "the late connection").await;
    wait_until("no proxied connection", WAIT, || {
        proxy.connection_count() == 0
    })
    .await
    .unwrap();
    assert_eq!(
        four_letter_word(proxy.addr(), "ruok", WAIT).unwrap(),
        "imok"
    );
    let mut s = RawSession::connect(proxy.addr()).await;
    assert_eq!(s.path_request(1, OP_EXISTS, "/").await, ERR_OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_closes_new_connections_only() {
    wazoo_tests::init_tracing();
    let proxy = FaultProxy::start(shared_server().addr()).unwrap();
    let mut old = RawSession::connect(proxy.addr()).await;
    proxy.set_reject(true);
    let mut refused = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_closed(&mut refused, "a connection made while rejecting").await;
    // The proxy closes without reading: the client sees end-of-stream, or a
    // reset since its "ruok" was never read.
    if let Ok(answer) = four_letter_word(proxy.addr(), "ruok", WAIT) {
        assert!(answer.is_empty(), "{answer:?}");
    }
    assert_eq!(
        proxy.accepted_total(),
        3,
        "rejected connections are counted"
    );
    assert_eq!(
        old.path_request(1, OP_EXISTS, "/").await,
        ERR_OK,
        "an existing connection is untouched"
    );
    assert_eq!(proxy.connection_count(), 1);
    proxy.set_reject(false);
    assert_eq!(
        four_letter_word(proxy.addr(), "ruok", WAIT).unwrap(),
        "imok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_applies_to_both_directions() {
    wazoo_tests::init_tracing();
    let proxy = FaultProxy::start(shared_server().addr()).unwrap();
    let mut s = RawSession::connect(proxy.addr()).await;
    let t = Instant::now();
    assert_eq!(s.path_request(1, OP_EXISTS, "/").await, ERR_OK);
    let fast = t.elapsed();
    proxy.set_delay(Duration::from_millis(200));
    let t = Instant::now();
    // Two requests back to back: order is kept, both delayed once each way.
    s.send_path_request(2, OP_EXISTS, "/").await;
    s.send_path_request(3, OP_GET_DATA, "/zookeeper").await;
    assert_eq!(s.reply().await, (2, ERR_OK));
    assert_eq!(s.reply().await, (3, ERR_OK));
    let slow = t.elapsed();
    assert!(
        slow >= Duration::from_millis(400),
        "round trip took {slow:?}"
    );
    assert!(
        slow < Duration::from_secs(5),
        "round trip took {slow:?} (fast: {fast:?})"
    );
    proxy.set_delay(Duration::ZERO);
    let t = Instant::now();
    assert_eq!(s.path_request(4, OP_EXISTS, "/").await, ERR_OK);
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "no delay any more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_after_reply_to_closes_right_after_the_armed_reply_once() {
    wazoo_tests::init_tracing();
    let proxy = FaultProxy::start(shared_server().addr()).unwrap();
    let mut s = RawSession::connect(proxy.addr()).await;
    assert_eq!(
        s.path_request(1, OP_EXISTS, "/").await,
        ERR_OK,
        "before arming"
    );

    proxy.cut_after_reply_to(OP_EXISTS);
    assert!(proxy.cut_armed());
    // Another request type passes and the connection stays open.
    assert_eq!(s.path_request(2, OP_GET_DATA, "/zookeeper").await, ERR_OK);
    assert_eq!(proxy.cuts_total(), 0);
    assert!(proxy.cut_armed());
    // The armed type: the reply arrives whole, then the connection closes.
    assert_eq!(s.path_request(3, OP_EXISTS, "/").await, ERR_OK);
    assert_closed(&mut s.stream, "after the exists reply").await;
    server_forgets_connection(s.session_id).await;
    assert_eq!(proxy.cuts_total(), 1);
    assert!(!proxy.cut_armed());
    wait_until("no proxied connection", WAIT, || {
        proxy.connection_count() == 0
    })
    .await
    .unwrap();

    // One shot: the same request type no longer cuts.
    let mut s = RawSession::connect(proxy.addr()).await;
    assert_eq!(s.path_request(1, OP_EXISTS, "/").await, ERR_OK);
    assert_eq!(s.path_request(2, OP_EXISTS, "/").await, ERR_OK);
    assert_eq!(proxy.cuts_total(), 1);

    // A reply that is an error still counts as the reply; pipelined
    // requests behind it are lost with the connection.
    proxy.cut_after_reply_to(OP_EXISTS);
    s.send_path_request(3, OP_EXISTS, "/missing").await;
    s.send_path_request(4, OP_GET_DATA, "/zookeeper").await;
    assert_eq!(s.reply().await, (3, ERR_NO_NODE));
    assert_closed(&mut s.stream, "after the failed exists reply").await;
    assert_eq!(proxy.cuts_total(), 2);

    // Disarming works too.
    let mut s = RawSession::connect(proxy.addr()).await;
    proxy.cut_after_reply_to(OP_EXISTS);
    proxy.disarm_cut();
    assert_eq!(s.path_request(1, OP_EXISTS, "/").await, ERR_OK);
    assert_eq!(s.path_request(2, OP_EXISTS, "/").await, ERR_OK);
    assert_eq!(proxy.cuts_total(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_proxy_closes_its_connections_and_port() {
    wazoo_tests::init_tracing();
    let proxy = FaultProxy::start(shared_server().addr()).unwrap();
    let addr = proxy.addr();
    let mut s = RawSession::connect(addr).await;
    drop(proxy);
    assert_closed(&mut s.stream, "after the proxy was dropped").await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
}
