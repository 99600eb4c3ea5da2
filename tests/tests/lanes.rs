//! The three dispatch lanes against a real server: the seed's deadlock made impossible, lane
//! isolation, ordering, exactly-once completions, and Kazoo's DataWatch / ChildrenWatch.

use std::collections::HashSet;
use std::future::IntoFuture;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use wazoo::{
    AddWatchMode, BlockingClient, CallbackInfo, ChildrenWatch, Client, CreateMode, DataWatch,
    Error, EventType, LaneKind, RetryPolicy, SessionState,
};
use wazoo_tests::Proxied;

const WAIT: Duration = Duration::from_secs(30);

/// Receives from a std channel without blocking the async runtime.
async fn recv<T: Send + 'static>(rx: &Arc<Mutex<mpsc::Receiver<T>>>, what: &str) -> T {
    let rx = rx.clone();
    let what = what.to_string();
    tokio::task::spawn_blocking(move || {
        rx.lock()
            .unwrap()
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
    })
    .await
    .unwrap()
}

fn channel<T>() -> (mpsc::Sender<T>, Arc<Mutex<mpsc::Receiver<T>>>) {
    let (tx, rx) = mpsc::channel();
    (tx, Arc::new(Mutex::new(rx)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_deadlock_cannot_happen() {
    // Kazoo's design note: a watch callback that makes a blocking query while the connection is
    // lost must not stop the client from learning it has reconnected.
    let s = Proxied::start(2000, Duration::from_secs(10)).await;
    s.direct
        .create("/seed", b"v0", CreateMode::Persistent)
        .await
        .unwrap();
    let (state_tx, states) = channel();
    s.zk.add_listener(move |ev, info| {
        assert_eq!(info.lane, LaneKind::Session);
        state_tx.send(ev.state).unwrap();
    });
    assert_eq!(
        recv(&states, "the current state").await,
        SessionState::Connected
    );

    let (entered_tx, entered) = channel();
    let (result_tx, result) = channel();
    let blocking = BlockingClient::new(s.zk.clone());
    let proxy = s.proxy.clone();
    s.zk.get_data_with("/seed", move |ev, info| {
        assert_eq!(info.lane, LaneKind::Watch);
        assert_eq!(ev.event_type, EventType::NodeDataChanged);
        // Cut the connection and refuse new ones, then block on ZooKeeper from the watch lane.
        proxy.set_reject(true);
        proxy.drop_connections();
        entered_tx.send(()).unwrap();
        let r = RetryPolicy::default()
            .max_tries(None)
            .deadline(Some(WAIT))
            .run_blocking(|| blocking.get_data("/seed"));
        result_tx.send(r).unwrap();
    })
    .await
    .unwrap();
    s.direct.set_data("/seed", b"v1", None).await.unwrap();
    recv(&entered, "the watch callback").await;

    // While the watch lane is blocked, the session lane reports the outage...
    assert_eq!(recv(&states, "SUSPENDED").await, SessionState::Suspended);
    s.proxy.set_reject(false);
    // ...and the recovery,
    assert_eq!(recv(&states, "CONNECTED").await, SessionState::Connected);
    // and then the blocked query completes.
    let (data, _) = recv(&result, "the blocked get's result")
        .await
        .expect("the get succeeds after the reconnect");
    assert_eq!(data, b"v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_listener_may_call_zookeeper_synchronously() {
    let s = Proxied::start(2000, Duration::from_secs(10)).await;
    s.direct
        .create("/from-listener", b"hello", CreateMode::Persistent)
        .await
        .unwrap();
    let (tx, rx) = channel();
    let blocking = BlockingClient::new(s.zk.clone());
    s.zk.add_listener(move |ev, _| {
        let read = if ev.state == SessionState::Connected {
            Some(blocking.get_data("/from-listener").map(|(d, _)| d))
        } else {
            None
        };
        tx.send((ev.state, read)).unwrap();
    });
    let (state, read) = recv(&rx, "the first state").await;
    assert_eq!(state, SessionState::Connected);
    assert_eq!(read.unwrap().unwrap(), b"hello");
    // Later session events still arrive, and the listener can call ZooKeeper again.
    s.proxy.drop_connections();
    assert_eq!(recv(&rx, "SUSPENDED").await.0, SessionState::Suspended);
    let (state, read) = recv(&rx, "CONNECTED again").await;
    assert_eq!(state, SessionState::Connected);
    assert_eq!(read.unwrap().unwrap(), b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_lane_delays_neither_other_lane_nor_the_session() {
    // tickTime 1000 lets the server grant a 4 s session.
    let s = Proxied::start(1000, Duration::from_secs(4)).await;
    assert_eq!(s.zk.negotiated_timeout(), Duration::from_secs(4));
    s.direct
        .create("/iso", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let sid = s.zk.session_id();
    let (blocked_tx, blocked) = channel();
    s.zk.get_data_with("/iso", move |_, _| {
        blocked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(10)); // the blocking callback under test
    })
    .await
    .unwrap();
    s.direct.set_data("/iso", b"go", None).await.unwrap();
    recv(&blocked, "the blocking callback").await;
    let started = Instant::now();

    // Completions keep flowing on their lane while the watch lane is held for 10 s.
    let (done_tx, done) = channel();
    let mut worst = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(9) {
        let t0 = Instant::now();
        let tx = done_tx.clone();
        s.zk.get_data("/iso")
            .rawlink(move |r, info| tx.send((r.is_ok(), info.lane, t0.elapsed())).unwrap())
            .unwrap();
        let (ok, lane, took) = recv(&done, "a completion").await;
        assert!(ok && lane == LaneKind::Completion);
        worst = worst.max(took);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        worst < Duration::from_millis(500),
        "completion lane stalled {worst:?} while the watch lane was blocked"
    );
    // The session lane too: a new listener hears the current state at once.
    let (st_tx, st) = channel();
    let t0 = Instant::now();
    s.zk.add_listener(move |ev, _| st_tx.send(ev.state).unwrap());
    assert_eq!(recv(&st, "the session lane").await, SessionState::Connected);
    assert!(t0.elapsed() < Duration::from_millis(500));
    // And the 4 s session lived through the 10 s callback.
    assert_eq!(s.zk.session_id(), sid);
    assert_eq!(s.zk.state(), SessionState::Connected);
    assert!(s.zk.lanes().metrics(LaneKind::Watch).queue_depth <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_recursive_watch_events_arrive_in_order() {
    let s = Proxied::start(2000, Duration::from_secs(10)).await;
    s.direct
        .create("/ord", b"", CreateMode::Persistent)
        .await
        .unwrap();
    const N: usize = 10_000;
    let (tx, rx) = channel();
    s.zk.add_watch_with(
        "/ord",
        AddWatchMode::PersistentRecursive,
        move |ev, info| {
            if ev.event_type == EventType::NodeCreated {
                tx.send((ev.path, info.seq)).unwrap();
            }
            true
        },
    )
    .await
    .unwrap();
    // Four concurrent writers; sequential names are given in commit (zxid) order.
    let mut writers = Vec::new();
    for _ in 0..4 {
        let c = Client::connect(&s.server.connect_string()).await.unwrap();
        writers.push(tokio::spawn(async move {
            for _ in 0..N / 4 / 100 {
                let futs: Vec<_> = (0..100)
                    .map(|_| {
                        c.create("/ord/n-", b"", CreateMode::PersistentSequential)
                            .into_future()
                    })
                    .collect();
                for f in futs {
                    f.await.unwrap();
                }
            }
            c.close().await;
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let rx2 = rx.clone();
    let got = tokio::task::spawn_blocking(move || {
        let rx = rx2.lock().unwrap();
        (0..N)
            .map(|_| rx.recv_timeout(WAIT).expect("every event"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let seqs: Vec<u64> = got
        .iter()
        .map(|(p, _)| p.rsplit('-').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "events out of zxid order"
    );
    assert!(
        got.windows(2).all(|w| w[0].1 < w[1].1),
        "stamps strictly increase"
    );
    assert_eq!(seqs.len(), N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_run_in_request_order_exactly_once_across_drop_and_expiry() {
    let s = Proxied::start(500, Duration::from_secs(2)).await;
    s.direct
        .create("/c", b"x", CreateMode::Persistent)
        .await
        .unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = channel::<(usize, Result<(), Error>, u64)>();

    // Round 1: 3000 requests, the connection dropped while they are in flight.
    s.proxy.set_delay(Duration::from_millis(200));
    let submit = |n: usize, base: usize| {
        for i in 0..n {
            let tx = tx.clone();
            let ran = ran.clone();
            s.zk.get_data("/c")
                .rawlink(move |r, info: CallbackInfo| {
                    ran.fetch_add(1, Ordering::SeqCst);
                    tx.send((base + i, r.map(|_| ()), info.seq)).unwrap();
                })
                .unwrap();
        }
    };
    submit(3000, 0);
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.proxy.drop_connections();
    // Round 2: 3000 more while the link is black-holed until the session expires.
    s.proxy.set_delay(Duration::ZERO);
    s.proxy.set_blackhole(true);
    submit(3000, 3000);
    let rx2 = rx.clone();
    let got = tokio::task::spawn_blocking(move || {
        let rx = rx2.lock().unwrap();
        (0..6000)
            .map(|_| rx.recv_timeout(WAIT).expect("every completion runs"))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    s.proxy.set_blackhole(false);
    let order: Vec<usize> = got.iter().map(|g| g.0).collect();
    assert_eq!(
        order,
        (0..6000).collect::<Vec<_>>(),
        "completions ran in request order"
    );
    assert!(
        got.windows(2).all(|w| w[0].2 < w[1].2),
        "stamps strictly increase"
    );
    let kinds: HashSet<String> = got
        .iter()
        .map(|g| match &g.1 {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("{e:?}"),
        })
        .collect();
    assert!(kinds.contains("ConnectionLoss"), "{kinds:?}");
    assert!(kinds.contains("SessionExpired"), "{kinds:?}");
    // Exactly once: nothing more arrives.
    assert!(s.zk.lanes().drain(WAIT));
    assert_eq!(ran.load(Ordering::SeqCst), 6000);
    assert!(rx.lock().unwrap().try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_watch_and_children_watch_across_reconnect_and_expiry() {
    let s = Proxied::start(500, Duration::from_secs(2)).await;
    let (dtx, data) = channel();
    let dw = DataWatch::new(&s.zk, "/dw", move |v, ev| {
        dtx.send((v.map(|(d, _)| d), ev.map(|e| e.event_type)))
            .unwrap();
        true
    })
    .unwrap();
    assert_eq!(
        recv(&data, "the first call").await,
        (None, None),
        "called at once, node absent"
    );
    s.direct
        .create("/dw", b"1", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(
        recv(&data, "created").await,
        (Some(b"1".to_vec()), Some(EventType::NodeCreated))
    );

    let (ctx, kids) = channel();
    let cw = ChildrenWatch::new(&s.zk, "/dw", move |mut c| {
        c.sort();
        ctx.send(c).unwrap();
        true
    })
    .unwrap();
    assert_eq!(
        recv(&kids, "children first call").await,
        Vec::<String>::new()
    );
    s.direct
        .create("/dw/a", b"", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(recv(&kids, "child a").await, vec!["a"]);

    // Across a reconnect: the watches are restored, changes made meanwhile are reported.
    s.proxy.set_reject(true);
    s.proxy.drop_connections();
    s.direct.set_data("/dw", b"2", None).await.unwrap();
    s.direct
        .create("/dw/b", b"", CreateMode::Persistent)
        .await
        .unwrap();
    s.proxy.set_reject(false);
    assert_eq!(
        recv(&data, "change while away").await.0,
        Some(b"2".to_vec())
    );
    assert_eq!(recv(&kids, "child b while away").await, vec!["a", "b"]);

    // Across session expiry: re-registered on the new session with the current value.
    s.proxy.set_blackhole(true);
    let mut states = s.zk.state_events();
    loop {
        let ev = tokio::time::timeout(WAIT, states.next())
            .await
            .unwrap()
            .unwrap();
        if ev.state == SessionState::Lost {
            break;
        }
    }
    s.direct.set_data("/dw", b"3", None).await.unwrap();
    s.proxy.set_blackhole(false);
    let mut last = recv(&data, "value after expiry").await;
    while last.0 != Some(b"3".to_vec()) {
        last = recv(&data, "value 3 after expiry").await;
    }
    s.direct.set_data("/dw", b"4", None).await.unwrap();
    assert_eq!(recv(&data, "later change").await.0, Some(b"4".to_vec()));
    let mut k = recv(&kids, "children after expiry").await;
    while k != vec!["a", "b"] {
        k = recv(&kids, "children after expiry").await;
    }
    s.direct
        .create("/dw/c", b"", CreateMode::Persistent)
        .await
        .unwrap();
    assert_eq!(recv(&kids, "child c").await, vec!["a", "b", "c"]);

    // Dropping the handle stops it, and the server forgets the watch.
    drop(dw);
    drop(cw);
    s.zk.sync("/dw").await.unwrap();
    wazoo_tests::wait_until("the server has no watch left on /dw", WAIT, || {
        wazoo::block_on(s.zk.check_watches("/dw", wazoo::WatcherType::Any)) == Err(Error::NoWatcher)
    })
    .await
    .unwrap();
    s.direct.set_data("/dw", b"5", None).await.unwrap();
    s.zk.sync("/dw").await.unwrap();
    assert!(s.zk.lanes().drain(WAIT));
    assert!(
        data.lock().unwrap().try_recv().is_err(),
        "a dropped DataWatch is never called again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_callback_is_contained() {
    let s = Proxied::start(2000, Duration::from_secs(10)).await;
    s.zk.get_data("/")
        .rawlink(|_, _| panic!("callback bug"))
        .unwrap();
    let (tx, rx) = channel();
    s.zk.get_data("/")
        .rawlink(move |r, _| tx.send(r.is_ok()).unwrap())
        .unwrap();
    assert!(recv(&rx, "the next completion").await);
    assert_eq!(s.zk.lanes().metrics(LaneKind::Completion).panics, 1);
}
