//! A three-server ensemble: failover keeps the session, its ephemerals and every request;
//! read-only mode serves reads when quorum is lost and moves back when it returns.

use std::time::Duration;

use wazoo::{Client, CreateMode, Error, SessionState};
use wazoo_tests::{await_state, Ensemble};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_the_session_and_its_ephemerals_survive_and_no_request_is_lost() {
    wazoo_tests::init_tracing();
    let ens = Ensemble::start(3).expect("start a three-server ensemble");
    let zk = Client::builder(&ens.connect_string())
        .session_timeout(Duration::from_secs(15))
        .connect()
        .await
        .expect("connect");
    zk.create("/owner", b"", CreateMode::Ephemeral)
        .await
        .unwrap();
    zk.create("/counter", b"", CreateMode::Persistent)
        .await
        .unwrap();
    let sid = zk.session_id();
    let leader = ens.leader().expect("a leader");

    // Writes keep flowing while the leader dies.
    let writer = {
        let zk = zk.clone();
        tokio::spawn(async move {
            let retry = wazoo::RetryPolicy::default()
                .max_tries(None)
                .deadline(Some(WAIT));
            let mut done = Vec::new();
            for i in 0..200 {
                let path = format!("/counter/n{i:03}");
                let r = retry
                    .run(|| async {
                        match zk.create(&path, b"", CreateMode::Persistent).await {
                            // A create whose reply was lost may have been applied.
                            Err(Error::NodeExists) => Ok(path.clone()),
                            other => other,
                        }
                    })
                    .await;
                done.push(r);
            }
            done
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    ens.stop(leader);
    let done = tokio::time::timeout(WAIT * 2, writer)
        .await
        .expect("writer finished")
        .unwrap();
    assert_eq!(done.len(), 200);
    for r in &done {
        assert!(r.is_ok(), "every write eventually succeeded: {r:?}");
    }
    ens.wait_quorum(WAIT).expect("quorum again");
    assert_eq!(zk.session_id(), sid, "the session survived the failover");
    assert!(
        zk.exists("/owner").await.unwrap().is_some(),
        "its ephemeral too"
    );
    assert_eq!(zk.get_children("/counter").await.unwrap().0.len(), 200);
    ens.start_again(leader).expect("restart the old leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_mode_when_quorum_is_lost_and_back_when_it_returns() {
    wazoo_tests::init_tracing();
    let ens = Ensemble::builder(3)
        .read_only(true)
        .start()
        .expect("start an ensemble");
    let zk = Client::builder(&ens.connect_string())
        .session_timeout(Duration::from_secs(6))
        .allow_read_only(true)
        .connect()
        .await
        .expect("connect");
    zk.create("/ro", b"data", CreateMode::Persistent)
        .await
        .unwrap();
    zk.sync("/ro").await.unwrap();
    // The survivor must have everything this client has seen: a server behind the client's
    // last zxid refuses it (ZooKeeper's rule, so that a client never goes back in time).
    let zxid = |i: usize| -> String {
        let srvr = ens.four_letter(i, "srvr").unwrap_or_default();
        srvr.lines()
            .find_map(|l| l.strip_prefix("Zxid: ").map(str::to_string))
            .unwrap_or_default()
    };
    wazoo_tests::wait_until("every member has applied the last write", WAIT, || {
        let z = zxid(0);
        !z.is_empty() && zxid(1) == z && zxid(2) == z
    })
    .await
    .unwrap();
    let mut states = zk.state_events();
    // Lose quorum: two of three down.
    let survivors: Vec<usize> = (0..3).collect();
    ens.stop(survivors[0]);
    ens.stop(survivors[1]);
    await_state(&mut states, SessionState::ConnectedReadOnly, WAIT).await;
    assert_eq!(
        zk.get_data("/ro").await.unwrap().0,
        b"data",
        "reads work read-only"
    );
    assert_eq!(
        zk.set_data("/ro", b"x", None).await,
        Err(Error::NotReadOnly)
    );
    // Quorum returns: the client finds a read-write server by itself.
    ens.start_again(survivors[0]).unwrap();
    ens.start_again(survivors[1]).unwrap();
    await_state(&mut states, SessionState::Connected, WAIT).await;
    zk.set_data("/ro", b"rw again", None).await.unwrap();
}
