//! Python plugins (componentize-py components on the `wazoo_guest` SDK) on the real server: the
//! two examples do their jobs, state kept on the plugin object survives between calls, each
//! zk-error arrives as its own exception class, and hostile Python guests are contained as the
//! Rust ones are. The components are built once per run by `scripts/build-guests-py.sh`; a
//! missing componentize-py fails the tests loudly.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use wazoo::{
    Binding, Client, CreateMode, IsolationMode, Plugin, PluginHost, PluginHostConfig, Policy,
    SessionState,
};
use wazoo_tests::{guest, py_guest, ZkServer};

const WAIT: Duration = Duration::from_secs(30);

// ---- the host's log, captured (tests/src/logs.rs) ----

fn init_log() {
    wazoo_tests::logs::init_log_capture();
}

/// Waits until a logged line contains every one of `needles`.
async fn logged(needles: &[&str]) -> String {
    wazoo_tests::logs::logged(needles, WAIT).await
}

// ---- shared server, per-test chroots, hosts with the defaults ----

fn server() -> &'static ZkServer {
    static S: OnceLock<ZkServer> = OnceLock::new();
    S.get_or_init(|| ZkServer::start().expect("start ZooKeeper"))
}

/// A host with the default limits (`max_component_bytes`, `max_memory`): Python fits them.
fn host(isolation: IsolationMode) -> PluginHost {
    let cache = std::env::temp_dir().join("wazoo-test-cache");
    PluginHost::new(PluginHostConfig {
        cache_dir: Some(cache),
        isolation,
        ..Default::default()
    })
    .expect("plugin host")
}

/// A client chrooted at a fresh node named after the test, and a second one beside it.
async fn client(name: &str) -> (Client, Client) {
    init_log();
    let root = format!("/python-{name}");
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

/// Loads a Python guest. Loads take turns: a component's first compile takes minutes in a
/// debug build, and a test that waits for another's finds it in the compile cache instead of
/// compiling it again beside it.
fn load(
    host: &PluginHost,
    zk: &Client,
    name: &str,
    component: &str,
    policy: Policy,
    config: &[(&str, &str)],
) -> Plugin {
    static TURN: Mutex<()> = Mutex::new(());
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let path = py_guest(component);
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    host.load_file(zk, name, &path, policy, config)
        .unwrap_or_else(|e| panic!("loading {component}: {e}"))
}

async fn await_data(zk: &Client, path: &str, want: &str) {
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    loop {
        match zk.get_data(path).await {
            Ok((d, _)) if d == want.as_bytes() => return,
            Ok((d, _)) => last = Some(String::from_utf8_lossy(&d).to_string()),
            Err(_) => {}
        }
        assert!(
            Instant::now() < deadline,
            "{path} never held {want:?} (last {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `path` exists and returns its data as text.
async fn await_text(zk: &Client, path: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok((d, _)) = zk.get_data(path).await {
            return String::from_utf8_lossy(&d).to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{path} did not appear within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn await_gone(zk: &Client, path: &str) {
    let deadline = Instant::now() + WAIT;
    while zk.exists(path).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "{path} was not removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the plugin has built more instances than `before` (a trapped one rebuilt).
async fn await_rebuilt(p: &Plugin, before: u64) {
    let deadline = Instant::now() + WAIT;
    while p.stats().instantiations <= before {
        assert!(
            Instant::now() < deadline,
            "{}: the trapped instance was not rebuilt",
            p.name()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn mk(zk: &Client, path: &str, data: &str) {
    zk.create(path, data.as_bytes(), CreateMode::Persistent)
        .await
        .unwrap_or_else(|e| panic!("creating {path}: {e}"));
}

// ---- the examples ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_logs_every_change_and_counts_them_on_self() {
    let (zk, direct) = client("audit").await;
    let h = host(IsolationMode::Shared);
    mk(&direct, "/app", "").await;
    let p = load(
        &h,
        &zk,
        "audit-py",
        "audit_log",
        Policy::default().read(["/app"]),
        &[],
    );
    p.bind(Binding::PersistentRecursive("/app".into()))
        .await
        .unwrap();
    mk(&direct, "/app/x", "1").await;
    logged(&["audit-py", "#1 node-created /app/x", "version=0"]).await;
    direct.set_data("/app/x", b"2", None).await.unwrap();
    logged(&["audit-py", "#2 node-data-changed /app/x", "version=1"]).await;
    direct.delete("/app/x", None).await.unwrap();
    logged(&["audit-py", "#3 node-deleted /app/x"]).await;
    assert_eq!(p.stats().traps, 0);
    assert_eq!(p.stats().instantiations, 1, "one watch-lane instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_validator_writes_a_verdict_beside_each_document() {
    let (zk, direct) = client("validator").await;
    let h = host(IsolationMode::Shared);
    mk(&direct, "/config", "").await;
    let p = load(
        &h,
        &zk,
        "validator-py",
        "config_validator",
        Policy::default().read(["/config"]).write(["/config"]),
        &[("root", "/config")],
    );
    p.bind(Binding::PersistentRecursive("/config".into()))
        .await
        .unwrap();
    mk(
        &direct,
        "/config/app",
        r#"{"port": 8080, "hosts": ["a", "b"]}"#,
    )
    .await;
    await_data(&direct, "/config/app.verdict", "ok").await;
    direct
        .set_data("/config/app", br#"{"port": 8080,"#, None)
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    let verdict = loop {
        let v = await_text(&direct, "/config/app.verdict").await;
        if v != "ok" {
            break v;
        }
        assert!(Instant::now() < deadline, "the bad JSON was never judged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        verdict.starts_with("invalid JSON: ") && verdict.contains("line 1"),
        "{verdict}"
    );
    // A new node with bad JSON, and one without data (not a document: no verdict).
    mk(&direct, "/config/db", "port=5432").await;
    let v = await_text(&direct, "/config/db.verdict").await;
    assert!(v.starts_with("invalid JSON: "), "{v}");
    mk(&direct, "/config/empty", "").await;
    // Fixed again: ok; deleted: its verdict goes too.
    direct
        .set_data("/config/app", b"[1, 2, 3]", None)
        .await
        .unwrap();
    await_data(&direct, "/config/app.verdict", "ok").await;
    direct.delete("/config/app", None).await.unwrap();
    await_gone(&direct, "/config/app.verdict").await;
    assert_eq!(direct.exists("/config/empty.verdict").await.unwrap(), None);
    assert_eq!(p.stats().traps, 0);
}

// ---- the SDK ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_on_the_plugin_object_survives_between_handler_calls() {
    let (zk, direct) = client("state").await;
    let h = host(IsolationMode::Shared);
    mk(&direct, "/s", "").await;
    mk(&direct, "/sink", "").await;
    let p = load(
        &h,
        &zk,
        "state-py",
        "probe",
        Policy::default().read(["/s"]).write(["/sink"]),
        &[("mode", "state"), ("sink", "/sink")],
    );
    p.bind(Binding::Data("/s".into())).await.unwrap();
    // componentize-py makes a new world object for every call: the SDK keeps the plugin.
    for n in 1..=3 {
        direct.set_data("/s", b"x", None).await.unwrap();
        await_data(&direct, "/sink", &format!("count={n} inits=1")).await;
    }
    assert_eq!(p.stats().traps, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_zk_error_raises_its_exception_class_and_async_callbacks_come_back() {
    let (zk, direct) = client("errors").await;
    let h = host(IsolationMode::Shared);
    mk(&direct, "/e", "").await;
    mk(&direct, "/e/go", "").await;
    mk(&direct, "/e/sink", "").await;
    mk(&direct, "/elsewhere", "").await;
    let p = load(
        &h,
        &zk,
        "errors-py",
        "probe",
        Policy {
            max_payload: 1 << 20,
            ..Policy::default().read(["/e"]).write(["/e"])
        },
        &[("mode", "errors"), ("sink", "/e/sink"), ("base", "/e")],
    );
    p.bind(Binding::Data("/e/go".into())).await.unwrap();
    direct.set_data("/e/go", b"go", None).await.unwrap();
    let want = [
        "get-missing:NoNode",
        "create-existing:NodeExists",
        "set-bad-version:BadVersion",
        "delete-not-empty:NotEmpty",
        // A relative path ("no-slash") lies outside every allow-list: the host's allow-list
        // check answers before its path check.
        "invalid-path:NotAllowed",
        "too-large:TooLarge",
        "denied:NotAllowed",
        "kazoo-alias:True",
    ]
    .join("\n");
    await_data(&direct, "/e/sink", &want).await;
    // The async calls' outcomes, each through its kind of callback on the completion lane.
    assert_eq!(
        await_text(&direct, "/e/sink.async-method").await,
        "get:NoNode"
    );
    assert_eq!(
        await_text(&direct, "/e/sink.async-function").await,
        "get:NoneType"
    );
    assert_eq!(
        await_text(&direct, "/e/sink.async-raw").await,
        "exists:None"
    );
    assert_eq!(
        await_text(&direct, "/e/sink.lambda-refused").await,
        "TypeError"
    );
    assert_eq!(p.stats().traps, 0);
}

// ---- containment ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_python_guests_are_contained() {
    let (zk, direct) = client("hostile").await;
    let h = host(IsolationMode::PerPlugin);
    mk(&direct, "/h", "").await;
    mk(&direct, "/out", "").await;
    mk(&direct, "/out/forbidden", "").await;
    mk(&direct, "/secret", "keep").await;
    let hostile = Policy {
        compute_budget: Duration::from_millis(500),
        ..Policy::default().read(["/h"])
    };
    let spin = load(
        &h,
        &zk,
        "spin-py",
        "probe",
        hostile.clone(),
        &[("mode", "spin")],
    );
    let bomb = load(
        &h,
        &zk,
        "bomb-py",
        "probe",
        hostile.clone(),
        &[("mode", "bomb")],
    );
    let raise = load(&h, &zk, "raise-py", "probe", hostile, &[("mode", "raise")]);
    let forbidden = load(
        &h,
        &zk,
        "forbidden-py",
        "probe",
        Policy::default().read(["/h"]).write(["/out"]),
        &[
            ("mode", "forbidden"),
            ("forbidden", "/secret"),
            ("sink", "/out/forbidden"),
        ],
    );
    // A Rust bystander on the same host and the same events.
    let echo = h
        .load_file(
            &zk,
            "bystander",
            &guest("echo"),
            Policy::default().read(["/h"]).write(["/out"]),
            vec![("sink".into(), "/out".into())],
        )
        .unwrap();
    let all = [&spin, &bomb, &raise, &forbidden, &echo];
    for p in all {
        p.bind(Binding::PersistentRecursive("/h".into()))
            .await
            .unwrap();
    }
    let built: Vec<u64> = all.iter().map(|p| p.stats().instantiations).collect();
    mk(&direct, "/h/go", "").await;

    // The infinite loop is cut at its compute budget.
    logged(&["spin-py", "spinning on /h/go"]).await;
    logged(&["spin-py", "compute budget"]).await;
    // The memory bomb meets the memory limit: Python's MemoryError, which traps.
    logged(&["bomb-py", "bombing on /h/go"]).await;
    logged(&["bomb-py", "MemoryError"]).await;
    // The uncaught exception: its traceback in the log, then a trap.
    logged(&["raise-py", "RuntimeError: boom from python"]).await;
    logged(&["raise-py", "plugin call failed"]).await;
    // The forbidden path: the typed error, in Python, and nothing written.
    let seen = await_text(&direct, "/out/forbidden").await;
    let deadline = Instant::now() + WAIT;
    let mut seen = seen;
    while seen.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the forbidden guest wrote nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = await_text(&direct, "/out/forbidden").await;
    }
    assert!(
        seen.starts_with("read:NotAllowed\nwrite:NotAllowed (") && seen.contains("/secret"),
        "{seen}"
    );
    assert_eq!(direct.get_data("/secret").await.unwrap().0, b"keep");
    for p in [&spin, &bomb, &raise] {
        let deadline = Instant::now() + WAIT;
        while p.stats().traps < 1 {
            assert!(Instant::now() < deadline, "{} never trapped", p.name());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(forbidden.stats().traps, 0);

    // The host and the bystander went on; the trapped instances are rebuilt for the next event.
    mk(&direct, "/h/again", "").await;
    for (p, before) in [(&spin, built[0]), (&bomb, built[1]), (&raise, built[2])] {
        await_rebuilt(p, before + 1).await;
    }
    logged(&["raise-py", "raising on /h/again"]).await;
    logged(&["spin-py", "spinning on /h/again"]).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (kids, _) = direct.get_children("/out").await.unwrap();
        let mut seen = Vec::new();
        for k in kids {
            if let Ok((d, _)) = direct.get_data(&format!("/out/{k}")).await {
                seen.push(String::from_utf8_lossy(&d).to_string());
            }
        }
        if seen.iter().any(|s| s.contains("/h/go")) && seen.iter().any(|s| s.contains("/h/again")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bystander did not see both events: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(echo.stats().traps, 0);
    // The rebuilt instance raised again: a second crash.
    let deadline = Instant::now() + WAIT;
    while raise.stats().traps < 2 {
        assert!(
            Instant::now() < deadline,
            "the second exception was not a trap"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(zk.state(), SessionState::Connected);
}
