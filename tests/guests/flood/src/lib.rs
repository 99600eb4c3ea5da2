//! `flood`: a hostile tenant that asks the shared session for as much as it can, for the
//! tests of admission, fair queuing and quotas.
//!
//! Config keys:
//!
//! * `mode` (required): what each watch event floods with:
//!   `async-get` (`zk::get_async(<path>)` in a loop: each call returns at once),
//!   `sync-get` (`zk::get(<path>)` in a loop),
//!   `watches` (`zk::add_watch(<path>/w<i>, exists)` on distinct absent nodes: each arms a
//!   server-side watch),
//!   `creates` (`zk::create(<path>/n-, ephemeral-sequential)` in a loop),
//!   `log` (an info line per iteration);
//! * `path` (required): the node (or parent) the flood is about;
//! * `count` (optional, default unbounded): iterations per watch event; without it the loop
//!   runs until the host's compute budget or wall-clock limit stops the handler.
//!
//! Every 1024 iterations, and when `count` is reached, it logs
//! `flood <mode>: <n> calls, <ok> ok, <busy> busy, <quota> quota, <other> other` (the error
//! classes as the SDK describes them), so a test can see the guest got typed refusals.

use wazoo_guest::{config, info, zk, CreateMode, Plugin, WatchEvent, WatchKind, ZkError};

#[derive(Clone, Copy)]
enum Mode {
    AsyncGet,
    SyncGet,
    Watches,
    Creates,
    Log,
}

struct Flood {
    mode: Mode,
    name: &'static str,
    path: String,
    count: u64,
    next: u64,
}

#[derive(Default)]
struct Tally {
    calls: u64,
    ok: u64,
    busy: u64,
    quota: u64,
    other: u64,
}

impl Tally {
    fn add<T>(&mut self, r: Result<T, ZkError>) {
        self.calls += 1;
        match r {
            Ok(_) => self.ok += 1,
            Err(e) => {
                let d = e.describe();
                if d.contains("busy") {
                    self.busy += 1;
                } else if d.contains("quota") {
                    self.quota += 1;
                } else {
                    self.other += 1;
                }
            }
        }
    }
}

impl Plugin for Flood {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        let (mode, name) = match config::get(config, "mode") {
            Some("async-get") => (Mode::AsyncGet, "async-get"),
            Some("sync-get") => (Mode::SyncGet, "sync-get"),
            Some("watches") => (Mode::Watches, "watches"),
            Some("creates") => (Mode::Creates, "creates"),
            Some("log") => (Mode::Log, "log"),
            other => return Err(format!("flood: unknown mode {other:?}")),
        };
        let path = config::get(config, "path")
            .ok_or("flood: `path` is required")?
            .trim_end_matches('/')
            .to_string();
        let count = config::parse_or(config, "count", u64::MAX)?;
        Ok(Flood { mode, name, path, count, next: 0 })
    }

    fn on_watch(&mut self, _ev: WatchEvent) {
        let mut t = Tally::default();
        for _ in 0..self.count {
            let i = self.next;
            self.next += 1;
            match self.mode {
                Mode::AsyncGet => t.add(zk::get_async(&self.path, b"flood")),
                Mode::SyncGet => t.add(zk::get(&self.path)),
                Mode::Watches => {
                    t.add(zk::add_watch(&format!("{}/w{i}", self.path), WatchKind::Exists))
                }
                Mode::Creates => t.add(zk::create(
                    &format!("{}/n-", self.path),
                    b"",
                    CreateMode::EphemeralSequential,
                )),
                Mode::Log => {
                    info!("flood line {i}: the quick brown fox jumps over the lazy dog");
                    t.add(Ok::<(), ZkError>(()));
                }
            }
            if t.calls % 1024 == 0 {
                self.report(&t);
            }
        }
        self.report(&t);
    }
}

impl Flood {
    fn report(&self, t: &Tally) {
        info!(
            "flood {}: {} calls, {} ok, {} busy, {} quota, {} other",
            self.name, t.calls, t.ok, t.busy, t.quota, t.other
        );
    }
}

wazoo_guest::export_plugin!(Flood);
