//! `deep-recursion`: `on-watch` logs `watch <event-type> <path>: recursing` and recurses without
//! bound (a non-tail call whose result is used after it returns), so the stack overflows and the
//! call traps. Config key `max-depth` (default: unbounded) bounds it, for checking the guest
//! itself; then it logs `returned from depth <n>`. `on-session` logs `session <state>`.

use std::hint::black_box;

use wazoo_guest::{config, info, Plugin, SessionEvent, WatchEvent};

struct DeepRecursion {
    max_depth: u64,
}

/// Recurses `limit - depth` times; the work after the call keeps it from becoming a loop.
#[inline(never)]
fn dive(depth: u64, limit: u64) -> u64 {
    if depth >= limit {
        return depth;
    }
    let below = dive(black_box(depth + 1), limit);
    black_box(below).max(depth)
}

impl Plugin for DeepRecursion {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        Ok(DeepRecursion {
            max_depth: config::parse_or(config, "max-depth", u64::MAX)?,
        })
    }

    fn on_session(&mut self, ev: SessionEvent) {
        info!("session {}", ev.state);
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        info!("watch {} {}: recursing", ev.event_type, ev.path);
        let depth = dive(0, self.max_depth);
        info!("returned from depth {depth}");
    }
}

wazoo_guest::export_plugin!(DeepRecursion);
