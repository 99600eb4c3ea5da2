//! `noop`: every handler does nothing. The benchmark's guest: it measures the runtime's own cost
//! per callback.

use wazoo_guest::Plugin;

struct Noop;

impl Plugin for Noop {
    fn init(_config: &[(String, String)]) -> Result<Self, String> {
        Ok(Noop)
    }
}

wazoo_guest::export_plugin!(Noop);
