//! `async-counter`: increments a decimal counter with asynchronous calls.
//!
//! Configuration: `counter` (default `/counter`), and `limit` (optional): the counter is not
//! incremented at or past it.
//!
//! Bind it to a data watch on `counter`. Each watch event on `counter` (except deletions) starts
//! `get_async(counter, b"get")`. On the completion lane, the `get` result's data is parsed as a
//! decimal number (empty data counts as 0) and `set_async(counter, n + 1, Some(version),
//! b"set")` is issued; the `set` result is logged, and a `bad-version` (someone wrote meanwhile)
//! starts over with a new `get_async`. Every step is logged at info:
//! `watch node-data-changed /counter seq 3: get_async`, `get: 41 at version 7; set_async 42`,
//! `set: stored at version 8`.
//!
//! Note: its own write changes `counter`, which triggers the watch again when the watch is
//! persistent (or re-armed): then it counts up until `limit`.

use wazoo_guest::{config, info, warn, zk, Completion, EventType, Plugin, WatchEvent};

/// The plugin: the counter's path and the optional limit.
struct AsyncCounter {
    counter: String,
    limit: Option<i64>,
}

impl AsyncCounter {
    /// Starts the read; its result arrives in `on_completion` with context `get`.
    fn start(&self) {
        if let Err(e) = zk::get_async(&self.counter, b"get") {
            warn!("get_async {}: refused: {}", self.counter, e.describe());
        }
    }
}

impl Plugin for AsyncCounter {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        let counter = config::get_or(config, "counter", "/counter").to_string();
        if !counter.starts_with('/') {
            return Err(format!("counter must be an absolute path, not {counter:?}"));
        }
        let limit = match config::get(config, "limit") {
            None => None,
            Some(v) => Some(
                v.trim()
                    .parse::<i64>()
                    .map_err(|e| format!("limit {v:?}: {e}"))?,
            ),
        };
        Ok(AsyncCounter { counter, limit })
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        if ev.path != self.counter || ev.event_type == EventType::NodeDeleted {
            info!(
                "watch {} {} seq {}: ignored",
                ev.event_type, ev.path, ev.seq
            );
            return;
        }
        info!(
            "watch {} {} seq {}: get_async",
            ev.event_type, ev.path, ev.seq
        );
        self.start();
    }

    fn on_completion(&mut self, context: Vec<u8>, result: Completion) {
        match (&context[..], result) {
            (b"get", Completion::Get(Ok((data, stat)))) => {
                let text = String::from_utf8_lossy(&data);
                let text = text.trim();
                let n = if text.is_empty() {
                    0
                } else {
                    match text.parse::<i64>() {
                        Ok(n) => n,
                        Err(e) => {
                            warn!("get: {:?} is not a decimal number: {e}", text);
                            return;
                        }
                    }
                };
                if self.limit.is_some_and(|limit| n >= limit) {
                    info!(
                        "get: {n} at version {}; at the limit, not incremented",
                        stat.version
                    );
                    return;
                }
                let Some(next) = n.checked_add(1) else {
                    warn!("get: {n} cannot be incremented");
                    return;
                };
                info!("get: {n} at version {}; set_async {next}", stat.version);
                let data = next.to_string();
                if let Err(e) =
                    zk::set_async(&self.counter, data.as_bytes(), Some(stat.version), b"set")
                {
                    warn!("set_async {}: refused: {}", self.counter, e.describe());
                }
            }
            (b"get", Completion::Get(Err(e))) => warn!("get: failed: {}", e.describe()),
            (b"set", Completion::Set(Ok(stat))) => {
                info!("set: stored at version {}", stat.version);
            }
            (b"set", Completion::Set(Err(wazoo_guest::ZkError::BadVersion))) => {
                info!("set: bad version (written meanwhile); get_async again");
                self.start();
            }
            (b"set", Completion::Set(Err(e))) => warn!("set: failed: {}", e.describe()),
            (other, result) => warn!(
                "unexpected completion {:?}: {result:?}",
                String::from_utf8_lossy(other)
            ),
        }
    }
}

wazoo_guest::export_plugin!(AsyncCounter);
