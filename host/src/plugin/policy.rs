//! What a plugin may do: which paths it may read and write, and how much memory, compute, time
//! and payload it may use. The path checks are pure and tested here on their own.
//!
//! **Invariant: a path outside every prefix of a list is never allowed.** Paths are validated
//! with ZooKeeper's rules first (so `..`, `.`, empty segments and control characters are refused
//! before any prefix is compared), and prefixes match whole segments: `/app` allows `/app` and
//! `/app/x`, never `/apple`.

use std::time::Duration;

use crate::path::validate_path;

/// A plugin's limits and allow-lists.
///
/// ```
/// use wazoo::Policy;
/// let p = Policy::default().read(["/config"]).write(["/mirror"]);
/// assert!(p.may_read("/config/db"));
/// assert!(!p.may_read("/configuration"));
/// assert!(p.may_write("/mirror/db"));
/// assert!(!p.may_write("/config/db"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Prefixes the plugin may read (get, exists, children, watches). Writes imply reads.
    pub read: Vec<String>,
    /// Prefixes the plugin may write (create, set, delete, transactions).
    pub write: Vec<String>,
    /// Largest linear memory of one instance, in bytes (default 64 MiB).
    pub memory_limit: usize,
    /// Guest execution allowed per callback (default 100 ms): time inside ZooKeeper calls is not
    /// counted, nor time the OS keeps the guest's thread off the CPU (measured with the
    /// thread's CPU clock from the second epoch tick of a stretch of computation on). Exhausting
    /// it traps the call.
    pub compute_budget: Duration,
    /// Wall-clock limit of one callback, ZooKeeper calls included (default 30 s).
    pub wall_limit: Duration,
    /// Largest data payload of one write, in bytes (default 1 MiB).
    pub max_payload: usize,
    /// Crashes (traps, exhausted budgets, timeouts) tolerated within `crash_window` before the
    /// plugin is disabled (default 5).
    pub max_crashes: u32,
    /// See `max_crashes` (default 60 s).
    pub crash_window: Duration,
    /// The plugin's requests to ZooKeeper in flight at once, sync and async together (default
    /// [`crate::DEFAULT_MAX_IN_FLIGHT`]). Over it an `-async` call fails at once with `busy`;
    /// a blocking call waits for a slot (not charged to the compute budget; the wall-clock
    /// limit still runs). It bounds what one plugin can queue in the shared session.
    pub max_in_flight: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            read: Vec::new(),
            write: Vec::new(),
            memory_limit: 64 << 20,
            compute_budget: Duration::from_millis(100),
            wall_limit: Duration::from_secs(30),
            max_payload: 1 << 20,
            max_crashes: 5,
            crash_window: Duration::from_secs(60),
            max_in_flight: crate::tenant::DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

impl Policy {
    /// Sets the read allow-list.
    pub fn read<S: Into<String>>(mut self, prefixes: impl IntoIterator<Item = S>) -> Self {
        self.read = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the write allow-list.
    pub fn write<S: Into<String>>(mut self, prefixes: impl IntoIterator<Item = S>) -> Self {
        self.write = prefixes.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `path` may be read.
    pub fn may_read(&self, path: &str) -> bool {
        allowed(&self.read, path) || allowed(&self.write, path)
    }

    /// Whether `path` may be written.
    pub fn may_write(&self, path: &str) -> bool {
        allowed(&self.write, path)
    }
}

/// Whether `path` lies inside one of `prefixes` (segment-wise). Invalid paths and invalid
/// prefixes never allow anything.
pub(crate) fn allowed(prefixes: &[String], path: &str) -> bool {
    if validate_path(path, false).is_err() {
        return false;
    }
    prefixes.iter().any(|p| {
        if validate_path(p, false).is_err() {
            return false;
        }
        p == "/"
            || path == p
            || (path.starts_with(p.as_str()) && path.as_bytes().get(p.len()) == Some(&b'/'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let l = list(&["/app", "/x/y"]);
        for ok in ["/app", "/app/a", "/app/a/b", "/x/y", "/x/y/z"] {
            assert!(allowed(&l, ok), "{ok}");
        }
        for no in [
            "/",
            "/apple",
            "/ap",
            "/x",
            "/x/yy",
            "/other",
            "/app/../etc",
            "/app/./a",
            "/app//a",
            "/app/",
            "",
            "app/a",
        ] {
            assert!(!allowed(&l, no), "{no}");
        }
        assert!(allowed(&list(&["/"]), "/anything/at/all"));
        assert!(!allowed(&list(&[]), "/app"));
        assert!(
            !allowed(&list(&["/bad/"]), "/bad/x"),
            "an invalid prefix allows nothing"
        );
    }

    #[test]
    fn no_path_outside_a_prefix_is_ever_accepted() {
        // A randomised check of the invariant over many generated paths.
        let mut rng = crate::rand::Rng::new();
        let segs = ["a", "b", "app", "apple", "..", ".", "", "x\u{1}", "é"];
        let prefixes = list(&["/app", "/a/b"]);
        for _ in 0..20_000 {
            let n = 1 + (rng.next_u64() % 4) as usize;
            let mut p = String::new();
            for _ in 0..n {
                p.push('/');
                p.push_str(segs[(rng.next_u64() % segs.len() as u64) as usize]);
            }
            if allowed(&prefixes, &p) {
                let inside =
                    p == "/app" || p.starts_with("/app/") || p == "/a/b" || p.starts_with("/a/b/");
                assert!(
                    inside && !p.contains("/../") && !p.ends_with("/..") && !p.contains("//"),
                    "{p:?}"
                );
            }
        }
    }

    #[test]
    fn writes_imply_reads() {
        let p = Policy::default().write(["/w"]);
        assert!(p.may_read("/w/x"));
        assert!(!p.may_read("/r"));
    }
}
