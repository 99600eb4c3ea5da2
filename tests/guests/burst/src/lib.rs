//! `burst`: records the events it handles, for tests of events delivered in bursts (several
//! queued events handled in one call into the guest, `wazoo:plugin/lane`).
//!
//! Config keys (all optional):
//!
//! * `sink`: every handled event is recorded as a persistent-sequential child `<sink>/e-`
//!   holding `watch <path>` or `completion <context>`, so the children in name order are the
//!   order of handling;
//! * `hold-watch`, `hold-completion`: a node path; the instance's first watch (completion)
//!   event waits, polling with `zk::exists`, until that node exists, so that the test can queue
//!   events behind it (gives up after 30 s, logging `hold <path> never appeared`);
//! * `panic-on`: a watch event for this path panics (`burst panic on <path>`) before it is
//!   recorded;
//! * `spin-ms`: each watch event computes for this long (wall time, by the WASI clock) before it
//!   is recorded: guest execution, charged to the event's compute budget;
//! * `work`: each watch event then computes this many rounds of integer arithmetic: a fixed
//!   amount of guest execution, whatever else shares the CPU (unlike `spin-ms`);
//! * `dwell-ms`: each watch event waits this long on ZooKeeper (`zk::sync` after `zk::sync`)
//!   before it is recorded: not charged to the budget, but counted by the wall-clock limit;
//! * `fanout`: each watch event issues this many `zk::get_async(<path>)` calls with contexts
//!   `<path>#0`, `<path>#1`, ...
//!
//! Each handled watch event logs `burst #<n> watch <path>`, each completion `burst completion
//! <context>`; `n` counts the instance's watch events in a static (in the instance's linear
//! memory, not re-initialised by `init`), so a rebuilt instance that starts again at 1 shows
//! that it did not inherit its predecessor's memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wazoo_guest::{config, info, warn, zk, Completion, CreateMode, Plugin, WatchEvent, ZkError};

struct Burst {
    sink: Option<String>,
    hold_watch: Option<String>,
    hold_completion: Option<String>,
    panic_on: Option<String>,
    spin: Duration,
    work: u64,
    dwell: Duration,
    fanout: u32,
}

fn hold(path: &mut Option<String>) {
    let Some(path) = path.take() else { return };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = zk::exists(&path) {
            return;
        }
    }
    warn!("hold {path} never appeared");
}

impl Burst {
    fn record(&self, text: &str) {
        let Some(sink) = &self.sink else { return };
        let child = format!("{sink}/e-");
        let r = match zk::create(&child, text.as_bytes(), CreateMode::PersistentSequential) {
            Err(ZkError::NoNode) => zk::ensure_path(sink)
                .and_then(|()| zk::create(&child, text.as_bytes(), CreateMode::PersistentSequential)),
            other => other,
        };
        if let Err(e) = r {
            warn!("sink {sink}: {}", e.describe());
        }
    }
}

impl Plugin for Burst {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        let path = |k: &str| config::get(config, k).map(str::to_string);
        Ok(Burst {
            sink: path("sink").map(|s| s.trim_end_matches('/').to_string()),
            hold_watch: path("hold-watch"),
            hold_completion: path("hold-completion"),
            panic_on: path("panic-on"),
            spin: Duration::from_millis(config::parse_or(config, "spin-ms", 0)?),
            work: config::parse_or(config, "work", 0)?,
            dwell: Duration::from_millis(config::parse_or(config, "dwell-ms", 0)?),
            fanout: config::parse_or(config, "fanout", 0)?,
        })
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        hold(&mut self.hold_watch);
        if self.panic_on.as_deref() == Some(ev.path.as_str()) {
            panic!("burst panic on {}", ev.path);
        }
        let t = Instant::now();
        let mut spins = 0u64;
        while t.elapsed() < self.spin {
            spins = spins.wrapping_add(1);
            std::hint::black_box(spins);
        }
        let mut x = ev.seq;
        for i in 0..self.work {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
        std::hint::black_box(x);
        let t = Instant::now();
        while t.elapsed() < self.dwell {
            let _ = zk::sync("/");
        }
        for i in 0..self.fanout {
            let context = format!("{}#{i}", ev.path);
            if let Err(e) = zk::get_async(&ev.path, context.as_bytes()) {
                warn!("get_async {}: {}", ev.path, e.describe());
            }
        }
        static HANDLED: AtomicU64 = AtomicU64::new(0);
        let n = HANDLED.fetch_add(1, Ordering::Relaxed) + 1;
        info!("burst #{n} watch {}", ev.path);
        self.record(&format!("watch {}", ev.path));
    }

    fn on_completion(&mut self, context: Vec<u8>, _result: Completion) {
        hold(&mut self.hold_completion);
        let context = String::from_utf8_lossy(&context).into_owned();
        info!("burst completion {context}");
        self.record(&format!("completion {context}"));
    }
}

wazoo_guest::export_plugin!(Burst);
