//! `slow-ok`: `on-watch` spends a long time waiting on ZooKeeper but little computing, and must
//! not be stopped by the compute budget (only by the wall-clock limit, if that is shorter).
//!
//! Config keys: `path` (default `/slow`), `done` (default `/slow-done`), `rounds` (default 50).
//! It logs `watch <event-type> <path> <seq>: <rounds> rounds`, then makes `rounds` sequential
//! `zk::get(path)` calls each followed by `zk::sync(path)` (per round, a debug line `round <i>:
//! get ok|error <kind>, sync ok|error <kind>`), then writes `finished` into `done` (set, or
//! create with its parents when missing) and logs `slow-ok done: <ok> gets ok, <failed> failed;
//! wrote finished to <done>` at info (or `... cannot write <done>: <kind>` at warn).
//! `on-session` logs `session <state>`.

use wazoo_guest::{config, debug, info, warn, zk, Plugin, SessionEvent, WatchEvent};

struct SlowOk {
    path: String,
    done: String,
    rounds: u32,
}

impl Plugin for SlowOk {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        Ok(SlowOk {
            path: config::get_or(config, "path", "/slow").to_string(),
            done: config::get_or(config, "done", "/slow-done").to_string(),
            rounds: config::parse_or(config, "rounds", 50)?,
        })
    }

    fn on_session(&mut self, ev: SessionEvent) {
        info!("session {}", ev.state);
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        info!(
            "watch {} {} {}: {} rounds",
            ev.event_type, ev.path, ev.seq, self.rounds
        );
        let (mut ok, mut failed) = (0u32, 0u32);
        for i in 0..self.rounds {
            let get = match zk::get(&self.path) {
                Ok(_) => {
                    ok += 1;
                    "ok".to_string()
                }
                Err(e) => {
                    failed += 1;
                    format!("error {}", e.describe())
                }
            };
            let sync = match zk::sync(&self.path) {
                Ok(()) => "ok".to_string(),
                Err(e) => format!("error {}", e.describe()),
            };
            debug!("round {i}: get {get}, sync {sync}");
        }
        match zk::set_or_create(&self.done, b"finished") {
            Ok(()) => info!(
                "slow-ok done: {ok} gets ok, {failed} failed; wrote finished to {}",
                self.done
            ),
            Err(e) => warn!(
                "slow-ok done: {ok} gets ok, {failed} failed; cannot write {}: {}",
                self.done,
                e.describe()
            ),
        }
    }
}

wazoo_guest::export_plugin!(SlowOk);
