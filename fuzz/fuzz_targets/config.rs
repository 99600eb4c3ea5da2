//! The `wazoo run` configuration parser on arbitrary text: it may refuse, never panic, and what
//! it accepts must already satisfy the checks the host relies on (valid paths, bindings inside
//! the read allow-list, unique names).
#![no_main]

use std::path::Path;

use wazoo::{validate_path, Binding};
use wazoo_cli::config;

/// The configuration "file": relative paths resolve against this crate's folder, so a seed can
/// name `Cargo.toml` as an existing component and reach the semantic checks.
const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz.toml");

/// Files the configuration names (`credentials_file`, TLS certificates, SASL password files) are
/// read whole: an input naming a device (`/dev/zero`) would only measure how long reading forever
/// takes. Such inputs are skipped, escapes included (a TOML string may spell `/` as `\u002F`).
fn names_a_special_file(text: &str) -> bool {
    ["/dev", "/proc", "/sys", "\\u", "\\U"]
        .iter()
        .any(|s| text.contains(s))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if names_a_special_file(text) {
        return;
    }
    match config::parse(Path::new(FILE), text) {
        Err(e) => {
            // Errors render, and positions are 1-based.
            let _ = e.to_string();
            if let Some((line, col)) = e.position {
                assert!(line >= 1 && col >= 1, "{e}");
            }
        }
        Ok(cfg) => {
            if let Some(c) = &cfg.zookeeper.chroot {
                assert!(validate_path(c, false).is_ok() && c != "/", "chroot {c:?}");
            }
            if let Some(h) = &cfg.zookeeper.hosts {
                assert!(!h.is_empty() && !h.contains('/'), "hosts {h:?}");
            }
            let mut names = std::collections::HashSet::new();
            for p in &cfg.plugins {
                assert!(names.insert(p.name.clone()), "duplicate name {:?}", p.name);
                for prefix in p.policy.read.iter().chain(&p.policy.write) {
                    assert!(validate_path(prefix, false).is_ok(), "prefix {prefix:?}");
                }
                for (key, b) in &p.bindings {
                    let path = match b {
                        Binding::Data(p)
                        | Binding::Exists(p)
                        | Binding::Children(p)
                        | Binding::Persistent(p)
                        | Binding::PersistentRecursive(p) => p,
                        _ => continue,
                    };
                    assert!(validate_path(path, false).is_ok(), "{key}: {path:?}");
                    assert!(p.policy.may_read(path), "{key}: {path:?} outside read");
                }
            }
        }
    }
});
