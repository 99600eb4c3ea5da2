//! `self-watch`: arms its own one-shot watch with `zookeeper.add-watch`, for tests of that
//! import.
//!
//! Config keys: `path` (default `/self`) and `kind` (`data`, `exists` or `children`; default
//! `exists`).
//!
//! * `on-session`: on `connected`, calls `zk::add_watch(<path>, <kind>)` and logs
//!   `armed <kind> watch on <path>` (or `add-watch <path>: <error kind>` at warn). Other states
//!   log `session <state>`.
//! * `on-watch` logs `watch <event-type> <path> <seq>` and arms nothing: a one-shot watch fires
//!   once.

use wazoo_guest::{
    config, info, warn, zk, Plugin, SessionEvent, SessionState, WatchEvent, WatchKind,
};

struct SelfWatch {
    path: String,
    kind: WatchKind,
    name: &'static str,
}

impl Plugin for SelfWatch {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        let (kind, name) = match config::get_or(config, "kind", "exists") {
            "data" => (WatchKind::Data, "data"),
            "exists" => (WatchKind::Exists, "exists"),
            "children" => (WatchKind::Children, "children"),
            other => return Err(format!("kind {other:?}: expected data, exists or children")),
        };
        Ok(SelfWatch {
            path: config::get_or(config, "path", "/self").to_string(),
            kind,
            name,
        })
    }

    fn on_session(&mut self, ev: SessionEvent) {
        if ev.state != SessionState::Connected {
            info!("session {}", ev.state);
            return;
        }
        match zk::add_watch(&self.path, self.kind) {
            Ok(()) => info!("armed {} watch on {}", self.name, self.path),
            Err(e) => warn!("add-watch {}: {}", self.path, e.describe()),
        }
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        info!("watch {} {} {}", ev.event_type, ev.path, ev.seq);
    }
}

wazoo_guest::export_plugin!(SelfWatch);
