//! Real wasm guests on the real server: the example plugins do their jobs, the seed's scenario
//! holds in wasm, and hostile guests are contained while the host and other plugins go on.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wazoo::{
    Binding, Client, CreateMode, IsolationMode, Op, Plugin, PluginError, PluginHost,
    PluginHostConfig, Policy, SessionState, WatcherType,
};
use wazoo_tests::{fresh_chroot, guest, load_guest, shared_server, test_cache_dir, FaultProxy};

const WAIT: Duration = Duration::from_secs(30);

// ---- the host's log, captured (tests/src/logs.rs) ----

fn init_log() {
    wazoo_tests::logs::init_log_capture();
}

/// Waits until a logged line contains every one of `needles`.
async fn logged(needles: &[&str]) -> String {
    wazoo_tests::logs::logged(needles, WAIT).await
}

fn count_logged(needles: &[&str]) -> usize {
    wazoo_tests::logs::count_logged(needles)
}

// ---- shared server, per-test chroots ----

fn host(isolation: IsolationMode) -> PluginHost {
    PluginHost::new(PluginHostConfig {
        cache_dir: Some(test_cache_dir()),
        isolation,
        ..Default::default()
    })
    .expect("plugin host")
}

/// A client chrooted at a fresh node named after the test, optionally through a proxy.
async fn client(name: &str, proxy: Option<&FaultProxy>) -> (Client, Client) {
    init_log();
    let root = format!("/plugins-{name}");
    let chrooted = fresh_chroot(shared_server(), &root).await;
    let hosts = proxy.map_or(chrooted.clone(), |p| {
        format!("{}{root}", p.connect_string())
    });
    let zk = Client::builder(&hosts)
        .session_timeout(Duration::from_secs(4))
        .max_backoff(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let direct = Client::connect(&chrooted).await.unwrap();
    (zk, direct)
}

async fn await_node(zk: &Client, path: &str) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    loop {
        match zk.get_data(path).await {
            Ok((d, _)) => return d,
            Err(wazoo::Error::NoNode) => {}
            Err(e) => panic!("reading {path}: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "{path} did not appear within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails the test unless `path` comes to hold `want` within `WAIT`.
async fn await_data(zk: &Client, path: &str, want: &[u8]) {
    assert!(
        wazoo_tests::await_data(zk, path, want, WAIT).await,
        "{path} never held {:?}",
        String::from_utf8_lossy(want)
    );
}

/// The data of every child of `path`, in name order (sequential children: creation order).
async fn children_data(zk: &Client, path: &str) -> Vec<String> {
    let mut kids = zk
        .get_children(path)
        .await
        .map(|(c, _)| c)
        .unwrap_or_default();
    kids.sort();
    let mut out = Vec::new();
    for k in kids {
        if let Ok((d, _)) = zk.get_data(&format!("{path}/{k}")).await {
            out.push(String::from_utf8_lossy(&d).to_string());
        }
    }
    out
}

async fn await_children(zk: &Client, path: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        let c = children_data(zk, path).await;
        if pred(&c) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "children of {path} never matched: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn all() -> Policy {
    Policy::default().read(["/"]).write(["/"])
}

// ---- the example plugins ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_logs_every_change() {
    let (zk, direct) = client("audit", None).await;
    let h = host(IsolationMode::Shared);
    direct
        .create("/app", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let p = load_guest(
        &h,
        &zk,
        "audit-t1",
        "audit-log",
        Policy::default().read(["/app"]),
        &[],
    );
    p.bind(Binding::PersistentRecursive("/app".into()))
        .await
        .unwrap();
    direct
        .create("/app/x", b"1", CreateMode::Persistent)
        .await
        .unwrap();
    direct.set_data("/app/x", b"2", None).await.unwrap();
    direct.delete("/app/x", None).await.unwrap();
    logged(&["audit-t1", "/app/x", "created"]).await;
    logged(&["audit-t1", "/app/x", "changed"]).await;
    logged(&["audit-t1", "/app/x", "deleted"]).await;
    assert_eq!(p.stats().traps, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_mirror_copies_config_to_mirror() {
    let (zk, direct) = client("mirror", None).await;
    let h = host(IsolationMode::Shared);
    direct
        .create("/config", b"", CreateMode::Persistent)
        .await
        .unwrap();
    direct
        .create("/config/db", b"postgres://a", CreateMode::Persistent)
        .await
        .unwrap();
    let p = load_guest(
        &h,
        &zk,
        "mirror-t",
        "config-mirror",
        Policy::default().read(["/config"]).write(["/mirror"]),
        &[],
    );
    p.bind(Binding::PersistentRecursive("/config".into()))
        .await
        .unwrap();
    p.bind(Binding::Session).await.unwrap();
    await_data(&direct, "/mirror/db", b"postgres://a").await; // the initial copy
    direct
        .set_data("/config/db", b"postgres://b", None)
        .await
        .unwrap();
    direct
        .create("/config/cache", b"redis", CreateMode::Persistent)
        .await
        .unwrap();
    await_data(&direct, "/mirror/db", b"postgres://b").await;
    await_data(&direct, "/mirror/cache", b"redis").await;
    direct.delete("/config/cache", None).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while direct.exists("/mirror/cache").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the mirror of a deleted key was not removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_reporter_writes_its_state_into_an_ephemeral() {
    let (zk, direct) = client("reporter", None).await;
    let h = host(IsolationMode::Shared);
    let p = load_guest(
        &h,
        &zk,
        "reporter-t",
        "session-reporter",
        Policy::default().write(["/reporters"]),
        &[("name", "r1")],
    );
    p.bind(Binding::Session).await.unwrap();
    await_data(&direct, "/reporters/r1", b"connected").await;
    let stat = direct.exists("/reporters/r1").await.unwrap().unwrap();
    assert_eq!(
        stat.ephemeral_owner,
        zk.session_id(),
        "an ephemeral of the host's session"
    );
    zk.close().await;
    let deadline = Instant::now() + WAIT;
    while direct.exists("/reporters/r1").await.unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "the ephemeral outlived the session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_counter_counts_with_completions() {
    let (zk, direct) = client("counter", None).await;
    let h = host(IsolationMode::Shared);
    direct
        .create("/counter", b"0", CreateMode::Persistent)
        .await
        .unwrap();
    let p = load_guest(
        &h,
        &zk,
        "counter-t",
        "async-counter",
        Policy::default().write(["/counter"]),
        &[("counter", "/counter"), ("limit", "5")],
    );
    p.bind(Binding::Data("/counter".into())).await.unwrap();
    // Each write re-triggers its watch: get_async, then set_async from the completion lane,
    // until the limit.
    direct.set_data("/counter", b"0", None).await.unwrap();
    await_data(&direct, "/counter", b"5").await;
    logged(&["counter-t", "set: stored"]).await;
    assert_eq!(p.stats().traps, 0);
}

// ---- isolation, the seed's scenario, containment ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_scenario_in_wasm() {
    init_log();
    let proxy = FaultProxy::start(shared_server().addr()).unwrap();
    let (zk, direct) = client("seed", Some(&proxy)).await;
    let h = host(IsolationMode::Shared);
    direct
        .create("/seed", b"v0", CreateMode::Persistent)
        .await
        .unwrap();
    direct
        .create("/states", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let p = load_guest(
        &h,
        &zk,
        "seed-t",
        "blocking-watch",
        all(),
        &[
            ("path", "/seed"),
            ("result", "/result"),
            ("states", "/states"),
        ],
    );
    p.bind(Binding::Session).await.unwrap();
    await_children(&direct, "/states", |c| c.iter().any(|s| s == "connected")).await;
    p.bind(Binding::Data("/seed".into())).await.unwrap();
    // Slow the link so the guest's get is surely in flight when the connection drops.
    proxy.set_delay(Duration::from_millis(400));
    direct.set_data("/seed", b"v1", None).await.unwrap();
    logged(&["seed-t", ": get /seed"]).await;
    proxy.set_reject(true);
    proxy.drop_connections();
    proxy.set_delay(Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(300)).await; // an outage the session lane must report
    proxy.set_reject(false);
    // While the watch handler was blocked in zookeeper.get, the same plugin's session handler
    // heard SUSPENDED and CONNECTED...
    await_children(&direct, "/states", |c| {
        let s = c.iter().position(|x| x == "suspended");
        s.is_some_and(|i| c[i..].iter().any(|x| x == "connected"))
    })
    .await;
    // ...and the get then completed or failed cleanly.
    let r = String::from_utf8(await_node(&direct, "/result").await).unwrap();
    assert!(
        r == "v1" || r.contains("connection-loss"),
        "the blocked get ended with {r:?}"
    );
    assert_eq!(p.stats().traps, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_is_cut_at_its_budget_and_nothing_else_waits() {
    init_log();
    let proxy = FaultProxy::start(shared_server().addr()).unwrap();
    let (zk, direct) = client("spin", Some(&proxy)).await;
    assert_eq!(zk.negotiated_timeout(), Duration::from_secs(4));
    let sid = zk.session_id();
    let h = host(IsolationMode::Shared);
    direct
        .create("/spin", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let budget = Duration::from_secs(3);
    let p = load_guest(
        &h,
        &zk,
        "spin-t",
        "spin",
        Policy {
            compute_budget: budget,
            ..all()
        },
        &[],
    );
    p.bind(Binding::Data("/spin".into())).await.unwrap();
    p.bind(Binding::Session).await.unwrap();
    logged(&["spin-t", "session connected"]).await;
    let started = Instant::now();
    direct.set_data("/spin", b"go", None).await.unwrap();
    logged(&["spin-t", "spinning"]).await;
    // While it spins: the completion lane keeps its latency...
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t0 = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        zk.get_data("/spin")
            .rawlink(move |r, _| {
                let _ = tx.send(r.is_ok());
            })
            .unwrap();
        assert!(rx.await.unwrap());
        worst = worst.max(t0.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        worst < Duration::from_millis(300),
        "completion lane latency {worst:?} while a guest spins"
    );
    // ...and the same plugin's session lane hears an outage at once.
    proxy.drop_connections();
    logged(&["spin-t", "session suspended"]).await;
    logged(&["spin-t", "session connected"]).await;
    // The spin is cut once it has run for its budget: never before (in wall time), and not
    // long after. The budget counts CPU time the guest got, so on this 2-core machine, shared
    // with the servers and other tests, the wall time to the cut stretches with the load.
    let line = logged(&["spin-t", "compute budget"]).await;
    let cut = started.elapsed();
    assert!(
        cut >= budget,
        "cut after {cut:?}, before its budget: {line}"
    );
    // What it was charged: at most one epoch tick (2 ms) past its budget.
    let charged = line
        .split("exhausted after ")
        .nth(1)
        .and_then(|rest| rest.split(" of guest execution").next())
        .and_then(parse_debug_duration)
        .unwrap_or_else(|| panic!("no charged time in the trap message: {line}"));
    assert!(
        charged >= budget && charged <= budget + Duration::from_millis(50),
        "charged {charged:?} for a budget of {budget:?}: {line}"
    );
    // The plugin's compute time holds what the cut call was charged, and little else (its
    // session handler's calls, its instances' builds and `init`).
    let compute = p.stats().compute_time;
    assert!(
        compute >= charged && compute <= charged + Duration::from_millis(50),
        "compute time {compute:?} after a call charged {charged:?}"
    );
    assert_eq!(zk.session_id(), sid, "the 4 s session survived");
    assert_eq!(zk.state(), SessionState::Connected);
    // The rebuilt instance handles the next event.
    let built = p.stats().instantiations;
    direct.set_data("/spin", b"again", None).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while p.stats().instantiations == built {
        assert!(
            Instant::now() < deadline,
            "the trapped watch instance was not rebuilt"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(count_logged(&["spin-t", "spinning"]) >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_plugin_lanes_keep_one_tenant_from_stalling_another() {
    let (zk, direct) = client("tenants", None).await;
    let h = host(IsolationMode::PerPlugin);
    direct
        .create("/t", b"", CreateMode::Persistent)
        .await
        .unwrap();
    direct
        .create("/sink", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let a = load_guest(
        &h,
        &zk,
        "tenant-a",
        "spin",
        Policy {
            compute_budget: Duration::from_secs(5),
            ..all()
        },
        &[],
    );
    let b = load_guest(&h, &zk, "tenant-b", "echo", all(), &[("sink", "/sink")]);
    a.bind(Binding::PersistentRecursive("/t".into()))
        .await
        .unwrap();
    b.bind(Binding::PersistentRecursive("/t".into()))
        .await
        .unwrap();
    direct
        .create("/t/first", b"", CreateMode::Persistent)
        .await
        .unwrap();
    logged(&["tenant-a", "spinning"]).await;
    let t0 = Instant::now();
    direct
        .create("/t/second", b"", CreateMode::Persistent)
        .await
        .unwrap();
    await_children(&direct, "/sink", |c| {
        c.iter().any(|s| s.contains("/t/second"))
    })
    .await;
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "tenant B waited {:?} behind tenant A",
        t0.elapsed()
    );
    assert_eq!(b.stats().traps, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_are_contained() {
    let (zk, direct) = client("hostile", None).await;
    let h = host(IsolationMode::PerPlugin);
    direct
        .create("/h", b"", CreateMode::Persistent)
        .await
        .unwrap();
    direct
        .create("/allowed", b"", CreateMode::Persistent)
        .await
        .unwrap();
    direct
        .create("/secret", b"keep", CreateMode::Persistent)
        .await
        .unwrap();
    let small = Policy {
        memory_limit: 16 << 20,
        compute_budget: Duration::from_millis(500),
        ..Policy::default().read(["/h"])
    };
    let plugins = [
        load_guest(&h, &zk, "bomb-t", "memory-bomb", small.clone(), &[]),
        load_guest(&h, &zk, "recursion-t", "deep-recursion", small.clone(), &[]),
        load_guest(&h, &zk, "panic-t", "panic", small.clone(), &[]),
    ];
    let escape = load_guest(
        &h,
        &zk,
        "escape-t",
        "escape",
        Policy::default().read(["/h"]).write(["/allowed"]),
        &[("forbidden", "/secret"), ("allowed", "/allowed/ok")],
    );
    let wasi = load_guest(&h, &zk, "wasi-t", "wasi-escape", small.clone(), &[]);
    let big = load_guest(
        &h,
        &zk,
        "big-t",
        "oversized",
        Policy {
            max_payload: 1 << 20,
            ..Policy::default().read(["/h"]).write(["/allowed"])
        },
        &[("path", "/allowed/big"), ("bytes", "2097152")],
    );
    // Slow but legitimate: it waits on ZooKeeper far longer than its compute budget.
    let slow = load_guest(
        &h,
        &zk,
        "slow-t",
        "slow-ok",
        Policy {
            compute_budget: Duration::from_millis(50),
            ..Policy::default().read(["/h"]).write(["/allowed"])
        },
        &[("path", "/h"), ("done", "/allowed/slow-done")],
    );
    direct
        .create("/allowed/slow-done", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let echo = load_guest(
        &h,
        &zk,
        "bystander-t",
        "echo",
        all(),
        &[("sink", "/allowed")],
    );
    for p in plugins.iter().chain([&escape, &wasi, &big, &slow, &echo]) {
        p.bind(Binding::PersistentRecursive("/h".into()))
            .await
            .unwrap();
    }
    direct
        .create("/h/go", b"", CreateMode::Persistent)
        .await
        .unwrap();

    logged(&["bomb-t", "plugin call failed"]).await;
    logged(&["recursion-t", "plugin call failed"]).await;
    logged(&["panic-t", "guest panic: boom"]).await;
    logged(&["panic-t", "plugin call failed"]).await;
    logged(&["escape-t", "denied"]).await;
    await_node(&direct, "/allowed/ok").await;
    assert_eq!(
        direct.get_data("/secret").await.unwrap().0,
        b"keep",
        "nothing written outside the allow-list"
    );
    logged(&["big-t", "payload"]).await;
    assert_eq!(direct.exists("/allowed/big").await.unwrap(), None);
    await_data(&direct, "/allowed/slow-done", b"finished").await;
    assert_eq!(slow.stats().traps, 0, "the slow guest was not killed");
    // Its compute time counts its guest execution, not its waiting: under the budget its one
    // call kept to, though the call took longer than that on the wall.
    let compute = slow.stats().compute_time;
    let took = slow.lane_metrics(wazoo::LaneKind::Watch).max_callback;
    assert!(
        compute > Duration::ZERO && compute < Duration::from_millis(50) && took > compute * 2,
        "the slow guest computed for {compute:?} in a call of {took:?}"
    );
    logged(&["wasi-t", "wasi-escape done", "0 escaped"]).await;
    logged(&["escape-t", "escape done", "0 escaped"]).await;
    assert_eq!(
        count_logged(&["ESCAPED"]),
        0,
        "a guest got past the sandbox"
    );
    assert_eq!(
        count_logged(&["wasi-t", "root:x:0"]),
        0,
        "the guest read a host file"
    );
    for p in &plugins {
        assert!(p.stats().traps >= 1, "{} trapped", p.name());
    }
    // The bystander saw the event, and the host goes on.
    await_children(&direct, "/allowed", |c| {
        c.iter().any(|s| s.contains("/h/go"))
    })
    .await;
    assert_eq!(echo.stats().traps, 0);
    assert_eq!(zk.state(), SessionState::Connected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_crashing_is_disabled() {
    let (zk, direct) = client("disable", None).await;
    let h = host(IsolationMode::PerPlugin);
    direct
        .create("/d", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let p = load_guest(
        &h,
        &zk,
        "crashy-t",
        "panic",
        Policy {
            max_crashes: 3,
            ..Policy::default().read(["/d"])
        },
        &[],
    );
    p.bind(Binding::PersistentRecursive("/d".into()))
        .await
        .unwrap();
    for i in 0..6 {
        direct
            .create(&format!("/d/{i}"), b"", CreateMode::Persistent)
            .await
            .unwrap();
    }
    logged(&["crashy-t", "plugin disabled"]).await;
    assert!(p.stats().disabled);
    assert_eq!(p.stats().traps, 3, "no calls after it was disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_plugins_are_refused_at_load_with_a_reason() {
    let (zk, _) = client("invalid", None).await;
    let h = host(IsolationMode::Shared);
    let e = h
        .load(&zk, "text", b"hello, not wasm", Policy::default(), vec![])
        .unwrap_err();
    assert!(matches!(e, PluginError::NotWasm { .. }), "{e}");
    // An empty core module.
    let e = h
        .load(&zk, "core", b"\0asm\x01\0\0\0", Policy::default(), vec![])
        .unwrap_err();
    assert!(matches!(e, PluginError::CoreModule { .. }), "{e}");
    assert!(e.to_string().contains("wasm32-wasip2"));
    // An empty component: it exports nothing of the world.
    let e = h
        .load(
            &zk,
            "empty",
            b"\0asm\x0d\0\x01\0",
            Policy::default(),
            vec![],
        )
        .unwrap_err();
    assert!(matches!(e, PluginError::WrongWorld { .. }), "{e}");
    assert!(
        e.to_string().contains("init") || e.to_string().contains("export"),
        "{e}"
    );
    // Truncated component bytes.
    let bytes = std::fs::read(guest("echo")).unwrap();
    let e = h
        .load(
            &zk,
            "cut",
            &bytes[..bytes.len() / 2],
            Policy::default(),
            vec![],
        )
        .unwrap_err();
    assert!(matches!(e, PluginError::Invalid { .. }), "{e}");
    // Binding outside the read allow-list.
    let p = h
        .load(
            &zk,
            "narrow",
            &bytes,
            Policy::default().read(["/a"]),
            vec![],
        )
        .unwrap();
    let e = p
        .bind(Binding::PersistentRecursive("/b".into()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("allow-list"), "{e}");

    // A component whose memory starts above its policy's limit could never build an
    // instance: refused at load, saying by how much, rather than loaded and crash-looped.
    let big = std::fs::read(guest("big-memory")).unwrap();
    let small = Policy {
        memory_limit: 16 << 20,
        ..all()
    };
    let e = h.load(&zk, "big", &big, small.clone(), vec![]).unwrap_err();
    assert!(matches!(e, PluginError::OverLimits { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains("plugin big")
            && text.contains("starts at 25")
            && text.contains("memory_limit of 16 MiB"),
        "{text}"
    );
    // Under a policy that holds it, the same component loads and runs.
    let roomy = h.load(&zk, "big-ok", &big, all(), vec![]).unwrap();
    assert!(roomy.inject_watch("/ballast", 7));
    logged(&["big-ok", "watch /ballast: ballast of 24 MiB, last byte 7"]).await;
    // A reload into it is refused the same way, and the old code goes on.
    let p = h.load(&zk, "grows", &bytes, small, vec![]).unwrap();
    let e = p.reload(&big).unwrap_err();
    assert!(matches!(e, PluginError::OverLimits { .. }), "{e:?}");
    assert!(p.inject_watch("/after-refused-reload", 1));
    logged(&["grows", "watch", "/after-refused-reload"]).await;
    // A host whose pool slots are smaller than the memory refuses it as it compiles.
    let tiny = PluginHost::new(PluginHostConfig {
        max_memory: 16 << 20,
        ..Default::default()
    })
    .expect("plugin host");
    let e = tiny.load(&zk, "big-pool", &big, all(), vec![]).unwrap_err();
    assert!(matches!(e, PluginError::Invalid { .. }), "{e:?}");
    assert!(e.to_string().contains("memory"), "{e}");

    // A component larger than the host compiles is refused before it is compiled, and a
    // file before it is read (a sparse 1 GiB file: refused for its size, not as "not wasm").
    let strict = PluginHost::new(PluginHostConfig {
        max_component_bytes: bytes.len() - 1,
        ..Default::default()
    })
    .expect("plugin host");
    let e = strict
        .load(&zk, "large", &bytes, all(), vec![])
        .unwrap_err();
    assert!(matches!(e, PluginError::OverLimits { .. }), "{e:?}");
    assert!(e.to_string().contains("max_component_bytes"), "{e}");
    let huge = std::env::temp_dir().join(format!("wazoo-huge-{}.wasm", std::process::id()));
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let e = strict
        .load_file(&zk, "huge", &huge, all(), vec![])
        .unwrap_err();
    let _ = std::fs::remove_file(&huge);
    assert!(
        matches!(e, PluginError::OverLimits { .. }) && e.to_string().contains("1024 MiB"),
        "{e:?}"
    );
    // One byte more of room, and it loads.
    let roomier = PluginHost::new(PluginHostConfig {
        max_component_bytes: bytes.len(),
        ..Default::default()
    })
    .expect("plugin host");
    roomier
        .load(&zk, "just-fits", &bytes, all(), vec![])
        .expect("a component of exactly max_component_bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_code_and_keeps_watches_and_session() {
    let (zk, direct) = client("reload", None).await;
    let h = host(IsolationMode::Shared);
    direct
        .create("/r", b"", CreateMode::Persistent)
        .await
        .unwrap();
    direct
        .create("/sink", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let p = load_guest(
        &h,
        &zk,
        "reload-t",
        "panic",
        Policy {
            max_crashes: 100,
            ..all()
        },
        &[("sink", "/sink")],
    );
    p.bind(Binding::PersistentRecursive("/r".into()))
        .await
        .unwrap();
    let sid = zk.session_id();
    direct
        .create("/r/before", b"", CreateMode::Persistent)
        .await
        .unwrap();
    logged(&["reload-t", "guest panic: boom"]).await;
    // New code, same plugin, same bindings.
    p.reload(&std::fs::read(guest("echo")).unwrap()).unwrap();
    direct
        .create("/r/after", b"", CreateMode::Persistent)
        .await
        .unwrap();
    await_children(&direct, "/sink", |c| {
        c.iter().any(|s| s.contains("/r/after"))
    })
    .await;
    assert_eq!(zk.session_id(), sid, "the session was kept");
    // A broken replacement is refused and the running code stays.
    assert!(p.reload(b"not wasm").is_err());
    direct
        .create("/r/still", b"", CreateMode::Persistent)
        .await
        .unwrap();
    await_children(&direct, "/sink", |c| {
        c.iter().any(|s| s.contains("/r/still"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_handles_every_queued_event_then_takes_no_more() {
    let (zk, _direct) = client("drain", None).await;
    let h = host(IsolationMode::PerPlugin);
    let p = load_guest(&h, &zk, "drain-t", "noop", Policy::default(), &[]);
    for i in 0..500 {
        assert!(p.inject_watch("/x", i));
    }
    assert!(h.drain(WAIT).await, "the guest lane drained");
    assert_eq!(h.queued_events(), 0);
    assert_eq!(
        p.stats().calls,
        500,
        "every queued event was handled before drain returned"
    );
    assert!(
        !p.inject_watch("/x", 501),
        "a drained host takes no new events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exists_binding_hears_creation_and_deletion_and_stays_armed() {
    let (zk, direct) = client("exists", None).await;
    let h = host(IsolationMode::PerPlugin);
    let p = load_guest(
        &h,
        &zk,
        "exists-t",
        "echo",
        Policy::default().read(["/e"]).write(["/sink"]),
        &[("sink", "/sink")],
    );
    // The node does not exist yet.
    p.bind(Binding::Exists("/e".into())).await.unwrap();
    direct
        .create("/e", b"v0", CreateMode::Persistent)
        .await
        .unwrap();
    await_children(&direct, "/sink", |c| c.len() == 1).await;
    // A data change re-arms the watch without reaching the plugin; deletion and creation do.
    direct.set_data("/e", b"v1", None).await.unwrap();
    direct.delete("/e", None).await.unwrap();
    direct
        .create("/e", b"v2", CreateMode::Persistent)
        .await
        .unwrap();
    await_children(&direct, "/sink", |c| c.len() >= 3).await;
    direct.delete("/e", None).await.unwrap();
    let events = await_children(&direct, "/sink", |c| c.len() >= 4).await;
    assert_eq!(
        events,
        [
            "node-created /e",
            "node-deleted /e",
            "node-created /e",
            "node-deleted /e"
        ],
        "existence changes only, each once, in order"
    );
    // A data change, a deletion and a creation in one transaction: the watch fires on the
    // change, so only the re-arm can see the rest, and it tells the new node from the old one
    // by its creation zxid.
    direct
        .create("/e", b"v3", CreateMode::Persistent)
        .await
        .unwrap();
    await_children(&direct, "/sink", |c| c.len() >= 5).await;
    direct
        .multi(&[
            Op::set_data("/e", b"v4".to_vec(), -1),
            Op::delete("/e", -1),
            Op::create("/e", b"v5".to_vec(), CreateMode::Persistent),
        ])
        .await
        .unwrap();
    let events = await_children(&direct, "/sink", |c| c.len() >= 7).await;
    assert_eq!(
        events[4..],
        ["node-created /e", "node-deleted /e", "node-created /e"],
        "a deletion and re-creation inside the re-arm window is reported"
    );
    let m = p.lane_metrics(wazoo::LaneKind::Watch);
    assert_eq!((m.dispatched, m.queue_depth), (7, 0), "{m:?}");
    assert_eq!(p.stats().traps, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_lanes_count_events_and_time_them_per_plugin() {
    let (zk, _direct) = client("lane-metrics", None).await;
    for isolation in [IsolationMode::PerPlugin, IsolationMode::Shared] {
        let h = host(isolation);
        let a = load_guest(&h, &zk, "metrics-a", "noop", Policy::default(), &[]);
        let b = load_guest(&h, &zk, "metrics-b", "noop", Policy::default(), &[]);
        for i in 0..200 {
            assert!(a.inject_watch("/x", i));
        }
        for i in 0..50 {
            assert!(b.inject_watch("/x", i));
        }
        assert!(h.drain(WAIT).await);
        let (ma, mb) = (
            a.lane_metrics(wazoo::LaneKind::Watch),
            b.lane_metrics(wazoo::LaneKind::Watch),
        );
        assert_eq!(
            (ma.dispatched, ma.queue_depth, mb.dispatched, mb.queue_depth),
            (200, 0, 50, 0),
            "{isolation:?}"
        );
        for m in [ma, mb] {
            assert_eq!(m.callback.count(), m.dispatched);
            assert_eq!(m.wait.count(), m.dispatched);
            assert!(m.busy > Duration::ZERO && m.callback.sum == m.busy);
            assert_eq!(m.panics, 0);
        }
        let ms = a.lane_metrics(wazoo::LaneKind::Session);
        assert_eq!((ms.dispatched, ms.callback.count()), (0, 0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_host_and_its_plugins_stops_threads_and_releases_instances() {
    let (zk, direct) = client("drop-host", None).await;
    let h = host(IsolationMode::PerPlugin);
    let probe = h.probe();
    direct
        .create("/w", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let p = load_guest(&h, &zk, "drop-t", "echo", all(), &[]);
    p.bind(Binding::Session).await.unwrap();
    p.bind(Binding::PersistentRecursive("/w".into()))
        .await
        .unwrap();
    direct
        .create("/d", b"", CreateMode::Persistent)
        .await
        .unwrap();
    p.bind(Binding::Data("/d".into())).await.unwrap();
    logged(&["drop-t", "session connected"]).await;
    direct
        .create("/w/a", b"", CreateMode::Persistent)
        .await
        .unwrap();
    logged(&["drop-t", "watch node-created /w/a"]).await;
    assert_eq!(p.stats().instantiations, 2, "session and watch instances");
    // The plugin keeps its host's threads running.
    drop(h);
    direct
        .create("/w/b", b"", CreateMode::Persistent)
        .await
        .unwrap();
    logged(&["drop-t", "watch node-created /w/b"]).await;
    assert!(probe.live() > 0);
    for path in ["/w", "/d"] {
        zk.check_watches(path, WatcherType::Any)
            .await
            .unwrap_or_else(|e| panic!("the plugin's watch on {path} is on the server: {e}"));
    }
    drop(p);
    // Its watches leave the server with it (the removals are queued before the checks).
    for path in ["/w", "/d"] {
        assert_eq!(
            zk.check_watches(path, WatcherType::Any).await,
            Err(wazoo::Error::NoWatcher),
            "the unloaded plugin's watch on {path} is still on the server"
        );
    }
    let waiting = probe.clone();
    let stopped = tokio::task::spawn_blocking(move || waiting.wait_stopped(WAIT))
        .await
        .unwrap();
    assert!(
        stopped,
        "{} of the host's threads, tasks and instances still live {WAIT:?} after its last handle was dropped",
        probe.live()
    );
    // The session goes on; the plugin's events go nowhere.
    direct.set_data("/d", b"x", None).await.unwrap();
    direct
        .create("/w/c", b"", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(zk.get_data("/d").await.unwrap().0, b"x");
    assert_eq!(zk.state(), SessionState::Connected);
    assert_eq!(count_logged(&["drop-t", "/w/c"]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guests_own_watch_is_one_shot() {
    let (zk, direct) = client("self-watch", None).await;
    let h = host(IsolationMode::PerPlugin);
    direct
        .create("/barrier", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let p = load_guest(
        &h,
        &zk,
        "self-watch-t",
        "self-watch",
        Policy::default().read(["/self", "/barrier"]),
        &[("path", "/self"), ("kind", "exists")],
    );
    p.bind(Binding::Session).await.unwrap();
    p.bind(Binding::Persistent("/barrier".into()))
        .await
        .unwrap();
    logged(&["self-watch-t", "armed exists watch on /self"]).await;
    direct
        .create("/self", b"", CreateMode::Persistent)
        .await
        .unwrap();
    logged(&["self-watch-t", "watch node-created /self"]).await;
    // Nothing re-armed it: these changes reach no one...
    direct.set_data("/self", b"x", None).await.unwrap();
    direct.delete("/self", None).await.unwrap();
    // ...as the barrier shows: its event follows theirs on the same watch lane.
    direct.set_data("/barrier", b"x", None).await.unwrap();
    logged(&["self-watch-t", "watch node-data-changed /barrier"]).await;
    assert_eq!(count_logged(&["self-watch-t", "watch node-", " /self "]), 1);
    assert_eq!(p.stats().traps, 0);
}

/// Parses a `Duration`'s `Debug` form (`3.000136771s`, `12.5ms`, `800µs`, `40ns`).
fn parse_debug_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ns") {
        (n, 1e-9)
    } else if let Some(n) = s.strip_suffix("µs") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else {
        (s.strip_suffix('s')?, 1.0)
    };
    num.parse::<f64>()
        .ok()
        .map(|v| Duration::from_secs_f64(v * scale))
}

/// Plugins of the same component share one compiled, pre-linked copy while any of them is
/// loaded; each still gets instances of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_of_one_component_share_its_code() {
    let (zk, direct) = client("share", None).await;
    let h = host(IsolationMode::PerPlugin);
    let sink = Policy::default().write(["/sink"]);
    let a = load_guest(
        &h,
        &zk,
        "share-a",
        "echo",
        sink.clone(),
        &[("sink", "/sink")],
    );
    let b = load_guest(
        &h,
        &zk,
        "share-b",
        "echo",
        sink.clone(),
        &[("sink", "/sink")],
    );
    assert_eq!(h.prepared_components(), 1, "one echo component");
    let c = load_guest(&h, &zk, "share-c", "noop", all(), &[]);
    assert_eq!(h.prepared_components(), 2);
    // Each plugin has its own instances (and state): both handle an event.
    a.inject_watch("/a", 1);
    b.inject_watch("/b", 2);
    let mut events = await_children(&direct, "/sink", |c| c.len() >= 2).await;
    events.sort(); // two plugins, two lanes: either may write first
    assert_eq!(events, ["node-data-changed /a", "node-data-changed /b"]);
    // Reloading one onto other code leaves the other on the shared copy.
    a.reload(&std::fs::read(guest("noop")).unwrap()).unwrap();
    assert_eq!(h.prepared_components(), 2, "noop is shared with c now");
    // Unloaded plugins let go of their code once their instances are gone (their lanes drop
    // them asynchronously).
    let settles = |want: usize, why: &str| {
        let deadline = Instant::now() + WAIT;
        while h.prepared_components() != want {
            assert!(
                Instant::now() < deadline,
                "{why}: {} components still in use",
                h.prepared_components()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    drop((b, c));
    settles(1, "only a's noop is in use");
    drop(a);
    settles(0, "no plugin is loaded");
}

// ---- bursts: events queued behind each other, handled in one call into the guest ----

/// Waits until the plugin has handled `n` events (successfully or not).
async fn await_handled(p: &Plugin, lane: wazoo::LaneKind, n: u64) {
    let deadline = Instant::now() + WAIT;
    while p.lane_metrics(lane).dispatched < n {
        assert!(
            Instant::now() < deadline,
            "{} handled {} of {n} events on its {lane:?} lane",
            p.name(),
            p.lane_metrics(lane).dispatched
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_runs_in_one_call_in_order_and_a_trap_loses_only_its_event() {
    let (zk, direct) = client("burst", None).await;
    let h = host(IsolationMode::PerPlugin);
    let p = load_guest(
        &h,
        &zk,
        "burst-t",
        "burst",
        all(),
        &[
            ("sink", "/sink"),
            ("hold-watch", "/gate"),
            ("panic-on", "/boom"),
        ],
    );
    // The first event holds the lane until /gate exists; the rest queue behind it.
    for (seq, path) in ["/first", "/a", "/b", "/boom", "/c", "/d"]
        .iter()
        .enumerate()
    {
        assert!(p.inject_watch(path, seq as u64));
    }
    direct
        .create("/gate", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let got = await_children(&direct, "/sink", |c| c.len() >= 5).await;
    assert_eq!(
        got,
        [
            "watch /first",
            "watch /a",
            "watch /b",
            "watch /c",
            "watch /d"
        ],
        "every event but the one that trapped, in order"
    );
    await_handled(&p, wazoo::LaneKind::Watch, 6).await;
    logged(&["burst-t", "burst panic on /boom"]).await;
    // The rebuilt instance starts from its component's memory, not from what the trapped one
    // left in the pool slot (its static counter starts again).
    logged(&["burst-t", "burst #3 watch /b"]).await;
    logged(&["burst-t", "burst #1 watch /c"]).await;
    logged(&["burst-t", "burst #2 watch /d"]).await;
    let s = p.stats();
    // /a, /b and /boom were taken by the call that began with /first; /c began a call on the
    // rebuilt instance, which took /d.
    assert_eq!(
        (s.calls, s.traps, s.taken, s.instantiations, s.restarts),
        (5, 1, 4, 2, 1),
        "{s:?}"
    );
    let m = p.lane_metrics(wazoo::LaneKind::Watch);
    assert_eq!((m.dispatched, m.panics, m.queue_depth), (6, 1, 0));
    assert_eq!(h.queued_events(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_of_a_burst_has_its_own_budget_and_wall_clock_limit() {
    let (zk, direct) = client("burst-limits", None).await;
    let h = host(IsolationMode::PerPlugin);
    // Each event: 200 ms of guest execution, then 350 ms waiting on ZooKeeper (sync after
    // sync; the imports themselves cost the guest some CPU too, tens of ms under load).
    let (budget, wall) = (Duration::from_millis(300), Duration::from_secs(1));
    let p = load_guest(
        &h,
        &zk,
        "burst-limits",
        "burst",
        Policy {
            compute_budget: budget,
            wall_limit: wall,
            ..all()
        },
        &[("sink", "/sink"), ("spin-ms", "200"), ("dwell-ms", "350")],
    );
    let started = Instant::now();
    for (seq, path) in ["/e1", "/e2", "/e3"].iter().enumerate() {
        assert!(p.inject_watch(path, seq as u64));
    }
    let got = await_children(&direct, "/sink", |c| c.len() >= 3).await;
    let took = started.elapsed();
    assert_eq!(got, ["watch /e1", "watch /e2", "watch /e3"]);
    await_handled(&p, wazoo::LaneKind::Watch, 3).await;
    let s = p.stats();
    assert_eq!((s.calls, s.traps, s.taken), (3, 0, 2), "{s:?}");
    // One call ran past both limits; no event did.
    assert!(took > wall, "the burst took only {took:?}");
    assert!(3 * Duration::from_millis(200) > budget);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_queued_behind_each_other_reach_the_guest_in_one_call() {
    let (zk, direct) = client("burst-completions", None).await;
    let h = host(IsolationMode::PerPlugin);
    let p = load_guest(
        &h,
        &zk,
        "burst-c",
        "burst",
        all(),
        &[
            ("sink", "/sink"),
            ("fanout", "20"),
            ("hold-completion", "/gate"),
        ],
    );
    direct
        .create("/n", b"x", CreateMode::Persistent)
        .await
        .unwrap();
    assert!(p.inject_watch("/n", 0));
    // The first completion holds its lane: wait until the other 19 are queued behind it.
    let deadline = Instant::now() + WAIT;
    while p.lane_metrics(wazoo::LaneKind::Completion).queue_depth < 20 {
        assert!(
            Instant::now() < deadline,
            "only {} completions arrived",
            p.lane_metrics(wazoo::LaneKind::Completion).queue_depth
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The watch handler records its event after issuing the gets: let it, first.
    await_children(&direct, "/sink", |c| c.len() == 1).await;
    direct
        .create("/gate", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let got = await_children(&direct, "/sink", |c| c.len() >= 21).await;
    let mut want = vec!["watch /n".to_string()];
    want.extend((0..20).map(|i| format!("completion /n#{i}")));
    assert_eq!(got, want);
    await_handled(&p, wazoo::LaneKind::Completion, 20).await;
    let s = p.stats();
    assert_eq!((s.calls, s.traps, s.taken), (21, 0, 19), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_on_a_shared_lane_keeps_the_lanes_order_across_plugins() {
    let (zk, direct) = client("burst-shared", None).await;
    let h = host(IsolationMode::Shared);
    let a = load_guest(
        &h,
        &zk,
        "burst-sa",
        "burst",
        all(),
        &[("sink", "/sink"), ("hold-watch", "/gate")],
    );
    let b = load_guest(&h, &zk, "burst-sb", "burst", all(), &[("sink", "/sink")]);
    // One lane for both: A's run of events must stop where B's event comes.
    assert!(a.inject_watch("/a1", 1));
    assert!(b.inject_watch("/b1", 2));
    assert!(a.inject_watch("/a2", 3));
    assert!(a.inject_watch("/a3", 4));
    assert!(b.inject_watch("/b2", 5));
    direct
        .create("/gate", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let got = await_children(&direct, "/sink", |c| c.len() >= 5).await;
    assert_eq!(
        got,
        [
            "watch /a1",
            "watch /b1",
            "watch /a2",
            "watch /a3",
            "watch /b2"
        ]
    );
    await_handled(&a, wazoo::LaneKind::Watch, 3).await;
    await_handled(&b, wazoo::LaneKind::Watch, 2).await;
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.calls, sa.taken, sb.calls, sb.taken), (3, 1, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_without_the_lane_interface_gets_one_call_per_event() {
    let (zk, direct) = client("unbatched", None).await;
    // It is what components built before `wazoo:plugin/lane` look like: no such import.
    let bytes = std::fs::read(guest("unbatched")).unwrap();
    let imports_lane = |b: &[u8]| b.windows(17).any(|w| w == b"wazoo:plugin/lane");
    assert!(!imports_lane(&bytes));
    assert!(imports_lane(&std::fs::read(guest("burst")).unwrap()));
    let h = host(IsolationMode::PerPlugin);
    let p = load_guest(
        &h,
        &zk,
        "unbatched-t",
        "unbatched",
        all(),
        &[("sink", "/sink"), ("hold", "/gate")],
    );
    direct
        .create("/sink", b"", CreateMode::Persistent)
        .await
        .unwrap();
    for (seq, path) in ["/x1", "/x2", "/x3"].iter().enumerate() {
        assert!(p.inject_watch(path, seq as u64));
    }
    direct
        .create("/gate", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let got = await_children(&direct, "/sink", |c| c.len() >= 3).await;
    assert_eq!(got, ["watch /x1", "watch /x2", "watch /x3"]);
    await_handled(&p, wazoo::LaneKind::Watch, 3).await;
    let s = p.stats();
    assert_eq!((s.calls, s.traps, s.taken), (3, 0, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lane_threads_spread_plugins_and_keep_each_lane_on_its_thread() {
    let (zk, _direct) = client("lane-threads", None).await;
    let h = PluginHost::new(PluginHostConfig {
        cache_dir: Some(test_cache_dir()),
        isolation: IsolationMode::PerPlugin,
        lane_threads: 2,
        ..Default::default()
    })
    .expect("plugin host");
    // Plugins take the threads of each kind in turn; all of a lane's events run on its thread.
    let plugins: Vec<Plugin> = (0..3)
        .map(|i| load_guest(&h, &zk, &format!("spread-{i}"), "burst", all(), &[]))
        .collect();
    for round in 0..3 {
        for p in &plugins {
            assert!(p.inject_watch(&format!("/r{round}"), round));
        }
    }
    for (i, p) in plugins.iter().enumerate() {
        await_handled(p, wazoo::LaneKind::Watch, 3).await;
        let thread = format!("wazoo-guest-watch-{}", i % 2);
        for round in 0..3 {
            let line = logged(&[p.name(), &format!("watch /r{round}")]).await;
            assert!(
                line.contains(&thread),
                "{} should run its watch lane on {thread}: {line}",
                p.name()
            );
        }
    }
    // Unloading leaves a gap on its thread: the next plugin goes there, not to the next in
    // turn (the fourth plugin in turn would take thread 1, which still holds spread-1).
    let mut plugins = plugins;
    drop(plugins.remove(2));
    drop(plugins.remove(0));
    let gap = load_guest(&h, &zk, "spread-gap", "burst", all(), &[]);
    assert!(gap.inject_watch("/gap", 0));
    await_handled(&gap, wazoo::LaneKind::Watch, 1).await;
    let line = logged(&["spread-gap", "watch /gap"]).await;
    assert!(
        line.contains("wazoo-guest-watch-0"),
        "the plugin loaded after both plugins on thread 0 were unloaded should take it: {line}"
    );
    // Zero threads per kind is refused, with the reason.
    let e = PluginHost::new(PluginHostConfig {
        lane_threads: 0,
        ..Default::default()
    })
    .expect_err("no lane threads");
    assert!(e.to_string().contains("lane_threads"), "{e}");
}

/// A file's SHA-256 in hex, as `sha256sum` prints it (an implementation apart from the host's).
fn sha256_hex(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    let out = String::from_utf8(out.stdout).unwrap();
    out.split_whitespace().next().expect("a digest").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compilation_cache_is_named_by_sha256_and_a_damaged_entry_is_recompiled() {
    let (zk, direct) = client("cache", None).await;
    let dir = std::env::temp_dir().join(format!("wazoo-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let host_with_cache = || {
        PluginHost::new(PluginHostConfig {
            cache_dir: Some(dir.clone()),
            ..Default::default()
        })
        .expect("plugin host")
    };
    let sha = sha256_hex(&guest("echo"));
    let entries = || -> Vec<PathBuf> {
        std::fs::read_dir(&dir)
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default()
    };
    let sink = Policy::default().write(["/sink"]);
    let echo = |h: &PluginHost, name: &str| {
        load_guest(h, &zk, name, "echo", sink.clone(), &[("sink", "/sink")])
    };

    // Compiled once, cached under the component's SHA-256.
    let h = host_with_cache();
    drop(echo(&h, "cache-first"));
    drop(h);
    let files = entries();
    assert_eq!(files.len(), 1, "one artifact: {files:?}");
    let file = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        file.starts_with(&format!("{sha}-")) && file.ends_with(".cwasm"),
        "{file} is not named <sha256 of the component>-<engine>.cwasm ({sha})"
    );

    // A damaged entry is not trusted: the plugin is compiled again, works, and the entry is
    // replaced.
    std::fs::write(&files[0], b"not an artifact").unwrap();
    let h = host_with_cache();
    let p = echo(&h, "cache-damaged");
    logged(&["cache-damaged", "cached artifact unusable, recompiling"]).await;
    p.inject_watch("/after-damage", 1);
    await_children(&direct, "/sink", |c| {
        c.iter().any(|s| s.contains("/after-damage"))
    })
    .await;
    assert!(
        std::fs::metadata(&files[0]).unwrap().len() > 1000,
        "the damaged entry was rewritten"
    );
    drop((p, h));

    // And then used as it is.
    let before = std::fs::read(&files[0]).unwrap();
    let h = host_with_cache();
    drop(echo(&h, "cache-warm"));
    assert_eq!(
        count_logged(&["cache-warm", "unusable"]),
        0,
        "the rewritten entry loads"
    );
    assert_eq!(
        std::fs::read(&files[0]).unwrap(),
        before,
        "not written again"
    );
    assert_eq!(entries().len(), 1);
    drop(h);

    // Hosts compiling the same component at once into an empty cache leave one whole
    // artifact, and nothing half-written.
    std::fs::remove_dir_all(&dir).unwrap();
    let start = std::sync::Barrier::new(4);
    std::thread::scope(|s| {
        for i in 0..4 {
            let (start, host_with_cache, echo) = (&start, &host_with_cache, &echo);
            s.spawn(move || {
                let h = host_with_cache();
                start.wait();
                drop(echo(&h, &format!("cache-race-{i}")));
            });
        }
    });
    let files = entries();
    assert_eq!(
        files.len(),
        1,
        "one artifact, no temporary files: {files:?}"
    );
    let h = host_with_cache();
    drop(echo(&h, "cache-after-race"));
    assert_eq!(count_logged(&["cache-after-race", "unusable"]), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compilation_cache_trusts_only_what_its_own_user_could_have_written() {
    use std::os::unix::fs::PermissionsExt;
    let (zk, direct) = client("cache-trust", None).await;
    let root = std::env::temp_dir().join(format!("wazoo-cache-trust-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let dir = root.join("nested").join("cache");
    let host_with_cache = || {
        PluginHost::new(PluginHostConfig {
            cache_dir: Some(dir.clone()),
            ..Default::default()
        })
    };
    let mode = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().permissions().mode();
    let chmod = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    let sink = Policy::default().write(["/sink-trust"]);
    let echo = |h: &PluginHost, name: &str| {
        load_guest(
            h,
            &zk,
            name,
            "echo",
            sink.clone(),
            &[("sink", "/sink-trust")],
        )
    };
    let artifact = || -> PathBuf {
        let files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "one artifact: {files:?}");
        files[0].clone()
    };

    // The host creates the directory (and its parents) for its user alone, and writes
    // artifacts only that user can read or write.
    let h = host_with_cache().expect("plugin host");
    drop(echo(&h, "trust-first"));
    drop(h);
    assert_eq!(mode(&dir) & 0o777, 0o700, "cache directory mode");
    let file = artifact();
    assert_eq!(mode(&file) & 0o777, 0o600, "artifact mode");

    // An artifact anyone could have written is not loaded: compiled again, replaced, and the
    // plugin works.
    chmod(&file, 0o666);
    let h = host_with_cache().expect("plugin host");
    let p = echo(&h, "trust-shared-file");
    let line = logged(&["trust-shared-file", "cached artifact not trusted"]).await;
    assert!(line.contains("writable by every user"), "{line}");
    p.inject_watch("/after-untrusted", 1);
    await_children(&direct, "/sink-trust", |c| {
        c.iter().any(|s| s.contains("/after-untrusted"))
    })
    .await;
    assert_eq!(mode(&file) & 0o777, 0o600, "the artifact was replaced");
    drop((p, h));

    // So is a symbolic link in its place (to a real artifact, even).
    let elsewhere = root.join("elsewhere.cwasm");
    std::fs::rename(&file, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    let h = host_with_cache().expect("plugin host");
    drop(echo(&h, "trust-symlink"));
    let line = logged(&["trust-symlink", "cached artifact not trusted"]).await;
    assert!(line.contains("symbolic link"), "{line}");
    assert!(
        std::fs::symlink_metadata(&file).unwrap().is_file(),
        "the link was replaced by an artifact"
    );
    drop(h);

    // A trusted artifact is loaded as it is.
    let h = host_with_cache().expect("plugin host");
    drop(echo(&h, "trust-warm"));
    assert_eq!(count_logged(&["trust-warm", "recompiling"]), 0);
    drop(h);

    // A directory others may write is refused outright, saying which and why: the host does
    // not start on it.
    for (m, who) in [(0o777, "every user"), (0o770, "its group")] {
        chmod(&dir, m);
        let e = host_with_cache().expect_err("an untrusted cache directory");
        assert!(
            matches!(&e, PluginError::UntrustedCache { path, .. } if *path == dir),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains(&dir.display().to_string()) && text.contains(who),
            "{text}"
        );
    }
    chmod(&dir, 0o700);
    // A file where the directory should be is refused too.
    let not_dir = root.join("a-file");
    std::fs::write(&not_dir, b"").unwrap();
    let e = PluginHost::new(PluginHostConfig {
        cache_dir: Some(not_dir),
        ..Default::default()
    })
    .expect_err("a file as the cache directory");
    assert!(matches!(e, PluginError::UntrustedCache { .. }), "{e:?}");
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compilation_cache_keeps_to_its_size_by_dropping_the_least_recently_used() {
    let (zk, _direct) = client("cache-size", None).await;
    let dir = std::env::temp_dir().join(format!("wazoo-cache-size-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let host = |max: u64| {
        PluginHost::new(PluginHostConfig {
            cache_dir: Some(dir.clone()),
            cache_max_bytes: max,
            ..Default::default()
        })
        .expect("plugin host")
    };
    let sha = |component: &str| sha256_hex(&guest(component));
    // Each component's artifact, by the SHA-256 its name starts with.
    let artifact = |component: &str| -> Option<PathBuf> {
        let sha = sha(component);
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(&sha) && name.ends_with(".cwasm")
            })
    };
    let size = |p: &PathBuf| std::fs::metadata(p).unwrap().len();
    let age = |p: &PathBuf, secs: u64| {
        std::fs::File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(secs))
            .unwrap()
    };
    let sink = [("sink", "/size-sink")];
    let policy = Policy::default().write(["/size-sink"]);

    // Three components cached; then made used three, two and one hours ago.
    let h = host(u64::MAX);
    for (i, c) in ["echo", "noop", "burst"].into_iter().enumerate() {
        drop(load_guest(
            &h,
            &zk,
            &format!("size-{i}"),
            c,
            policy.clone(),
            &sink,
        ));
    }
    drop(h);
    let (echo, noop, burst) = (
        artifact("echo").expect("echo cached"),
        artifact("noop").expect("noop cached"),
        artifact("burst").expect("burst cached"),
    );
    age(&echo, 3 * 3600);
    age(&noop, 2 * 3600);
    age(&burst, 3600);
    // What is not the cache's is left alone; a temporary file a dead writer left an hour ago
    // goes, one being written now stays.
    let name = echo.file_name().unwrap().to_string_lossy().into_owned();
    let stale = dir.join(name.replace(".cwasm", ".tmp1-0"));
    let fresh = dir.join(name.replace(".cwasm", ".tmp2-0"));
    let notes = dir.join("NOTES");
    for f in [&stale, &fresh, &notes] {
        std::fs::write(f, b"x").unwrap();
    }
    age(&stale, 2 * 3600);

    // A host whose limit holds two of them: the least recently used goes, at start.
    // (Either of echo and burst fits beside noop, whichever is bigger.)
    let limit = size(&noop) + size(&burst).max(size(&echo));
    let h = host(limit);
    assert!(
        !echo.exists(),
        "the least recently used artifact was removed"
    );
    assert!(noop.exists() && burst.exists(), "the two newer ones stay");
    assert!(!stale.exists(), "a stale temporary file was removed");
    assert!(fresh.exists() && notes.exists(), "others' files stay");
    logged(&[
        "compilation cache above",
        "removed the 1 least recently used",
    ])
    .await;

    // Loading marks an artifact used: noop, loaded now, outlives burst when echo comes back
    // (compiled again) and the three no longer fit.
    drop(load_guest(
        &h,
        &zk,
        "size-noop",
        "noop",
        policy.clone(),
        &sink,
    ));
    assert_eq!(
        count_logged(&["size-noop", "recompiling"]),
        0,
        "noop came from the cache"
    );
    drop(load_guest(
        &h,
        &zk,
        "size-echo",
        "echo",
        policy.clone(),
        &sink,
    ));
    let echo = artifact("echo").expect("echo cached again");
    assert!(noop.exists(), "the artifact just loaded stays");
    assert!(!burst.exists(), "the one not loaded since goes");
    let cached: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .map(|p| size(&p))
        .sum();
    assert!(
        cached <= limit,
        "{cached} bytes cached, over the limit of {limit}"
    );
    assert!(echo.exists());
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freed_pool_slots_go_to_the_next_plugins_before_fresh_ones() {
    let (zk, _direct) = client("warm-slots", None).await;
    let h = host(IsolationMode::Shared);
    let idle_becomes = |want: u32, what: &'static str| {
        let h = h.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            while h.idle_pool_slots() != want {
                assert!(
                    Instant::now() < deadline,
                    "{what}: {} idle pool slots, not {want}",
                    h.idle_pool_slots()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let built = |component: &'static str, tag: &'static str| {
        let (h, zk) = (h.clone(), zk.clone());
        async move {
            let plugins: Vec<Plugin> = (0..5)
                .map(|i| load_guest(&h, &zk, &format!("{tag}-{i}"), component, all(), &[]))
                .collect();
            for p in &plugins {
                assert!(p.inject_watch("/warm", 1));
            }
            for p in &plugins {
                await_handled(p, wazoo::LaneKind::Watch, 1).await;
            }
            plugins
        }
    };
    idle_becomes(0, "a new host").await;
    // Five plugins, an instance each; unloaded, they leave five warm slots.
    drop(built("echo", "warm-echo").await);
    idle_becomes(5, "after unloading five plugins").await;
    // Five plugins of another component take those five, not never-used slots (wasmtime's
    // default keeps up to 100 idle slots for the component they held, and would leave these
    // five idle and fault in five fresh ones).
    let next = built("noop", "warm-noop").await;
    idle_becomes(0, "after building five instances of another component").await;
    drop(next);
    idle_becomes(5, "after unloading those").await;
}
