//! Secure connections against real ZooKeeper servers configured for them: TLS on the secure
//! client port (Netty, PEM stores made per run), mutual TLS, certificate errors that say what to
//! fix, SASL DIGEST-MD5 (with `sasl` ACLs and re-authentication on reconnect), TLS on an
//! ensemble and the read-only probe over TLS.

use std::future::IntoFuture;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wazoo::{
    Acl, AddWatchMode, Client, ClientBuilder, CreateMode, Error, EventType, Perms, SaslConfig,
    SessionState, TlsConfig, TlsErrorKind,
};
use wazoo_tests::{
    await_state, ClientAuth, Ensemble, FaultProxy, ServerSecurity, TestPki, ZkServer,
};

const WAIT: Duration = Duration::from_secs(30);
/// How long a refused connection may take to be reported (it must not wait for the timeout).
const PROMPT: Duration = Duration::from_secs(10);

fn pki() -> &'static TestPki {
    static PKI: OnceLock<TestPki> = OnceLock::new();
    PKI.get_or_init(|| TestPki::generate().expect("make test certificates"))
}

fn sasl_users() -> Vec<(String, String)> {
    vec![
        ("bob".to_string(), "secret".to_string()),
        ("alice".to_string(), "wonderland".to_string()),
    ]
}

/// One server for the tests that do not stop it: TLS (client certificates asked for, not
/// required) and SASL DIGEST-MD5 (not enforced).
fn shared() -> &'static ZkServer {
    static SERVER: OnceLock<ZkServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        wazoo_tests::init_tracing();
        ZkServer::builder()
            .security(ServerSecurity {
                tls: Some(pki().server_tls(ClientAuth::Want)),
                sasl_users: sasl_users(),
                enforce_sasl: false,
            })
            .start()
            .expect("start a secure ZooKeeper")
    })
}

fn ca() -> TlsConfig {
    TlsConfig::new().ca_file(&pki().ca)
}

fn builder(connect: &str) -> ClientBuilder {
    Client::builder(connect)
        .session_timeout(Duration::from_secs(10))
        .max_backoff(Duration::from_millis(200))
        .wait_for_connection(WAIT)
}

/// Connecting must fail, promptly, with a TLS error of this kind.
async fn refused_with(b: ClientBuilder, kind: TlsErrorKind) -> Error {
    let begun = Instant::now();
    let err = b
        .connect()
        .await
        .expect_err("the connection must be refused");
    assert!(
        begun.elapsed() < PROMPT,
        "refused only after {:?}: {err}",
        begun.elapsed()
    );
    match &err {
        Error::Tls { kind: k, .. } => assert_eq!(*k, kind, "{err}"),
        other => panic!("expected a TLS error of kind {kind:?}, got {other:?}"),
    }
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connect_operate_reconnect_and_restore_watches() {
    let server = shared();
    let proxy = FaultProxy::start(server.secure_addr().expect("a TLS port")).unwrap();
    let zk = builder(&proxy.connect_string())
        .tls(ca())
        .connect()
        .await
        .expect("connect over TLS");
    let direct = Client::connect(&server.connect_string()).await.unwrap();

    zk.create("/tls", b"v0", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(zk.get_data("/tls").await.unwrap().0, b"v0");
    // Enough in flight at once to fill the socket buffers both ways (4 MiB of requests, 16 MiB
    // of replies): TLS records that rustls kept while the socket was full must still go out.
    let big = vec![7u8; 256 * 1024];
    zk.create("/tls/big", &big, CreateMode::Persistent)
        .await
        .unwrap();
    let sets: Vec<_> = (0..16)
        .map(|i| {
            zk.set_data("/tls", &big[..big.len() - i], None)
                .into_future()
        })
        .collect();
    let gets: Vec<_> = (0..64)
        .map(|_| zk.get_data("/tls/big").into_future())
        .collect();
    for s in sets {
        tokio::time::timeout(WAIT, s).await.unwrap().unwrap();
    }
    for g in gets {
        let (data, _) = tokio::time::timeout(WAIT, g).await.unwrap().unwrap();
        assert_eq!(data, big);
    }
    assert_eq!(zk.get_data("/tls").await.unwrap().0.len(), big.len() - 15);

    zk.create("/tls/w", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let (_, _, one_shot) = zk.get_data_watch("/tls/w").await.unwrap();
    let mut persistent = zk
        .add_watch("/tls", AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let sid = zk.session_id();
    let mut states = zk.state_events();
    await_state(&mut states, SessionState::Connected, WAIT).await;

    proxy.set_reject(true);
    proxy.drop_connections();
    await_state(&mut states, SessionState::Suspended, WAIT).await;
    direct.set_data("/tls/w", b"missed", None).await.unwrap();
    proxy.set_reject(false);
    await_state(&mut states, SessionState::Connected, WAIT).await;
    assert_eq!(zk.session_id(), sid, "the session was resumed over TLS");

    let ev = tokio::time::timeout(WAIT, one_shot.changed())
        .await
        .expect("the one-shot watch was restored and replayed over TLS");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/tls/w")
    );
    let ev = tokio::time::timeout(WAIT, persistent.next())
        .await
        .unwrap()
        .unwrap();
    // The change while away may come first only if it raced the disconnect; after the restore
    // the watcher hears Resync.
    let ev = if ev.event_type == EventType::NodeDataChanged {
        tokio::time::timeout(WAIT, persistent.next())
            .await
            .unwrap()
            .unwrap()
    } else {
        ev
    };
    assert_eq!(ev.event_type, EventType::Resync);
    direct.set_data("/tls/w", b"after", None).await.unwrap();
    let ev = tokio::time::timeout(WAIT, persistent.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/tls/w"),
        "the persistent watch was restored over TLS"
    );
    assert!(proxy.accepted_total() >= 2, "it really reconnected");
    zk.close().await;
    direct.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_and_mismatched_server_certificates_are_refused_clearly() {
    let server = shared();
    let addr = server.secure_addr().unwrap().to_string();

    let err = refused_with(
        builder(&addr).tls(TlsConfig::new().ca_file(&pki().other_ca)),
        TlsErrorKind::UntrustedCertificate,
    )
    .await;
    let msg = err.to_string();
    assert!(
        msg.contains(&addr) && msg.contains("not signed by a CA"),
        "{msg}"
    );

    let err = refused_with(
        builder(&addr).tls(ca().server_name("zk.invalid")),
        TlsErrorKind::HostnameMismatch,
    )
    .await;
    assert!(err.to_string().contains("verify_hostname"), "{err}");

    // Hostname verification off: the same certificate is accepted for any name, but it must
    // still be trusted.
    let zk = builder(&addr)
        .tls(ca().server_name("zk.invalid").verify_hostname(false))
        .connect()
        .await
        .expect("accepted without hostname verification");
    zk.exists("/").await.unwrap();
    zk.close().await;
    refused_with(
        builder(&addr).tls(
            TlsConfig::new()
                .ca_file(&pki().other_ca)
                .verify_hostname(false),
        ),
        TlsErrorKind::UntrustedCertificate,
    )
    .await;

    // Settings that cannot work fail before anything is sent.
    let err = builder(&addr)
        .tls(TlsConfig::new().ca_file(pki().dir().join("missing.pem")))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TlsConfig(ref m) if m.contains("missing.pem")),
        "{err}"
    );
    let err = builder(&format!("tls://{addr}"))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TlsConfig(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_wrong_host_server_certificates_are_refused() {
    wazoo_tests::init_tracing();
    let expired = ZkServer::builder()
        .security(ServerSecurity {
            tls: Some(pki().server_tls_with(&pki().expired, ClientAuth::None)),
            ..Default::default()
        })
        .start()
        .expect("start a server with an expired certificate");
    let err = refused_with(
        builder(&expired.secure_addr().unwrap().to_string()).tls(ca()),
        TlsErrorKind::ExpiredCertificate,
    )
    .await;
    assert!(err.to_string().contains("expired"), "{err}");
    drop(expired);

    let wrong = ZkServer::builder()
        .security(ServerSecurity {
            tls: Some(pki().server_tls_with(&pki().wrong_host, ClientAuth::None)),
            ..Default::default()
        })
        .start()
        .expect("start a server with another host's certificate");
    let addr = wrong.secure_addr().unwrap().to_string();
    refused_with(builder(&addr).tls(ca()), TlsErrorKind::HostnameMismatch).await;
    let zk = builder(&addr)
        .tls(ca().verify_hostname(false))
        .connect()
        .await
        .expect("explicit opt-out of hostname verification");
    zk.exists("/").await.unwrap();
    zk.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_the_right_client_certificate_only() {
    wazoo_tests::init_tracing();
    let server = ZkServer::builder()
        .security(ServerSecurity {
            tls: Some(pki().server_tls(ClientAuth::Need)),
            ..Default::default()
        })
        .start()
        .expect("start a server that requires client certificates");
    let addr = server.secure_addr().unwrap().to_string();

    let zk = builder(&addr)
        .tls(ca().client_cert_files(&pki().client.cert, &pki().client.key))
        .connect()
        .await
        .expect("mutual TLS with the right client certificate");
    zk.create("/mtls", b"yes", CreateMode::Ephemeral)
        .await
        .unwrap();
    assert_eq!(zk.get_data("/mtls").await.unwrap().0, b"yes");
    zk.close().await;

    let err = refused_with(
        builder(&addr).tls(ca()),
        TlsErrorKind::ClientCertificateRefused,
    )
    .await;
    assert!(
        err.to_string().contains("requires a client certificate"),
        "{err}"
    );
    let err = refused_with(
        builder(&addr)
            .tls(ca().client_cert_files(&pki().other_client.cert, &pki().other_client.key)),
        TlsErrorKind::ClientCertificateRefused,
    )
    .await;
    assert!(
        err.to_string()
            .contains("refused this client's certificate"),
        "{err}"
    );
    // A key that does not belong to the certificate is found before connecting.
    let err = builder(&addr)
        .tls(ca().client_cert_files(&pki().client.cert, &pki().other_client.key))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TlsConfig(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_digest_md5_authenticates_admits_by_acl_and_reauthenticates() {
    let server = shared();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let zk = builder(&proxy.connect_string())
        .sasl(SaslConfig::digest_md5("bob", "secret"))
        .connect()
        .await
        .expect("SASL with the right password");
    let me = zk.whoami().await.unwrap();
    assert!(
        me.iter()
            .any(|c| c.auth_scheme == "sasl" && c.user == "bob"),
        "{me:?}"
    );

    let only_bob = vec![Acl::new(Perms::ALL, "sasl", "bob")];
    zk.create_with(
        "/sasl-bob",
        b"for bob",
        &wazoo::CreateOptions {
            acl: only_bob,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(zk.get_data("/sasl-bob").await.unwrap().0, b"for bob");
    let anonymous = Client::connect(&server.connect_string()).await.unwrap();
    assert_eq!(
        anonymous.get_data("/sasl-bob").await,
        Err(Error::NoAuth),
        "the sasl ACL admits bob only"
    );
    let alice = builder(&server.connect_string())
        .sasl(SaslConfig::digest_md5("alice", "wonderland"))
        .connect()
        .await
        .unwrap();
    assert_eq!(alice.get_data("/sasl-bob").await, Err(Error::NoAuth));

    // A new connection of the same session authenticates again before anything else.
    let sid = zk.session_id();
    let mut states = zk.state_events();
    await_state(&mut states, SessionState::Connected, WAIT).await;
    proxy.drop_connections();
    await_state(&mut states, SessionState::Suspended, WAIT).await;
    await_state(&mut states, SessionState::Connected, WAIT).await;
    assert_eq!(zk.session_id(), sid);
    assert!(proxy.accepted_total() >= 2, "it really reconnected");
    assert_eq!(zk.get_data("/sasl-bob").await.unwrap().0, b"for bob");
    let me = zk.whoami().await.unwrap();
    assert!(
        me.iter()
            .any(|c| c.auth_scheme == "sasl" && c.user == "bob"),
        "re-authenticated: {me:?}"
    );

    // Wrong credentials: a typed AuthFailed, promptly. (An unknown user is refused too, as long
    // as the password is nobody's: ZooKeeper 3.8.0's callback handler keeps the previous
    // user's name when it does not know the new one, and checks the digest against *that*
    // user's password: "mallory" with bob's password would get in, as "mallory".)
    for (user, password) in [("bob", "wrong"), ("mallory", "nobody's password")] {
        let begun = Instant::now();
        let err = builder(&server.connect_string())
            .sasl(SaslConfig::digest_md5(user, password))
            .connect()
            .await
            .unwrap_err();
        assert_eq!(err, Error::AuthFailed, "{user}");
        assert!(begun.elapsed() < PROMPT, "{:?}", begun.elapsed());
    }
    zk.delete("/sasl-bob", None).await.unwrap();
    for c in [zk, anonymous, alice] {
        c.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_over_tls_and_per_host_tls_marks() {
    let server = shared();
    let tls_addr = server.secure_addr().unwrap();
    let plain_addr = server.addr();
    // A client that spoke plain text to the TLS port, or TLS to the plain one, would never
    // connect: each of these shows which way it went.
    let zk = builder(&format!("tls://{tls_addr}"))
        .tls_per_host(ca())
        .sasl(SaslConfig::digest_md5("bob", "secret"))
        .connect()
        .await
        .expect("SASL over TLS, the host marked tls://");
    let me = zk.whoami().await.unwrap();
    assert!(
        me.iter()
            .any(|c| c.auth_scheme == "sasl" && c.user == "bob"),
        "{me:?}"
    );
    zk.close().await;
    let zk = builder(&plain_addr.to_string())
        .tls_per_host(ca())
        .connect()
        .await
        .expect("an unmarked host is plain with tls_per_host");
    zk.close().await;
    let zk = builder(&format!("tcp://{plain_addr}"))
        .tls(ca())
        .connect()
        .await
        .expect("a host marked tcp:// is plain despite the global switch");
    zk.close().await;
    let err = builder(&plain_addr.to_string())
        .tls(ca())
        .wait_for_connection(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout(_)),
        "TLS to a plain port never connects (the server drops it; not a certificate error): {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_an_ensemble_with_failover_and_the_read_only_probe() {
    wazoo_tests::init_tracing();
    let security = ServerSecurity {
        tls: Some(pki().server_tls(ClientAuth::Want)),
        ..Default::default()
    };
    let ens = Ensemble::builder(3)
        .read_only(true)
        .security(security.clone())
        .start()
        .expect("start a TLS ensemble");
    // A read-write server outside the ensemble, reachable only when the proxy lets it.
    let outside = ZkServer::builder()
        .security(security)
        .start()
        .expect("start a standalone TLS server");
    let rw_proxy = FaultProxy::start(outside.secure_addr().unwrap()).unwrap();
    rw_proxy.set_reject(true);
    let outside_client = Client::connect(&outside.connect_string()).await.unwrap();
    outside_client
        .create("/where", b"outside", CreateMode::Persistent)
        .await
        .unwrap();

    let connect = format!(
        "{},{}",
        ens.secure_connect_string(),
        rw_proxy.connect_string()
    );
    let zk = Client::builder(&connect)
        .tls(ca())
        .session_timeout(Duration::from_secs(10))
        .allow_read_only(true)
        .max_backoff(Duration::from_millis(200))
        .wait_for_connection(WAIT)
        .connect()
        .await
        .expect("connect to the ensemble over TLS");
    zk.create("/where", b"ensemble", CreateMode::Persistent)
        .await
        .unwrap();
    // An ephemeral makes the (local) session global, so that it survives its server.
    zk.create("/owner", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    let sid = zk.session_id();
    let mut states = zk.state_events();
    await_state(&mut states, SessionState::Connected, WAIT).await;

    // Failover: the leader dies, the session moves to another member over TLS.
    let leader = ens.leader().unwrap();
    ens.stop(leader);
    ens.wait_quorum(WAIT).expect("a new quorum");
    let retry = wazoo::RetryPolicy::default()
        .max_tries(None)
        .deadline(Some(WAIT));
    retry
        .run(|| zk.set_data("/where", b"ensemble 2", None))
        .await
        .expect("writes work after the failover");
    assert_eq!(zk.session_id(), sid, "the session survived the failover");
    assert!(zk.exists("/owner").await.unwrap().is_some());
    zk.sync("/where").await.unwrap();

    // Quorum lost: the last member serves read-only, over TLS too (with a new session: a
    // read-only server does not take over a global one).
    let zxid = |i: usize| -> String {
        ens.four_letter(i, "srvr")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("Zxid: ").map(str::to_string))
            .unwrap_or_default()
    };
    let alive: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    wazoo_tests::wait_until("both members applied the last write", WAIT, || {
        let z = zxid(alive[0]);
        !z.is_empty() && zxid(alive[1]) == z
    })
    .await
    .unwrap();
    ens.stop(alive[0]);
    await_state(&mut states, SessionState::ConnectedReadOnly, WAIT).await;
    assert_eq!(zk.get_data("/where").await.unwrap().0, b"ensemble 2");
    assert_eq!(
        zk.set_data("/where", b"x", None).await,
        Err(Error::NotReadOnly)
    );

    // A read-write server appears behind the proxy while the read-only member stays up and
    // keeps the connection: only the isro probe, over TLS, can notice it and make the client
    // leave. (It cannot stay there: that server is behind the zxids this client has seen, so
    // ZooKeeper refuses it and the client goes back to the read-only member.)
    let log_before = std::fs::read_to_string(outside.log_path())
        .unwrap_or_default()
        .matches("Processing isro command")
        .count();
    rw_proxy.set_reject(false);
    let left = tokio::time::timeout(WAIT, async {
        loop {
            match states.next().await.map(|e| e.state) {
                Some(SessionState::Suspended) => return true,
                Some(_) => continue,
                None => return false,
            }
        }
    })
    .await;
    assert_eq!(left, Ok(true), "the probe found the read-write server");
    let log = std::fs::read_to_string(outside.log_path()).unwrap_or_default();
    assert!(
        log.matches("Processing isro command").count() > log_before,
        "the outside server answered isro, through the proxy to its TLS port"
    );
    zk.close().await;
    outside_client.close().await;
}
