//! `panic`: `on-watch` logs `watch <event-type> <path>: panicking` and panics with the message
//! `guest panic: boom`. The SDK's panic hook writes `guest panicked at <file>:<line>:<col>:
//! guest panic: boom` on stderr, then the guest traps (wasm aborts on panic). `on-session` logs
//! `session <state>`.

use wazoo_guest::{info, Plugin, SessionEvent, WatchEvent};

struct Panic;

impl Plugin for Panic {
    fn init(_config: &[(String, String)]) -> Result<Self, String> {
        Ok(Panic)
    }

    fn on_session(&mut self, ev: SessionEvent) {
        info!("session {}", ev.state);
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        info!("watch {} {}: panicking", ev.event_type, ev.path);
        panic!("guest panic: boom");
    }
}

wazoo_guest::export_plugin!(Panic);
