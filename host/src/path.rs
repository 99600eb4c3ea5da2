//! ZooKeeper's path rules, applied before anything is sent, and chroot handling.
//!
//! The rules are the server's (`PathUtils.validatePath`): absolute, no trailing slash (except `/`
//! itself, or a sequential create's prefix), no empty segment, no `.` or `..` segment, no NUL and
//! no control or private-use characters. The server checks UTF-16 code units, so it also refuses
//! every character outside the Basic Multilingual Plane (a surrogate pair), and so does this.

use crate::error::{Error, Result};

/// Checks `path` against ZooKeeper's rules. A sequential create may end with `/` (the server
/// appends the counter), so pass `sequential = true` for those.
///
/// ```
/// use wazoo::validate_path;
/// assert!(validate_path("/a/b", false).is_ok());
/// assert!(validate_path("/a/", true).is_ok());
/// assert!(validate_path("/a//b", false).is_err());
/// assert!(validate_path("a", false).is_err());
/// ```
pub fn validate_path(path: &str, sequential: bool) -> Result<()> {
    // One pass over the bytes for the common case (ASCII, valid). Anything unusual (an error,
    // a non-ASCII character) goes to the exact check, which also words the error.
    let b = path.as_bytes();
    if b.first() != Some(&b'/') {
        return validate_exact(path, sequential);
    }
    if b.len() == 1 {
        return Ok(());
    }
    let mut end = b.len();
    if b[end - 1] == b'/' {
        if !sequential {
            return validate_exact(path, sequential);
        }
        end -= 1;
    }
    let mut start = 1;
    let mut i = 1;
    while i <= end {
        let c = if i == end { b'/' } else { b[i] };
        if c == b'/' {
            let seg = &b[start..i];
            if seg.is_empty() || seg == b"." || seg == b".." {
                return validate_exact(path, sequential);
            }
            start = i + 1;
        } else if !(0x20..0x7f).contains(&c) {
            return validate_exact(path, sequential);
        }
        i += 1;
    }
    Ok(())
}

/// The rules, character by character: the reference for [`validate_path`]'s fast path and the
/// source of its error messages.
fn validate_exact(path: &str, sequential: bool) -> Result<()> {
    let bad = |reason: &'static str| {
        Err(Error::InvalidPath {
            path: path.to_string(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("a path must not be empty");
    }
    if !path.starts_with('/') {
        return bad("a path must start with '/'");
    }
    if path.len() == 1 {
        return Ok(()); // "/" itself, or "/" + a sequential counter
    }
    if path.ends_with('/') && !sequential {
        return bad("a path must not end with '/'");
    }
    let body = if sequential && path.ends_with('/') {
        &path[1..path.len() - 1]
    } else {
        &path[1..]
    };
    for segment in body.split('/') {
        if segment.is_empty() {
            return bad("a path must not contain an empty segment ('//')");
        }
        if segment == "." || segment == ".." {
            return bad("a path must not contain '.' or '..' segments");
        }
    }
    for c in path.chars() {
        let u = c as u32;
        if u == 0 {
            return bad("a path must not contain the NUL character");
        }
        if (0x01..=0x1f).contains(&u)
            || (0x7f..=0x9f).contains(&u)
            || (0xe000..=0xf8ff).contains(&u)
            || (0xfff0..=0xffff).contains(&u)
        {
            return bad("a path must not contain control or private-use characters");
        }
        if u > 0xffff {
            // Java sees a surrogate pair, in the range the server refuses (U+D800..U+F8FF).
            return bad("a path must not contain characters outside the Basic Multilingual Plane");
        }
    }
    Ok(())
}

/// A chroot: a path prefix the server sees and the user does not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Chroot(Option<String>);

impl Chroot {
    /// Parses a chroot (`/app/one`), or none for `""` or `"/"`.
    pub(crate) fn new(root: &str) -> Result<Chroot> {
        if root.is_empty() || root == "/" {
            return Ok(Chroot(None));
        }
        validate_path(root, false)?;
        Ok(Chroot(Some(root.to_string())))
    }

    /// The chroot prefix, if any.
    #[cfg(test)]
    pub(crate) fn prefix(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The server's path for a user's (already validated) path.
    pub(crate) fn apply(&self, path: &str) -> String {
        match &self.0 {
            None => path.to_string(),
            Some(root) if path == "/" => root.clone(),
            Some(root) => {
                let mut s = String::with_capacity(root.len() + path.len());
                s.push_str(root);
                s.push_str(path);
                s
            }
        }
    }

    /// The length of [`Chroot::apply`]'s result, without building it.
    pub(crate) fn server_len(&self, path: &str) -> usize {
        match &self.0 {
            None => path.len(),
            Some(root) if path == "/" => root.len(),
            Some(root) => root.len() + path.len(),
        }
    }

    /// Appends the server's path for `path` to `buf` (what [`Chroot::apply`] returns).
    pub(crate) fn put(&self, path: &str, buf: &mut impl bytes::BufMut) {
        match &self.0 {
            None => buf.put_slice(path.as_bytes()),
            Some(root) if path == "/" => buf.put_slice(root.as_bytes()),
            Some(root) => {
                buf.put_slice(root.as_bytes());
                buf.put_slice(path.as_bytes());
            }
        }
    }

    /// The user's path for a path the server sent. A path outside the chroot (which the server
    /// should never send) is returned unchanged.
    pub(crate) fn strip<'a>(&self, path: &'a str) -> &'a str {
        match &self.0 {
            None => path,
            Some(root) => match path.strip_prefix(root.as_str()) {
                Some("") => "/",
                Some(rest) if rest.starts_with('/') => rest,
                _ => path,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_path_agrees_with_the_exact_rules() {
        // Every path up to length 5 over an alphabet with the interesting characters.
        let alphabet = ['/', '.', 'a', '\u{1}', '\u{7f}', 'é', '\u{e000}', '\0'];
        let mut paths = vec![String::new()];
        let mut all = Vec::new();
        for _ in 0..5 {
            let mut next = Vec::new();
            for p in &paths {
                for c in alphabet {
                    let mut q = p.clone();
                    q.push(c);
                    next.push(q);
                }
            }
            all.extend(next.iter().cloned());
            paths = next;
        }
        for p in &all {
            for seq in [false, true] {
                assert_eq!(
                    validate_path(p, seq).is_ok(),
                    validate_exact(p, seq).is_ok(),
                    "{p:?} sequential={seq}"
                );
            }
        }
    }

    #[test]
    fn chroot_put_matches_apply() {
        for root in ["", "/app", "/a/b"] {
            let c = Chroot::new(root).unwrap();
            for p in ["/", "/x", "/x/y"] {
                let mut b = Vec::new();
                c.put(p, &mut b);
                assert_eq!(b, c.apply(p).as_bytes());
                assert_eq!(c.server_len(p), b.len());
            }
        }
    }

    #[test]
    fn accepts_valid_paths() {
        for p in [
            "/",
            "/a",
            "/a/b",
            "/zookeeper/quota",
            "/a-b_c.d",
            "/a/.b",
            "/a/..b",
            "/é",
        ] {
            assert!(validate_path(p, false).is_ok(), "{p}");
        }
        for p in ["/", "/a/", "/a/b-"] {
            assert!(validate_path(p, true).is_ok(), "{p}");
        }
    }

    #[test]
    fn refuses_invalid_paths_with_a_reason() {
        for p in [
            "",
            "a",
            "/a/",
            "//",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/.",
            "/..",
            "/a\0b",
            "/a\u{1}",
            "/a\u{7f}",
            "/a\u{e000}",
            "/a\u{fff5}",
            // Found by tests/prop_allowlist.rs: ZooKeeper refuses these (UTF-16 surrogates).
            "/\u{1f600}",
            "/a/b\u{10000}",
            "/\u{10ffff}",
        ] {
            match validate_path(p, false) {
                Err(Error::InvalidPath { path, reason }) => {
                    assert_eq!(path, p);
                    assert!(!reason.is_empty());
                }
                other => panic!("{p:?} gave {other:?}"),
            }
        }
        assert!(validate_path("/a//", true).is_err());
    }

    #[test]
    fn chroot_applies_and_strips() {
        let c = Chroot::new("/app").unwrap();
        assert_eq!(c.apply("/"), "/app");
        assert_eq!(c.apply("/x/y"), "/app/x/y");
        assert_eq!(c.strip("/app"), "/");
        assert_eq!(c.strip("/app/x"), "/x");
        assert_eq!(c.strip("/apple"), "/apple");
        let none = Chroot::new("/").unwrap();
        assert_eq!(none.apply("/x"), "/x");
        assert!(Chroot::new("/bad/").is_err());
    }
}
