//! Dispatch-lane benchmark:
//! `wazoo-lanes HOST:PORT [n=1000000] [rate=10000] [secs=5] [spin=US] [nice=N] [slice_us=US]`.
//!
//! 1. `dispatch`: empty native callbacks pushed onto one lane as fast as one producer can; the
//!    lane's throughput (callbacks/s) until it has run them all.
//! 2. `frame_to_callback`: one client writes at a steady `rate` per second; another's persistent
//!    watch callback measures, at its start, how long ago the session actor read the
//!    notification's frame and handed it to the lane (`CallbackInfo::queued_at`); p50/p99/p99.9.
//!    Also the watch lane thread's CPU during the run (% of one core: callbacks plus polling)
//!    and the whole process's.
//! 3. `idle_lane_cpu`: right after that run, the CPU the watch lane thread uses in one idle
//!    second (a lane must not poll when there is no work).
//! 4. `session_while_watch_blocked`: the watch lane is held by a callback that sleeps while
//!    session-lane callbacks are submitted at 1 kHz; their queueing latency p50/p99.
//!
//! `spin` sets how long an emptied lane polls before parking, in microseconds (default:
//! `wazoo::DEFAULT_SPIN`). `nice` and `slice_us` set the lane threads' nice value and the time
//! slice they ask the kernel for (`wazoo::LaneScheduling`; not combined with `spin`). Prints
//! one JSON object per line per measurement and a table on stderr.

use std::future::IntoFuture;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wazoo::{AddWatchMode, Client, CreateMode, LaneKind, Lanes};
use wazoo_bench::cpu::CpuClock;

/// CPU time of the calling thread (from inside a lane callback: the lane thread's).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// The lane thread's CPU time so far, read by a callback on that lane.
fn lane_cpu(lanes: &Lanes, kind: LaneKind) -> Duration {
    let (tx, rx) = mpsc::channel();
    lanes.run(kind, move |_| {
        let _ = tx.send(thread_cpu());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the lane answered")
}

fn arg(args: &[String], key: &str, default: u64) -> u64 {
    args.iter()
        .find_map(|a| {
            a.strip_prefix(&format!("{key}="))
                .map(|v| v.parse().expect("a number"))
        })
        .unwrap_or(default)
}

fn pct(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let hosts = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2181".into());
    let n = arg(&args, "n", 1_000_000);
    let rate = arg(&args, "rate", 10_000);
    let secs = arg(&args, "secs", 5);
    let spin = if args.iter().any(|a| a.starts_with("spin=")) {
        Duration::from_micros(arg(&args, "spin", 0))
    } else {
        wazoo::DEFAULT_SPIN
    };
    let given = |key: &str| args.iter().any(|a| a.starts_with(&format!("{key}=")));
    let mut scheduling = wazoo::LaneScheduling::default();
    if given("nice") {
        let nice = args
            .iter()
            .find_map(|a| a.strip_prefix("nice="))
            .and_then(|v| v.parse::<i32>().ok())
            .expect("nice=N takes an integer");
        scheduling = scheduling.nice(nice);
    }
    if given("slice_us") {
        scheduling = scheduling.slice(Duration::from_micros(arg(&args, "slice_us", 0)));
    }
    let lanes_named = |name: &str| {
        if spin.is_zero() {
            Lanes::with_scheduling(name, scheduling)
        } else {
            Lanes::with_spin(name, spin)
        }
    };
    eprintln!("lanes poll for {spin:?} before parking; scheduling {scheduling:?}");
    let mut rows: Vec<(String, String)> = Vec::new();

    // 1. dispatch throughput per lane
    for kind in LaneKind::ALL {
        let lanes = lanes_named("bench");
        let (tx, rx) = mpsc::channel();
        lanes.run(kind, |_| {}); // start the thread outside the measurement
        assert!(lanes.drain(Duration::from_secs(5)));
        let t0 = Instant::now();
        for _ in 0..n {
            lanes.run(kind, |_| {});
        }
        lanes.run(kind, move |_| tx.send(()).unwrap());
        rx.recv()?;
        let secs_taken = t0.elapsed().as_secs_f64();
        let per_s = n as f64 / secs_taken;
        println!(
            "{{\"bench\":\"dispatch\",\"lane\":\"{kind:?}\",\"n\":{n},\"secs\":{secs_taken:.3},\"callbacks_s\":{per_s:.0}}}"
        );
        rows.push((
            format!("dispatch, {kind:?} lane"),
            format!("{:.2} M callbacks/s", per_s / 1e6),
        ));
    }

    // 2. frame-to-callback latency at a steady rate
    let root = Client::connect(&hosts).await?;
    let _ = root.delete_recursive("/lanes-bench").await;
    root.create("/lanes-bench", b"", CreateMode::Persistent)
        .await?;
    root.create("/lanes-bench/x", b"", CreateMode::Persistent)
        .await?;
    let watcher = Client::builder(&hosts)
        .lanes(lanes_named("watcher"))
        .connect()
        .await?;
    let (lat_tx, lat_rx) = mpsc::channel::<Duration>();
    watcher
        .add_watch_with(
            "/lanes-bench",
            AddWatchMode::PersistentRecursive,
            move |_, info| {
                let _ = lat_tx.send(info.queued_at.elapsed());
                true
            },
        )
        .await?;
    let total = rate * secs;
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let lane_cpu0 = lane_cpu(watcher.lanes(), LaneKind::Watch);
    let clock = CpuClock::new()?;
    let proc_cpu0 = clock.sample();
    let start = Instant::now();
    let mut pending = Vec::new();
    for i in 0..total {
        let due = start + period.mul_f64(i as f64);
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
        }
        pending.push(root.set_data("/lanes-bench/x", b"v", None).into_future());
        if pending.len() >= 256 {
            for p in pending.drain(..) {
                p.await?;
            }
        }
    }
    for p in pending.drain(..) {
        p.await?;
    }
    let mut lats: Vec<Duration> = Vec::with_capacity(total as usize);
    while lats.len() < total as usize {
        lats.push(lat_rx.recv_timeout(Duration::from_secs(30))?);
    }
    let wall = start.elapsed();
    let lane_busy = lane_cpu(watcher.lanes(), LaneKind::Watch).saturating_sub(lane_cpu0);
    let proc_busy = clock.sample().since(&proc_cpu0);
    let achieved = total as f64 / wall.as_secs_f64();
    let (p50, p99, p999) = (
        pct(&mut lats, 0.5),
        pct(&mut lats, 0.99),
        pct(&mut lats, 0.999),
    );
    let lane_pct = 100.0 * lane_busy.as_secs_f64() / wall.as_secs_f64();
    let proc_pct = 100.0 * proc_busy.as_secs_f64() / wall.as_secs_f64();
    println!(
        "{{\"bench\":\"frame_to_callback\",\"spin_us\":{},\"scheduling\":\"{scheduling:?}\",\"rate\":{achieved:.0},\"n\":{total},\"p50_us\":{p50:.1},\"p99_us\":{p99:.1},\"p999_us\":{p999:.1},\"lane_cpu_pct\":{lane_pct:.1},\"process_cpu_pct\":{proc_pct:.1}}}",
        spin.as_micros()
    );
    rows.push((
        format!("frame to callback at {achieved:.0} events/s"),
        format!("p50 {p50:.1} us, p99 {p99:.1} us, p99.9 {p999:.1} us"),
    ));
    rows.push((
        "watch lane thread / whole process CPU during that run".into(),
        format!("{lane_pct:.1} % / {proc_pct:.1} % of one core"),
    ));

    // 3. an idle lane's CPU
    let idle0 = lane_cpu(watcher.lanes(), LaneKind::Watch);
    std::thread::sleep(Duration::from_secs(1));
    let idle = lane_cpu(watcher.lanes(), LaneKind::Watch).saturating_sub(idle0);
    println!(
        "{{\"bench\":\"idle_lane_cpu\",\"secs\":1,\"cpu_us\":{:.1}}}",
        idle.as_secs_f64() * 1e6
    );
    rows.push((
        "watch lane thread CPU in one idle second".into(),
        format!("{:.1} us", idle.as_secs_f64() * 1e6),
    ));
    let _ = root.delete_recursive("/lanes-bench").await;
    watcher.close().await;
    root.close().await;

    // 4. session lane while the watch lane is blocked
    let lanes = lanes_named("bench-block");
    let (release_tx, release_rx) = mpsc::channel::<()>();
    lanes.run(LaneKind::Watch, move |_| {
        let _ = release_rx.recv_timeout(Duration::from_secs(60));
    });
    let (tx, rx) = mpsc::channel::<Duration>();
    let count = 2000;
    for _ in 0..count {
        let tx = tx.clone();
        lanes.run(LaneKind::Session, move |info| {
            let _ = tx.send(info.queued_at.elapsed());
        });
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut lats: Vec<Duration> = (0..count).map(|_| rx.recv().unwrap()).collect();
    release_tx.send(())?;
    let (p50, p99) = (pct(&mut lats, 0.5), pct(&mut lats, 0.99));
    println!("{{\"bench\":\"session_while_watch_blocked\",\"n\":{count},\"p50_us\":{p50:.1},\"p99_us\":{p99:.1}}}");
    rows.push((
        "session lane while the watch lane is blocked".into(),
        format!("p50 {p50:.1} us, p99 {p99:.1} us"),
    ));

    eprintln!("\n| measurement | result |\n|---|---|");
    for (k, v) in rows {
        eprintln!("| {k} | {v} |");
    }
    Ok(())
}
