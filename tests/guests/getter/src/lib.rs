//! `getter`: on every watch event, reads the event's path with the blocking `zk::get` and
//! checks the reply. The benchmark's guest for a get's round trip through a guest (the import,
//! the session, the reply lowered back into the guest) against the same native call.
//!
//! A failed get is logged at warn as `get <path>: <kind>`.

use wazoo_guest::{warn, zk, Plugin, WatchEvent};

struct Getter;

impl Plugin for Getter {
    fn init(_config: &[(String, String)]) -> Result<Self, String> {
        Ok(Getter)
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        if let Err(e) = zk::get(&ev.path) {
            warn!("get {}: {}", ev.path, e.describe());
        }
    }
}

wazoo_guest::export_plugin!(Getter);
