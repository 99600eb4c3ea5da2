//! Guest-runtime benchmark:
//! `wazoo-guests HOST:PORT [n=200000] [plugins=1000] [gets=2000] [wasm=PATH] [only=SECTIONS]`.
//!
//! `only` (comma-separated: `dispatch`, `get`, `rss`, `build`, `spin`, `parallel`, `idle`) runs just those
//! sections after the loads and the first event, e.g. to profile one of them; `threads=1`
//! prints each get round's CPU by thread, `get_rounds` (6) sets their number; `fresh` (200)
//! and `rebuilds` (1000) size the build section.
//!
//! With the `noop` test guest (every handler empty; `scripts/build-guests.sh` builds it):
//! 1. `load_cold` / `load_warm`: loading one plugin with an empty compilation cache, then 1000
//!    plugins from the warm cache (compile or deserialize, link, lanes);
//! 2. `first_event`: the first watch event of a plugin, which builds its instance (pooling
//!    allocator) and runs `init`, then the call;
//! 3. `dispatch`: empty on-watch calls through one guest lane, events injected as fast as one
//!    producer can (`Plugin::inject_watch`), until all have run;
//! 4. `get_round_trip`: rounds of `gets` sequential gets of a 100-byte node, natively (awaited
//!    on the client, each timed) and from the `getter` guest's on-watch (one get per injected
//!    event, each timed by the guest itself), alternating: what a guest adds to a round trip;
//! 5. `rss_per_instance`: resident memory per idle instance, over `plugins` instances;
//! 6. `instance_build` / `instance_build_back_to_back` / `instance_build_reused_slot` /
//!    `instance_rebuild`: first builds in never-used pool slots, one at a time and back to back;
//!    first builds of new plugins (of `noop`, and of `echo` beside it) in the slots unloaded
//!    ones left; rebuilds in the slot the previous instance left (`WAZOO_BENCH_ORDER` set: the
//!    back-to-back build times in order, on stderr);
//! 7. `session_while_guest_spins`;
//! 8. `parallel_compute`: two plugins' computing callbacks on one and on two threads per lane
//!    kind (`PluginHostConfig::lane_threads`; `events` (10) each, `work` (50000000) rounds each);
//! 9. `idle_host_cpu`.
//!
//! Prints one JSON object per line and a table on stderr.

use std::time::{Duration, Instant};

use wazoo::{Client, IsolationMode, PluginHost, PluginHostConfig, Policy};
use wazoo_bench::cpu::CpuClock;

fn arg(args: &[String], key: &str) -> Option<String> {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// The number given as `key=N`, or `default`.
fn num<T: std::str::FromStr>(args: &[String], key: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(arg(args, key)
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(default))
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

/// The upper bounds (µs) of a lane's queueing-time p50, p99 and p99.9 (power-of-two buckets).
fn wait_bounds(m: &wazoo::LaneMetrics) -> (String, String, String) {
    let bound = |q: f64| {
        m.wait
            .quantile_bound(q)
            .map_or("unbounded".to_string(), |d| format!("{}", d.as_micros()))
    };
    (bound(0.5), bound(0.99), bound(0.999))
}

/// Prints one round's CPU per get by thread name (`threads=1`), e.g. to see what a guest's
/// round trip costs on which thread.
fn print_by_thread(side: &str, spent: &std::collections::BTreeMap<String, Duration>, gets: u64) {
    let parts: Vec<String> = spent
        .iter()
        .filter(|(_, d)| !d.is_zero())
        .map(|(name, d)| format!("{name} {:.1}", d.as_secs_f64() * 1e6 / gets as f64))
        .collect();
    eprintln!(
        "{side} round, CPU us per get by thread: {}",
        parts.join(", ")
    );
}

fn wait_calls(p: &wazoo::Plugin, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while p.stats().calls < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} calls ran",
            p.stats().calls
        );
        // Sleep, not spin: the process's CPU per call is measured while this waits; and not
        // often, so that this thread does not compete with the ones measured.
        std::thread::sleep(Duration::from_millis(1));
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
    let n: u64 = num(&args, "n", 200_000)?;
    let plugins: usize = num(&args, "plugins", 1000)?;
    let wasm =
        arg(&args, "wasm").unwrap_or_else(|| "target/wasm/wasm32-wasip2/release/noop.wasm".into());
    let bytes = std::fs::read(&wasm)?;
    let fresh: u32 = num(&args, "fresh", 200)?;
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

    // First event: instance build + init + call. Polled without sleeping (`wait_calls` sleeps
    // a millisecond at a time, which is all it would measure).
    let t = Instant::now();
    first.inject_watch("/x", 0);
    while first.stats().calls < 1 {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "the first event never ran"
        );
        std::thread::yield_now();
    }
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
        // A get's round trip through a guest against the same native call on the same client,
        // as each side sees it: native gets timed one by one where they are awaited (the
        // bench's runtime), the guest's timed by the `getter` guest itself around `zk::get`
        // (WASI monotonic clock), which writes its percentiles into a report node. Rounds of
        // `gets` alternate, `get_rounds` (6) each; the medians of the rounds' percentiles are
        // reported.
        // Also the wall time per event through the guest lane (event, call, get, return).
        let gets: u64 = num(&args, "gets", 2000)?;
        let by_thread = arg(&args, "threads").is_some_and(|v| v == "1");
        let get_rounds: usize = num(&args, "get_rounds", 6)?;
        let node = "/bench-guest-get";
        let report = "/bench-guest-get-report";
        match zk
            .create(node, &[b'x'; 100], wazoo::CreateMode::Persistent)
            .await
        {
            Ok(_) | Err(wazoo::Error::NodeExists) => {}
            Err(e) => return Err(e.into()),
        }
        let getter_wasm = std::path::Path::new(&wasm).with_file_name("getter.wasm");
        let getter = host.load(
            &zk,
            "getter",
            &std::fs::read(&getter_wasm)?,
            Policy {
                read: vec![node.to_string(), report.to_string()],
                write: vec![report.to_string()],
                ..policy.clone()
            },
            vec![("report".into(), report.into())],
        )?;
        let mut seq = 0;
        let mut guest_round = |n: u64| {
            let before = getter.stats().calls;
            for _ in 0..n {
                seq += 1;
                getter.inject_watch(node, seq);
            }
            seq += 1;
            getter.inject_watch(report, seq);
            wait_calls(&getter, before + n + 1);
        };
        // Warm up both sides.
        for _ in 0..200 {
            zk.get_data(node).await?;
        }
        guest_round(200);
        let pct = |v: &mut Vec<f64>, q: f64| {
            v.sort_by(f64::total_cmp);
            v[((v.len() - 1) as f64 * q) as usize]
        };
        let (mut native_p50, mut native_p90, mut guest_p50, mut guest_p90) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut native_mean, mut guest_event) = (Vec::new(), Vec::new());
        let (mut native_cpu, mut guest_cpu) = (Vec::new(), Vec::new());
        let per_get = |d: Duration| d.as_secs_f64() * 1e6 / gets as f64;
        for _ in 0..get_rounds {
            let mut lat = Vec::with_capacity(gets as usize);
            let c = clock.sample();
            for _ in 0..gets {
                let t = Instant::now();
                zk.get_data(node).await?;
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            let end = clock.sample();
            native_cpu.push(per_get(end.since(&c)));
            if by_thread {
                print_by_thread("native", &end.by_name(&c), gets);
            }
            native_mean.push(lat.iter().sum::<f64>() / lat.len() as f64);
            native_p50.push(pct(&mut lat, 0.5));
            native_p90.push(pct(&mut lat, 0.9));
            let (t, c) = (Instant::now(), clock.sample());
            guest_round(gets);
            let end = clock.sample();
            guest_cpu.push(per_get(end.since(&c)));
            if by_thread {
                print_by_thread("guest", &end.by_name(&c), gets);
            }
            guest_event.push(t.elapsed().as_secs_f64() * 1e6 / (gets + 1) as f64);
            let (data, _) = zk.get_data(report).await?;
            let f: Vec<f64> = String::from_utf8_lossy(&data)
                .split(' ')
                .map(|x| x.parse::<f64>().unwrap_or(f64::NAN) / 1e3)
                .collect();
            anyhow::ensure!(
                f.len() == 6 && f[0] * 1e3 == gets as f64,
                "bad report {f:?}"
            );
            guest_p50.push(f[2]);
            guest_p90.push(f[3]);
        }
        assert_eq!(getter.stats().traps, 0, "the getter guest trapped");
        let (n50, n90, g50, g90) = (
            pct(&mut native_p50, 0.5),
            pct(&mut native_p90, 0.5),
            pct(&mut guest_p50, 0.5),
            pct(&mut guest_p90, 0.5),
        );
        let (nmean, gev) = (pct(&mut native_mean, 0.5), pct(&mut guest_event, 0.5));
        let (ncpu, gcpu) = (pct(&mut native_cpu, 0.5), pct(&mut guest_cpu, 0.5));
        println!(
            "{{\"bench\":\"get_round_trip\",\"n\":{gets},\"native_p50_us\":{n50:.1},\"native_p90_us\":{n90:.1},\"guest_p50_us\":{g50:.1},\"guest_p90_us\":{g90:.1},\"extra_p50_us\":{:.1},\"native_mean_us\":{nmean:.1},\"guest_event_us\":{gev:.1},\"native_cpu_us\":{ncpu:.1},\"guest_cpu_us\":{gcpu:.1}}}",
            g50 - n50
        );
        rows.push((
            "sequential get, native (awaited on the client): p50 / p90, mean".into(),
            format!("{n50:.1} / {n90:.1} us, {nmean:.1} us"),
        ));
        rows.push((
            "sequential get from a guest's on-watch, as the guest times it: p50 / p90".into(),
            format!(
                "{g50:.1} / {g90:.1} us ({:+.1} / {:+.1} us)",
                g50 - n50,
                g90 - n90
            ),
        ));
        rows.push((
            "process CPU per get: native / through the guest (event, call, get)".into(),
            format!("{ncpu:.1} / {gcpu:.1} us ({:+.1} us)", gcpu - ncpu),
        ));
        rows.push((
            "the same, wall time per event through the guest lane (event + call + get)".into(),
            format!("{gev:.1} us ({:+.1} us over the native mean)", gev - nmean),
        ));
        drop(getter);
        let _ = zk.delete(node, None).await;
        let _ = zk.delete(report, None).await;
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
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            (v[v.len() / 2], v.iter().sum::<f64>() / v.len() as f64)
        };
        // New plugins of `component`, each built by its first event, one at a time; their
        // build and init times in microseconds, and the plugins (still loaded).
        let first_builds = |tag: &str, component: &[u8]| -> anyhow::Result<_> {
            let (mut builds, mut inits, mut loaded) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..serial {
                let p = host.load(
                    &zk,
                    &format!("{tag}-{i}"),
                    component,
                    policy.clone(),
                    vec![],
                )?;
                p.inject_watch("/x", 0);
                wait_calls(&p, 1);
                let s = p.stats();
                builds.push(s.build_time.as_secs_f64() * 1e6);
                inits.push(s.init_time.as_secs_f64() * 1e6);
                loaded.push(p);
            }
            Ok((builds, inits, loaded))
        };
        let (mut builds, mut inits, extra) = first_builds("noop-s", &bytes)?;
        let ((build_med, build_mean), (init_med, init_mean)) = (med(&mut builds), med(&mut inits));
        println!("{{\"bench\":\"instance_build\",\"instances\":{serial},\"build_us_median\":{build_med:.1},\"build_us_mean\":{build_mean:.1},\"init_us_median\":{init_med:.1},\"init_us_mean\":{init_mean:.1}}}");
        rows.push((
            format!("first build of a plugin's instance (a fresh pool slot) / its init, one at a time, over {serial}: median (mean)"),
            format!("{build_med:.1} ({build_mean:.1}) us / {init_med:.1} ({init_mean:.1}) us"),
        ));
        // Fresh slots again, but back to back: `serial` new plugins all given their first
        // event at once, so that their lanes' thread builds one instance after another without
        // sleeping in between (one watch thread: the builds do not overlap).
        let burst = {
            let mut burst = Vec::new();
            for i in 0..serial {
                burst.push(host.load(
                    &zk,
                    &format!("noop-b{i}"),
                    &bytes,
                    policy.clone(),
                    vec![],
                )?);
            }
            for p in &burst {
                p.inject_watch("/x", 0);
            }
            for p in &burst {
                wait_calls(p, 1);
            }
            if std::env::var_os("WAZOO_BENCH_ORDER").is_some() {
                let order: Vec<String> = burst
                    .iter()
                    .map(|p| format!("{:.0}", p.stats().build_time.as_secs_f64() * 1e6))
                    .collect();
                eprintln!("back-to-back builds in order (us): {}", order.join(" "));
            }
            let mut builds: Vec<f64> = burst
                .iter()
                .map(|p| p.stats().build_time.as_secs_f64() * 1e6)
                .collect();
            let mut inits: Vec<f64> = burst
                .iter()
                .map(|p| p.stats().init_time.as_secs_f64() * 1e6)
                .collect();
            let ((bm, bmean), (im, imean)) = (med(&mut builds), med(&mut inits));
            let (p90, max) = (builds[builds.len() * 9 / 10], builds[builds.len() - 1]);
            println!("{{\"bench\":\"instance_build_back_to_back\",\"instances\":{serial},\"build_us_median\":{bm:.1},\"build_us_mean\":{bmean:.1},\"build_us_p90\":{p90:.1},\"build_us_max\":{max:.1},\"init_us_median\":{im:.1},\"init_us_mean\":{imean:.1}}}");
            rows.push((
                format!("first build of a plugin's instance (a fresh pool slot) / its init, {serial} back to back: median (mean)"),
                format!("{bm:.1} ({bmean:.1}) us / {im:.1} ({imean:.1}) us"),
            ));
            burst
        };
        // Unloaded, they leave their slots (and their threads' memory) to the next plugins:
        // the first builds of new plugins then land in slots used before, as on a host where
        // plugins come and go below the high-water mark of live instances. Of the same
        // component, and of another (echo), whose memory image differs.
        let live = host.probe();
        // Unloads `plugins` and waits until their lane tasks and instances (four things each,
        // per-plugin lanes) are gone, so that their slots are free.
        let unload = |plugins: Vec<wazoo::Plugin>| -> anyhow::Result<()> {
            let (before, gone) = (live.live(), 4 * plugins.len());
            drop(plugins);
            let deadline = Instant::now() + Duration::from_secs(30);
            while live.live() + gone > before {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "the unloaded plugins' instances stayed"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        };
        unload(extra.into_iter().chain(burst).collect())?;
        let echo = std::fs::read(std::path::Path::new(&wasm).with_file_name("echo.wasm"))?;
        for (tag, component, what) in [
            ("noop-w", &bytes[..], "the same component"),
            ("echo-w", &echo[..], "another component"),
        ] {
            let (mut builds, mut inits, again) = first_builds(tag, component)?;
            let ((bm, bmean), (im, imean)) = (med(&mut builds), med(&mut inits));
            println!("{{\"bench\":\"instance_build_reused_slot\",\"component\":\"{tag}\",\"instances\":{serial},\"build_us_median\":{bm:.1},\"build_us_mean\":{bmean:.1},\"init_us_median\":{im:.1},\"init_us_mean\":{imean:.1}}}");
            rows.push((
                format!("first build of a new plugin's instance in a slot an unloaded one left ({what}) / its init, over {serial}: median (mean)"),
                format!("{bm:.1} ({bmean:.1}) us / {im:.1} ({imean:.1}) us"),
            ));
            unload(again)?;
        }
        // A rebuild, as after a trap: the instance is dropped and the next one built in the
        // pool slot it left. Five rounds; the best and the median round.
        let rebuilds = num(&args, "rebuilds", 1000usize)?;
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
        // Another tenant, whose watch lane shares the spinner's thread: its watch events are
        // queued at 1 kHz too (its instance built first).
        let tenant = host.load(&zk, "noop-tenant", &bytes, policy.clone(), vec![])?;
        let watch = |p: &wazoo::Plugin| p.lane_metrics(wazoo::LaneKind::Watch);
        tenant.inject_watch("/x", 0);
        wait_calls(&tenant, 1);
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
            tenant.inject_watch("/x", 1 + i);
        }
        while session(&spinner).dispatched < 1 + events || watch(&tenant).dispatched < 1 + events {
            assert!(
                Instant::now() < deadline + Duration::from_secs(10),
                "session events were lost"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let still_spinning = spinner.stats().traps == 0;
        let (p50, p99, p999) = wait_bounds(&session(&spinner));
        println!(
        "{{\"bench\":\"session_while_guest_spins\",\"events\":{events},\"wait_p50_us_le\":\"{p50}\",\"wait_p99_us_le\":\"{p99}\",\"wait_p999_us_le\":\"{p999}\",\"spin_covered_run\":{still_spinning}}}"
    );
        rows.push((
        "session lane while the guest spins on its watch lane (1 kHz, queued to start)".into(),
        format!(
            "p50 <= {p50} us, p99 <= {p99} us, p99.9 <= {p999} us (spin still running at the end: {still_spinning})"
        ),
    ));
        let (p50, p99, p999) = wait_bounds(&watch(&tenant));
        println!(
            "{{\"bench\":\"tenant_watch_while_guest_spins\",\"events\":{events},\"wait_p50_us_le\":\"{p50}\",\"wait_p99_us_le\":\"{p99}\",\"wait_p999_us_le\":\"{p999}\"}}"
        );
        rows.push((
            "another plugin's watch lane while the guest spins on its own (1 kHz, queued to start)"
                .into(),
            format!("p50 <= {p50} us, p99 <= {p99} us, p99.9 <= {p999} us"),
        ));
        drop(tenant);
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
    if want("parallel") {
        // Guests that compute, on more than one core: two plugins (per-plugin lanes), each
        // handed `events` watch events that compute `work` rounds of arithmetic each (the
        // `burst` guest's `work`), on hosts with one and with two threads per lane kind. Wall
        // time until all are handled; with one thread the two plugins' callbacks take turns
        // on one core.
        let burst = std::fs::read(std::path::Path::new(&wasm).with_file_name("burst.wasm"))?;
        let events: u64 = num(&args, "events", 10)?;
        let work: u64 = num(&args, "work", 50_000_000)?;
        let mut walls = Vec::new();
        for lane_threads in [1usize, 2] {
            let h = PluginHost::new(PluginHostConfig {
                isolation: IsolationMode::PerPlugin,
                max_instances: 20,
                lane_threads,
                ..Default::default()
            })?;
            let work_s = work.to_string();
            let ps = (0..2)
                .map(|i| {
                    let config = vec![("work".to_string(), work_s.clone())];
                    h.load(&zk, &format!("compute-{i}"), &burst, policy.clone(), config)
                })
                .collect::<Result<Vec<_>, _>>()?;
            // Instances built first, so that the timed part is the callbacks alone.
            for p in &ps {
                p.inject_watch("/warm", 0);
            }
            for p in &ps {
                wait_calls(p, 1);
            }
            let t = Instant::now();
            for seq in 1..=events {
                for p in &ps {
                    p.inject_watch("/x", seq);
                }
            }
            for p in &ps {
                wait_calls(p, events + 1);
            }
            let wall = t.elapsed();
            println!("{{\"bench\":\"parallel_compute\",\"lane_threads\":{lane_threads},\"plugins\":2,\"events\":{events},\"work\":{work},\"wall_ms\":{:.1}}}", wall.as_secs_f64() * 1e3);
            walls.push(wall);
        }
        rows.push((
            format!("2 plugins x {events} watch callbacks of {work} rounds of arithmetic, wall: 1 / 2 threads per lane kind"),
            format!(
                "{:.0} / {:.0} ms ({:.2}x)",
                walls[0].as_secs_f64() * 1e3,
                walls[1].as_secs_f64() * 1e3,
                walls[0].as_secs_f64() / walls[1].as_secs_f64()
            ),
        ));
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
