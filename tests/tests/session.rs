//! The session across faults: reconnects restore watches, requests complete exactly once,
//! expiry is detected and recovered from, idle sessions live. Real server, fault proxy between.

use std::time::Duration;

use wazoo::{AddWatchMode, CreateMode, Error, EventType, KeeperState, SessionState};
use wazoo_tests::{await_state, next_state, Proxied};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_watches_are_restored_and_replayed_after_a_reconnect() {
    let s = Proxied::start(2000, Duration::from_secs(10)).await;
    s.direct
        .create("/a", b"0", CreateMode::Persistent)
        .await
        .unwrap();
    s.direct
        .create("/c", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let (_, _, w_data) = s.zk.get_data_watch("/a").await.unwrap();
    let (absent, w_exist) = s.zk.exists_watch("/b").await.unwrap();
    assert!(absent.is_none());
    let (_, _, w_child) = s.zk.get_children_watch("/c").await.unwrap();
    let sid = s.zk.session_id();
    let mut states = s.zk.state_events();
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Connected);

    s.proxy.set_reject(true);
    s.proxy.drop_connections();
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Suspended);
    // Changes made while the client is away.
    s.direct.set_data("/a", b"1", None).await.unwrap();
    s.direct
        .create("/b", b"", CreateMode::Persistent)
        .await
        .unwrap();
    s.direct
        .create("/c/x", b"", CreateMode::Persistent)
        .await
        .unwrap();
    s.proxy.set_reject(false);
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Connected);
    assert_eq!(s.zk.session_id(), sid, "the same session was resumed");

    let ev = tokio::time::timeout(WAIT, w_data.changed())
        .await
        .expect("data watch replayed");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeDataChanged, "/a")
    );
    let ev = tokio::time::timeout(WAIT, w_exist.changed())
        .await
        .expect("exist watch replayed");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeCreated, "/b")
    );
    let ev = tokio::time::timeout(WAIT, w_child.changed())
        .await
        .expect("child watch replayed");
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeChildrenChanged, "/c")
    );

    // A watch restored without a missed change is simply re-armed and fires later.
    let (_, _, w_again) = s.zk.get_data_watch("/a").await.unwrap();
    s.proxy.drop_connections();
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Suspended);
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Connected);
    s.direct.set_data("/a", b"2", None).await.unwrap();
    let ev = tokio::time::timeout(WAIT, w_again.changed())
        .await
        .expect("re-armed watch fired");
    assert_eq!(ev.event_type, EventType::NodeDataChanged);
    drop(s.server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_recursive_watch_gets_resync_then_every_later_change() {
    let s = Proxied::start(2000, Duration::from_secs(10)).await;
    s.direct
        .create("/r", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let mut w =
        s.zk.add_watch("/r", AddWatchMode::PersistentRecursive)
            .await
            .unwrap();
    s.direct
        .create("/r/before", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let ev = tokio::time::timeout(WAIT, w.next()).await.unwrap().unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::NodeCreated, "/r/before")
    );

    let mut states = s.zk.state_events();
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Connected);
    s.proxy.set_reject(true);
    s.proxy.drop_connections();
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Suspended);
    s.direct
        .create("/r/missed", b"", CreateMode::Persistent)
        .await
        .unwrap();
    s.proxy.set_reject(false);
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Connected);

    let ev = tokio::time::timeout(WAIT, w.next()).await.unwrap().unwrap();
    assert_eq!(
        (ev.event_type, ev.path.as_str()),
        (EventType::Resync, "/r"),
        "the watcher is told it may have missed changes (the server does not replay them)"
    );
    // Resync comes once the server has the watch again: a re-read now sees the missed change,
    // and every change from now on is reported.
    assert_eq!(s.zk.get_children("/r").await.unwrap().0.len(), 2);
    for i in 0..20 {
        s.direct
            .create(
                &format!("/r/after/{i}").replace("/after/", "/after-"),
                b"",
                CreateMode::Persistent,
            )
            .await
            .unwrap();
    }
    for i in 0..20 {
        let ev = tokio::time::timeout(WAIT, w.next()).await.unwrap().unwrap();
        assert_eq!(
            (ev.event_type, ev.path),
            (EventType::NodeCreated, format!("/r/after-{i}"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_completes_exactly_once_across_a_drop() {
    let s = Proxied::start(2000, Duration::from_secs(10)).await;
    s.direct
        .create("/x", b"v", CreateMode::Persistent)
        .await
        .unwrap();
    // Slow the link so that requests are surely in flight when it drops.
    s.proxy.set_delay(Duration::from_millis(300));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..2000 {
        let zk = s.zk.clone();
        tasks.spawn(async move { zk.get_data("/x").await });
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // let them leave; the delay holds replies
    s.proxy.drop_connections();
    let mut ok = 0;
    let mut lost = 0;
    let all = tokio::time::timeout(WAIT, async {
        while let Some(r) = tasks.join_next().await {
            match r.expect("task did not panic") {
                Ok((d, _)) => {
                    assert_eq!(d, b"v");
                    ok += 1
                }
                Err(Error::ConnectionLoss) => lost += 1,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    })
    .await;
    assert!(
        all.is_ok(),
        "every request completed (ok {ok}, lost {lost})"
    );
    assert_eq!(ok + lost, 2000);
    assert!(
        lost > 0,
        "requests in flight at the drop fail with ConnectionLoss"
    );
    s.proxy.set_delay(Duration::ZERO);
    // The retry helper gets through once the session is back.
    let r = wazoo::RetryPolicy::default()
        .max_tries(None)
        .deadline(Some(WAIT))
        .run(|| s.zk.get_data("/x"))
        .await
        .unwrap();
    assert_eq!(r.0, b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_made_while_suspended_wait_for_the_reconnect() {
    let s = Proxied::start(2000, Duration::from_secs(10)).await;
    s.direct
        .create("/q", b"queued", CreateMode::Persistent)
        .await
        .unwrap();
    let mut states = s.zk.state_events();
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Connected);
    s.proxy.set_reject(true);
    s.proxy.drop_connections();
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Suspended);
    let zk = s.zk.clone();
    let waiting = tokio::spawn(async move { zk.get_data("/q").await });
    // Nothing can answer it while the proxy refuses connections.
    assert!(tokio::time::timeout(Duration::from_millis(300), async {
        while !waiting.is_finished() {
            tokio::task::yield_now().await
        }
    })
    .await
    .is_err());
    s.proxy.set_reject(false);
    let r = tokio::time::timeout(WAIT, waiting)
        .await
        .expect("answered after the reconnect")
        .unwrap();
    assert_eq!(r.unwrap().0, b"queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiry_is_lost_then_a_new_session() {
    // tickTime 500 ms lets the server grant a 2 s session.
    let s = Proxied::start(500, Duration::from_secs(2)).await;
    assert_eq!(s.zk.negotiated_timeout(), Duration::from_secs(2));
    s.zk.create("/eph", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    let (_, gone) = s.direct.exists_watch("/eph").await.unwrap();
    let old_sid = s.zk.session_id();
    let mut states = s.zk.state_events();
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Connected);

    s.proxy.set_blackhole(true);
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Suspended);
    let zk = s.zk.clone();
    let queued = tokio::spawn(async move { zk.get_data("/").await });
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Lost);
    let r = tokio::time::timeout(WAIT, queued)
        .await
        .expect("queued request answered")
        .unwrap();
    assert_eq!(
        r,
        Err(Error::SessionExpired),
        "requests queued during the outage fail with SessionExpired"
    );
    let ev = tokio::time::timeout(WAIT, gone.changed())
        .await
        .expect("the server expired the session");
    assert_eq!(
        ev.event_type,
        EventType::NodeDeleted,
        "the ephemeral went with the session"
    );

    s.proxy.set_blackhole(false);
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Connected);
    assert_ne!(s.zk.session_id(), old_sid, "a new session");
    s.zk.create("/eph", b"again", CreateMode::Ephemeral)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_hear_when_the_session_is_lost() {
    let s = Proxied::start(500, Duration::from_secs(2)).await;
    let (_, _, w) = s.zk.get_data_watch("/").await.unwrap();
    let mut p =
        s.zk.add_watch("/", AddWatchMode::PersistentRecursive)
            .await
            .unwrap();
    s.proxy.set_blackhole(true);
    let ev = tokio::time::timeout(WAIT, w.changed())
        .await
        .expect("one-shot watcher told");
    assert_eq!(
        (ev.event_type, ev.keeper_state),
        (EventType::None, KeeperState::Expired)
    );
    let ev = tokio::time::timeout(WAIT, p.next())
        .await
        .unwrap()
        .expect("persistent watcher told");
    assert_eq!(
        (ev.event_type, ev.keeper_state),
        (EventType::None, KeeperState::Expired)
    );
    assert!(
        tokio::time::timeout(WAIT, p.next())
            .await
            .unwrap()
            .is_none(),
        "then its stream ends"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_stays_alive_across_several_timeouts() {
    let s = Proxied::start(500, Duration::from_secs(2)).await;
    s.zk.create("/alive", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    let sid = s.zk.session_id();
    let mut states = s.zk.state_events();
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Connected);
    // Idleness is the behaviour under test: only pings may keep the session.
    let idle = tokio::time::timeout(Duration::from_secs(7), states.next()).await;
    assert!(idle.is_err(), "no state change while idle, got {idle:?}");
    assert_eq!(s.zk.session_id(), sid);
    assert!(
        s.direct.exists("/alive").await.unwrap().is_some(),
        "its ephemeral is still there"
    );
    assert_eq!(s.proxy.accepted_total(), 1, "one connection the whole time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_connection_is_detected_and_the_session_resumed_elsewhere() {
    // A blackhole shorter than the session: suspended, then the same session back.
    let s = Proxied::start(2000, Duration::from_secs(6)).await;
    let sid = s.zk.session_id();
    let mut states = s.zk.state_events();
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Connected);
    let started = std::time::Instant::now();
    s.proxy.set_blackhole(true);
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Suspended);
    let detected = started.elapsed();
    assert!(
        detected < Duration::from_secs(6),
        "dead link noticed after {detected:?}, within 2/3 of the timeout plus a tick"
    );
    s.proxy.set_blackhole(false);
    await_state(&mut states, SessionState::Connected, WAIT).await;
    assert_eq!(s.zk.session_id(), sid);
    s.zk.get_data("/").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_is_replayed_on_reconnect() {
    let s = Proxied::start(2000, Duration::from_secs(10)).await;
    s.zk.add_auth("digest", b"bob:pw").await.unwrap();
    s.zk.create_with(
        "/mine",
        b"x",
        &wazoo::CreateOptions {
            acl: wazoo::Acl::creator_all(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut states = s.zk.state_events();
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Connected);
    s.proxy.drop_connections();
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Suspended);
    assert_eq!(next_state(&mut states, WAIT).await, SessionState::Connected);
    assert_eq!(
        s.zk.get_data("/mine").await.unwrap().0,
        b"x",
        "credentials were replayed"
    );
    assert_eq!(s.direct.get_data("/mine").await, Err(Error::NoAuth));
}
