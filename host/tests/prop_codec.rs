//! Property tests of the wire codec through the public API: a scripted ZooKeeper on a loopback
//! socket answers the client with replies this file encodes itself, and decodes the requests the
//! client sends. Every request and every response shape makes a round trip: what the client
//! encodes is what an independent jute reader reads, and what an independent jute writer encodes
//! is what the client returns. The client runs under a chroot, so paths are also checked to be
//! prefixed on the way out and stripped on the way in.
//!
//! The codec's internals (SetWatches2 batching, the handshake records) have their own property
//! tests in `src/proto/proptests.rs`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use wazoo::{
    Acl, Client, ClientInfo, CreateMode, CreateOptions, Error, Op, OpResult, Perms, ReadOp,
    ReadResult, Stat,
};

const CHROOT: &str = "/chroot/r";
/// Cases per property: enough to reach the odd shapes, few enough to keep `cargo test` quick.
const CASES: u32 = 256;

// ---- an independent jute writer and reader ----

#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bool(&mut self, v: bool) -> &mut Self {
        self.0.push(u8::from(v));
        self
    }
    fn buf(&mut self, b: &[u8]) -> &mut Self {
        self.i32(b.len() as i32);
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.buf(s.as_bytes())
    }
    fn strs(&mut self, v: &[String]) -> &mut Self {
        self.i32(v.len() as i32);
        for s in v {
            self.str(s);
        }
        self
    }
    fn stat(&mut self, s: &Stat) -> &mut Self {
        self.i64(s.czxid)
            .i64(s.mzxid)
            .i64(s.ctime)
            .i64(s.mtime)
            .i32(s.version)
            .i32(s.cversion)
            .i32(s.aversion)
            .i64(s.ephemeral_owner)
            .i32(s.data_length)
            .i32(s.num_children)
            .i64(s.pzxid)
    }
    fn acl(&mut self, acl: &[Acl]) -> &mut Self {
        self.i32(acl.len() as i32);
        for a in acl {
            self.i32(a.perms.bits()).str(&a.id.scheme).str(&a.id.id);
        }
        self
    }
    /// A multi header.
    fn header(&mut self, ty: i32, done: bool, err: i32) -> &mut Self {
        self.i32(ty).bool(done).i32(err)
    }
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

struct R<'a>(&'a [u8]);

impl R<'_> {
    fn bytes(&mut self, n: usize) -> &[u8] {
        assert!(self.0.len() >= n, "request truncated: {n} bytes wanted");
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.bytes(4).try_into().unwrap())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.bytes(8).try_into().unwrap())
    }
    fn bool(&mut self) -> bool {
        match self.bytes(1)[0] {
            0 => false,
            1 => true,
            b => panic!("a jute boolean is 0 or 1, got {b}"),
        }
    }
    fn buf(&mut self) -> Vec<u8> {
        let n = self.i32();
        assert!(n >= 0, "the client never sends a null buffer");
        self.bytes(n as usize).to_vec()
    }
    fn str(&mut self) -> String {
        String::from_utf8(self.buf()).expect("UTF-8")
    }
    fn acl(&mut self) -> Vec<Acl> {
        let n = self.i32();
        (0..n)
            .map(|_| {
                let perms = Perms::from_bits(self.i32());
                let scheme = self.str();
                let id = self.str();
                Acl::new(perms, &scheme, &id)
            })
            .collect()
    }
    fn end(&self) {
        assert!(self.0.is_empty(), "{} trailing request bytes", self.0.len());
    }
}

// ---- a scripted ZooKeeper ----

/// What the scripted server received: the op code and the body after it.
struct Request {
    opcode: i32,
    body: Vec<u8>,
}

/// A reply: the header's error code and the body.
type Reply = (i32, Vec<u8>);

/// One client connected to a scripted server that answers each request with the next queued
/// reply (pings and the close request are answered on its own).
struct Fixture {
    rt: tokio::runtime::Runtime,
    client: Client,
    requests: mpsc::Receiver<Request>,
    replies: mpsc::Sender<Reply>,
}

fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut b = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut b).ok()?;
    Some(b)
}

fn write_frame(s: &mut TcpStream, body: &[u8]) -> Option<()> {
    let mut f = (body.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    s.write_all(&f).ok()
}

/// Serves connections one after the other until the test drops its reply sender.
fn serve(listener: TcpListener, requests: mpsc::Sender<Request>, replies: mpsc::Receiver<Reply>) {
    let mut zxid = 0i64;
    while let Ok((mut s, _)) = listener.accept() {
        let _ = s.set_nodelay(true);
        if read_frame(&mut s).is_none() {
            continue;
        }
        let mut hs = W::default();
        hs.i32(0).i32(30_000).i64(0x5eed).buf(&[7; 16]).bool(false);
        if write_frame(&mut s, &hs.take()).is_none() {
            continue;
        }
        while let Some(f) = read_frame(&mut s) {
            let mut r = R(&f);
            let xid = r.i32();
            let opcode = r.i32();
            zxid += 1;
            let (err, body) = match opcode {
                -11 => {
                    let _ = write_frame(&mut s, &W::default().i32(xid).i64(zxid).i32(0).take());
                    break;
                }
                11 => (0, Vec::new()), // ping
                _ => {
                    if requests
                        .send(Request {
                            opcode,
                            body: r.0.to_vec(),
                        })
                        .is_err()
                    {
                        return;
                    }
                    match replies.recv() {
                        Ok(reply) => reply,
                        Err(_) => return,
                    }
                }
            };
            let mut w = W::default();
            w.i32(xid).i64(zxid).i32(err);
            w.0.extend_from_slice(&body);
            if write_frame(&mut s, &w.take()).is_none() {
                break;
            }
        }
    }
}

impl Fixture {
    fn new() -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (req_tx, requests) = mpsc::channel();
        let (replies, rep_rx) = mpsc::channel();
        std::thread::spawn(move || serve(listener, req_tx, rep_rx));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt
            .block_on(
                Client::builder(&format!("127.0.0.1:{port}{CHROOT}"))
                    .session_timeout(Duration::from_secs(30))
                    .connect(),
            )
            .expect("connect to the scripted server");
        Fixture {
            rt,
            client,
            requests,
            replies,
        }
    }

    /// Queues the reply to the next request, runs `call`, and returns its result with the
    /// request the server saw.
    fn call<T>(
        &self,
        reply: Reply,
        call: impl std::future::IntoFuture<Output = T>,
    ) -> (T, Request) {
        self.replies.send(reply).unwrap();
        let out = self.rt.block_on(call.into_future());
        let req = self
            .requests
            .recv_timeout(Duration::from_secs(30))
            .expect("the request reached the server");
        (out, req)
    }

    fn run<S: Strategy>(&self, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
    where
        S::Value: std::fmt::Debug,
    {
        TestRunner::new(Config::with_cases(CASES))
            .run(&strategy, test)
            .unwrap();
    }
}

/// The server's view of a user path under the chroot.
fn server_path(p: &str) -> String {
    if p == "/" {
        CHROOT.to_string()
    } else {
        format!("{CHROOT}{p}")
    }
}

// ---- strategies ----

fn segment() -> impl Strategy<Value = String> {
    // Letters, digits, punctuation, non-ASCII letters; never `.` or `..` alone.
    "[a-zA-Z0-9_.:é€ж-]{1,10}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("/".to_string()),
        9 => prop::collection::vec(segment(), 1..5).prop_map(|v| format!("/{}", v.join("/"))),
    ]
}

fn stat() -> impl Strategy<Value = Stat> {
    (
        (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
        (any::<i32>(), any::<i32>(), any::<i32>()),
        (any::<i64>(), any::<i32>(), any::<i32>(), any::<i64>()),
    )
        .prop_map(
            |(
                (czxid, mzxid, ctime, mtime),
                (version, cversion, aversion),
                (ephemeral_owner, data_length, num_children, pzxid),
            )| Stat {
                czxid,
                mzxid,
                ctime,
                mtime,
                version,
                cversion,
                aversion,
                ephemeral_owner,
                data_length,
                num_children,
                pzxid,
            },
        )
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..300)
}

fn acl() -> impl Strategy<Value = Vec<Acl>> {
    prop::collection::vec(
        (any::<i32>(), any::<String>(), any::<String>())
            .prop_map(|(p, s, i)| Acl::new(Perms::from_bits(p), &s, &i)),
        1..5,
    )
}

fn version() -> impl Strategy<Value = Option<i32>> {
    prop::option::of(0..i32::MAX)
}

fn create_mode() -> impl Strategy<Value = CreateMode> {
    prop_oneof![
        Just(CreateMode::Persistent),
        Just(CreateMode::Ephemeral),
        Just(CreateMode::PersistentSequential),
        Just(CreateMode::EphemeralSequential),
        Just(CreateMode::Container),
        (1..i64::MAX).prop_map(CreateMode::PersistentWithTtl),
        (1..i64::MAX).prop_map(CreateMode::PersistentSequentialWithTtl),
    ]
}

/// The wire flags and op code of a create mode, as ZooKeeper defines them.
fn mode_wire(m: CreateMode) -> (i32, i32, Option<i64>) {
    match m {
        CreateMode::Persistent => (15, 0, None),
        CreateMode::Ephemeral => (15, 1, None),
        CreateMode::PersistentSequential => (15, 2, None),
        CreateMode::EphemeralSequential => (15, 3, None),
        CreateMode::Container => (19, 4, None),
        CreateMode::PersistentWithTtl(t) => (21, 5, Some(t)),
        CreateMode::PersistentSequentialWithTtl(t) => (21, 6, Some(t)),
        other => panic!("a mode this test does not know: {other:?}"),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (path(), data(), acl(), create_mode()).prop_map(|(p, d, a, m)| Op::Create {
            path: p,
            data: d,
            acl: a,
            mode: m
        }),
        (path(), -1..100i32).prop_map(|(p, v)| Op::delete(p, v)),
        (path(), data(), -1..100i32).prop_map(|(p, d, v)| Op::set_data(p, d, v)),
        (path(), any::<i32>()).prop_map(|(p, v)| Op::check(p, v)),
    ]
}

/// A ZooKeeper error code that is a real failure (not 0, not RuntimeInconsistency).
fn failure_code() -> impl Strategy<Value = i32> {
    prop_oneof![
        Just(-101),
        Just(-102),
        Just(-103),
        Just(-108),
        Just(-110),
        Just(-111),
        Just(-114),
        (-200..-1i32).prop_filter("not RuntimeInconsistency", |c| *c != -2),
    ]
}

// ---- the properties ----

#[test]
fn get_data_round_trips() {
    let f = Fixture::new();
    f.run((path(), data(), stat()), |(p, d, s)| {
        let (got, req) = f.call(
            (0, W::default().buf(&d).stat(&s).take()),
            f.client.get_data(&p),
        );
        prop_assert_eq!(got, Ok((d, s)));
        prop_assert_eq!(req.opcode, 4);
        let mut r = R(&req.body);
        prop_assert_eq!(r.str(), server_path(&p));
        prop_assert!(!r.bool());
        r.end();
        Ok(())
    });
}

#[test]
fn exists_round_trips_a_stat_or_none() {
    let f = Fixture::new();
    f.run((path(), prop::option::of(stat())), |(p, s)| {
        let reply = match &s {
            Some(s) => (0, W::default().stat(s).take()),
            None => (-101, Vec::new()),
        };
        let (got, req) = f.call(reply, f.client.exists(&p));
        prop_assert_eq!(got, Ok(s));
        prop_assert_eq!(req.opcode, 3);
        let mut r = R(&req.body);
        prop_assert_eq!(r.str(), server_path(&p));
        prop_assert!(!r.bool());
        r.end();
        Ok(())
    });
}

#[test]
fn get_children_round_trips() {
    let f = Fixture::new();
    let children = prop::collection::vec(any::<String>(), 0..20);
    f.run((path(), children, stat()), |(p, c, s)| {
        let (got, req) = f.call(
            (0, W::default().strs(&c).stat(&s).take()),
            f.client.get_children(&p),
        );
        prop_assert_eq!(got, Ok((c, s)));
        prop_assert_eq!(req.opcode, 12);
        let mut r = R(&req.body);
        prop_assert_eq!(r.str(), server_path(&p));
        prop_assert!(!r.bool());
        r.end();
        Ok(())
    });
}

#[test]
fn acls_round_trip_both_ways() {
    let f = Fixture::new();
    f.run((path(), acl(), stat(), version()), |(p, a, s, v)| {
        let (got, req) = f.call(
            (0, W::default().acl(&a).stat(&s).take()),
            f.client.get_acl(&p),
        );
        prop_assert_eq!(got, Ok((a.clone(), s)));
        prop_assert_eq!(req.opcode, 6);
        let mut r = R(&req.body);
        prop_assert_eq!(r.str(), server_path(&p));
        r.end();

        let (got, req) = f.call(
            (0, W::default().stat(&s).take()),
            f.client.set_acl(&p, &a, v),
        );
        prop_assert_eq!(got, Ok(s));
        prop_assert_eq!(req.opcode, 7);
        let mut r = R(&req.body);
        prop_assert_eq!(r.str(), server_path(&p));
        prop_assert_eq!(r.acl(), a);
        prop_assert_eq!(r.i32(), v.unwrap_or(-1));
        r.end();
        Ok(())
    });
}

#[test]
fn create_round_trips_every_mode() {
    let f = Fixture::new();
    let input = (path(), data(), acl(), create_mode(), path(), stat());
    f.run(input, |(p, d, a, mode, created, s)| {
        // A sequential create may name its parent with a trailing '/'.
        let p = if mode.is_sequential() && p != "/" {
            format!("{p}/")
        } else {
            p
        };
        let opts = CreateOptions {
            mode,
            acl: a.clone(),
            makepath: false,
        };
        let (got, req) = f.call(
            (0, W::default().str(&server_path(&created)).stat(&s).take()),
            f.client.create_with(&p, &d, &opts),
        );
        prop_assert_eq!(got, Ok((created, s)));
        let (opcode, flags, ttl) = mode_wire(mode);
        prop_assert_eq!(req.opcode, opcode);
        let mut r = R(&req.body);
        // A sequential child of the root is a child of the chroot: the server appends the
        // counter to what it is sent, so `/` goes as `<chroot>/`, never as the bare chroot.
        let sent = if p == "/" && mode.is_sequential() {
            format!("{}/", server_path(&p))
        } else {
            server_path(&p)
        };
        prop_assert_eq!(r.str(), sent);
        prop_assert_eq!(r.buf(), d);
        prop_assert_eq!(r.acl(), a);
        prop_assert_eq!(r.i32(), flags);
        if let Some(t) = ttl {
            prop_assert_eq!(r.i64(), t);
        }
        r.end();
        Ok(())
    });
}

#[test]
fn set_data_and_delete_round_trip() {
    let f = Fixture::new();
    f.run((path(), data(), version(), stat()), |(p, d, v, s)| {
        let (got, req) = f.call(
            (0, W::default().stat(&s).take()),
            f.client.set_data(&p, &d, v),
        );
        prop_assert_eq!(got, Ok(s));
        prop_assert_eq!(req.opcode, 5);
        let mut r = R(&req.body);
        prop_assert_eq!(r.str(), server_path(&p));
        prop_assert_eq!(r.buf(), d);
        prop_assert_eq!(r.i32(), v.unwrap_or(-1));
        r.end();

        let (got, req) = f.call((0, Vec::new()), f.client.delete(&p, v));
        prop_assert_eq!(got, Ok(()));
        prop_assert_eq!(req.opcode, 2);
        let mut r = R(&req.body);
        prop_assert_eq!(r.str(), server_path(&p));
        prop_assert_eq!(r.i32(), v.unwrap_or(-1));
        r.end();
        Ok(())
    });
}

#[test]
fn small_replies_round_trip() {
    let f = Fixture::new();
    let identities = prop::collection::vec((any::<String>(), any::<String>()), 0..5);
    let ephemerals = prop::collection::vec(path(), 0..10);
    f.run(
        (path(), any::<i32>(), identities, ephemerals),
        |(p, n, ids, eph)| {
            let (got, req) = f.call(
                (0, W::default().i32(n).take()),
                f.client.get_all_children_number(&p),
            );
            prop_assert_eq!(got, Ok(n));
            prop_assert_eq!(req.opcode, 104);
            let mut r = R(&req.body);
            prop_assert_eq!(r.str(), server_path(&p));
            r.end();

            let mut w = W::default();
            w.i32(ids.len() as i32);
            for (scheme, user) in &ids {
                w.str(scheme).str(user);
            }
            let (got, req) = f.call((0, w.take()), f.client.whoami());
            let want: Vec<ClientInfo> = ids
                .iter()
                .map(|(auth_scheme, user)| ClientInfo {
                    auth_scheme: auth_scheme.clone(),
                    user: user.clone(),
                })
                .collect();
            prop_assert_eq!(got, Ok(want));
            prop_assert_eq!(req.opcode, 107);
            prop_assert!(req.body.is_empty());

            // The server lists ephemerals with their full paths; the client strips the chroot.
            let full: Vec<String> = eph.iter().map(|e| server_path(e)).collect();
            let (got, req) = f.call(
                (0, W::default().strs(&full).take()),
                f.client.get_ephemerals(&p),
            );
            prop_assert_eq!(got, Ok(eph));
            prop_assert_eq!(req.opcode, 103);
            let mut r = R(&req.body);
            prop_assert_eq!(r.str(), server_path(&p));
            r.end();
            Ok(())
        },
    );
}

/// What the server would answer for one successful op, and what the client should make of it.
fn op_success(o: &Op, s: &Stat, w: &mut W) -> OpResult {
    match o {
        Op::Create { path, mode, .. } => {
            let (opcode, _, _) = mode_wire(*mode);
            // The server answers Create2-style (path and stat) for every create op code the
            // client uses, and appends the counter to a sequential node's name.
            let created = if mode.is_sequential() {
                format!("{path}0000000001")
            } else {
                path.clone()
            };
            w.header(opcode, false, 0)
                .str(&server_path(&created))
                .stat(s);
            OpResult::Create {
                path: created,
                stat: Some(*s),
            }
        }
        Op::Delete { .. } => {
            w.header(2, false, 0);
            OpResult::Delete
        }
        Op::SetData { .. } => {
            w.header(5, false, 0).stat(s);
            OpResult::SetData { stat: *s }
        }
        Op::Check { .. } => {
            w.header(13, false, 0);
            OpResult::Check
        }
        other => panic!("an op this test does not know: {other:?}"),
    }
}

/// Decodes one op of a multi request with the test's own reader.
fn read_op(r: &mut R<'_>, ty: i32) -> Op {
    match ty {
        15 | 19 | 21 => {
            let path = r.str();
            let data = r.buf();
            let acl = r.acl();
            let flags = r.i32();
            let mode = match (ty, flags) {
                (15, 0) => CreateMode::Persistent,
                (15, 1) => CreateMode::Ephemeral,
                (15, 2) => CreateMode::PersistentSequential,
                (15, 3) => CreateMode::EphemeralSequential,
                (19, 4) => CreateMode::Container,
                (21, 5) => CreateMode::PersistentWithTtl(r.i64()),
                (21, 6) => CreateMode::PersistentSequentialWithTtl(r.i64()),
                other => panic!("op code and flags {other:?} do not match"),
            };
            Op::Create {
                path,
                data,
                acl,
                mode,
            }
        }
        2 => {
            let p = r.str();
            Op::delete(p, r.i32())
        }
        5 => {
            let p = r.str();
            let d = r.buf();
            Op::set_data(p, d, r.i32())
        }
        13 => {
            let p = r.str();
            Op::check(p, r.i32())
        }
        other => panic!("unexpected op code {other} in a multi request"),
    }
}

/// The op with its path as the server must see it.
fn on_server(o: &Op) -> Op {
    let mut o = o.clone();
    match &mut o {
        // As for a single create: a sequential child of the root goes as `<chroot>/`.
        Op::Create { path, mode, .. } if path == "/" && mode.is_sequential() => {
            *path = format!("{}/", server_path(path))
        }
        Op::Create { path, .. }
        | Op::Delete { path, .. }
        | Op::SetData { path, .. }
        | Op::Check { path, .. } => *path = server_path(path),
        other => panic!("an op this test does not know: {other:?}"),
    }
    o
}

#[test]
fn multi_round_trips_success_and_failure() {
    let f = Fixture::new();
    let ops = prop::collection::vec(op(), 1..8);
    let failing = prop::option::of((any::<prop::sample::Index>(), failure_code()));
    f.run((ops, stat(), failing), |(ops, s, failing)| {
        // Sequential creates may end with '/'.
        let ops: Vec<Op> = ops
            .into_iter()
            .map(|o| match o {
                Op::Create {
                    path,
                    data,
                    acl,
                    mode,
                } if mode.is_sequential() && path != "/" => Op::Create {
                    path: format!("{path}/"),
                    data,
                    acl,
                    mode,
                },
                o => o,
            })
            .collect();
        let mut w = W::default();
        let expected = match failing {
            None => {
                let results: Vec<OpResult> =
                    ops.iter().map(|o| op_success(o, &s, &mut w)).collect();
                w.header(-1, true, -1);
                Ok(results)
            }
            Some((at, code)) => {
                // The server reports the failing op's code, 0 before it and
                // RuntimeInconsistency after it, every entry as an error result.
                let at = at.index(ops.len());
                let mut results = Vec::new();
                for i in 0..ops.len() {
                    let c = match i.cmp(&at) {
                        std::cmp::Ordering::Less => 0,
                        std::cmp::Ordering::Equal => code,
                        std::cmp::Ordering::Greater => -2,
                    };
                    w.header(-1, false, c).i32(c);
                    results.push(OpResult::Error((c != 0).then(|| Error::from_code(c))));
                }
                w.header(-1, true, -1);
                Err(Error::MultiFailed {
                    index: at,
                    error: Box::new(Error::from_code(code)),
                    results,
                })
            }
        };
        let (got, req) = f.call((0, w.take()), f.client.multi(&ops));
        prop_assert_eq!(got, expected);
        prop_assert_eq!(req.opcode, 14);
        let mut r = R(&req.body);
        let mut sent = Vec::new();
        loop {
            let ty = r.i32();
            let done = r.bool();
            prop_assert_eq!(r.i32(), -1);
            if done {
                prop_assert_eq!(ty, -1);
                break;
            }
            sent.push(read_op(&mut r, ty));
        }
        r.end();
        let want: Vec<Op> = ops.iter().map(on_server).collect();
        prop_assert_eq!(sent, want);
        Ok(())
    });
}

#[test]
fn multi_read_round_trips() {
    let f = Fixture::new();
    let read = prop_oneof![
        path().prop_map(ReadOp::GetData),
        path().prop_map(ReadOp::GetChildren)
    ];
    let reads = prop::collection::vec(
        (
            read,
            data(),
            stat(),
            prop::collection::vec(any::<String>(), 0..5),
            prop::option::of(failure_code()),
        ),
        1..8,
    );
    f.run(reads, |reads| {
        let mut w = W::default();
        let mut expected = Vec::new();
        for (op, d, s, children, err) in &reads {
            expected.push(match (op, err) {
                (_, Some(code)) => {
                    w.header(-1, false, *code).i32(*code);
                    ReadResult::Error(Error::from_code(*code))
                }
                (ReadOp::GetData(_), None) => {
                    w.header(4, false, 0).buf(d).stat(s);
                    ReadResult::Data {
                        data: d.clone(),
                        stat: *s,
                    }
                }
                (ReadOp::GetChildren(_), None) => {
                    w.header(8, false, 0).strs(children);
                    ReadResult::Children(children.clone())
                }
                (other, _) => panic!("a read this test does not know: {other:?}"),
            });
        }
        w.header(-1, true, -1);
        let ops: Vec<ReadOp> = reads.iter().map(|r| r.0.clone()).collect();
        let (got, req) = f.call((0, w.take()), f.client.multi_read(&ops));
        prop_assert_eq!(got, Ok(expected));
        prop_assert_eq!(req.opcode, 22);
        let mut r = R(&req.body);
        for op in &ops {
            let ty = r.i32();
            prop_assert!(!r.bool());
            prop_assert_eq!(r.i32(), -1);
            let (want_ty, p) = match op {
                ReadOp::GetData(p) => (4, p),
                ReadOp::GetChildren(p) => (8, p),
                other => panic!("a read this test does not know: {other:?}"),
            };
            prop_assert_eq!(ty, want_ty);
            prop_assert_eq!(r.str(), server_path(p));
            prop_assert!(!r.bool());
        }
        prop_assert_eq!(r.i32(), -1);
        prop_assert!(r.bool());
        prop_assert_eq!(r.i32(), -1);
        r.end();
        Ok(())
    });
}

#[test]
fn error_codes_round_trip() {
    let f = Fixture::new();
    f.run((path(), any::<i32>()), |(p, code)| {
        prop_assume!(code != 0);
        let (got, _) = f.call((code, Vec::new()), f.client.get_data(&p));
        let e = got.expect_err("a non-zero code is an error");
        prop_assert_eq!(&e, &Error::from_code(code));
        if let Some(c) = e.code() {
            prop_assert_eq!(c, code);
        }
        Ok(())
    });
}

#[test]
fn arbitrary_reply_bodies_are_results_or_typed_errors() {
    // Whatever body the server sends, the client answers: the decoded value when the body is
    // well formed, `MalformedResponse` when not. The session stays up (the next case still runs).
    let f = Fixture::new();
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        (data(), stat(), prop::collection::vec(any::<u8>(), 0..8)).prop_map(|(d, s, junk)| {
            let mut w = W::default();
            w.buf(&d).stat(&s);
            w.0.extend_from_slice(&junk);
            w.take()
        }),
    ];
    f.run((path(), body), |(p, body)| {
        let (got, _) = f.call((0, body.clone()), f.client.get_data(&p));
        match got {
            Ok((d, _)) => prop_assert_eq!(body.len(), 4 + d.len() + 68),
            Err(Error::MalformedResponse(_)) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
        Ok(())
    });
}
