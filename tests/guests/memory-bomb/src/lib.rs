//! `memory-bomb`: `on-watch` allocates without bound, so only the host's memory cap can stop it.
//!
//! It logs `allocating <mib> MiB`, allocates `vec![0u8; <mib> MiB]` (config key `mib`, default
//! 100) and, if that succeeds, logs `holding <mib> MiB; growing` and grows a `Vec` by 1 MiB (of
//! written, non-zero bytes) per step forever, logging `holding <n> MiB` every 16 MiB. When an
//! allocation fails, Rust prints `memory allocation of N bytes failed` on stderr and aborts (a
//! trap). `on-session` logs `session <state>`.

use std::hint::black_box;

use wazoo_guest::{config, debug, info, Plugin, SessionEvent, WatchEvent};

const MIB: usize = 1 << 20;

struct MemoryBomb {
    mib: usize,
}

impl Plugin for MemoryBomb {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        Ok(MemoryBomb {
            mib: config::parse_or(config, "mib", 100)?,
        })
    }

    fn on_session(&mut self, ev: SessionEvent) {
        info!("session {}", ev.state);
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        info!(
            "watch {} {}: allocating {} MiB",
            ev.event_type, ev.path, self.mib
        );
        let big = black_box(vec![0u8; self.mib * MIB]);
        info!("holding {} MiB; growing", big.len() / MIB);
        let mut hog: Vec<u8> = Vec::new();
        loop {
            hog.extend(std::iter::repeat_n(0xA5u8, MIB));
            black_box(&mut hog);
            if (hog.len() / MIB).is_multiple_of(16) {
                debug!("holding {} MiB", (big.len() + hog.len()) / MIB);
            }
        }
    }
}

wazoo_guest::export_plugin!(MemoryBomb);
