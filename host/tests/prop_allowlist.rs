//! Property tests of the path rules and the plugin allow-list, through the public API
//! (`validate_path`, `Policy::may_read`, `Policy::may_write`), against a model written here:
//! ZooKeeper's own rules (`PathUtils.validatePath`, over UTF-16 code units as the Java server
//! sees them) and a segment-wise "lies under" relation.
//!
//! The invariant: **no path outside a prefix is ever accepted**. Paths are built from hostile
//! pieces (`..`, `.`, empty segments, trailing `/`, NUL, control characters, slash and dot
//! look-alikes, percent-encodings, private-use and astral characters) as well as arbitrary text.

use proptest::prelude::*;
use wazoo::{validate_path, Policy};

// ---- the model ----

/// Whether ZooKeeper accepts `p` as a node path: absolute, no trailing `/` (except `/`), no
/// empty, `.` or `..` segment, and no UTF-16 code unit that is NUL, a control character, a
/// surrogate (so nothing outside the Basic Multilingual Plane), private use, or U+FFF0..U+FFFF.
fn zk_valid(p: &str) -> bool {
    let Some(rest) = p.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    if rest
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return false;
    }
    p.encode_utf16().all(|u| {
        !(u == 0
            || (0x01..=0x1f).contains(&u)
            || (0x7f..=0x9f).contains(&u)
            || (0xd800..=0xf8ff).contains(&u)
            || u >= 0xfff0)
    })
}

/// The segments of a path the model accepts.
fn segments(p: &str) -> Vec<&str> {
    if p == "/" {
        Vec::new()
    } else {
        p[1..].split('/').collect()
    }
}

/// Whether `path` lies under `prefix`, segment by segment, both being valid paths.
fn under(path: &str, prefix: &str) -> bool {
    zk_valid(path) && zk_valid(prefix) && segments(path).starts_with(&segments(prefix))
}

// ---- strategies ----

/// Pieces that try to break out of a prefix or to look like something they are not.
const PIECES: &[&str] = &[
    "app",
    "apple",
    "ap",
    "a",
    "b",
    "x",
    "..",
    ".",
    "",
    "/",
    "//",
    "...",
    ".a",
    "\0",
    "\u{1}",
    "\n",
    "\u{7f}",
    "\u{85}",
    "\u{2215}", // division slash
    "\u{ff0f}", // fullwidth solidus
    "\u{2044}", // fraction slash
    "\u{29f8}", // big solidus
    "\u{ff0e}", // fullwidth full stop
    "\u{2024}", // one dot leader
    "\u{200b}", // zero-width space
    "\u{feff}", // byte order mark
    "\u{e000}", // private use
    "\u{fff0}",
    "\u{fffd}",
    "\u{1f600}",  // outside the BMP
    "\u{10ffff}", // the last code point
    "%2e%2e",
    "%2f",
    "\\",
    "\\..",
    "é",
    "e\u{301}", // e + combining acute
];

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(PIECES).prop_map(str::to_string),
        1 => "[a-z]{1,4}",
        1 => any::<char>().prop_map(String::from),
    ]
}

/// A path assembled from pieces, each after a `/` or glued to the previous one.
fn hostile_path() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.9),
        prop::collection::vec((prop::bool::weighted(0.8), piece()), 0..6),
    )
        .prop_map(|(absolute, parts)| {
            let mut p = String::new();
            for (i, (slash, part)) in parts.iter().enumerate() {
                if (i == 0 && absolute) || (i > 0 && *slash) {
                    p.push('/');
                }
                p.push_str(part);
            }
            if p.is_empty() && absolute {
                p.push('/');
            }
            p
        })
}

/// Any path: hostile, or arbitrary text.
fn any_path() -> impl Strategy<Value = String> {
    prop_oneof![4 => hostile_path(), 1 => any::<String>(), 1 => "/[a-z/.]{0,12}"]
}

/// Prefixes: mostly valid ones that the paths above often fall under, some invalid ones.
fn prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&["/", "/app", "/a", "/a/b", "/app/x", "/ap", "/é"][..])
            .prop_map(str::to_string),
        2 => hostile_path(),
    ]
}

fn prefixes() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prefix(), 0..4)
}

// ---- the properties ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The path rules are ZooKeeper's: nothing the server would refuse passes, and nothing it
    /// accepts is refused.
    #[test]
    fn validate_path_matches_zookeeper(p in any_path()) {
        prop_assert_eq!(validate_path(&p, false).is_ok(), zk_valid(&p), "{:?}", p);
    }

    /// A sequential create's path is what the server validates after appending the counter.
    #[test]
    fn sequential_paths_are_valid_once_the_counter_is_appended(p in any_path()) {
        if validate_path(&p, true).is_ok() {
            prop_assert!(zk_valid(&format!("{p}0000000001")), "{:?}", p);
        }
        if zk_valid(&p) {
            prop_assert!(validate_path(&p, true).is_ok(), "{:?}", p);
        }
    }

    /// Soundness: whatever is allowed lies under an allowed prefix, segment-wise.
    #[test]
    fn no_path_outside_a_prefix_is_ever_accepted(read in prefixes(), write in prefixes(), p in any_path()) {
        let policy = Policy::default().read(read.clone()).write(write.clone());
        if policy.may_write(&p) {
            prop_assert!(write.iter().any(|w| under(&p, w)), "{:?} writable under {:?}", p, write);
        }
        if policy.may_read(&p) {
            prop_assert!(
                read.iter().chain(&write).any(|r| under(&p, r)),
                "{:?} readable under {:?} / {:?}", p, read, write
            );
        }
    }

    /// Completeness: a valid path under a valid prefix is allowed, and writes imply reads.
    #[test]
    fn every_path_under_a_prefix_is_accepted(read in prefixes(), write in prefixes(), p in any_path()) {
        let policy = Policy::default().read(read.clone()).write(write.clone());
        prop_assert_eq!(policy.may_write(&p), write.iter().any(|w| under(&p, w)), "{:?}", p);
        prop_assert_eq!(
            policy.may_read(&p),
            read.iter().chain(&write).any(|r| under(&p, r)),
            "{:?}", p
        );
    }

    /// Traversal never escapes: a prefix followed by anything containing a `..`, `.` or empty
    /// segment, a trailing `/`, NUL or a control character is refused.
    #[test]
    fn traversal_from_inside_a_prefix_never_escapes(
        base in prop::sample::select(&["/app", "/a/b", "/"][..]),
        before in prop::collection::vec("[a-z]{1,3}", 0..3),
        trap in prop::sample::select(&["/..", "/.", "/", "//", "\0", "/\u{1}", "/x\u{7f}", "/\u{1f600}"][..]),
        after in prop::collection::vec(prop_oneof!["[a-z]{1,3}", Just("..".to_string())], 0..3),
    ) {
        let mut p = if base == "/" { String::new() } else { base.to_string() };
        for s in &before {
            p.push('/');
            p.push_str(s);
        }
        p.push_str(trap);
        for s in &after {
            p.push('/');
            p.push_str(s);
        }
        // "/" + "/" is the root itself, the one case where nothing was appended.
        prop_assume!(p != "/");
        let policy = Policy::default().read([base]).write([base]);
        prop_assert!(!policy.may_read(&p), "{:?} read under {:?}", p, base);
        prop_assert!(!policy.may_write(&p), "{:?} written under {:?}", p, base);
    }

    /// A sibling that merely starts with the prefix's text (`/apple` for `/app`), or continues it
    /// with a slash look-alike, is another node.
    #[test]
    fn siblings_and_look_alikes_are_other_nodes(
        base in prop::sample::select(&["/app", "/a/b", "/é"][..]),
        glue in prop::sample::select(&["le", "\u{2215}", "\u{ff0f}", "\u{2044}", "\\", "%2f", "\u{200b}", "."][..]),
        rest in "[a-z]{0,3}",
    ) {
        let p = format!("{base}{glue}{rest}");
        let policy = Policy::default().read([base]).write([base]);
        prop_assert!(!policy.may_read(&p), "{:?} read under {:?}", p, base);
        prop_assert!(!policy.may_write(&p), "{:?} written under {:?}", p, base);
        // The same name one level down is inside, whatever it looks like, if it is valid.
        let inside = format!("{base}/x{glue}{rest}");
        prop_assert_eq!(policy.may_read(&inside), zk_valid(&inside), "{:?}", inside);
    }

    /// An invalid prefix allows nothing, not even itself.
    #[test]
    fn invalid_prefixes_allow_nothing(bad in hostile_path(), p in any_path()) {
        prop_assume!(!zk_valid(&bad));
        let policy = Policy::default().read([bad.clone()]).write([bad.clone()]);
        prop_assert!(!policy.may_read(&p) && !policy.may_write(&p), "{:?} under {:?}", p, bad);
        prop_assert!(!policy.may_read(&bad));
    }
}

#[test]
fn empty_lists_allow_nothing_and_root_allows_every_valid_path() {
    let none = Policy::default();
    let root = Policy::default().read(["/"]);
    for p in ["/", "/a", "/app/x", "/é/\u{2215}"] {
        assert!(!none.may_read(p) && !none.may_write(p), "{p}");
        assert!(root.may_read(p) && !root.may_write(p), "{p}");
    }
    for p in ["", "a", "/a/", "/a/../b", "/a\0", "/\u{1f600}"] {
        assert!(!root.may_read(p), "{p:?}");
    }
}
