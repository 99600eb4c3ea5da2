//! Every operation against a real ZooKeeper server, with its error paths.
//!
//! One server is shared by the tests of this file; each test works under a chroot of its own so
//! they cannot see each other.

use std::time::Duration;

use wazoo::{
    Acl, AddWatchMode, BlockingClient, CallbackInfo, Client, CreateMode, CreateOptions, Error,
    EventType, LaneKind, Op, OpResult, Perms, ReadOp, ReadResult, SessionState, WatchedEvent,
    WatcherType,
};
use wazoo_tests::{fresh_chroot, shared_server};

/// A client chrooted at a fresh node named after the test.
async fn client(name: &str) -> Client {
    wazoo_tests::init_tracing();
    Client::connect(&fresh_chroot(shared_server(), &format!("/ops-{name}")).await)
        .await
        .expect("connect chrooted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_set_delete_and_their_errors() {
    let zk = client("crud").await;
    let (path, stat) = zk
        .create_with("/a", b"one", &CreateOptions::default())
        .await
        .unwrap();
    assert_eq!(path, "/a", "chroot is stripped from the created path");
    assert_eq!(stat.version, 0);
    assert_eq!(stat.data_length, 3);
    assert_eq!(
        zk.create("/a", b"", CreateMode::Persistent).await,
        Err(Error::NodeExists)
    );
    assert_eq!(
        zk.create("/missing/child", b"", CreateMode::Persistent)
            .await,
        Err(Error::NoNode)
    );

    let (data, stat) = zk.get_data("/a").await.unwrap();
    assert_eq!((data.as_slice(), stat.version), (&b"one"[..], 0));
    let stat = zk.set_data("/a", b"two", Some(0)).await.unwrap();
    assert_eq!(stat.version, 1);
    assert_eq!(
        zk.set_data("/a", b"three", Some(0)).await,
        Err(Error::BadVersion)
    );
    assert_eq!(zk.get_data("/a").await.unwrap().0, b"two");
    assert_eq!(zk.get_data("/nope").await, Err(Error::NoNode));
    assert_eq!(zk.set_data("/nope", b"", None).await, Err(Error::NoNode));

    assert_eq!(zk.exists("/a").await.unwrap().map(|s| s.version), Some(1));
    assert_eq!(zk.exists("/nope").await.unwrap(), None);

    zk.create("/a/child", b"", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(zk.delete("/a", None).await, Err(Error::NotEmpty));
    assert_eq!(zk.delete("/a/child", Some(5)).await, Err(Error::BadVersion));
    zk.delete("/a/child", Some(0)).await.unwrap();
    zk.delete("/a", None).await.unwrap();
    assert_eq!(zk.delete("/a", None).await, Err(Error::NoNode));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_paths_are_refused_before_sending() {
    let zk = client("paths").await;
    for p in ["", "a", "/a/", "/a//b", "/a/../b", "/a\0"] {
        assert!(
            matches!(zk.get_data(p).await, Err(Error::InvalidPath { .. })),
            "{p:?} must be refused"
        );
        assert!(matches!(
            zk.create(p, b"", CreateMode::Persistent).await,
            Err(Error::InvalidPath { .. })
        ));
    }
    // The session is unharmed.
    assert!(zk.exists("/").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_modes_sequential_ephemeral_container_ttl() {
    let zk = client("modes").await;
    zk.create("/seq", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let a = zk
        .create("/seq/n-", b"", CreateMode::PersistentSequential)
        .await
        .unwrap();
    let b = zk
        .create("/seq/n-", b"", CreateMode::PersistentSequential)
        .await
        .unwrap();
    assert!(
        a.starts_with("/seq/n-") && a.len() == "/seq/n-".len() + 10,
        "{a}"
    );
    assert!(b > a, "sequence numbers increase: {a} then {b}");
    let d = zk
        .create("/seq/", b"", CreateMode::PersistentSequential)
        .await
        .unwrap();
    assert_eq!(
        d.len(),
        "/seq/".len() + 10,
        "a sequential name may be just the counter: {d}"
    );

    let e = zk
        .create("/eph", b"", CreateMode::EphemeralSequential)
        .await
        .unwrap();
    let stat = zk.exists(&e).await.unwrap().unwrap();
    assert_eq!(stat.ephemeral_owner, zk.session_id());
    assert_eq!(
        zk.create(&format!("{e}/x"), b"", CreateMode::Persistent)
            .await,
        Err(Error::NoChildrenForEphemerals)
    );
    assert_eq!(zk.get_ephemerals("/").await.unwrap(), vec![e.clone()]);

    let (_, stat) = zk
        .create_with(
            "/box",
            b"",
            &CreateOptions {
                mode: CreateMode::Container,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // The server hides its internal owner marks of containers and TTL nodes from clients.
    assert_eq!(stat.ephemeral_owner, 0);
    assert!(zk.exists("/box").await.unwrap().is_some());

    let (_, stat) = zk
        .create_with(
            "/ttl",
            b"",
            &CreateOptions {
                mode: CreateMode::PersistentWithTtl(60_000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(stat.ephemeral_owner, 0);
    assert!(matches!(
        zk.create_with(
            "/ttl0",
            b"",
            &CreateOptions {
                mode: CreateMode::PersistentWithTtl(0),
                ..Default::default()
            }
        )
        .await,
        Err(Error::InvalidArgument(_))
    ));
    // Inside a multi too, and nothing of the multi is applied.
    assert!(matches!(
        zk.multi(&[
            Op::create("/ttl-m", b"".to_vec(), CreateMode::Persistent),
            Op::create(
                "/ttl-m0",
                b"".to_vec(),
                CreateMode::PersistentSequentialWithTtl(-5)
            ),
        ])
        .await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(zk.exists("/ttl-m").await.unwrap().is_none());

    // makepath and ensure_path
    zk.create_with(
        "/deep/er/node",
        b"x",
        &CreateOptions {
            makepath: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(zk.get_data("/deep/er/node").await.unwrap().0, b"x");
    zk.ensure_path("/deep/er/node").await.unwrap();
    zk.ensure_path("/other/path").await.unwrap();
    assert!(zk.exists("/other/path").await.unwrap().is_some());

    // recursive delete and children counts
    for i in 0..30 {
        zk.create(&format!("/deep/er/c{i}"), b"", CreateMode::Persistent)
            .await
            .unwrap();
    }
    assert_eq!(zk.get_all_children_number("/deep").await.unwrap(), 32);
    let (children, stat) = zk.get_children("/deep/er").await.unwrap();
    assert_eq!((children.len(), stat.num_children), (31, 31));
    zk.delete_recursive("/deep").await.unwrap();
    assert_eq!(zk.exists("/deep").await.unwrap(), None);
    assert_eq!(
        zk.delete_recursive("/deep").await,
        Ok(()),
        "deleting what is gone is fine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_and_digest_auth() {
    let zk = client("acl").await;
    let owner = Client::connect(&format!("{}/ops-acl", shared_server().connect_string()))
        .await
        .unwrap();
    owner.add_auth("digest", b"alice:secret").await.unwrap();
    let who = owner.whoami().await.unwrap();
    assert!(
        who.iter()
            .any(|c| c.auth_scheme == "digest" && c.user == "alice"),
        "{who:?}"
    );
    owner
        .create_with(
            "/private",
            b"s3cret",
            &CreateOptions {
                acl: Acl::creator_all(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(owner.get_data("/private").await.unwrap().0, b"s3cret");
    assert_eq!(zk.get_data("/private").await, Err(Error::NoAuth));
    assert_eq!(
        zk.set_data("/private", b"x", None).await,
        Err(Error::NoAuth)
    );
    let (acl, stat) = owner.get_acl("/private").await.unwrap();
    assert_eq!(acl.len(), 1);
    assert_eq!(acl[0].id.scheme, "digest");
    assert!(acl[0].id.id.starts_with("alice:"));

    // Open it for reading to everyone.
    let mut open = acl.clone();
    open.push(Acl::new(Perms::READ, "world", "anyone"));
    owner
        .set_acl("/private", &open, Some(stat.aversion))
        .await
        .unwrap();
    assert_eq!(zk.get_data("/private").await.unwrap().0, b"s3cret");
    assert_eq!(
        zk.set_data("/private", b"x", None).await,
        Err(Error::NoAuth)
    );
    assert_eq!(
        owner.set_acl("/private", &open, Some(0)).await,
        Err(Error::BadVersion)
    );
    assert_eq!(
        zk.set_acl("/private", &[], None).await,
        Err(Error::InvalidAcl)
    );

    // The same credentials from another session grant the same rights.
    zk.add_auth("digest", b"alice:secret").await.unwrap();
    zk.set_data("/private", b"mine", None).await.unwrap();
    owner.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_is_atomic_and_reports_each_op() {
    let zk = client("multi").await;
    zk.create("/m", b"", CreateMode::Persistent).await.unwrap();
    let res = zk
        .multi(&[
            Op::create("/m/a", b"1".to_vec(), CreateMode::Persistent),
            Op::create("/m/b-", b"2".to_vec(), CreateMode::PersistentSequential),
            Op::check("/m", 0),
            Op::set_data("/m", b"x".to_vec(), -1),
        ])
        .await
        .unwrap();
    assert_eq!(res.len(), 4, "{res:?}");
    // ZooKeeper 3.8 answers creates inside a multi with the path only.
    assert!(
        matches!(&res[0], OpResult::Create { path, .. } if path == "/m/a"),
        "{res:?}"
    );
    assert!(matches!(&res[1], OpResult::Create { path, .. } if path.starts_with("/m/b-")));
    assert_eq!(res[2], OpResult::Check);
    assert!(matches!(res[3], OpResult::SetData { stat } if stat.version == 1));

    // A failing op: nothing is applied, and each op has its own result.
    let err = zk
        .multi(&[
            Op::create("/m/c", b"".to_vec(), CreateMode::Persistent),
            Op::delete("/m/a", 7),
            Op::set_data("/m", b"y".to_vec(), -1),
        ])
        .await
        .unwrap_err();
    match err {
        Error::MultiFailed {
            index,
            error,
            results,
        } => {
            assert_eq!(index, 1);
            assert_eq!(*error, Error::BadVersion);
            assert_eq!(results.len(), 3);
            assert_eq!(results[1], OpResult::Error(Some(Error::BadVersion)));
            assert_eq!(
                results[2],
                OpResult::Error(Some(Error::RuntimeInconsistency))
            );
        }
        other => panic!("expected MultiFailed, got {other:?}"),
    }
    assert_eq!(
        zk.exists("/m/c").await.unwrap(),
        None,
        "the create before the failure was rolled back"
    );
    assert_eq!(zk.get_data("/m").await.unwrap().0, b"x");

    let reads = zk
        .multi_read(&[
            ReadOp::GetData("/m/a".into()),
            ReadOp::GetChildren("/m".into()),
            ReadOp::GetData("/m/zz".into()),
        ])
        .await
        .unwrap();
    assert!(matches!(&reads[0], ReadResult::Data { data, .. } if data == b"1"));
    assert!(matches!(&reads[1], ReadResult::Children(c) if c.len() == 2));
    assert_eq!(reads[2], ReadResult::Error(Error::NoNode));
    zk.sync("/m").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_watches_fire_once() {
    let zk = client("watch").await;
    let other = Client::connect(&format!("{}/ops-watch", shared_server().connect_string()))
        .await
        .unwrap();
    let (none, w_exist) = zk.exists_watch("/n").await.unwrap();
    assert!(none.is_none());
    other
        .create("/n", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), w_exist.changed())
        .await
        .expect("exist watch fired");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeCreated, "/n")
    );

    let (_, _, w_data) = zk.get_data_watch("/n").await.unwrap();
    let (_, _, w_child) = zk.get_children_watch("/n").await.unwrap();
    other.set_data("/n", b"1", None).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), w_data.changed())
        .await
        .unwrap();
    assert_eq!(ev.event_type, EventType::NodeDataChanged);
    other
        .create("/n/c", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), w_child.changed())
        .await
        .unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/n")
    );

    // check/remove watches
    let (_, _, w) = zk.get_data_watch("/n").await.unwrap();
    zk.check_watches("/n", WatcherType::Data).await.unwrap();
    assert_eq!(
        zk.check_watches("/n", WatcherType::Children).await,
        Err(Error::NoWatcher)
    );
    zk.remove_watches("/n", WatcherType::Data).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), w.changed())
        .await
        .unwrap();
    assert_eq!(ev.event_type, EventType::DataWatchRemoved);
    assert_eq!(
        zk.check_watches("/n", WatcherType::Data).await,
        Err(Error::NoWatcher)
    );
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_and_recursive_watches() {
    let zk = client("persistent").await;
    let other = Client::connect(&format!(
        "{}/ops-persistent",
        shared_server().connect_string()
    ))
    .await
    .unwrap();
    other
        .create("/p", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let mut rec = zk
        .add_watch("/p", AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    // The server keeps one persistent mode per path and session: the other mode on the same
    // path is refused instead of silently replacing the first.
    assert!(matches!(
        zk.add_watch("/p", AddWatchMode::Persistent).await,
        Err(Error::InvalidArgument(_))
    ));
    let mut flat = zk
        .add_watch("/p/0", AddWatchMode::Persistent)
        .await
        .unwrap();
    for i in 0..5 {
        other
            .create(&format!("/p/{i}"), b"", CreateMode::Persistent)
            .await
            .unwrap();
        other
            .set_data(&format!("/p/{i}"), b"v", None)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..10 {
        let ev = tokio::time::timeout(Duration::from_secs(10), rec.next())
            .await
            .unwrap()
            .unwrap();
        seen.push((ev.event_type, ev.path));
    }
    assert_eq!(seen[0], (EventType::NodeCreated, "/p/0".to_string()));
    assert_eq!(seen[1], (EventType::NodeDataChanged, "/p/0".to_string()));
    assert_eq!(seen[9], (EventType::NodeDataChanged, "/p/4".to_string()));
    // The plain persistent watch sees its node's events, children included, and keeps firing.
    for want in [EventType::NodeCreated, EventType::NodeDataChanged] {
        let ev = tokio::time::timeout(Duration::from_secs(10), flat.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((ev.event_type, ev.path.as_str()), (want, "/p/0"));
    }
    for i in 0..3 {
        other
            .create(&format!("/p/0/k{i}"), b"", CreateMode::Persistent)
            .await
            .unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(10), flat.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (ev.event_type, ev.path.as_str()),
            (EventType::NodeChildrenChanged, "/p/0")
        );
        let ev = tokio::time::timeout(Duration::from_secs(10), rec.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (ev.event_type, ev.path),
            (EventType::NodeCreated, format!("/p/0/k{i}"))
        );
    }
    // ZooKeeper 3.8 removes persistent watches only with WatcherType::Any (the per-mode types
    // came in 3.9) and answers the others with a marshalling error.
    zk.remove_watches("/p", WatcherType::Any).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), rec.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.event_type, EventType::PersistentWatchRemoved);
    zk.check_watches("/p/0", WatcherType::Any).await.unwrap();
    assert_eq!(
        zk.check_watches("/p", WatcherType::Any).await,
        Err(Error::NoWatcher)
    );
    other.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_the_session_and_its_ephemerals() {
    let zk = client("close").await;
    let watcher = Client::connect(&format!("{}/ops-close", shared_server().connect_string()))
        .await
        .unwrap();
    zk.create("/e", b"", CreateMode::Ephemeral).await.unwrap();
    let (_, w) = watcher.exists_watch("/e").await.unwrap();
    let mut states = zk.state_events();
    zk.close().await;
    let ev = tokio::time::timeout(Duration::from_secs(10), w.changed())
        .await
        .unwrap();
    assert_eq!(
        ev.event_type,
        EventType::NodeDeleted,
        "closing deletes the ephemeral at once"
    );
    assert_eq!(zk.get_data("/e").await, Err(Error::Closed));
    let mut last = None;
    while let Some(ev) = states.next().await {
        last = Some(ev.state);
    }
    assert_eq!(last, Some(wazoo::SessionState::Closed));
    watcher.close().await;
}

/// Runs `f` on a thread of its own, outside any runtime, as blocking code runs.
async fn off_runtime<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let handle = std::thread::spawn(f);
    tokio::task::spawn_blocking(move || handle.join().expect("the blocking thread panicked"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_facade_works_without_a_runtime() {
    let zk = client("blocking").await;
    let b = BlockingClient::new(zk);
    let (d, r, e) = off_runtime(move || {
        b.create("/x", b"1", CreateMode::Persistent).unwrap();
        let (d, _) = b.get_data("/x").unwrap();
        let r = wazoo::RetryPolicy::default().run_blocking(|| b.delete("/x", None));
        (d, r, b.exists("/x").unwrap())
    })
    .await;
    assert_eq!(d, b"1");
    assert_eq!(r, Ok(()));
    assert_eq!(e, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_counts_descendants_lists_ephemerals_and_checks_watches() {
    let b = BlockingClient::new(client("blocking-counts").await);
    off_runtime(move || {
        let t = b.negotiated_timeout();
        assert!(
            t > Duration::ZERO && t <= Duration::from_secs(10),
            "granted {t:?} for the 10 s asked"
        );
        b.ensure_path("/t/a/b").unwrap();
        b.create("/t/c", b"", CreateMode::Persistent).unwrap();
        assert_eq!(b.get_all_children_number("/t"), Ok(3));
        assert_eq!(b.get_all_children_number("/nope"), Err(Error::NoNode));

        let e = b
            .create("/t/e-", b"", CreateMode::EphemeralSequential)
            .unwrap();
        assert_eq!(b.get_ephemerals("/t"), Ok(vec![e.clone()]));
        assert_eq!(b.get_ephemerals("/"), Ok(vec![e]));
        assert_eq!(b.get_ephemerals("/x"), Ok(vec![]));
        assert!(matches!(
            b.get_ephemerals("t"),
            Err(Error::InvalidPath { .. })
        ));

        assert_eq!(
            b.check_watches("/t/c", WatcherType::Data),
            Err(Error::NoWatcher)
        );
        let (_, _, w) = b.get_data_watch("/t/c").unwrap();
        b.check_watches("/t/c", WatcherType::Data).unwrap();
        assert_eq!(
            b.check_watches("/t/c", WatcherType::Children),
            Err(Error::NoWatcher)
        );
        b.remove_watches("/t/c", WatcherType::Data).unwrap();
        assert_eq!(b.wait_watch(w).event_type, EventType::DataWatchRemoved);
        assert_eq!(
            b.check_watches("/t/c", WatcherType::Data),
            Err(Error::NoWatcher)
        );
        b.close();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_watch_callbacks_and_listeners_run_on_their_lanes() {
    const WAIT: Duration = Duration::from_secs(10);
    let b = BlockingClient::new(client("blocking-lanes").await);
    off_runtime(move || {
        let (tx, rx) = std::sync::mpsc::channel();
        let next = || rx.recv_timeout(WAIT).expect("a watch event in time");
        let heard = |what: &'static str| {
            let tx = tx.clone();
            move |ev: WatchedEvent, info: CallbackInfo| {
                tx.send((what, info.lane, ev.event_type, ev.path)).unwrap()
            }
        };
        let watch = |what, ty, path: &str| (what, LaneKind::Watch, ty, path.to_string());

        assert_eq!(b.exists_with("/w", heard("exists")), Ok(None));
        b.create("/w", b"0", CreateMode::Persistent).unwrap();
        assert_eq!(next(), watch("exists", EventType::NodeCreated, "/w"));

        assert_eq!(b.get_data_with("/w", heard("data")).unwrap().0, b"0");
        b.set_data("/w", b"1", None).unwrap();
        assert_eq!(next(), watch("data", EventType::NodeDataChanged, "/w"));

        assert_eq!(
            b.get_children_with("/w", heard("kids")).unwrap().0,
            Vec::<String>::new()
        );
        b.create("/w/c", b"", CreateMode::Persistent).unwrap();
        assert_eq!(next(), watch("kids", EventType::NodeChildrenChanged, "/w"));

        // A persistent watcher hears every event until it returns false.
        let f = heard("tree");
        b.add_watch_with("/w", AddWatchMode::PersistentRecursive, move |ev, info| {
            let go_on = ev.path != "/w/stop";
            f(ev, info);
            go_on
        })
        .unwrap();
        b.set_data("/w/c", b"x", None).unwrap();
        assert_eq!(next(), watch("tree", EventType::NodeDataChanged, "/w/c"));
        b.create("/w/stop", b"", CreateMode::Persistent).unwrap();
        assert_eq!(next(), watch("tree", EventType::NodeCreated, "/w/stop"));
        b.set_data("/w", b"2", None).unwrap();
        // The watch lane runs in order: the marker comes after anything the ended watcher heard.
        assert_eq!(b.exists_with("/w/end", heard("marker")), Ok(None));
        b.create("/w/end", b"", CreateMode::Persistent).unwrap();
        assert_eq!(next(), watch("marker", EventType::NodeCreated, "/w/end"));

        // Listeners hear the current state first, on the session lane; a removed one hears
        // nothing more.
        let (ltx, lrx) = std::sync::mpsc::channel();
        let listener = |what: &'static str| {
            let ltx = ltx.clone();
            move |ev: wazoo::SessionEvent, info: CallbackInfo| {
                ltx.send((what, info.lane, ev.state)).unwrap()
            }
        };
        let removed = b.add_listener(listener("removed"));
        let kept = b.add_listener(listener("kept"));
        let mut first: Vec<_> = (0..2)
            .map(|_| lrx.recv_timeout(WAIT).expect("the current state in time"))
            .collect();
        first.sort_by_key(|(what, _, _)| *what);
        assert_eq!(
            first,
            [
                ("kept", LaneKind::Session, SessionState::Connected),
                ("removed", LaneKind::Session, SessionState::Connected)
            ]
        );
        b.remove_listener(removed);
        b.close();
        assert_eq!(
            lrx.recv_timeout(WAIT).expect("the close in time"),
            ("kept", LaneKind::Session, SessionState::Closed)
        );
        b.remove_listener(kept);
        assert!(b.async_client().lanes().drain(WAIT), "the lanes drain");
        assert_eq!(lrx.try_recv().ok(), None, "the removed listener heard more");
    })
    .await;
}

/// A sequential create of `/` under a chroot makes a child of the chroot, never a sibling of
/// it (the server appends the counter to the path it is sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_child_of_the_root_stays_inside_the_chroot() {
    let zk = client("seqroot").await;
    let p = zk
        .create("/", b"", CreateMode::PersistentSequential)
        .await
        .unwrap();
    assert!(p.starts_with('/') && p.len() == 11, "{p}");
    // The same inside a multi.
    let res = zk
        .multi(&[Op::create(
            "/",
            b"".to_vec(),
            CreateMode::PersistentSequential,
        )])
        .await
        .unwrap();
    let OpResult::Create { path: q, .. } = &res[0] else {
        panic!("{res:?}")
    };
    let (mut children, _) = zk.get_children("/").await.unwrap();
    children.sort();
    assert_eq!(children, vec![p[1..].to_string(), q[1..].to_string()]);
    let admin = Client::connect(&shared_server().connect_string())
        .await
        .unwrap();
    let (top, _) = admin.get_children("/").await.unwrap();
    assert!(
        !top.iter().any(|c| c.starts_with("ops-seqroot0")),
        "a sibling of the chroot was created: {top:?}"
    );
    admin.close().await;
}

/// ZooKeeper 3.8 keeps one watch mode per (session, path): a one-shot watch sent to the server
/// on a path this session watches persistently turns the persistent watch into a one-shot
/// one. The client serves such one-shot watches from the persistent watch instead, arms them
/// on the server when the persistent watch goes, and sends child watches under a recursive
/// watch (which the server keeps apart) as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_and_persistent_watches_share_a_path() {
    let zk = client("mixed").await;
    let other = Client::connect(&format!("{}/ops-mixed", shared_server().connect_string()))
        .await
        .unwrap();
    other
        .create("/m", b"0", CreateMode::Persistent)
        .await
        .unwrap();
    let wait = Duration::from_secs(10);
    let mut pers = zk.add_watch("/m", AddWatchMode::Persistent).await.unwrap();
    let (_, _, once) = zk.get_data_watch("/m").await.unwrap();
    let (_, _, kids) = zk.get_children_watch("/m").await.unwrap();
    other.set_data("/m", b"1", None).await.unwrap();
    other.set_data("/m", b"2", None).await.unwrap();
    other
        .create("/m/c", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let ev = tokio::time::timeout(wait, once.changed()).await.unwrap();
    assert_eq!(ev.event_type, EventType::NodeDataChanged);
    let ev = tokio::time::timeout(wait, kids.changed()).await.unwrap();
    assert_eq!(ev.event_type, EventType::NodeChildrenChanged);
    for want in [
        EventType::NodeDataChanged,
        EventType::NodeDataChanged,
        EventType::NodeChildrenChanged,
    ] {
        let ev = tokio::time::timeout(wait, pers.next())
            .await
            .unwrap_or_else(|_| panic!("the persistent watch stopped before {want:?}"))
            .unwrap();
        assert_eq!((ev.event_type, ev.path.as_str()), (want, "/m"));
    }
    // The persistent watch goes; a one-shot watch it covered is armed on the server now.
    let (_, once) = zk.exists_watch("/m").await.unwrap();
    let (_, kids) = zk
        .get_children_watch("/m")
        .await
        .map(|(c, _, w)| (c, w))
        .unwrap();
    zk.remove_watches("/m", WatcherType::Persistent)
        .await
        .unwrap();
    // The session arms them again right after the removal; one more round trip on it makes
    // sure the server has (another session's write in between would go unseen, as it would
    // for any one-shot watch not yet set).
    zk.sync("/m").await.unwrap();
    other.set_data("/m", b"3", None).await.unwrap();
    other
        .create("/m/d", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let ev = tokio::time::timeout(wait, once.changed())
        .await
        .expect("the exists watch was lost with the persistent watch");
    assert_eq!(ev.event_type, EventType::NodeDataChanged);
    let ev = tokio::time::timeout(wait, kids.changed())
        .await
        .expect("the child watch was lost with the persistent watch");
    assert_eq!(ev.event_type, EventType::NodeChildrenChanged);
    // A recursive watch, and a child watch on its path (the server keeps those apart).
    let mut rec = zk
        .add_watch("/m", AddWatchMode::PersistentRecursive)
        .await
        .unwrap();
    let (_, _, kids) = zk.get_children_watch("/m").await.unwrap();
    let (_, _, once) = zk.get_data_watch("/m").await.unwrap();
    other
        .create("/m/e", b"", CreateMode::Persistent)
        .await
        .unwrap();
    other.set_data("/m", b"4", None).await.unwrap();
    other.set_data("/m", b"5", None).await.unwrap();
    let ev = tokio::time::timeout(wait, kids.changed()).await.unwrap();
    assert_eq!(ev.event_type, EventType::NodeChildrenChanged);
    let ev = tokio::time::timeout(wait, once.changed()).await.unwrap();
    assert_eq!(ev.event_type, EventType::NodeDataChanged);
    for (want, path) in [
        (EventType::NodeCreated, "/m/e"),
        (EventType::NodeDataChanged, "/m"),
        (EventType::NodeDataChanged, "/m"),
    ] {
        let ev = tokio::time::timeout(wait, rec.next())
            .await
            .unwrap_or_else(|_| panic!("the recursive watch stopped before {want:?} {path}"))
            .unwrap();
        assert_eq!((ev.event_type, ev.path.as_str()), (want, path));
    }
    other.close().await;
}
