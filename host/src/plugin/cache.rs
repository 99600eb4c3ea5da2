//! The compilation cache: components compiled once and kept on disk as precompiled artifacts
//! (see [`PluginHostConfig::cache_dir`](super::PluginHostConfig::cache_dir)).
//!
//! An artifact is native code that wasmtime loads with no more checks than its header's, so
//! whoever can write the cache can run code in the host. The cache therefore trusts only what
//! the host's own user could have written, as ssh does with its keys: the directory must be
//! owned by that user and writable by nobody else (or the host refuses to start), and an
//! artifact that is not a regular file of that user's, writable by it alone, is compiled
//! again and replaced rather than loaded.
//!
//! The cache keeps to a size: when its artifacts take more than
//! [`PluginHostConfig::cache_max_bytes`](super::PluginHostConfig::cache_max_bytes), the least
//! recently used go (loading an artifact marks it used), so artifacts of components no longer
//! loaded, and of other wazoo versions, age out. Temporary files a writer left behind when it
//! died go too, once they are an hour old.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use wasmtime::component::Component;
use wasmtime::Engine;

use super::error::PluginError;

/// A temporary file this old was left by a writer that died (a write takes milliseconds).
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// A cache directory that passed the trust check.
#[derive(Debug)]
pub(crate) struct Cache {
    dir: PathBuf,
    max_bytes: u64,
    /// What the artifacts take as far as this host knows: its last scan of the directory plus
    /// what it wrote since (other hosts may write too). Past `max_bytes`, it scans again.
    estimate: Mutex<u64>,
}

impl Cache {
    /// Creates `dir` if missing (readable and writable by this user only) and checks that it
    /// can be trusted with native code.
    pub(crate) fn open(dir: &Path, max_bytes: u64) -> Result<Cache, PluginError> {
        let untrusted = |reason: String| PluginError::UntrustedCache {
            path: dir.to_path_buf(),
            reason,
        };
        create_private_dir(dir).map_err(|e| untrusted(format!("cannot create it: {e}")))?;
        let meta = std::fs::metadata(dir).map_err(|e| untrusted(e.to_string()))?;
        if !meta.is_dir() {
            return Err(untrusted("not a directory".into()));
        }
        trust(&meta, current_user()).map_err(untrusted)?;
        let cache = Cache {
            dir: dir.to_path_buf(),
            max_bytes,
            estimate: Mutex::new(0),
        };
        cache.prune();
        Ok(cache)
    }

    /// Removes temporary files left by writers that died and, while the artifacts take more
    /// than `max_bytes`, the least recently used of them.
    fn prune(&self) {
        let mut estimate = self.estimate.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        let mut artifacts = Vec::new();
        let mut total = 0u64;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(kind) = name.to_str().and_then(entry_kind) else {
                continue; // not the cache's: left alone
            };
            // Not following links: a link is not an artifact.
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() {
                continue;
            }
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            match kind {
                Entry::Artifact => {
                    total += meta.len();
                    artifacts.push((used, meta.len(), entry.path()));
                }
                Entry::Temporary => {
                    if now
                        .duration_since(used)
                        .is_ok_and(|age| age > STALE_TEMPORARY)
                    {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
        }
        artifacts.sort();
        let mut removed = 0usize;
        for (_, len, path) in artifacts {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(
                dir = %self.dir.display(),
                removed,
                "compilation cache above {} bytes: removed the {removed} least recently used artifact(s), {total} bytes left",
                self.max_bytes
            );
        }
        *estimate = total;
    }

    /// The component compiled by `engine`: from the cache if a trusted artifact is there,
    /// otherwise compiled and written for next time (a failed write only warns).
    pub(crate) fn compile(
        &self,
        engine: &Engine,
        name: &str,
        bytes: &[u8],
    ) -> Result<Component, PluginError> {
        let path = self.dir.join(file_name(engine, bytes));
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => match trust(&meta, current_user()) {
                // SAFETY: the file was written by `precompile_component` of an engine with the
                // same compatibility hash (it is in the name), by this user, into a directory
                // only this user can write; wasmtime additionally checks the header against
                // the engine.
                Ok(()) => match unsafe { Component::deserialize_file(engine, &path) } {
                    Ok(c) => {
                        mark_used(&path);
                        return Ok(c);
                    }
                    Err(e) => {
                        tracing::warn!(plugin = name, path = %path.display(), "cached artifact unusable, recompiling: {e}")
                    }
                },
                Err(why) => {
                    tracing::warn!(plugin = name, path = %path.display(), "cached artifact not trusted ({why}), recompiling")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(plugin = name, path = %path.display(), "cached artifact unreadable, recompiling: {e}")
            }
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(|e| invalid(name, e))?;
        match write_new(&path, &compiled) {
            Ok(()) => {
                let over = {
                    let mut estimate = self.estimate.lock().unwrap_or_else(|p| p.into_inner());
                    *estimate = estimate.saturating_add(compiled.len() as u64);
                    *estimate > self.max_bytes
                };
                if over {
                    self.prune();
                }
            }
            Err(e) => tracing::warn!(plugin = name, "cannot write the compilation cache: {e}"),
        }
        // SAFETY: the bytes were produced just now by this engine's `precompile_component`.
        unsafe { Component::deserialize(engine, &compiled) }.map_err(|e| invalid(name, e))
    }
}

fn invalid(name: &str, e: wasmtime::Error) -> PluginError {
    PluginError::Invalid {
        name: name.to_string(),
        reason: format!("{e:#}"),
    }
}

/// Writes `bytes` to `path` under a name no other writer uses, in this process (hosts may
/// compile the same component at once) or another, then renames it into place: the artifact
/// appears whole or not at all, and replaces an untrusted one.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    let mut file = private_file(&tmp)?;
    let written = std::io::Write::write_all(&mut file, bytes).and_then(|_| {
        drop(file);
        std::fs::rename(&tmp, path)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// An artifact just loaded is the most recently used: its modification time says so (access
/// times are not kept on many mounts).
fn mark_used(path: &Path) {
    let _ = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(SystemTime::now()));
}

/// What a file in the cache directory is, by its name: the cache's own are
/// `<64 hex>-<16 hex>.cwasm` and, while being written, `<64 hex>-<16 hex>.tmp<pid>-<n>`.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Artifact,
    Temporary,
}

fn entry_kind(name: &str) -> Option<Entry> {
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let (content, rest) = (name.get(..64)?, name.get(64..)?);
    let (engine, rest) = (rest.strip_prefix('-')?.get(..16)?, rest.get(17..)?);
    if !hex(content) || !hex(engine) {
        return None;
    }
    if rest == ".cwasm" {
        return Some(Entry::Artifact);
    }
    let tmp = rest.strip_prefix(".tmp")?;
    let (pid, n) = tmp.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(n)).then_some(Entry::Temporary)
}

/// The cache's name for `component` compiled by `engine`:
/// `<SHA-256 of the component, hex>-<engine>.cwasm`. The content part is a cryptographic hash:
/// with a non-cryptographic one, whoever may load a plugin could craft a component that
/// collides with another plugin's and have its code run under that plugin's name and policy.
fn file_name(engine: &Engine, component: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(component);
    let mut name = String::with_capacity(64 + 1 + 16 + 6);
    for b in digest {
        name.push_str(&format!("{b:02x}"));
    }
    // Not adversarial input: the engine's settings and wazoo's version.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    name.push_str(&format!("-{:016x}.cwasm", h.finish()));
    name
}

/// Who owns a file, its permission bits, and whether it is what the check expects.
#[cfg(unix)]
fn trust(meta: &std::fs::Metadata, user: u32) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    if meta.file_type().is_symlink() {
        return Err("a symbolic link".into());
    }
    if !meta.is_dir() && !meta.is_file() {
        return Err("not a regular file".into());
    }
    trust_owner_and_mode(meta.uid(), meta.mode(), user)
}

#[cfg(not(unix))]
fn trust(meta: &std::fs::Metadata, _user: u32) -> Result<(), String> {
    if meta.file_type().is_symlink() {
        return Err("a symbolic link".into());
    }
    Ok(())
}

/// The rule itself: owned by `user` and writable by no one else.
fn trust_owner_and_mode(owner: u32, mode: u32, user: u32) -> Result<(), String> {
    if owner != user {
        return Err(format!(
            "owned by uid {owner}, not by this process's user (uid {user})"
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "writable by {} (mode {:o}); only its owner may write it",
            if mode & 0o002 != 0 {
                "every user"
            } else {
                "its group"
            },
            mode & 0o7777
        ));
    }
    Ok(())
}

#[cfg(unix)]
fn current_user() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(not(unix))]
fn current_user() -> u32 {
    0
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_users_own_unshared_files_are_trusted() {
        assert_eq!(trust_owner_and_mode(1000, 0o100600, 1000), Ok(()));
        assert_eq!(trust_owner_and_mode(1000, 0o40755, 1000), Ok(()));
        let other = trust_owner_and_mode(0, 0o100600, 1000).unwrap_err();
        assert!(
            other.contains("owned by uid 0") && other.contains("uid 1000"),
            "{other}"
        );
        let group = trust_owner_and_mode(1000, 0o100664, 1000).unwrap_err();
        assert!(
            group.contains("its group") && group.contains("664"),
            "{group}"
        );
        let all = trust_owner_and_mode(1000, 0o40777, 1000).unwrap_err();
        assert!(all.contains("every user") && all.contains("777"), "{all}");
        // The sticky bit of /tmp does not make a shared directory private.
        assert!(trust_owner_and_mode(1000, 0o41777, 1000).is_err());
    }

    #[test]
    fn the_cache_knows_its_own_files_by_name() {
        let content = "ab".repeat(32);
        let engine = "0123456789abcdef";
        let artifact = format!("{content}-{engine}.cwasm");
        assert_eq!(entry_kind(&artifact), Some(Entry::Artifact));
        assert_eq!(
            entry_kind(&format!("{content}-{engine}.tmp4242-7")),
            Some(Entry::Temporary)
        );
        for other in [
            "README".to_string(),
            format!("{content}-{engine}.cwasm.bak"),
            format!("{content}-{engine}.tmp"),
            format!("{content}-{engine}.tmp12-"),
            format!("{}-{engine}.cwasm", "AB".repeat(32)),
            format!("{content}_{engine}.cwasm"),
            format!("{}-{engine}.cwasm", "ab".repeat(31)),
            "é".repeat(50),
        ] {
            assert_eq!(entry_kind(&other), None, "{other}");
        }
    }
}
