//! `wazoo::TreeCache` against a real server: events for creates, sets and deletes at depth;
//! convergence (compared with a fresh read of the server's tree by a pure comparison) after
//! connection drops and after a forced session expiry, with another client writing while the
//! cache's client is away; and the time and memory a 10k-node load takes (printed).

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wazoo::{Client, CreateMode, Op, SessionState, Stat, TreeCache, TreeEvent, TreeEvents};
use wazoo_tests::{await_state, Proxied, ZkServer};

const WAIT: Duration = Duration::from_secs(20);

fn server() -> &'static ZkServer {
    static S: OnceLock<ZkServer> = OnceLock::new();
    S.get_or_init(|| {
        ZkServer::builder()
            .tick_time(200)
            .start()
            .expect("start ZooKeeper")
    })
}

async fn connect() -> Client {
    wazoo_tests::init_tracing();
    Client::connect(&server().connect_string())
        .await
        .expect("connect")
}

/// What the comparison looks at in a node: data, version, creation and modification zxids.
type NodeView = (Vec<u8>, i32, i64, i64);

fn view(data: &[u8], stat: &Stat) -> NodeView {
    (data.to_vec(), stat.version, stat.czxid, stat.mzxid)
}

/// Where two trees differ (path by path); empty when they are the same.
fn tree_differences(
    server: &BTreeMap<String, NodeView>,
    cache: &BTreeMap<String, NodeView>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (path, want) in server {
        match cache.get(path) {
            None => out.push(format!("{path}: missing from the cache")),
            Some(got) if got != want => {
                out.push(format!("{path}: cache has {got:?}, server {want:?}"))
            }
            Some(_) => {}
        }
    }
    for path in cache.keys().filter(|p| !server.contains_key(*p)) {
        out.push(format!("{path}: in the cache, not on the server"));
    }
    out
}

#[test]
fn the_tree_comparison_finds_missing_extra_and_changed_nodes() {
    let node = |d: &str, v| (d.as_bytes().to_vec(), v, 1, 1);
    let a = BTreeMap::from([
        ("/r".to_string(), node("", 0)),
        ("/r/a".to_string(), node("x", 0)),
        ("/r/b".to_string(), node("y", 1)),
    ]);
    assert!(tree_differences(&a, &a.clone()).is_empty());
    let mut b = a.clone();
    b.remove("/r/a");
    b.insert("/r/c".to_string(), node("", 0));
    b.insert("/r/b".to_string(), node("y", 2));
    let d = tree_differences(&a, &b);
    assert_eq!(d.len(), 3, "{d:?}");
    assert!(d[0].starts_with("/r/a: missing"));
    assert!(d[1].starts_with("/r/b: cache has"));
    assert!(d[2].starts_with("/r/c: in the cache"));
}

/// The server's tree under `root`, read afresh (breadth first, reads pipelined per level).
async fn read_tree(zk: &Client, root: &str) -> BTreeMap<String, NodeView> {
    let mut out = BTreeMap::new();
    let mut level = vec![root.to_string()];
    while !level.is_empty() {
        let reads: Vec<_> = level
            .iter()
            .map(|p| {
                (
                    p.clone(),
                    zk.get_data(p).into_future(),
                    zk.get_children(p).into_future(),
                )
            })
            .collect();
        let mut next = Vec::new();
        for (p, data, children) in reads {
            let (Ok((d, s)), Ok((c, _))) = (data.await, children.await) else {
                continue; // deleted meanwhile (nobody writes while the tests read)
            };
            out.insert(p.clone(), view(&d, &s));
            next.extend(c.iter().map(|c| format!("{p}/{c}")));
        }
        level = next;
    }
    out
}

fn cached(cache: &TreeCache) -> BTreeMap<String, NodeView> {
    cache
        .snapshot()
        .into_iter()
        .map(|(p, (d, s))| (p, view(&d, &s)))
        .collect()
}

/// Waits, on the cache's events, until it equals `server`.
async fn converges(
    cache: &TreeCache,
    events: &mut TreeEvents,
    server: &BTreeMap<String, NodeView>,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let diff = tree_differences(server, &cached(cache));
        if diff.is_empty() {
            return;
        }
        if tokio::time::timeout_at(deadline, events.next())
            .await
            .is_err()
        {
            panic!("the cache never converged: {diff:#?}");
        }
    }
}

async fn next_event(events: &mut TreeEvents) -> TreeEvent {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("a tree event in time")
        .expect("the cache is open")
}

async fn initialized(events: &mut TreeEvents) -> Vec<TreeEvent> {
    let mut seen = Vec::new();
    loop {
        match next_event(events).await {
            TreeEvent::Initialized => return seen,
            e => seen.push(e),
        }
    }
}

fn added_path(e: &TreeEvent) -> Option<&str> {
    match e {
        TreeEvent::Added { path, .. } => Some(path),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_hears_creates_sets_and_deletes_at_depth() {
    let zk = connect().await;
    let root = "/tc-events";
    let _ = zk.delete_recursive(root).await;
    zk.ensure_path("/tc-events/a").await.unwrap();
    zk.set_data("/tc-events/a", b"first", None).await.unwrap();
    let writer = connect().await;

    let mut cache = TreeCache::new(&zk, root).unwrap();
    let mut events = cache.events();
    cache.start().await.unwrap();
    let mut added: Vec<_> = initialized(&mut events)
        .await
        .iter()
        .filter_map(|e| added_path(e).map(str::to_string))
        .collect();
    added.sort();
    assert_eq!(added, ["/tc-events", "/tc-events/a"]);
    assert!(cache.is_initialized());
    assert_eq!(cache.get("/tc-events/a").unwrap().0, b"first");

    writer
        .create("/tc-events/a/b", b"", CreateMode::Persistent)
        .await
        .unwrap();
    writer
        .create("/tc-events/a/b/c", b"deep", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(
        added_path(&next_event(&mut events).await),
        Some("/tc-events/a/b")
    );
    match next_event(&mut events).await {
        TreeEvent::Added { path, data, .. } => {
            assert_eq!(
                (path.as_str(), data.as_slice()),
                ("/tc-events/a/b/c", &b"deep"[..])
            )
        }
        e => panic!("expected the deep node added, got {e:?}"),
    }
    assert_eq!(cache.children("/tc-events/a").unwrap(), ["b"]);
    assert_eq!(cache.get("/tc-events/a").unwrap().1.num_children, 1);

    writer
        .set_data("/tc-events/a/b/c", b"changed", None)
        .await
        .unwrap();
    match next_event(&mut events).await {
        TreeEvent::Updated { path, data, stat } => {
            assert_eq!(path, "/tc-events/a/b/c");
            assert_eq!(data, b"changed");
            assert_eq!(stat.version, 1);
        }
        e => panic!("expected an update, got {e:?}"),
    }
    assert_eq!(cache.get("/tc-events/a/b/c").unwrap().0, b"changed");

    writer.delete("/tc-events/a/b/c", None).await.unwrap();
    writer.delete("/tc-events/a/b", None).await.unwrap();
    for want in ["/tc-events/a/b/c", "/tc-events/a/b"] {
        match next_event(&mut events).await {
            TreeEvent::Removed { path, data, .. } => {
                assert_eq!(path, want);
                if want.ends_with('c') {
                    assert_eq!(data, b"changed", "the removed node's last data");
                }
            }
            e => panic!("expected {want} removed, got {e:?}"),
        }
    }
    assert_eq!(cache.get("/tc-events/a/b"), None);
    assert!(cache.children("/tc-events/a").unwrap().is_empty());
    assert_eq!(cached(&cache), read_tree(&writer, root).await);
    cache.close().await;
    assert!(events.next().await.is_none(), "closing ends the stream");
}

/// Creates, changes and deletes nodes at several depths under `root` (round `n`).
async fn churn(zk: &Client, root: &str, n: usize) {
    zk.ensure_path(&format!("{root}/r{n}/deep/deeper"))
        .await
        .unwrap();
    zk.set_data(
        &format!("{root}/r{n}/deep/deeper"),
        format!("v{n}").as_bytes(),
        None,
    )
    .await
    .unwrap();
    zk.set_data(
        &format!("{root}/keep"),
        format!("round {n}").as_bytes(),
        None,
    )
    .await
    .unwrap();
    if n > 0 {
        zk.delete_recursive(&format!("{root}/r{}", n - 1))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_converges_after_connection_drops_with_writes_made_meanwhile() {
    let p = Proxied::start(200, Duration::from_secs(4)).await;
    let root = "/tc-drops";
    p.direct.ensure_path("/tc-drops/keep").await.unwrap();
    churn(&p.direct, root, 0).await;
    let mut cache = TreeCache::new(&p.zk, root).unwrap();
    let mut events = cache.events();
    cache.start().await.unwrap();
    initialized(&mut events).await;
    converges(&cache, &mut events, &read_tree(&p.direct, root).await).await;

    let mut states = p.zk.state_events();
    for round in 1..=4 {
        // Keep the client away while the other client writes, then let it back.
        p.proxy.set_reject(true);
        p.proxy.drop_connections();
        await_state(&mut states, SessionState::Suspended, WAIT).await;
        churn(&p.direct, root, round).await;
        p.proxy.set_reject(false);
        await_state(&mut states, SessionState::Connected, WAIT).await;
        converges(&cache, &mut events, &read_tree(&p.direct, root).await).await;
    }
    assert!(cache.get(&format!("{root}/r0")).is_none());
    assert_eq!(cache.get(&format!("{root}/keep")).unwrap().0, b"round 4");
    cache.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_rebuilds_on_a_new_session_after_an_expiry() {
    let p = Proxied::start(200, Duration::from_secs(2)).await;
    let root = "/tc-expiry";
    p.direct.ensure_path("/tc-expiry/keep").await.unwrap();
    churn(&p.direct, root, 0).await;
    let mut cache = TreeCache::new(&p.zk, root).unwrap();
    let mut events = cache.events();
    cache.start().await.unwrap();
    initialized(&mut events).await;

    // Keep the client away until its session expires (the watch goes with it); write meanwhile.
    let sid = p.zk.session_id();
    let mut states = p.zk.state_events();
    p.proxy.set_blackhole(true);
    churn(&p.direct, root, 1).await;
    await_state(&mut states, SessionState::Lost, WAIT).await;
    churn(&p.direct, root, 2).await;
    p.proxy.set_blackhole(false);
    await_state(&mut states, SessionState::Connected, WAIT).await;
    assert_ne!(p.zk.session_id(), sid, "a new session");
    converges(&cache, &mut events, &read_tree(&p.direct, root).await).await;

    // The new session's watch is live: a change made now arrives as an event.
    p.direct
        .set_data("/tc-expiry/keep", b"after", None)
        .await
        .unwrap();
    loop {
        if let TreeEvent::Updated { path, data, .. } = next_event(&mut events).await {
            if path == "/tc-expiry/keep" {
                assert_eq!(data, b"after");
                break;
            }
        }
    }
    cache.close().await;
}

/// The process's resident set, in KiB (Linux).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_ten_thousand_nodes_measured() {
    let zk = connect().await;
    let root = "/tc-load";
    let _ = zk.delete_recursive(root).await;
    zk.ensure_path(root).await.unwrap();
    // 100 parents of 99 children each, 32 bytes of data per node: 10,001 nodes with the root.
    let data = [b'x'; 32];
    for i in 0..100 {
        let mut ops = vec![Op::create(
            format!("{root}/p{i:03}"),
            data,
            CreateMode::Persistent,
        )];
        ops.extend((0..99).map(|j| {
            Op::create(
                format!("{root}/p{i:03}/c{j:03}"),
                data,
                CreateMode::Persistent,
            )
        }));
        zk.multi(&ops).await.unwrap();
    }
    let reader = connect().await;
    let before = rss_kib();
    let began = Instant::now();
    let mut cache = TreeCache::new(&reader, root).unwrap();
    let mut events = cache.events();
    cache.start().await.unwrap();
    let added = initialized(&mut events).await.len();
    let took = began.elapsed();
    let after = rss_kib();
    assert_eq!(added, 10_001, "every node was added");
    assert_eq!(cache.len(), 10_001);
    let growth = match (before, after) {
        (Some(b), Some(a)) => format!("{} KiB", a.saturating_sub(b)),
        _ => "unknown".to_string(),
    };
    println!(
        "treecache_load: 10001 nodes in {:.0} ms; process RSS growth {growth} \
         (other tests may run in this process meanwhile)",
        took.as_secs_f64() * 1000.0
    );
    cache.close().await;
    let _ = zk.delete_recursive(root).await;
}
