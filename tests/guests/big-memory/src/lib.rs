//! `big-memory`: a component whose linear memory starts at 25 MiB (a 24 MiB zeroed static
//! ballast above the usual 1 MiB of stack and data), for the host's check at load that a
//! component fits its memory limits before any instance is built.
//!
//! `on-watch` writes the event's sequence number into the ballast's last byte and logs
//! `watch <path>: ballast of <mib> MiB, last byte <n>`. `on-session` logs `session <state>`.

use std::hint::black_box;
use std::sync::Mutex;

use wazoo_guest::{info, Plugin, SessionEvent, WatchEvent};

const BALLAST: usize = 24 << 20;

/// Zeroed, so it lives in the memory's initial size (bss), not in a data segment.
static BALLAST_BYTES: Mutex<[u8; BALLAST]> = Mutex::new([0; BALLAST]);

struct BigMemory;

impl Plugin for BigMemory {
    fn init(_config: &[(String, String)]) -> Result<Self, String> {
        Ok(BigMemory)
    }

    fn on_session(&mut self, ev: SessionEvent) {
        info!("session {}", ev.state);
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        let mut ballast = BALLAST_BYTES.lock().unwrap();
        ballast[BALLAST - 1] = ev.seq as u8;
        let last = black_box(&*ballast)[BALLAST - 1];
        info!(
            "watch {}: ballast of {} MiB, last byte {last}",
            ev.path,
            BALLAST >> 20
        );
    }
}

wazoo_guest::export_plugin!(BigMemory);
