//! `getter`: on every watch event, reads the event's path with the blocking `zk::get` and
//! checks the reply. The benchmark's guest for a get's round trip through a guest (the import,
//! the session, the reply lowered back into the guest) against the same native call.
//!
//! A failed get is logged at warn as `get <path>: <kind>`.
//!
//! Config key `report` (optional): a node path. Each get is timed with the WASI monotonic
//! clock as the guest sees it; an event for the `report` path, instead of a get, writes
//! `<count> <p10> <p50> <p90> <p99> <mean>` (nanoseconds) of the gets since the last report
//! into that node (creating it if needed) and starts counting anew.

use std::time::Instant;

use wazoo_guest::{config, warn, zk, CreateMode, Plugin, WatchEvent, ZkError};

struct Getter {
    report: Option<String>,
    times: Vec<u64>,
}

impl Getter {
    fn report(&mut self, path: &str) {
        let mut t = std::mem::take(&mut self.times);
        t.sort_unstable();
        let q = |f: f64| t.get(((t.len() as f64 - 1.0) * f) as usize).copied().unwrap_or(0);
        let mean = t.iter().sum::<u64>() / (t.len() as u64).max(1);
        let text = format!(
            "{} {} {} {} {} {mean}",
            t.len(),
            q(0.1),
            q(0.5),
            q(0.9),
            q(0.99)
        );
        let r = match zk::set(path, text.as_bytes(), None) {
            Err(ZkError::NoNode) => zk::create(path, text.as_bytes(), CreateMode::Persistent).map(drop),
            other => other.map(drop),
        };
        if let Err(e) = r {
            warn!("report {path}: {}", e.describe());
        }
    }
}

impl Plugin for Getter {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        Ok(Getter {
            report: config::get(config, "report").map(str::to_string),
            times: Vec::new(),
        })
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        if self.report.as_deref() == Some(ev.path.as_str()) {
            self.report(&ev.path);
            return;
        }
        let t = Instant::now();
        let r = zk::get(&ev.path);
        if self.report.is_some() {
            self.times.push(t.elapsed().as_nanos() as u64);
        }
        if let Err(e) = r {
            warn!("get {}: {}", ev.path, e.describe());
        }
    }
}

wazoo_guest::export_plugin!(Getter);
