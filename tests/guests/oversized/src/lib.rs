//! `oversized`: `on-watch` writes a payload over the host's cap and logs the outcome.
//!
//! Config keys: `path` (default `/oversized`) and `bytes` (default 2097152, 2 MiB). It calls
//! `zk::set(path, <bytes> bytes of b'x', None)` and logs `oversized set <path> <bytes> bytes:
//! error <kind>[: <detail>]` at info (expected: `too-large`), or `... : ACCEPTED (version <v>)` at
//! error. Then the same through `zk::set_async` with context `oversized set-async <path>`: an
//! immediate refusal is logged as `oversized set-async <path> <bytes> bytes: error ...`, an
//! accepted call as `... accepted` (warn) and its completion as `completion oversized set-async
//! <path>: error ...` or `... ACCEPTED`. `on-session` logs `session <state>`.

use wazoo_guest::{config, error, info, warn, zk, Completion, Plugin, SessionEvent, WatchEvent};

struct Oversized {
    path: String,
    bytes: usize,
}

impl Plugin for Oversized {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        Ok(Oversized {
            path: config::get_or(config, "path", "/oversized").to_string(),
            bytes: config::parse_or(config, "bytes", 2 << 20)?,
        })
    }

    fn on_session(&mut self, ev: SessionEvent) {
        info!("session {}", ev.state);
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        info!("watch {} {} {}", ev.event_type, ev.path, ev.seq);
        let (path, n) = (&self.path, self.bytes);
        let payload = vec![b'x'; n];
        match zk::set(path, &payload, None) {
            Ok(stat) => error!(
                "oversized set {path} {n} bytes: ACCEPTED (version {})",
                stat.version
            ),
            Err(e) => info!("oversized set {path} {n} bytes: error {}", e.describe()),
        }
        let context = format!("oversized set-async {path}");
        match zk::set_async(path, &payload, None, context.as_bytes()) {
            Ok(()) => warn!("oversized set-async {path} {n} bytes: accepted"),
            Err(e) => info!(
                "oversized set-async {path} {n} bytes: error {}",
                e.describe()
            ),
        }
    }

    fn on_completion(&mut self, context: Vec<u8>, result: Completion) {
        let what = String::from_utf8_lossy(&context);
        match result {
            Completion::Set(Ok(stat)) => {
                error!("completion {what}: ACCEPTED (version {})", stat.version)
            }
            Completion::Set(Err(e)) => info!("completion {what}: error {}", e.describe()),
            other => warn!("completion {what}: unexpected {other:?}"),
        }
    }
}

wazoo_guest::export_plugin!(Oversized);
