//! JavaScript plugins on the real server: components built from JavaScript with the pinned
//! componentize-js and the SDK of `guest-js/`. The example plugin does its job and keeps its
//! state between handler calls; ZooKeeper errors reach JavaScript as their classes; hostile
//! JavaScript guests are contained as the Rust ones are, while the host and other plugins go on.
//!
//! A JavaScript component carries its engine (about 12 MB of code): compiling it takes minutes
//! in a debug build, so the plugins load through the compilation cache the other plugin tests
//! use, one load at a time (a second load of a component finds the first one's artifact).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use wazoo::{
    Binding, Client, CreateMode, IsolationMode, Plugin, PluginHost, PluginHostConfig, Policy,
    SessionState,
};
use wazoo_tests::{js, ZkServer};

/// How long a test waits for what a plugin does (its first event includes building the
/// instance from a 12 MB component on a loaded machine).
const WAIT: Duration = Duration::from_secs(60);

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

// ---- shared server, per-test chroots, plugins ----

fn server() -> &'static ZkServer {
    static S: OnceLock<ZkServer> = OnceLock::new();
    S.get_or_init(|| ZkServer::start().expect("start ZooKeeper"))
}

fn host() -> PluginHost {
    PluginHost::new(PluginHostConfig {
        cache_dir: Some(std::env::temp_dir().join("wazoo-test-cache")),
        isolation: IsolationMode::PerPlugin,
        ..Default::default()
    })
    .expect("plugin host")
}

/// A client chrooted at a fresh node named after the test, and a direct one beside it.
async fn client(name: &str) -> (Client, Client) {
    init_log();
    let root = format!("/js-{name}");
    let admin = Client::connect(&server().connect_string())
        .await
        .expect("connect");
    let _ = admin.delete_recursive(&root).await;
    admin
        .create(&root, b"", CreateMode::Persistent)
        .await
        .unwrap();
    admin.close().await;
    let zk = Client::connect(&format!("{}{root}", server().connect_string()))
        .await
        .unwrap();
    let direct = Client::connect(&format!("{}{root}", server().connect_string()))
        .await
        .unwrap();
    (zk, direct)
}

/// Loads the JavaScript guest `guest` as plugin `name`. Loads of one guest go one at a time,
/// so that its component is compiled once and then found in the cache.
fn load(
    host: &PluginHost,
    zk: &Client,
    name: &str,
    guest: &str,
    policy: Policy,
    config: &[(&str, &str)],
) -> Plugin {
    static BY_GUEST: Mutex<BTreeMap<String, Arc<Mutex<()>>>> = Mutex::new(BTreeMap::new());
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let wasm = js::guest(guest);
    let lock = BY_GUEST
        .lock()
        .unwrap()
        .entry(guest.to_string())
        .or_default()
        .clone();
    let _one = lock.lock().unwrap_or_else(|p| p.into_inner());
    host.load_file(zk, name, &wasm, policy, config)
        .unwrap_or_else(|e| panic!("loading the JavaScript guest {guest}: {e}"))
}

async fn create(zk: &Client, path: &str, data: &str) {
    zk.create(path, data.as_bytes(), CreateMode::Persistent)
        .await
        .unwrap_or_else(|e| panic!("creating {path}: {e}"));
}

/// Waits until `path` holds `want`.
async fn await_data(zk: &Client, path: &str, want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = zk.get_data(path).await.map(|(d, _)| d);
        if matches!(&now, Ok(d) if d == want.as_bytes()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never held {want:?} (last: {:?})",
            now.map(|d| String::from_utf8_lossy(&d).to_string())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `path` exists and returns its data as text.
async fn await_text(zk: &Client, path: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        match zk.get_data(path).await {
            Ok((d, _)) => return String::from_utf8_lossy(&d).to_string(),
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

/// Waits until `f` holds of the plugin's counters.
async fn await_stats(p: &Plugin, what: &str, f: impl Fn(&wazoo::PluginStats) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f(&p.stats()) {
        assert!(
            Instant::now() < deadline,
            "{}: {what} never came: {:?}",
            p.name(),
            p.stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- the example ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_path_router_copies_writes_and_keeps_its_count_between_calls() {
    let (zk, direct) = client("router").await;
    let h = host();
    create(&direct, "/in", "").await;
    create(&direct, "/in/orders", "").await;
    create(&direct, "/in/users", "").await;
    let p = load(
        &h,
        &zk,
        "router-t",
        "path-router",
        Policy::default().read(["/in"]).write(["/out", "/count"]),
        &[
            ("routes", "/in/orders=/out/o, /in/users=/out/u"),
            ("count", "/count"),
        ],
    );
    p.bind(Binding::PersistentRecursive("/in".into()))
        .await
        .unwrap();

    create(&direct, "/in/orders/1", "first").await;
    await_data(&direct, "/out/o/1", "first").await;
    await_data(&direct, "/count", "1").await;
    // The count lives on the plugin object: it grows from one call to the next.
    direct
        .set_data("/in/orders/1", b"changed", None)
        .await
        .unwrap();
    await_data(&direct, "/out/o/1", "changed").await;
    await_data(&direct, "/count", "2").await;
    create(&direct, "/in/users/ann", "admin").await;
    await_data(&direct, "/out/u/ann", "admin").await;
    await_data(&direct, "/count", "3").await;
    // A deletion is routed too; an event on a source itself is not copied.
    direct.delete("/in/orders/1", None).await.unwrap();
    direct.set_data("/in/users", b"root", None).await.unwrap();
    create(&direct, "/in/users/bob", "").await;
    await_data(&direct, "/count", "4").await;
    assert_eq!(direct.exists("/out/o/1").await.unwrap(), None, "deleted");
    assert_eq!(
        direct
            .exists("/out/u")
            .await
            .unwrap()
            .map(|s| s.data_length),
        Some(0)
    );
    let stats = p.stats();
    assert_eq!(stats.traps, 0);
    assert_eq!(stats.restarts, 0, "one watch instance did it all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_router_config_fails_init_with_the_plugins_message() {
    let (zk, direct) = client("badconfig").await;
    let h = host();
    create(&direct, "/in", "").await;
    let p = load(
        &h,
        &zk,
        "badconfig-t",
        "path-router",
        Policy::default().read(["/in"]).write(["/out"]),
        &[("routes", "/in=/in/copy")],
    );
    p.bind(Binding::PersistentRecursive("/in".into()))
        .await
        .unwrap();
    create(&direct, "/in/x", "").await;
    logged(&["badconfig-t", "neither path may contain the other"]).await;
    assert_eq!(direct.exists("/in/copy").await.unwrap(), None);
}

// ---- errors ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_errors_reach_javascript_as_their_classes() {
    let (zk, direct) = client("errors").await;
    let h = host();
    create(&direct, "/e", "").await;
    create(&direct, "/e/trigger", "").await;
    create(&direct, "/e/secret", "keep").await;
    create(&direct, "/e/base", "").await;
    create(&direct, "/e/base/child", "here").await;
    let p = load(
        &h,
        &zk,
        "errors-t",
        "probe",
        Policy {
            max_payload: 1024,
            ..Policy::default().read(["/e"]).write(["/e/base"])
        },
        &[
            ("mode", "errors"),
            ("base", "/e/base"),
            ("forbidden", "/e/secret"),
            ("big", "2048"),
            ("report", "/e/base/report"),
            ("async-report", "/e/base/async"),
        ],
    );
    p.bind(Binding::PersistentRecursive("/e/trigger".into()))
        .await
        .unwrap();
    create(&direct, "/e/trigger/go", "").await;

    let report = await_text(&direct, "/e/base/report").await;
    for (case, class, kind) in [
        ("noNode", "NoNode", "no-node"),
        ("nodeExists", "NodeExists", "node-exists"),
        ("badVersion", "BadVersion", "bad-version"),
        ("notEmpty", "NotEmpty", "not-empty"),
        ("notAllowed", "NotAllowed", "denied"),
        // A path ZooKeeper's rules refuse lies inside no allow-list: the host denies it.
        ("invalidPath", "NotAllowed", "denied"),
        ("tooLarge", "TooLarge", "too-large"),
    ] {
        let want = format!(r#""{case}":{{"class":"{class}","kind":"{kind}","zk":true}}"#);
        assert!(report.contains(&want), "{want} not in {report}");
    }
    assert!(report.contains(r#""ok":{"class":null}"#), "{report}");
    assert_eq!(
        direct.get_data("/e/secret").await.unwrap().0,
        b"keep",
        "nothing written outside the allow-list"
    );
    assert_eq!(direct.get_data("/e/base/child").await.unwrap().0, b"here");

    // An asynchronous call's error reaches its callback, a method of the plugin, on the
    // completion lane's instance, with the context given to the call.
    let async_report = await_text(&direct, "/e/base/async").await;
    for want in [
        r#""class":"NoNode""#,
        r#""zk":true"#,
        r#""message":"get /e/base/missing: no-node""#,
        r#""value":null"#,
        r#""context":{"asked":"/e/base/missing"}"#,
        r#""kind":"get""#,
    ] {
        assert!(async_report.contains(want), "{want} not in {async_report}");
    }
    assert_eq!(p.stats().traps, 0);
}

// ---- hostile guests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_javascript_guests_are_contained() {
    let (zk, direct) = client("hostile").await;
    let h = host();
    create(&direct, "/h", "").await;
    let hostile = Policy {
        memory_limit: 64 << 20,
        compute_budget: Duration::from_millis(300),
        ..Policy::default().read(["/h"])
    };
    let spin = load(
        &h,
        &zk,
        "spin-js",
        "probe",
        hostile.clone(),
        &[("mode", "spin")],
    );
    let bomb = load(
        &h,
        &zk,
        "bomb-js",
        "probe",
        hostile.clone(),
        &[("mode", "bomb")],
    );
    let throw = load(
        &h,
        &zk,
        "throw-js",
        "probe",
        hostile.clone(),
        &[("mode", "throw")],
    );
    // A bystander of the same engine: it copies every event under /h to /copies.
    let router = load(
        &h,
        &zk,
        "bystander-js",
        "path-router",
        Policy::default().read(["/h"]).write(["/copies"]),
        &[("routes", "/h=/copies")],
    );
    let hostile = [&spin, &bomb, &throw];
    for p in hostile.iter().copied().chain([&router]) {
        p.bind(Binding::PersistentRecursive("/h".into()))
            .await
            .unwrap();
    }
    let sid = zk.session_id();

    create(&direct, "/h/first", "1").await;
    logged(&["spin-js", "spinning"]).await;
    logged(&["spin-js", "plugin call failed", "compute budget"]).await;
    logged(&["bomb-js", "allocating"]).await;
    logged(&["bomb-js", "plugin call failed"]).await;
    logged(&["throw-js", "boom from JavaScript"]).await;
    logged(&["throw-js", "plugin call failed"]).await;
    // The bystander saw the event, on time.
    await_data(&direct, "/copies/first", "1").await;

    // Each hostile instance is rebuilt for the next event, and fails again the same way.
    let built: Vec<u64> = hostile.iter().map(|p| p.stats().instantiations).collect();
    create(&direct, "/h/second", "2").await;
    await_data(&direct, "/copies/second", "2").await;
    for (p, before) in hostile.iter().zip(built) {
        await_stats(p, "a rebuilt instance's second crash", |s| {
            s.instantiations > before && s.traps >= 2 && s.restarts >= 1
        })
        .await;
        assert!(!p.stats().disabled, "{} is under its crash limit", p.name());
    }
    assert!(count_logged(&["spin-js", "spinning"]) >= 2);
    assert_eq!(router.stats().traps, 0, "the bystander never crashed");
    assert_eq!(zk.session_id(), sid, "the session survived");
    assert_eq!(zk.state(), SessionState::Connected);
}
