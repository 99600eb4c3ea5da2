//! `wazoo-bench`: throughput, latency and client CPU per operation of the wazoo ZooKeeper
//! client against a running server.
//!
//! ```text
//! wazoo-bench HOST:PORT[,HOST:PORT...] [key=value ...]
//! ```
//!
//! Keys: `n` (default count, 20000), one per workload (`seq_get`, `pipelined_get`,
//! `create_delete`, `pipelined_set`, `watch_latency`, `multi`: a count overriding `n`, 0 skips
//! it), `window` (1000 outstanding requests for the pipelined workloads), `warmup` (1000
//! unmeasured operations before each workload) and `root` (`/bench`, recreated at start and
//! removed at the end), `tls_ca` (with `tls_cert`, `tls_key`, `tls_verify_hostname`) to
//! connect over TLS, `server_pid` (the server's process, whose CPU is measured too) and
//! `label` (copied into every line). One JSON object per workload goes to stdout, one line
//! each, with keys `client`, `workload`, `n`, `ops`, `secs`, `ops_s`, `p50_us`, `p99_us`,
//! `cpu_s` and `cpu_us_per_op` (user + system CPU of the whole process during the measured
//! part), then `server_cpu_s` and `server_cpu_us_per_op` with `server_pid`, and `label` with
//! `label`; a table goes to stderr at the end. See [`workloads`] for what each workload
//! measures and what one op is (`create_delete` counts two per pair).
//!
//! The driver runs on a current-thread runtime; each wazoo client runs its session on a thread
//! of its own, whose CPU is counted too.

mod config;
mod stats;
mod window;
mod workloads;

use std::io::Write;
use std::process::ExitCode;
use std::sync::OnceLock;

use anyhow::Context;

use config::{Config, Workload, USAGE};
use stats::{table, Report};
use wazoo_bench::cpu::CpuClock;
use workloads::Bench;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    tokio::spawn(real_main()).await.expect("the benchmark task")
}

async fn real_main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let cfg = match Config::parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wazoo-bench: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&cfg).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wazoo-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Connects, prepares `root`, runs every selected workload, cleans up and prints the table.
async fn run(cfg: &Config) -> anyhow::Result<()> {
    let clock = CpuClock::new()?;
    let server = cfg.server_pid.map(CpuClock::of_process).transpose()?;
    TLS.get_or_init(|| cfg.tls());
    eprintln!(
        "wazoo-bench: {} window={} warmup={} root={}{} cpu from {}{}",
        cfg.hosts,
        cfg.window,
        cfg.warmup,
        cfg.root,
        if cfg.tls_ca.is_some() { " tls" } else { "" },
        clock.source().describe(),
        cfg.server_pid
            .map(|p| format!(", server cpu from /proc/{p}/stat utime+stime (10 ms ticks)"))
            .unwrap_or_default()
    );
    let zk = connect(&cfg.hosts)
        .await
        .with_context(|| format!("connecting to {}", cfg.hosts))?;
    let bench = Bench::new(zk.clone(), &cfg.hosts, &cfg.root, cfg.window, clock, server);
    bench.setup().await?;
    let result = run_all(cfg, &bench).await;
    let cleanup = bench.teardown().await;
    zk.close().await;
    let reports = result?;
    cleanup?;
    eprint!("\n{}", table(&reports));
    Ok(())
}

/// Runs the selected workloads in order, printing each one's JSON line as soon as it is done.
async fn run_all(cfg: &Config, bench: &Bench) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::new();
    for w in Workload::ALL {
        let count = cfg.count(w);
        if count == 0 {
            continue;
        }
        eprintln!("wazoo-bench: {} n={count} ...", w.name());
        let mut report = bench
            .run(w, count, cfg.warmup)
            .await
            .with_context(|| format!("workload {}", w.name()))?;
        report.label = cfg.label.clone();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        out.flush()?;
        reports.push(report);
    }
    Ok(reports)
}

/// The TLS settings of every client of this run (`tls_ca=...`), set once at the start.
static TLS: OnceLock<Option<wazoo::TlsConfig>> = OnceLock::new();

/// Connects a client (over TLS when `tls_ca` was given); `WAZOO_BENCH_SESSION=runtime` runs its
/// session actor on this process's runtime instead of a thread of its own (see
/// `ClientBuilder::session_on_current_runtime`).
pub async fn connect(hosts: &str) -> wazoo::Result<wazoo::Client> {
    let on_runtime = std::env::var("WAZOO_BENCH_SESSION").is_ok_and(|v| v == "runtime");
    let mut b = wazoo::Client::builder(hosts).session_on_current_runtime(on_runtime);
    if let Some(tls) = TLS.get().cloned().flatten() {
        b = b.tls(tls);
    }
    b.connect().await
}
