//! Guest-runtime benchmark:
//! `wazoo-guests HOST:PORT [n=200000] [plugins=1000] [gets=5000] [wasm=PATH] [only=SECTIONS]`.
//!
//! `only` (comma-separated: `dispatch`, `get`, `rss`, `build`, `spin`, `idle`) runs just those
//! sections after the loads and the first event, e.g. to profile one of them.
//!
//! With the `noop` test guest (every handler empty; `scripts/build-guests.sh` builds it):
//! 1. `load_cold` / `load_warm`: loading one plugin with an empty compilation cache, then 1000
//!    plugins from the warm cache (compile or deserialize, link, lanes);
//! 2. `first_event`: the first watch event of a plugin, which builds its instance (pooling
//!    allocator) and runs `init`, then the call;
//! 3. `dispatch`: empty on-watch calls through one guest lane, events injected as fast as one
//!    producer can (`Plugin::inject_watch`), until all have run;
//! 4. `get_round_trip`: `gets` (default 5000) sequential gets of a 100-byte node, natively
//!    (awaited on the client) and from the `getter` guest's on-watch (one get per injected
//!    event, the lane running them one after another): what a guest adds to a round trip;
//! 5. `rss_per_instance`: resident memory per idle instance, over `plugins` instances.
//!
//! Prints one JSON object per line and a table on stderr.

use std::time::{Duration, Instant};

use wazoo::{Client, IsolationMode, PluginHost, PluginHostConfig, Policy};
use wazoo_bench::cpu::CpuClock;

fn arg(args: &[String], key: &str) -> Option<String> {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{key}=")).map(str::to_string))
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
            })
        })
        .unwrap_or(0)
}

/// Runs `round` (`n` calls), and keeps in `best` its (wall, whole-process CPU) µs per call if
/// its wall time per call is the lowest so far.
fn best(clock: &CpuClock, best: &mut (f64, f64), n: u64, round: impl FnOnce()) {
    let (t, c) = (Instant::now(), clock.sample());
    round();
    let (wall, cpu) = (t.elapsed(), clock.sample().since(&c));
    let r = (
        wall.as_secs_f64() * 1e6 / n as f64,
        cpu.as_secs_f64() * 1e6 / n as f64,
    );
    if r.0 < best.0 {
        *best = r;
    }
}

fn wait_calls(p: &wazoo::Plugin, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while p.stats().calls < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} calls ran",
            p.stats().calls
        );
        // Sleep, not spin: the process's CPU per call is measured while this waits.
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let clock = CpuClock::new()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let hosts = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2181".into());
    let n: u64 = arg(&args, "n")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(200_000);
    let plugins: usize = arg(&args, "plugins")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(1000);
    let wasm =
        arg(&args, "wasm").unwrap_or_else(|| "target/wasm/wasm32-wasip2/release/noop.wasm".into());
    let bytes = std::fs::read(&wasm)?;
    let fresh: u32 = arg(&args, "fresh")
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(200);
    let only = arg(&args, "only");
    let want = |section: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|s| s == section))
    };
    let zk = Client::connect(&hosts).await?;
    let cache = std::env::temp_dir().join(format!("wazoo-bench-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let host = PluginHost::new(PluginHostConfig {
        cache_dir: Some(cache.clone()),
        isolation: IsolationMode::PerPlugin,
        // The `plugins`, the `fresh` ones built one at a time, and a few more (noop-0, getter,
        // spin).
        max_instances: (plugins as u32 + fresh + 10) * 3,
        ..Default::default()
    })?;
    let mut rows = Vec::new();
    let policy = Policy {
        compute_budget: Duration::from_secs(1),
        ..Policy::default()
    };

    let t = Instant::now();
    let first = host.load(&zk, "noop-0", &bytes, policy.clone(), vec![])?;
    let cold = t.elapsed();
    println!(
        "{{\"bench\":\"load_cold\",\"ms\":{:.2}}}",
        cold.as_secs_f64() * 1e3
    );
    rows.push((
        "load one plugin, cold cache (compile)".to_string(),
        format!("{:.1} ms", cold.as_secs_f64() * 1e3),
    ));

    let t = Instant::now();
    let mut loaded = Vec::with_capacity(plugins);
    for i in 0..plugins {
        loaded.push(host.load(
            &zk,
            &format!("noop-{}", i + 1),
            &bytes,
            policy.clone(),
            vec![],
        )?);
    }
    let warm = t.elapsed();
    println!(
        "{{\"bench\":\"load_warm\",\"plugins\":{plugins},\"secs\":{:.3}}}",
        warm.as_secs_f64()
    );
    rows.push((
        format!("load {plugins} plugins, warm cache"),
        format!(
            "{:.3} s ({:.0} us each)",
            warm.as_secs_f64(),
            warm.as_secs_f64() * 1e6 / plugins as f64
        ),
    ));

    // First event: instance build + init + call.
    let t = Instant::now();
    first.inject_watch("/x", 0);
    wait_calls(&first, 1);
    let fe = t.elapsed();
    println!(
        "{{\"bench\":\"first_event\",\"us\":{:.1}}}",
        fe.as_secs_f64() * 1e6
    );
    rows.push((
        "first event (instance build + init + call)".into(),
        format!("{:.1} us", fe.as_secs_f64() * 1e6),
    ));

    if want("dispatch") {
        // Dispatch through one guest lane against native watch callbacks on a native watch
        // lane, alternating (three rounds each; the best round of each is reported, as the
        // least disturbed by other work on the machine). Wall time and the process's CPU per
        // call. Two native forms: an empty closure (no event at all, no allocation), and what
        // the session does for a native watch callback: the event (its path a fresh String)
        // handed to the user's callback in a boxed job. The guest's events are built the same
        // way (`inject_watch` allocates the path).
        let native = wazoo::Lanes::new("bench-native");
        native.run(wazoo::LaneKind::Watch, |_| {});
        assert!(native.drain(Duration::from_secs(5)));
        let user = std::sync::Arc::new(|ev: wazoo::WatchedEvent, _: wazoo::CallbackInfo| {
            std::hint::black_box(&ev);
        });
        let (mut best_empty, mut best_native, mut best_guest) = (
            (f64::MAX, f64::MAX),
            (f64::MAX, f64::MAX),
            (f64::MAX, f64::MAX),
        );
        let mut done = 1;
        for _ in 0..3 {
            best(&clock, &mut best_empty, n, || {
                for _ in 0..n {
                    native.run(wazoo::LaneKind::Watch, |_| {});
                }
                assert!(native.drain(Duration::from_secs(120)));
            });
            best(&clock, &mut best_native, n, || {
                for i in 0..n {
                    let ev = wazoo::WatchedEvent {
                        event_type: wazoo::EventType::NodeDataChanged,
                        keeper_state: wazoo::KeeperState::SyncConnected,
                        path: "/x".to_string(),
                        zxid: i as i64,
                    };
                    let f = user.clone();
                    native.run(wazoo::LaneKind::Watch, move |info| f(ev, info));
                }
                assert!(native.drain(Duration::from_secs(120)));
            });
            best(&clock, &mut best_guest, n, || {
                for i in 0..n {
                    first.inject_watch("/x", done + i);
                }
                done += n;
                wait_calls(&first, done);
            });
        }
        let taken = first.stats().taken;
        println!(
            "{{\"bench\":\"dispatch\",\"n\":{n},\"empty_native_us\":{:.3},\"native_us\":{:.3},\"native_cpu_us\":{:.3},\"guest_us\":{:.3},\"guest_cpu_us\":{:.3},\"calls_s\":{:.0},\"ratio\":{:.2},\"taken\":{taken}}}",
            best_empty.0, best_native.0, best_native.1, best_guest.0, best_guest.1, 1e6 / best_guest.0, best_guest.0 / best_native.0
        );
        let row = |b: (f64, f64)| {
            format!(
                "{:.2} M calls/s ({:.3} us each, {:.3} us CPU)",
                1.0 / b.0,
                b.0,
                b.1
            )
        };
        rows.push((
            "empty on-watch through a guest lane".into(),
            format!(
                "{}; {:.1}% of the events taken by a running call",
                row(best_guest),
                taken as f64 * 100.0 / (done - 1) as f64
            ),
        ));
        rows.push((
            "native watch callback given the event, on a native watch lane".into(),
            format!(
                "{}; guest/native {:.2}x",
                row(best_native),
                best_guest.0 / best_native.0
            ),
        ));
        rows.push((
            "empty native closure on a native watch lane (no event)".into(),
            format!(
                "{}; guest/this {:.2}x",
                row(best_empty),
                best_guest.0 / best_empty.0
            ),
        ));
    }
    if want("get") {
        // A get's round trip through a guest against the same native call on the same client.
        let gets: u64 = arg(&args, "gets")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(5000);
        let node = "/bench-guest-get";
        match zk
            .create(node, &[b'x'; 100], wazoo::CreateMode::Persistent)
            .await
        {
            Ok(_) | Err(wazoo::Error::NodeExists) => {}
            Err(e) => return Err(e.into()),
        }
        for _ in 0..100 {
            zk.get_data(node).await?;
        }
        let t = Instant::now();
        for _ in 0..gets {
            zk.get_data(node).await?;
        }
        let native_us = t.elapsed().as_secs_f64() * 1e6 / gets as f64;
        let getter_wasm = std::path::Path::new(&wasm).with_file_name("getter.wasm");
        let getter = host.load(
            &zk,
            "getter",
            &std::fs::read(&getter_wasm)?,
            Policy {
                read: vec![node.to_string()],
                ..policy.clone()
            },
            vec![],
        )?;
        for i in 0..100 {
            getter.inject_watch(node, i);
        }
        wait_calls(&getter, 100);
        let t = Instant::now();
        for i in 0..gets {
            getter.inject_watch(node, 100 + i);
        }
        wait_calls(&getter, 100 + gets);
        let guest_us = t.elapsed().as_secs_f64() * 1e6 / gets as f64;
        assert_eq!(getter.stats().traps, 0, "the getter guest trapped");
        println!(
        "{{\"bench\":\"get_round_trip\",\"n\":{gets},\"native_us\":{native_us:.1},\"guest_us\":{guest_us:.1},\"extra_us\":{:.1}}}",
        guest_us - native_us
    );
        rows.push((
            "sequential get, native (await on the client)".into(),
            format!("{native_us:.1} us"),
        ));
        rows.push((
            "sequential get from a guest's on-watch (event + import + reply)".into(),
            format!("{guest_us:.1} us ({:+.1} us)", guest_us - native_us),
        ));
        drop(getter);
        let _ = zk.delete(node, None).await;
    }
    if want("rss") {
        // Resident memory per idle instance.
        let before = rss_kib();
        let t = Instant::now();
        for p in &loaded {
            p.inject_watch("/x", 0);
        }
        for p in &loaded {
            wait_calls(p, 1);
        }
        let build_all = t.elapsed();
        let after = rss_kib();
        let per = (after.saturating_sub(before)) as f64 / plugins as f64;
        println!("{{\"bench\":\"rss_per_instance\",\"instances\":{plugins},\"kib\":{per:.1},\"build_us\":{:.1}}}", build_all.as_secs_f64() * 1e6 / plugins as f64);
        rows.push((
            format!("resident memory per idle instance ({plugins})"),
            format!("{per:.0} KiB"),
        ));
        rows.push((
            "instance build + init + call, averaged over those".into(),
            format!("{:.1} us", build_all.as_secs_f64() * 1e6 / plugins as f64),
        ));
    }
    if want("build") {
        // Instance build alone (store, WASI context, instantiation from the pre-linked
        // component), apart from init: `fresh` more plugins, each built by its first event, one
        // at a time (when builds run concurrently, each one's wall time includes the others').
        // Each lands in a pool slot never used before, and grows the process's memory (the
        // earlier ones stay loaded). Median and mean over the plugins.
        let serial = u64::from(fresh);
        let (mut builds, mut inits) = (Vec::new(), Vec::new());
        let mut extra = Vec::new();
        for i in 0..serial {
            let p = host.load(&zk, &format!("noop-s{i}"), &bytes, policy.clone(), vec![])?;
            p.inject_watch("/x", 0);
            wait_calls(&p, 1);
            let s = p.stats();
            builds.push(s.build_time.as_secs_f64() * 1e6);
            inits.push(s.init_time.as_secs_f64() * 1e6);
            extra.push(p);
        }
        drop(extra);
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v.iter().sum::<f64>() / v.len() as f64)
        };
        let ((build_med, build_mean), (init_med, init_mean)) = (med(&mut builds), med(&mut inits));
        println!("{{\"bench\":\"instance_build\",\"instances\":{serial},\"build_us_median\":{build_med:.1},\"build_us_mean\":{build_mean:.1},\"init_us_median\":{init_med:.1},\"init_us_mean\":{init_mean:.1}}}");
        rows.push((
            format!("first build of a plugin's instance (a fresh pool slot) / its init, one at a time, over {serial}: median (mean)"),
            format!("{build_med:.1} ({build_mean:.1}) us / {init_med:.1} ({init_mean:.1}) us"),
        ));
        // A rebuild, as after a trap: the instance is dropped and the next one built in the
        // pool slot it left. Five rounds; the best and the median round.
        let rebuilds = arg(&args, "rebuilds")
            .map(|v| v.parse())
            .transpose()?
            .unwrap_or(1000usize);
        first
            .rebuild_instances(100)
            .await
            .map_err(anyhow::Error::msg)?;
        let mut rounds = Vec::new();
        for _ in 0..5 {
            let (t, ti) = first
                .rebuild_instances(rebuilds)
                .await
                .map_err(anyhow::Error::msg)?;
            let per = |d: Duration| d.as_secs_f64() * 1e6 / rebuilds as f64;
            rounds.push((per(t), per(ti)));
        }
        rounds.sort_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)));
        let ((best_b, best_i), (med_b, med_i)) = (rounds[0], rounds[2]);
        println!("{{\"bench\":\"instance_rebuild\",\"instances\":{rebuilds},\"build_us\":{best_b:.1},\"init_us\":{best_i:.1},\"median_round_build_us\":{med_b:.1},\"median_round_init_us\":{med_i:.1}}}");
        rows.push((
            format!("rebuild of an instance in the slot its predecessor left / its init, 5 x {rebuilds}: best (median) round"),
            format!("{best_b:.1} ({med_b:.1}) us / {best_i:.1} ({med_i:.1}) us"),
        ));
    }
    if want("spin") {
        // The session lane's latency while the same plugin's guest spins on its watch lane: the
        // `spin` guest loops in on-watch until its budget (4 s) cuts it; meanwhile session events
        // are queued at 1 kHz for 3 s; their queueing time (queued to handler start) comes from
        // the lane's histogram (power-of-two buckets, so percentiles are upper bounds).
        let spin_wasm = std::path::Path::new(&wasm).with_file_name("spin.wasm");
        let spinner = host.load(
            &zk,
            "spin",
            &std::fs::read(&spin_wasm)?,
            Policy {
                compute_budget: Duration::from_secs(4),
                wall_limit: Duration::from_secs(20),
                ..policy.clone()
            },
            vec![],
        )?;
        let session = |p: &wazoo::Plugin| p.lane_metrics(wazoo::LaneKind::Session);
        spinner.inject_session(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while session(&spinner).dispatched < 1 {
            assert!(
                Instant::now() < deadline,
                "the spin guest's session lane never ran"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        spinner.inject_watch("/spin", 1);
        // Let the spin start (its instance is built on the first watch event).
        std::thread::sleep(Duration::from_millis(100));
        let events = 3000u64;
        let t = Instant::now();
        for i in 0..events {
            let due = t + Duration::from_millis(i);
            if let Some(d) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
            spinner.inject_session(2 + i);
        }
        while session(&spinner).dispatched < 1 + events {
            assert!(
                Instant::now() < deadline + Duration::from_secs(10),
                "session events were lost"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let still_spinning = spinner.stats().traps == 0;
        let m = session(&spinner);
        let bound = |q: f64| {
            m.wait
                .quantile_bound(q)
                .map_or("unbounded".to_string(), |d| format!("{}", d.as_micros()))
        };
        let (p50, p99, p999) = (bound(0.5), bound(0.99), bound(0.999));
        println!(
        "{{\"bench\":\"session_while_guest_spins\",\"events\":{events},\"wait_p50_us_le\":\"{p50}\",\"wait_p99_us_le\":\"{p99}\",\"wait_p999_us_le\":\"{p999}\",\"spin_covered_run\":{still_spinning}}}"
    );
        rows.push((
        "session lane while the guest spins on its watch lane (1 kHz, queued to start)".into(),
        format!(
            "p50 <= {p50} us, p99 <= {p99} us, p99.9 <= {p999} us (spin still running at the end: {still_spinning})"
        ),
    ));
        let deadline = Instant::now() + Duration::from_secs(30);
        while spinner.stats().traps == 0 {
            assert!(
                Instant::now() < deadline,
                "the spin was never cut at its budget"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(spinner);
    }
    if want("idle") {
        // An idle host: every plugin loaded, nothing happening. What the process burns in one
        // second (the session's pings and the epoch ticker, if it ticks when no guest runs).
        std::thread::sleep(Duration::from_millis(500));
        let c = clock.sample();
        std::thread::sleep(Duration::from_secs(1));
        let idle = clock.sample().since(&c);
        println!(
            "{{\"bench\":\"idle_host_cpu\",\"plugins\":{},\"cpu_ms_per_s\":{:.2}}}",
            loaded.len(),
            idle.as_secs_f64() * 1e3
        );
        rows.push((
            format!(
                "process CPU in one idle second, {} plugins loaded",
                loaded.len()
            ),
            format!("{:.2} ms", idle.as_secs_f64() * 1e3),
        ));
    }
    eprintln!("\n| measurement | result |\n|---|---|");
    for (k, v) in rows {
        eprintln!("| {k} | {v} |");
    }
    drop(loaded);
    drop(first);
    zk.close().await;
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}
