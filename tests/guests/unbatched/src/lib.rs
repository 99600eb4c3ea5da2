//! `unbatched`: a plugin on the raw bindings that never takes queued events itself (it does not
//! import `wazoo:plugin/lane`), as components built before that interface existed: the host must
//! call it once per event.
//!
//! Config keys: `sink` (required) and `hold` (optional). Every watch event is recorded as a
//! persistent-sequential child `<sink>/e-` holding `watch <path>`; with `hold`, the first watch
//! event waits (polling with `exists`, up to 100000 rounds) until that node exists.

wit_bindgen::generate!({
    world: "plugin",
    path: "../../../wit",
});

use std::cell::RefCell;

use wazoo::plugin::types::{CreateMode, LogLevel};
use wazoo::plugin::{log, zookeeper};

struct Config {
    sink: String,
    hold: Option<String>,
}

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

struct Unbatched;

impl Guest for Unbatched {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let get = |k: &str| config.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let sink = get("sink").ok_or("sink is required")?;
        CONFIG.with(|c| *c.borrow_mut() = Some(Config { sink, hold: get("hold") }));
        Ok(())
    }

    fn on_session(_event: SessionEvent) {}

    fn on_watch(event: WatchEvent) {
        CONFIG.with(|c| {
            let mut c = c.borrow_mut();
            let Some(c) = c.as_mut() else { return };
            if let Some(hold) = c.hold.take() {
                for _ in 0..100_000 {
                    if let Ok(Some(_)) = zookeeper::exists(&hold) {
                        break;
                    }
                }
            }
            let text = format!("watch {}", event.path);
            let child = format!("{}/e-", c.sink);
            if let Err(e) =
                zookeeper::create(&child, text.as_bytes(), CreateMode::PersistentSequential)
            {
                log::log(LogLevel::Warn, &format!("sink {}: {e:?}", c.sink));
            }
        })
    }

    fn on_completion(_context: Vec<u8>, _result: Completion) {}
}

export!(Unbatched);
