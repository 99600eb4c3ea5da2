//! `spin`: `on-watch` logs `watch <event-type> <path> <seq>: spinning` and then loops forever
//! (pure computation, no imports), so only the host's compute budget can stop it. `on-session`
//! logs `session <state>` and `on-completion` logs `completion <context>`, normally.

use std::hint::black_box;

use wazoo_guest::{info, Completion, Plugin, SessionEvent, WatchEvent};

struct Spin;

impl Plugin for Spin {
    fn init(_config: &[(String, String)]) -> Result<Self, String> {
        Ok(Spin)
    }

    fn on_session(&mut self, ev: SessionEvent) {
        info!("session {}", ev.state);
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        info!("watch {} {} {}: spinning", ev.event_type, ev.path, ev.seq);
        let mut n = 0u64;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }

    fn on_completion(&mut self, context: Vec<u8>, _result: Completion) {
        info!("completion {}", String::from_utf8_lossy(&context));
    }
}

wazoo_guest::export_plugin!(Spin);
