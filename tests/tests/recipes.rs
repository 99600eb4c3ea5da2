//! The recipes (`wazoo::Lock`, `Election`, `LeaderLatch`, `Counter`, `Queue`, protected create)
//! against a real server: mutual exclusion under contention with connection drops and a forced
//! session expiry (checked by a pure invariant checker over fenced writes), no herd, the
//! holder's session states, and interop with a real Kazoo (Debian's `python3-kazoo`).

use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use wazoo::{
    create_protected, Barrier, BlockingLock, Client, Counter, CreateMode, CreateOptions,
    DoubleBarrier, Election, Error, LeaderLatch, Lock, LockState, LockingQueue, Op, PartitionState,
    Party, PersistentNode, Queue, Semaphore, SessionState, SetPartitioner,
};
use wazoo_tests::kazoo::KazooPeer;
use wazoo_tests::{await_data, await_state, FaultProxy, Proxied, ZkServer};

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

/// Waits (on children watches, not by polling) until `path` has `n` children.
async fn children_reach(zk: &Client, path: &str, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (children, _, watch) = zk.get_children_watch(path).await.expect("list");
        if children.len() == n {
            return;
        }
        tokio::time::timeout_at(deadline, watch.changed())
            .await
            .unwrap_or_else(|_| panic!("{path} has {children:?}, never {n} children"));
    }
}

/// A fresh path for one test.
async fn fresh(zk: &Client, name: &str) -> String {
    let path = format!("/recipes-{name}");
    let _ = zk.delete_recursive(&path).await;
    path
}

// ---- protected create ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_create_whose_reply_is_lost_finds_its_node() {
    let p = Proxied::start(200, Duration::from_secs(4)).await;
    p.zk.create("/p", b"", CreateMode::Persistent)
        .await
        .unwrap();
    // The proxy cuts the connection after the reply to a setData (opcode 5); the protected
    // create sent right behind it reaches the server, but its reply is lost with the connection.
    p.proxy.cut_after_reply_to(5);
    let opts = CreateOptions {
        mode: CreateMode::EphemeralSequential,
        ..Default::default()
    };
    let set = p.zk.set_data("/p", b"x", None).into_future();
    let protected = create_protected(&p.zk, "/p/n-", b"me", &opts);
    let (set, protected) = tokio::join!(set, protected);
    let set = set.expect("the setData's reply arrives before the cut");
    let (path, stat) = protected.expect("the protected create succeeds");
    assert_eq!(p.proxy.cuts_total(), 1, "the connection was cut");
    assert_eq!(
        stat.czxid,
        set.mzxid + 1,
        "the node was created on the first connection (just after the setData) and found, \
         not created again"
    );
    let (children, _) = p.direct.get_children("/p").await.unwrap();
    let ours: Vec<_> = children.iter().filter(|c| c.contains("n-")).collect();
    assert_eq!(ours.len(), 1, "exactly one node, no orphan: {children:?}");
    assert_eq!(format!("/p/{}", ours[0]), path);
    assert!(
        ours[0].starts_with("_c_"),
        "Curator's protection prefix: {}",
        ours[0]
    );
    assert_eq!(stat.ephemeral_owner, p.zk.session_id());
}

// ---- lock: exclusion, order, no herd ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_woken_by_their_predecessor_only() {
    let zk = connect().await;
    let path = fresh(&zk, "herd").await;
    let mut first = Lock::new(&zk, &path, "first").unwrap();
    first.acquire(Some(WAIT)).await.unwrap();
    assert_eq!(
        first.try_acquire().await.unwrap(),
        first.token(),
        "held: its own token"
    );

    // Four waiters, each on a client of its own, queued in order.
    let mut waiters = Vec::new();
    for i in 0..4 {
        let c = connect().await;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let lock = Lock::new(&c, &path, &format!("w{i}")).unwrap();
        let wakeups = Arc::new(AtomicU64::new(0));
        let w = wakeups.clone();
        let task = tokio::spawn(async move {
            let mut lock = lock;
            let token = lock.acquire(Some(WAIT)).await;
            let at = Instant::now();
            w.store(lock.wakeups(), Ordering::SeqCst);
            let _ = tx.send((token, at));
            let _ = release_rx.await;
            lock.release().await.unwrap();
            c.close().await;
        });
        // Wait until it is queued before the next one joins.
        children_reach(&zk, &path, i + 2).await;
        waiters.push((rx, release_tx, wakeups, task));
    }
    assert_eq!(
        first.contenders().await.unwrap(),
        ["first", "w0", "w1", "w2", "w3"]
    );
    let mut other = Lock::new(&zk, &path, "other").unwrap();
    assert_eq!(other.try_acquire().await.unwrap(), None, "someone holds it");
    assert_eq!(
        first.contenders().await.unwrap().len(),
        5,
        "try-acquire left no node"
    );

    let mut last = first.token().unwrap();
    let mut released = Instant::now();
    first.release().await.unwrap();
    let mut handoffs = Vec::new();
    for (i, (rx, release, wakeups, task)) in waiters.into_iter().enumerate() {
        let (token, at) = tokio::time::timeout(WAIT, rx)
            .await
            .expect("the next waiter acquires")
            .unwrap();
        let token = token.unwrap();
        handoffs.push(at.saturating_duration_since(released));
        assert!(
            token > last,
            "fencing tokens increase: {last:?} then {token:?}"
        );
        last = token;
        assert_eq!(
            wakeups.load(Ordering::SeqCst),
            1,
            "waiter {i} was woken once, by its predecessor's release"
        );
        released = Instant::now();
        release.send(()).unwrap();
        task.await.unwrap();
    }
    let began = Instant::now();
    zk.exists(&path).await.unwrap();
    println!(
        "hand-off from the release call to the next holder: {handoffs:?} (one exists round \
         trip: {:?})",
        began.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_that_times_out_leaves_no_node() {
    let zk = connect().await;
    let path = fresh(&zk, "timeout").await;
    let mut holder = Lock::new(&zk, &path, "holder").unwrap();
    holder.acquire(None).await.unwrap();
    let other_client = connect().await;
    let mut other = Lock::new(&other_client, &path, "other").unwrap();
    let began = Instant::now();
    let r = other.acquire(Some(Duration::from_millis(300))).await;
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    assert!(began.elapsed() >= Duration::from_millis(300));
    assert_eq!(other.state(), LockState::Released);
    assert_eq!(holder.contenders().await.unwrap(), ["holder"]);
    holder.release().await.unwrap();
    assert!(other.acquire(Some(WAIT)).await.is_ok(), "free now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_locks_share_and_write_locks_exclude() {
    let zk = connect().await;
    let path = fresh(&zk, "rw").await;
    let mut r1 = Lock::new_read(&zk, &path, "r1").unwrap();
    let mut r2 = Lock::new_read(&zk, &path, "r2").unwrap();
    let mut w = Lock::new_write(&zk, &path, "w").unwrap();
    r1.acquire(Some(WAIT)).await.unwrap();
    r2.acquire(Some(WAIT)).await.unwrap();
    assert_eq!(w.try_acquire().await.unwrap(), None, "readers hold it");
    r1.release().await.unwrap();
    r2.release().await.unwrap();
    w.acquire(Some(WAIT)).await.unwrap();
    assert_eq!(r1.try_acquire().await.unwrap(), None, "a writer holds it");
    w.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_lock_and_the_timerless_recipes_work_from_a_plain_thread() {
    let zk = connect().await;
    let path = fresh(&zk, "blocking").await;
    let t = std::thread::spawn(move || {
        let mut lock = BlockingLock::new(Lock::new(&zk, &path, "thread").unwrap());
        let token = lock.acquire(Some(WAIT)).unwrap();
        let contenders = lock.contenders().unwrap();
        assert!(lock.release().unwrap());
        // The recipes without a timeout need no runtime at all.
        let counter = Counter::new(&zk, &format!("{path}-count"), 0).unwrap();
        assert_eq!(wazoo::block_on(counter.add(3)).unwrap().post, 3);
        let mut election = Election::new(&zk, &format!("{path}-elect"), "thread").unwrap();
        assert_eq!(wazoo::block_on(election.run(|_| async { 7 })).unwrap(), 7);
        (token, contenders)
    });
    let (token, contenders) = tokio::task::spawn_blocking(move || t.join().unwrap())
        .await
        .unwrap();
    assert!(token.sequence >= 0 && token.czxid > 0);
    assert_eq!(contenders, ["thread"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_curator_named_contender_excludes_with_extra_lock_patterns() {
    let zk = connect().await;
    let path = fresh(&zk, "curator").await;
    // Curator's InterProcessMutex names its contenders as a protected create of `lock-` does.
    let opts = CreateOptions {
        mode: CreateMode::EphemeralSequential,
        makepath: true,
        ..Default::default()
    };
    let (curator, _) = create_protected(&zk, &format!("{path}/lock-"), b"", &opts)
        .await
        .unwrap();
    assert!(curator.contains("-lock-00"), "{curator}");
    let mut aware = Lock::new(&zk, &path, "aware")
        .unwrap()
        .extra_lock_patterns(&["-lock-"]);
    assert_eq!(
        aware.try_acquire().await.unwrap(),
        None,
        "the Curator holder excludes it"
    );
    let mut unaware = Lock::new(&zk, &path, "unaware").unwrap();
    assert!(
        unaware.try_acquire().await.unwrap().is_some(),
        "without the pattern the Curator node is not a contender (as in Kazoo)"
    );
    unaware.release().await.unwrap();
    zk.delete(&curator, None).await.unwrap();
    assert!(aware.try_acquire().await.unwrap().is_some());
}

// ---- lock: session states ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_hears_suspended_keeps_the_lock_on_reconnect_and_loses_it_on_expiry() {
    let p = Proxied::start(200, Duration::from_secs(2)).await;
    let mut lock = Lock::new(&p.zk, "/held", "proxied").unwrap();
    let token = lock.acquire(Some(WAIT)).await.unwrap();
    let mut events = lock.state_events();
    assert_eq!(events.current(), LockState::Held);

    p.proxy.drop_connections();
    assert_eq!(
        tokio::time::timeout(WAIT, events.changed()).await.unwrap(),
        Some(LockState::Suspended),
        "a dropped connection suspends the holder"
    );
    assert!(!lock.is_acquired());
    assert_eq!(
        tokio::time::timeout(WAIT, events.changed()).await.unwrap(),
        Some(LockState::Held),
        "a reconnect within the session gives it back"
    );
    assert_eq!(lock.token(), Some(token));
    let node = lock.node_path().unwrap();
    assert!(
        p.direct.exists(&node).await.unwrap().is_some(),
        "the node survived"
    );

    // Keep the client away until its session expires.
    let mut states = p.zk.state_events();
    p.proxy.set_blackhole(true);
    let lost = tokio::time::timeout(WAIT, events.wait_for(|s| *s == LockState::Lost))
        .await
        .expect("the holder hears Lost");
    assert_eq!(lost, Some(LockState::Lost));
    await_state(&mut states, SessionState::Lost, WAIT).await;
    p.proxy.set_blackhole(false);
    assert_eq!(lock.token(), None, "no token once lost");
    let mut other = Lock::new(&p.direct, "/held", "direct").unwrap();
    other
        .acquire(Some(WAIT))
        .await
        .expect("another contender gets the lock the expired session held");
    assert!(!lock.release().await.unwrap() || lock.state() == LockState::Released);
    other.release().await.unwrap();
}

// ---- lock: mutual exclusion under contention and faults ----

/// What a holder writes into the protected log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Enter,
    Work,
    Exit,
}

/// One fenced write: which hold (token) wrote it, and which client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    token: i64,
    holder: usize,
    mark: Mark,
}

/// What a log that passed the check held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Verdict {
    /// Critical sections entered.
    sections: usize,
    /// Sections that ended without an exit (their holder lost the lock inside).
    interrupted: usize,
}

/// The invariant, over the log in the server's order: at most one holder at any time. Each
/// section starts with an `Enter` whose token is larger than every earlier one (fencing tokens
/// only grow), and every record until the next `Enter` belongs to that section (same token and
/// holder): a record of an older hold after a newer one began means two holders overlapped.
/// A retried write may repeat a record of the current section.
fn check_exclusion(log: &[Record]) -> Result<Verdict, String> {
    let mut v = Verdict::default();
    let mut current: Option<(Record, bool)> = None; // (its Enter, exited)
    for (i, r) in log.iter().enumerate() {
        match (r.mark, current) {
            (Mark::Enter, Some((c, _))) if c.token == r.token && c.holder == r.holder => {}
            (Mark::Enter, Some((c, _))) if r.token <= c.token => {
                return Err(format!(
                    "record {i}: {r:?} enters with a token not above the last one ({})",
                    c.token
                ))
            }
            (Mark::Enter, prev) => {
                if let Some((_, false)) = prev {
                    v.interrupted += 1;
                }
                v.sections += 1;
                current = Some((*r, false));
            }
            (_, None) => return Err(format!("record {i}: {r:?} outside any section")),
            (_, Some((c, _))) if c.token != r.token || c.holder != r.holder => {
                return Err(format!(
                    "record {i}: {r:?} written while token {} (holder {}) held the lock",
                    c.token, c.holder
                ))
            }
            (Mark::Work, Some((_, true))) => {
                return Err(format!("record {i}: {r:?} after its section's exit"))
            }
            (Mark::Work, Some(_)) => {}
            (Mark::Exit, Some((c, _))) => current = Some((c, true)),
        }
    }
    Ok(v)
}

#[test]
fn the_exclusion_checker_accepts_serial_holds_and_catches_overlaps() {
    use Mark::*;
    let r = |token, holder, mark| Record {
        token,
        holder,
        mark,
    };
    let serial = [
        r(1, 0, Enter),
        r(1, 0, Work),
        r(1, 0, Exit),
        r(2, 1, Enter),
        r(2, 1, Work),
        r(2, 1, Work), // a retried write
        r(2, 1, Exit),
        r(2, 1, Exit),
    ];
    assert_eq!(
        check_exclusion(&serial),
        Ok(Verdict {
            sections: 2,
            interrupted: 0
        })
    );
    // A holder that lost its session inside the section and wrote nothing more.
    let interrupted = [r(1, 0, Enter), r(1, 0, Work), r(3, 1, Enter), r(3, 1, Exit)];
    assert_eq!(
        check_exclusion(&interrupted),
        Ok(Verdict {
            sections: 2,
            interrupted: 1
        })
    );
    // Two holders at once.
    let overlap = [r(1, 0, Enter), r(2, 1, Enter), r(1, 0, Work)];
    assert!(check_exclusion(&overlap)
        .unwrap_err()
        .contains("while token 2"));
    // A token that went backwards.
    let backwards = [r(5, 0, Enter), r(5, 0, Exit), r(4, 1, Enter)];
    assert!(check_exclusion(&backwards).is_err());
    // Writes without the lock.
    assert!(check_exclusion(&[r(1, 0, Work)]).is_err());
    assert!(check_exclusion(&[r(1, 0, Enter), r(1, 0, Exit), r(1, 0, Work)]).is_err());
}

/// A write into the protected log, fenced: atomic with a check that the holder's lock node still
/// exists, so a holder whose session expired cannot write after its lock went to another.
async fn fenced_write(zk: &Client, node: &str, log: &str, rec: Record) -> Result<(), Error> {
    let mark = match rec.mark {
        Mark::Enter => "enter",
        Mark::Work => "work",
        Mark::Exit => "exit",
    };
    let data = format!("{mark} {} {}", rec.token, rec.holder);
    let ops = [
        Op::check(node, -1),
        Op::create(format!("{log}/e-"), data, CreateMode::PersistentSequential),
    ];
    loop {
        match zk.multi(&ops).await {
            Ok(_) => return Ok(()),
            // Maybe applied: write again (the checker accepts a repeated record).
            Err(Error::ConnectionLoss) => continue,
            Err(e) => return Err(e),
        }
    }
}

async fn read_log(zk: &Client, log: &str) -> Result<Vec<Record>> {
    let (mut names, _) = zk.get_children(log).await?;
    names.sort();
    let reads: Vec<_> = names
        .iter()
        .map(|n| zk.get_data(&format!("{log}/{n}")).into_future())
        .collect();
    let mut out = Vec::with_capacity(names.len());
    for r in reads {
        let (data, _) = r.await?;
        let text = String::from_utf8(data)?;
        let w: Vec<&str> = text.split(' ').collect();
        let mark = match w[0] {
            "enter" => Mark::Enter,
            "work" => Mark::Work,
            "exit" => Mark::Exit,
            other => bail!("bad record {other:?}"),
        };
        out.push(Record {
            token: w[1].parse()?,
            holder: w[2].parse()?,
            mark,
        });
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_holds_under_contention_drops_and_a_holder_expiry() {
    const CLIENTS: usize = 4;
    const ACQUISITIONS: u64 = 400;
    let admin = connect().await;
    let path = fresh(&admin, "mutex").await;
    let log = fresh(&admin, "mutex-log").await;
    admin
        .create(&log, b"", CreateMode::Persistent)
        .await
        .unwrap();

    // Clients 0 and 1 reach the server through proxies (1 has its connection dropped again
    // and again; 0's session is made to expire once while it holds the lock); 2 and 3 directly.
    let proxies: Vec<Arc<FaultProxy>> = (0..2)
        .map(|_| Arc::new(FaultProxy::start(server().addr()).expect("proxy")))
        .collect();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let hosts = match proxies.get(i) {
            Some(p) => p.connect_string(),
            None => server().connect_string(),
        };
        clients.push(
            Client::builder(&hosts)
                .session_timeout(Duration::from_secs(2))
                .max_backoff(Duration::from_millis(200))
                .connect()
                .await
                .expect("connect"),
        );
    }

    let done = Arc::new(AtomicU64::new(0));
    let wakeups = Arc::new(AtomicU64::new(0));
    let holder_now = Arc::new(AtomicUsize::new(usize::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, zk) in clients.iter().cloned().enumerate() {
        let (path, log) = (path.clone(), log.clone());
        let (done, wakeups, holder_now, stop) = (
            done.clone(),
            wakeups.clone(),
            holder_now.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lock = Lock::new(&zk, &path, &format!("client-{i}"))?;
            let mut held = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let token = match lock.acquire(Some(WAIT)).await {
                    Ok(t) => t,
                    Err(e) => bail!("client {i}: acquire failed: {e}"),
                };
                if done.fetch_add(1, Ordering::SeqCst) + 1 >= ACQUISITIONS {
                    stop.store(true, Ordering::SeqCst);
                }
                holder_now.store(i, Ordering::SeqCst);
                let node = lock.node_path().context("a holder has a node")?;
                let rec = |mark| Record {
                    token: token.sequence,
                    holder: i,
                    mark,
                };
                let section = async {
                    fenced_write(&zk, &node, &log, rec(Mark::Enter)).await?;
                    fenced_write(&zk, &node, &log, rec(Mark::Work)).await?;
                    tokio::task::yield_now().await;
                    fenced_write(&zk, &node, &log, rec(Mark::Exit)).await
                };
                match section.await {
                    Ok(()) => held += 1,
                    // The lock went with the session (or the node check failed after expiry):
                    // the fence refused the write.
                    Err(Error::SessionExpired) | Err(Error::MultiFailed { .. }) => {}
                    Err(e) => bail!("client {i}: fenced write failed: {e}"),
                }
                holder_now.store(usize::MAX, Ordering::SeqCst);
                lock.release().await?;
            }
            wakeups.fetch_add(lock.wakeups(), Ordering::SeqCst);
            Ok(held)
        }));
    }

    // Faults: drop client 1's connection every 150 ms; once a quarter of the work is done, keep
    // client 0 away while it holds the lock until its session expires.
    let dropper = {
        let (p, stop) = (proxies[1].clone(), stop.clone());
        tokio::spawn(async move {
            let mut drops = 0;
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(150)).await;
                p.drop_connections();
                drops += 1;
            }
            drops
        })
    };
    let began = Instant::now();
    wazoo_tests::wait_until(
        "a quarter of the acquisitions",
        Duration::from_secs(60),
        || done.load(Ordering::SeqCst) >= ACQUISITIONS / 4,
    )
    .await
    .unwrap();
    wazoo_tests::wait_until("client 0 holds the lock", Duration::from_secs(60), || {
        holder_now.load(Ordering::SeqCst) == 0
    })
    .await
    .unwrap();
    let mut states = clients[0].state_events();
    proxies[0].set_blackhole(true);
    await_state(&mut states, SessionState::Lost, WAIT).await;
    proxies[0].set_blackhole(false);

    let mut held = Vec::new();
    for t in tasks {
        held.push(
            tokio::time::timeout(Duration::from_secs(90), t)
                .await
                .expect("the contenders finish")
                .unwrap()
                .unwrap(),
        );
    }
    let drops = dropper.await.unwrap();
    let elapsed = began.elapsed();

    let records = read_log(&admin, &log).await.unwrap();
    let verdict = check_exclusion(&records).unwrap_or_else(|e| panic!("exclusion broken: {e}"));
    let total = done.load(Ordering::SeqCst);
    let woken = wakeups.load(Ordering::SeqCst);
    println!(
        "{total} acquisitions in {elapsed:?} ({} complete sections per client {held:?}), \
         {} sections logged, {} interrupted, {drops} connection drops, {woken} wake-ups",
        held.iter().sum::<u64>(),
        verdict.sections,
        verdict.interrupted,
    );
    assert!(total >= ACQUISITIONS, "{total} acquisitions");
    assert!(
        held.iter().all(|&h| h > 0),
        "every client held it: {held:?}"
    );
    assert!(
        verdict.interrupted <= 1,
        "only the expired holder's section may be cut short"
    );
    assert!(
        verdict.sections as u64 >= held.iter().sum::<u64>(),
        "every completed section is in the log"
    );
    // Without a herd, a release wakes one waiter: at most one wake-up per acquisition (plus
    // the watches the expiry and the reconnects fired).
    assert!(
        woken <= total + CLIENTS as u64,
        "{woken} wake-ups for {total} acquisitions: a herd"
    );
}

/// Prints the uncontended cycle time next to the three requests it needs (create, list,
/// delete) sent by hand: the lock's own overhead is the difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncontended_lock_cycle_costs_its_three_requests() {
    let zk = connect().await;
    let path = fresh(&zk, "cycle").await;
    let mut lock = Lock::new(&zk, &path, "bench").unwrap();
    lock.acquire(None).await.unwrap();
    lock.release().await.unwrap();
    // Alternate the two, so that the server's and the machine's drift hits both alike.
    const N: u32 = 200;
    let (mut cycle, mut raw) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..N {
        let began = Instant::now();
        let token = lock.acquire(None).await.unwrap();
        assert!(lock.release().await.unwrap(), "{token:?} was held");
        cycle += began.elapsed();
        let began = Instant::now();
        let node = zk
            .create(
                &format!("{path}/x__lock__"),
                b"bench",
                CreateMode::EphemeralSequential,
            )
            .await
            .unwrap();
        zk.get_children(&path).await.unwrap();
        zk.delete(&node, None).await.unwrap();
        raw += began.elapsed();
    }
    let (cycle, raw) = (cycle / N, raw / N);
    assert!(
        zk.get_children(&path).await.unwrap().0.is_empty(),
        "no node left"
    );
    println!(
        "uncontended lock cycle (acquire + release): {cycle:?}; the same three requests by hand: \
         {raw:?} (x{:.2})",
        cycle.as_secs_f64() / raw.as_secs_f64()
    );
}

// ---- election and latch ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_latch_hands_leadership_over_when_the_leader_leaves() {
    let zk = connect().await;
    let path = fresh(&zk, "latch").await;
    let a = LeaderLatch::start(&zk, &path, "a").unwrap();
    let mut a_events = a.events();
    tokio::time::timeout(WAIT, a_events.wait_for(|s| *s == LockState::Held))
        .await
        .unwrap();
    assert!(a.has_leadership());
    let other = connect().await;
    let b = LeaderLatch::start(&other, &path, "b").unwrap();
    let mut b_events = b.events();
    tokio::time::timeout(WAIT, b_events.wait_for(|s| *s == LockState::Acquiring))
        .await
        .unwrap();
    assert!(!b.has_leadership());
    a.close().await;
    tokio::time::timeout(WAIT, b_events.wait_for(|s| *s == LockState::Held))
        .await
        .expect("b leads once a leaves");
    assert!(b.has_leadership());
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locking_queue_gives_an_item_to_one_consumer_until_it_is_released_or_its_session_ends() {
    let zk = connect().await;
    let path = fresh(&zk, "locking-queue").await;
    let mut a = LockingQueue::new(&zk, &path).unwrap();
    a.put_all(&[b"1", b"2"], 100).await.unwrap();
    let b_client = connect().await;
    let mut b = LockingQueue::new(&b_client, &path).unwrap();
    let c_client = connect().await;
    let mut c = LockingQueue::new(&c_client, &path).unwrap();

    assert_eq!(a.get(Some(WAIT)).await.unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(
        a.get(None).await.unwrap().as_deref(),
        Some(&b"1"[..]),
        "the same until done"
    );
    assert_eq!(b.get(Some(WAIT)).await.unwrap().as_deref(), Some(&b"2"[..]));
    assert!(a.holds_lock().await.unwrap());
    let short = Some(Duration::from_millis(200));
    assert_eq!(c.get(short).await.unwrap(), None, "every item is locked");
    assert_eq!(a.len().await.unwrap(), 2, "locked items are still queued");

    // A waiting consumer gets an item as soon as it is released.
    let waiting = tokio::spawn(async move {
        let v = c.get(Some(WAIT)).await;
        (c, v)
    });
    assert!(a.release().await.unwrap());
    let (mut c, v) = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    assert_eq!(v.unwrap().as_deref(), Some(&b"1"[..]));

    // A consumer whose session ends gives its item back.
    b_client.close().await;
    assert_eq!(a.get(Some(WAIT)).await.unwrap().as_deref(), Some(&b"2"[..]));
    assert!(!b.consume().await.unwrap_or(false), "b lost its lock");
    assert!(c.consume().await.unwrap());
    assert!(a.consume().await.unwrap());
    assert!(a.is_empty().await.unwrap());
}

// ---- barriers and party ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barrier_holds_waiters_until_it_is_removed() {
    let zk = connect().await;
    let path = fresh(&zk, "barrier").await;
    let barrier = Barrier::new(&zk, &path).unwrap();
    assert!(barrier.wait(None).await.unwrap(), "no barrier: no wait");
    barrier.create().await.unwrap();
    assert!(
        !barrier
            .wait(Some(Duration::from_millis(200)))
            .await
            .unwrap(),
        "up: the wait times out"
    );
    let other = connect().await;
    let waiter = Barrier::new(&other, &path).unwrap();
    let waiting = tokio::spawn(async move { waiter.wait(Some(WAIT)).await });
    zk.set_data(&path, b"not yet", None).await.unwrap();
    assert!(!waiting.is_finished(), "a data change does not lift it");
    assert!(barrier.remove().await.unwrap());
    assert!(tokio::time::timeout(WAIT, waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap());
    assert!(!barrier.remove().await.unwrap(), "already down");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_barrier_lets_members_in_together_and_out_together() {
    const N: usize = 3;
    let zk = connect().await;
    let path = fresh(&zk, "double").await;
    zk.ensure_path(&path).await.unwrap();
    let entered = Arc::new(AtomicUsize::new(0));
    let (go_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut members = Vec::new();
    for i in 0..N {
        let c = connect().await;
        let mut barrier = DoubleBarrier::new(&c, &path, N, &format!("m{i}")).unwrap();
        let inside = entered.clone();
        let mut go = go_tx.subscribe();
        members.push(tokio::spawn(async move {
            barrier.enter().await.unwrap();
            let others_in = inside.fetch_add(1, Ordering::SeqCst);
            let _ = go.recv().await;
            barrier.leave().await.unwrap();
            c.close().await;
            others_in
        }));
        if i + 1 < N {
            // The first members wait at the door until the last one comes.
            children_reach(&zk, &path, i + 1).await;
            assert_eq!(
                entered.load(Ordering::SeqCst),
                0,
                "nobody in before {N} came"
            );
        }
    }
    wazoo_tests::wait_until("every member entered", WAIT, || {
        entered.load(Ordering::SeqCst) == N
    })
    .await
    .unwrap();
    go_tx.send(()).unwrap();
    for m in members {
        tokio::time::timeout(WAIT, m).await.unwrap().unwrap();
    }
    let (left, _) = zk.get_children(&path).await.unwrap();
    assert!(
        left.iter().all(|c| c == "ready"),
        "every member left: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn party_members_see_each_other() {
    let zk = connect().await;
    let path = fresh(&zk, "party").await;
    let mut a = Party::new(&zk, &path, "a").unwrap();
    let other = connect().await;
    let mut b = Party::new(&other, &path, "b").unwrap();
    assert!(a.is_empty().await.unwrap());
    a.join().await.unwrap();
    a.join().await.unwrap();
    b.join().await.unwrap();
    let mut m = a.members().await.unwrap();
    m.sort();
    assert_eq!(m, ["a", "b"]);
    assert!(b.leave().await.unwrap());
    assert!(!b.leave().await.unwrap());
    assert_eq!(a.members().await.unwrap(), ["a"]);
    assert_eq!(b.len().await.unwrap(), 1);
}

// ---- interop with Kazoo ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_and_wazoo_locks_exclude_each_other_both_ways() {
    let zk = connect().await;
    let path = fresh(&zk, "kazoo-lock").await;
    let mut kazoo = KazooPeer::start(&server().connect_string()).await.unwrap();
    let mut lock = Lock::new(&zk, &path, "wazoo").unwrap();

    // Kazoo first: wazoo waits for it.
    assert_eq!(
        kazoo.call(&format!("lock {path} kazoo")).await.unwrap(),
        "locked"
    );
    assert_eq!(lock.try_acquire().await.unwrap(), None, "Kazoo holds it");
    let waiting = tokio::spawn(async move {
        let t = lock.acquire(Some(WAIT)).await;
        (lock, t)
    });
    children_reach(&zk, &path, 2).await;
    assert_eq!(
        kazoo.call(&format!("contenders {path}")).await.unwrap(),
        "kazoo wazoo",
        "Kazoo sees both, in order"
    );
    assert!(
        !waiting.is_finished(),
        "wazoo must wait while Kazoo holds it"
    );
    assert_eq!(kazoo.call("unlock").await.unwrap(), "unlocked");
    let (mut lock, t) = tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap();
    t.expect("wazoo acquires once Kazoo releases");

    // wazoo first: Kazoo waits for it.
    assert_eq!(
        kazoo.call(&format!("trylock {path} kazoo")).await.unwrap(),
        "busy"
    );
    kazoo.send(&format!("lock {path} kazoo")).unwrap();
    children_reach(&zk, &path, 2).await;
    assert_eq!(lock.contenders().await.unwrap(), ["wazoo", "kazoo"]);
    assert!(!kazoo.has_line(), "Kazoo must wait while wazoo holds it");
    lock.release().await.unwrap();
    assert_eq!(kazoo.line(WAIT).await.unwrap(), "locked");
    assert_eq!(kazoo.call("unlock").await.unwrap(), "unlocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_and_wazoo_elections_pick_one_leader() {
    let zk = connect().await;
    let path = fresh(&zk, "kazoo-election").await;
    let mut kazoo = KazooPeer::start(&server().connect_string()).await.unwrap();
    kazoo.send(&format!("elect {path} kazoo-id")).unwrap();
    assert_eq!(kazoo.line(WAIT).await.unwrap(), "leader");

    let mut election = Election::new(&zk, &path, "wazoo-id").unwrap();
    let led = Arc::new(AtomicBool::new(false));
    let l = led.clone();
    let running = tokio::spawn(async move {
        let r = election
            .run(|token| async move {
                l.store(true, Ordering::SeqCst);
                token
            })
            .await;
        (election, r)
    });
    let observer = Election::new(&zk, &path, "observer").unwrap();
    children_reach(&zk, &path, 2).await;
    assert_eq!(
        observer.contenders().await.unwrap(),
        ["kazoo-id", "wazoo-id"],
        "Kazoo leads, wazoo waits"
    );
    assert!(!led.load(Ordering::SeqCst), "one leader at a time");
    assert_eq!(kazoo.call("resign").await.unwrap(), "resigned");
    let (_, r) = tokio::time::timeout(WAIT, running).await.unwrap().unwrap();
    r.expect("wazoo leads after Kazoo resigns");
    assert!(led.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_and_wazoo_counters_count_together() {
    let zk = connect().await;
    let path = fresh(&zk, "kazoo-counter").await;
    let mut kazoo = KazooPeer::start(&server().connect_string()).await.unwrap();
    let counter = Counter::new(&zk, &path, 0).unwrap();
    kazoo.send(&format!("count {path} 1 100")).unwrap();
    let mut mine = Vec::new();
    for _ in 0..50 {
        let c = zk.clone();
        let p = path.clone();
        mine.push(tokio::spawn(async move {
            Counter::new(&c, &p, 0).unwrap().add(2).await
        }));
    }
    for m in mine {
        let change = m.await.unwrap().unwrap();
        assert_eq!(change.post, change.pre + 2);
    }
    let kazoo_said = kazoo.line(WAIT).await.unwrap();
    assert!(kazoo_said.starts_with("counted "), "{kazoo_said}");
    assert_eq!(
        counter.value().await.unwrap(),
        100 + 50 * 2,
        "no update lost"
    );
    let (data, _) = zk.get_data(&path).await.unwrap();
    assert_eq!(data, b"200", "decimal text, as Kazoo writes it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_and_wazoo_share_a_queue() {
    let zk = connect().await;
    let path = fresh(&zk, "kazoo-queue").await;
    let mut kazoo = KazooPeer::start(&server().connect_string()).await.unwrap();
    let mut queue = Queue::new(&zk, &path).unwrap();
    // Items put by Kazoo are taken by wazoo, in priority order, then put order.
    for (v, prio) in [("k-late", 200), ("k-first", 5), ("k-second", 5)] {
        assert_eq!(
            kazoo.call(&format!("put {path} {v} {prio}")).await.unwrap(),
            "put"
        );
    }
    queue.put(b"w-middle", 100).await.unwrap();
    let mut taken = Vec::new();
    while let Some(v) = queue.get().await.unwrap() {
        taken.push(String::from_utf8(v).unwrap());
    }
    assert_eq!(taken, ["k-first", "k-second", "w-middle", "k-late"]);
    assert!(queue.is_empty().await.unwrap());
    // Items put by wazoo are taken by Kazoo.
    queue.put(b"w-2", 100).await.unwrap();
    queue.put(b"w-1", 1).await.unwrap();
    assert_eq!(kazoo.call(&format!("get {path}")).await.unwrap(), "got w-1");
    assert_eq!(kazoo.call(&format!("get {path}")).await.unwrap(), "got w-2");
    assert_eq!(kazoo.call(&format!("get {path}")).await.unwrap(), "empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_and_wazoo_share_a_party_and_a_locking_queue() {
    let zk = connect().await;
    let party_path = fresh(&zk, "kazoo-party").await;
    let queue_path = fresh(&zk, "kazoo-locking-queue").await;
    let mut kazoo = KazooPeer::start(&server().connect_string()).await.unwrap();

    assert_eq!(
        kazoo
            .call(&format!("join {party_path} kazoo"))
            .await
            .unwrap(),
        "joined"
    );
    let mut party = Party::new(&zk, &party_path, "wazoo").unwrap();
    party.join().await.unwrap();
    let mut members = party.members().await.unwrap();
    members.sort();
    assert_eq!(members, ["kazoo", "wazoo"]);
    assert_eq!(
        kazoo.call(&format!("members {party_path}")).await.unwrap(),
        "kazoo wazoo"
    );

    // Kazoo locks the first item; wazoo gets the next one, then the first once Kazoo is done.
    let mut queue = LockingQueue::new(&zk, &queue_path).unwrap();
    queue.put(b"w-1", 100).await.unwrap();
    assert_eq!(
        kazoo
            .call(&format!("lqput {queue_path} k-2 100"))
            .await
            .unwrap(),
        "put"
    );
    assert_eq!(
        kazoo.call(&format!("lqget {queue_path}")).await.unwrap(),
        "got w-1"
    );
    assert_eq!(
        queue.get(Some(WAIT)).await.unwrap().as_deref(),
        Some(&b"k-2"[..]),
        "the item Kazoo locked is skipped"
    );
    assert!(queue.consume().await.unwrap());
    assert_eq!(kazoo.call("lqconsume").await.unwrap(), "consumed");
    assert!(queue.is_empty().await.unwrap());
}

/// Each item's lock directory under a partitioner holds exactly one contender.
async fn each_item_locked_once(zk: &Client, path: &str, items: &[&str]) {
    for item in items {
        let (children, _) = zk
            .get_children(&format!("{path}/locks/{item}"))
            .await
            .unwrap_or_else(|e| panic!("{item}'s lock: {e}"));
        assert_eq!(
            children.len(),
            1,
            "{item} is held by exactly one: {children:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_and_wazoo_set_partitioners_split_a_set_together() {
    let zk = connect().await;
    let path = fresh(&zk, "kazoo-partitioner").await;
    let items = ["a", "b", "c", "d", "e", "f"];
    let boundary = Duration::from_secs(1);

    // Alone, wazoo takes every item.
    let mut wazoo = SetPartitioner::start(&zk, &path, &items, "wazoo", boundary)
        .await
        .unwrap();
    assert_eq!(wazoo.wait_for_acquire(WAIT).await, PartitionState::Acquired);
    assert_eq!(wazoo.partition(), items);

    // Kazoo joins: wazoo is asked to release, and the set is split between them.
    let mut kazoo = KazooPeer::start(&server().connect_string()).await.unwrap();
    let mut states = wazoo.state_events();
    assert_eq!(
        kazoo
            .call(&format!("partition {path} kazoo {}", items.join(",")))
            .await
            .unwrap(),
        "started"
    );
    let s = tokio::time::timeout(WAIT, states.wait_for(|s| *s == PartitionState::Release))
        .await
        .expect("wazoo hears the party change");
    assert_eq!(s, Some(PartitionState::Release));
    assert!(
        wazoo.partition().is_empty(),
        "nothing is its own in Release"
    );
    wazoo.release_set().await;
    assert_eq!(wazoo.wait_for_acquire(WAIT).await, PartitionState::Acquired);
    assert_eq!(
        kazoo.call("pwait").await.unwrap(),
        "acquired a,c,e",
        "Kazoo's share (its default partition function)"
    );
    assert_eq!(wazoo.partition(), ["b", "d", "f"]);
    each_item_locked_once(&zk, &path, &items).await;

    // Kazoo leaves: wazoo takes everything again.
    assert_eq!(kazoo.call("pfinish").await.unwrap(), "finished");
    let s = tokio::time::timeout(WAIT, states.wait_for(|s| *s == PartitionState::Release))
        .await
        .expect("wazoo hears Kazoo leave");
    assert_eq!(s, Some(PartitionState::Release));
    wazoo.release_set().await;
    assert_eq!(wazoo.wait_for_acquire(WAIT).await, PartitionState::Acquired);
    assert_eq!(wazoo.partition(), items);
    each_item_locked_once(&zk, &path, &items).await;
    wazoo.finish().await;
    let (members, _) = zk.get_children(&format!("{path}/party")).await.unwrap();
    assert!(members.is_empty(), "finish leaves the party: {members:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kazoo_and_wazoo_share_a_semaphores_leases() {
    let zk = connect().await;
    let path = fresh(&zk, "kazoo-semaphore").await;
    let _ = zk.delete_recursive(&format!("{path}-__lock__")).await;
    let mut kazoo = KazooPeer::start(&server().connect_string()).await.unwrap();

    let mut a = Semaphore::new(&zk, &path, "wazoo-a", 2).unwrap();
    a.acquire(Some(WAIT)).await.unwrap();
    assert_eq!(
        kazoo
            .call(&format!("sacquire {path} kazoo 2"))
            .await
            .unwrap(),
        "acquired",
        "the second lease is Kazoo's"
    );
    let other = connect().await;
    let mut b = Semaphore::new(&other, &path, "wazoo-b", 2).unwrap();
    assert!(!b.try_acquire().await.unwrap(), "both leases are taken");
    assert_eq!(
        kazoo.call(&format!("sholders {path} 2")).await.unwrap(),
        "kazoo wazoo-a"
    );

    // b waits for a lease; Kazoo's release gives it one.
    let waiter = tokio::spawn(async move { b.acquire(Some(WAIT)).await.map(|()| b) });
    children_reach(&zk, &format!("{path}-__lock__"), 1).await;
    assert_eq!(kazoo.call("srelease").await.unwrap(), "released");
    let mut b = waiter
        .await
        .unwrap()
        .expect("b gets the lease Kazoo released");
    assert!(b.holds_lease().await.unwrap());
    let mut holders = a.lease_holders().await.unwrap();
    holders.sort();
    assert_eq!(holders, ["wazoo-a", "wazoo-b"]);
    assert_eq!(
        kazoo
            .call(&format!("sacquire {path} kazoo 2"))
            .await
            .unwrap(),
        "busy",
        "Kazoo counts wazoo's leases"
    );

    // Every holder checks the stored maximum.
    let mut wrong = Semaphore::new(&zk, &path, "wrong", 3).unwrap();
    assert!(matches!(
        wrong.try_acquire().await,
        Err(Error::InvalidArgument(_))
    ));
    b.release().await.unwrap();
    a.release().await.unwrap();
    assert!(a.lease_holders().await.unwrap().is_empty());
}

// ---- persistent node ----

/// Waits (on watches, not by polling) until `path` is an ephemeral of `session`.
async fn owned_by(zk: &Client, path: &str, session: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (stat, watch) = zk.exists_watch(path).await.expect("exists");
        if stat.is_some_and(|s| s.ephemeral_owner == session) {
            return;
        }
        tokio::time::timeout_at(deadline, watch.changed())
            .await
            .unwrap_or_else(|_| panic!("{path} is never an ephemeral of {session:#x}: {stat:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_node_comes_back_after_a_delete_a_reconnect_and_an_expiry() {
    let p = Proxied::start(200, Duration::from_secs(2)).await;
    let node =
        PersistentNode::start(&p.zk, "/persistent/member", b"ours", CreateMode::Ephemeral).unwrap();
    let path = node.wait_for_initial_create(WAIT).await.unwrap();
    assert_eq!(path, "/persistent/member");
    owned_by(&p.direct, &path, p.zk.session_id()).await;

    // Deleted by someone else: created again.
    p.direct.delete(&path, None).await.unwrap();
    owned_by(&p.direct, &path, p.zk.session_id()).await;

    // Its data changed underneath, then a reconnect: the data is set back.
    let mut states = p.zk.state_events();
    p.direct.set_data(&path, b"theirs", None).await.unwrap();
    p.proxy.drop_connections();
    await_state(&mut states, SessionState::Suspended, WAIT).await;
    await_state(&mut states, SessionState::Connected, WAIT).await;
    assert!(
        await_data(&p.direct, &path, b"ours", WAIT).await,
        "the data is set back after the reconnect"
    );

    // The session expires (the ephemeral goes with it): created again on the new session.
    let sid = p.zk.session_id();
    p.proxy.set_blackhole(true);
    await_state(&mut states, SessionState::Lost, WAIT).await;
    p.proxy.set_blackhole(false);
    await_state(&mut states, SessionState::Connected, WAIT).await;
    assert_ne!(p.zk.session_id(), sid, "a new session");
    owned_by(&p.direct, &path, p.zk.session_id()).await;
    assert!(await_data(&p.direct, &path, b"ours", WAIT).await);

    node.set_data(b"new");
    assert!(await_data(&p.direct, &path, b"new", WAIT).await);
    node.close().await.unwrap();
    assert_eq!(
        p.direct.exists(&path).await.unwrap(),
        None,
        "close deletes it"
    );
}
