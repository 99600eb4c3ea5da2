//! The path rules and the plugin allow-list on arbitrary paths and prefixes, checked against an
//! independent model: whatever is accepted lies under an allowed prefix segment by segment, with
//! no `.`, `..` or empty segment, no NUL and no control character.
//!
//! Input: byte 0xFF (never in UTF-8) separates the parts; part 0 is the path, every further part
//! a prefix, for the write list if it starts with `w`, else for the read list (a leading `r`
//! dropped). Parts that are not UTF-8 are dropped, so NUL, newlines and look-alikes all reach the
//! checks.
#![no_main]

use wazoo::{validate_path, Policy};

/// The segments of a path by the model's own rules, or `None` if it is not a clean absolute path.
fn segments(p: &str) -> Option<Vec<&str>> {
    let rest = p.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let clean = segs
        .iter()
        .all(|s| !s.is_empty() && *s != "." && *s != "..");
    clean.then_some(segs)
}

/// Whether `path` lies under `prefix`, segment-wise.
fn under(path: &str, prefix: &str) -> bool {
    match (segments(path), segments(prefix)) {
        (Some(p), Some(q)) => p.starts_with(&q),
        _ => false,
    }
}

fn clean_chars(p: &str) -> bool {
    !p.chars().any(|c| c == '\0' || c.is_control())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut parts = data
        .split(|b| *b == 0xff)
        .filter_map(|p| std::str::from_utf8(p).ok());
    let Some(path) = parts.next() else {
        return;
    };
    let (mut read, mut write) = (Vec::new(), Vec::new());
    for p in parts {
        match p.strip_prefix('w') {
            Some(w) => write.push(w.to_string()),
            None => read.push(p.strip_prefix('r').unwrap_or(p).to_string()),
        }
    }

    // The path rules themselves.
    if validate_path(path, false).is_ok() {
        assert!(segments(path).is_some() && clean_chars(path), "{path:?}");
    }
    if validate_path(path, true).is_ok() {
        let body = if path.len() > 1 {
            path.strip_suffix('/').unwrap_or(path)
        } else {
            path
        };
        assert!(segments(body).is_some() && clean_chars(path), "{path:?}");
    }

    let policy = Policy::default().read(read.clone()).write(write.clone());
    let may_read = policy.may_read(path);
    let may_write = policy.may_write(path);

    // Soundness: nothing outside the lists.
    if may_write {
        assert!(clean_chars(path), "{path:?}");
        assert!(
            write.iter().any(|w| under(path, w)),
            "{path:?} writable outside {write:?}"
        );
    }
    if may_read {
        assert!(clean_chars(path), "{path:?}");
        assert!(
            read.iter().chain(&write).any(|p| under(path, p)),
            "{path:?} readable outside {read:?} / {write:?}"
        );
    }
    assert!(!may_write || may_read, "{path:?}: writes imply reads");

    // Completeness: a valid path under a valid prefix is allowed.
    let valid = |p: &String| validate_path(p, false).is_ok();
    if validate_path(path, false).is_ok() {
        if write.iter().filter(|w| valid(w)).any(|w| under(path, w)) {
            assert!(may_write, "{path:?} refused under {write:?}");
        }
        if read.iter().filter(|r| valid(r)).any(|r| under(path, r)) {
            assert!(may_read, "{path:?} refused under {read:?}");
        }
    }
});
