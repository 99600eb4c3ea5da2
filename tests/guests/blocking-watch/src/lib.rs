//! `blocking-watch`: a watch handler that blocks on ZooKeeper, and a session recorder.
//!
//! Config keys: `path` (default `/blocking`), `result` (default `/blocking-result`), `states`
//! (default `/blocking-states`).
//!
//! * `on-watch` logs `watch <event-type> <path> <seq>: get <path>`, calls `zk::get(path)` (which
//!   blocks the handler until ZooKeeper answers, e.g. across a connection drop), then writes the
//!   data it read, unchanged, into `result` (or the text `error <kind>[: <detail>]` when the get
//!   failed), with `set_or_create`; logs `result <result> <- <n> bytes` or `result <result> <-
//!   error ...` at info, and a failed write at warn.
//! * `on-session` logs `session <state>` and creates a persistent-sequential child
//!   `<states>/state-` holding the state's name (`connected`, `suspended`, ...), creating
//!   `states` when missing; a failed write is logged at warn.

use wazoo_guest::{config, info, warn, zk, CreateMode, Plugin, SessionEvent, WatchEvent, ZkError};

struct BlockingWatch {
    path: String,
    result: String,
    states: String,
}

impl Plugin for BlockingWatch {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        Ok(BlockingWatch {
            path: config::get_or(config, "path", "/blocking").to_string(),
            result: config::get_or(config, "result", "/blocking-result").to_string(),
            states: config::get_or(config, "states", "/blocking-states")
                .trim_end_matches('/')
                .to_string(),
        })
    }

    fn on_session(&mut self, ev: SessionEvent) {
        let state = ev.state.as_str();
        info!("session {state}");
        let child = format!("{}/state-", self.states);
        let r = match zk::create(&child, state.as_bytes(), CreateMode::PersistentSequential) {
            Err(ZkError::NoNode) => zk::ensure_path(&self.states).and_then(|()| {
                zk::create(&child, state.as_bytes(), CreateMode::PersistentSequential)
            }),
            other => other,
        };
        if let Err(e) = r {
            warn!(
                "states {}: cannot record {state}: {}",
                self.states,
                e.describe()
            );
        }
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        info!(
            "watch {} {} {}: get {}",
            ev.event_type, ev.path, ev.seq, self.path
        );
        let (data, what) = match zk::get(&self.path) {
            Ok((data, _)) => {
                let what = format!("{} bytes", data.len());
                (data, what)
            }
            Err(e) => {
                let text = format!("error {}", e.describe());
                (text.clone().into_bytes(), text)
            }
        };
        match zk::set_or_create(&self.result, &data) {
            Ok(()) => info!("result {} <- {what}", self.result),
            Err(e) => warn!(
                "result {}: cannot write {what}: {}",
                self.result,
                e.describe()
            ),
        }
    }
}

wazoo_guest::export_plugin!(BlockingWatch);
