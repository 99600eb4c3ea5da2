//! Many requests in flight at once: the session actor corks writes while replies are due and
//! raises the socket's receive low-water mark to read replies in batches. These tests show that
//! neither ever holds a reply or a request back for good: over a slow link (replies arriving in
//! small pieces), with a watch notification among the replies, with the session on its own
//! thread or on the caller's runtime, and with requests of every size.

use std::future::IntoFuture;
use std::time::Duration;

use wazoo::{Client, CreateMode, EventType};
use wazoo_tests::Proxied;

/// Enough in flight that both the cork and the low-water mark are engaged.
const IN_FLIGHT: usize = 1500;
/// A generous bound for one phase; a reply held back until a tick or for good would blow it.
const PHASE: Duration = Duration::from_secs(30);

async fn bounded<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(PHASE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {PHASE:?}"))
}

/// Creates, sets and reads back `IN_FLIGHT` nodes with everything in flight at once, through a
/// proxy that delays every chunk, while a watch on another node fires mid-way.
async fn pipeline_through_a_slow_link(on_runtime: bool) {
    let p = Proxied::start(200, Duration::from_secs(30)).await;
    // The client under test, through the proxy, with the session where the test says.
    let zk = Client::builder(&p.proxy.connect_string())
        .session_timeout(Duration::from_secs(30))
        .session_on_current_runtime(on_runtime)
        .connect()
        .await
        .expect("connect through the proxy");
    zk.create("/p", b"", CreateMode::Persistent).await.unwrap();
    zk.create("/w", b"0", CreateMode::Persistent).await.unwrap();
    p.proxy.set_delay(Duration::from_millis(3));

    // Creates: all sent before the first is awaited (a Pending is sent when it becomes a future).
    let creates: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            zk.create(&format!("/p/n{i}"), b"", CreateMode::Persistent)
                .into_future()
        })
        .collect();
    bounded("pipelined creates", async {
        for (i, f) in creates.into_iter().enumerate() {
            assert_eq!(f.await.unwrap(), format!("/p/n{i}"));
        }
    })
    .await;

    // Sets of different sizes (so replies and requests straddle reads and writes).
    let value = |i: usize| format!("{i}:{}", "v".repeat(i % 700)).into_bytes();
    let sets: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            zk.set_data(&format!("/p/n{i}"), &value(i), None)
                .into_future()
        })
        .collect();
    bounded("pipelined sets", async {
        for f in sets {
            assert_eq!(f.await.unwrap().version, 1);
        }
    })
    .await;

    // Reads, with a watch that another client triggers while they are in flight.
    let (_, _, watch) = zk.get_data_watch("/w").await.unwrap();
    let gets: Vec<_> = (0..IN_FLIGHT)
        .map(|i| zk.get_data(&format!("/p/n{i}")).into_future())
        .collect();
    p.direct.set_data("/w", b"1", None).await.unwrap();
    let ev = bounded("the watch among the replies", watch.changed()).await;
    assert_eq!(ev.event_type, EventType::NodeDataChanged);
    assert_eq!(ev.path, "/w");
    bounded("pipelined gets", async {
        for (i, f) in gets.into_iter().enumerate() {
            let (data, stat) = f.await.unwrap();
            assert_eq!(data, value(i), "node {i}");
            assert_eq!(stat.version, 1);
        }
    })
    .await;

    // And a sequential request right after the burst is not held back by the mark.
    p.proxy.set_delay(Duration::ZERO);
    let (d, _) = bounded("a request after the burst", zk.get_data("/w").into_future())
        .await
        .unwrap();
    assert_eq!(d, b"1");
    zk.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_over_a_slow_link_all_complete_session_thread() {
    pipeline_through_a_slow_link(false).await;
}

#[tokio::test(flavor = "current_thread")]
async fn pipelined_requests_over_a_slow_link_all_complete_session_on_runtime() {
    pipeline_through_a_slow_link(true).await;
}
