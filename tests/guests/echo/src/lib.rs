//! `echo`: reports every event it receives, for lane and ordering tests.
//!
//! Config keys: `sink` (optional) and `async` (optional, `true`/`1` to enable).
//!
//! * `on-watch` logs `watch <event-type> <path> <seq>` at info; with `sink`, it creates a
//!   persistent-sequential child `<sink>/event-` holding `<event-type> <path>` (creating `sink`
//!   first when it is missing; a failure is logged at warn as `sink <sink>: <kind>`); with
//!   `async`, it also calls `zk::exists_async(<path>)` with context `<event-type> <path> <seq>`.
//! * `on-session` logs `session <state>`.
//! * `on-completion` logs `completion <context as UTF-8>`.

use wazoo_guest::{
    config, info, warn, zk, Completion, CreateMode, Plugin, SessionEvent, WatchEvent, ZkError,
};

struct Echo {
    sink: Option<String>,
    async_probe: bool,
}

impl Echo {
    fn record(&self, sink: &str, text: &str) -> Result<String, ZkError> {
        let child = format!("{sink}/event-");
        match zk::create(&child, text.as_bytes(), CreateMode::PersistentSequential) {
            Err(ZkError::NoNode) => {
                zk::ensure_path(sink)?;
                zk::create(&child, text.as_bytes(), CreateMode::PersistentSequential)
            }
            other => other,
        }
    }
}

impl Plugin for Echo {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        let sink = config::get(config, "sink").map(|s| s.trim_end_matches('/').to_string());
        let async_probe = matches!(config::get(config, "async"), Some("true" | "1"));
        Ok(Echo { sink, async_probe })
    }

    fn on_session(&mut self, ev: SessionEvent) {
        info!("session {}", ev.state);
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        info!("watch {} {} {}", ev.event_type, ev.path, ev.seq);
        if let Some(sink) = &self.sink {
            let text = format!("{} {}", ev.event_type, ev.path);
            if let Err(e) = self.record(sink, &text) {
                warn!("sink {sink}: {}", e.describe());
            }
        }
        if self.async_probe {
            let context = format!("{} {} {}", ev.event_type, ev.path, ev.seq);
            if let Err(e) = zk::exists_async(&ev.path, context.as_bytes()) {
                warn!("exists_async {}: {}", ev.path, e.describe());
            }
        }
    }

    fn on_completion(&mut self, context: Vec<u8>, _result: Completion) {
        info!("completion {}", String::from_utf8_lossy(&context));
    }
}

wazoo_guest::export_plugin!(Echo);
