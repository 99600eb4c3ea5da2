//! ZooKeeper, through the host's session, limited to the plugin's allow-lists.
//!
//! Paths are absolute and relative to the host's chroot. Every call here blocks the calling
//! handler until the server answers (the host awaits it without blocking a thread). A call
//! outside the plugin's allow-lists fails with [`ZkError::Denied`], a payload over the plugin's
//! cap with [`ZkError::TooLarge`], an invalid path with [`ZkError::InvalidPath`].
//!
//! The `*_async` calls return at once (`Err` only when the host refuses the call outright); the
//! outcome arrives later through [`Plugin::on_completion`](crate::Plugin::on_completion), on the
//! completion lane, with the `context` bytes given here and the matching [`Completion`] case.
//!
//! [`Completion`]: crate::Completion

use crate::bindings::wazoo::plugin::zookeeper as imports;
use crate::{CreateMode, Op, OpResult, SessionState, Stat, WatchKind, ZkError};

/// Reads a node's data and metadata.
pub fn get(path: &str) -> Result<(Vec<u8>, Stat), ZkError> {
    imports::get(path)
}

/// A node's metadata, or `None` when it does not exist.
pub fn exists(path: &str) -> Result<Option<Stat>, ZkError> {
    imports::exists(path)
}

/// The names (not paths) of a node's children, in no particular order.
pub fn children(path: &str) -> Result<Vec<String>, ZkError> {
    imports::children(path)
}

/// Creates a node; returns its actual path (with the sequence suffix for sequential modes).
/// The parent must exist: see [`ensure_path`].
pub fn create(path: &str, data: &[u8], mode: CreateMode) -> Result<String, ZkError> {
    imports::create(path, data, mode)
}

/// Replaces a node's data, if its version is `version` (any version when `None`).
pub fn set(path: &str, data: &[u8], version: Option<i32>) -> Result<Stat, ZkError> {
    imports::set(path, data, version)
}

/// Deletes a node (which must have no children), if its version is `version` (any when `None`).
pub fn delete(path: &str, version: Option<i32>) -> Result<(), ZkError> {
    imports::delete(path, version)
}

/// Creates `path` and its missing ancestors as empty persistent nodes; succeeds when it exists.
pub fn ensure_path(path: &str) -> Result<(), ZkError> {
    imports::ensure_path(path)
}

/// Applies `ops` atomically: all succeed, with one result each, or none is applied.
pub fn transaction(ops: &[Op]) -> Result<Vec<OpResult>, ZkError> {
    imports::transaction(ops)
}

/// Waits until the server this session talks to has caught up with the leader for `path`.
pub fn sync(path: &str) -> Result<(), ZkError> {
    imports::sync(path)
}

/// Arms a watch on `path` whose events arrive through
/// [`Plugin::on_watch`](crate::Plugin::on_watch). One-shot kinds (`data`, `exists`,
/// `children`) fire once; persistent ones until the session ends.
pub fn add_watch(path: &str, kind: WatchKind) -> Result<(), ZkError> {
    imports::add_watch(path, kind)
}

/// The host session's current state.
pub fn session_state() -> SessionState {
    imports::session_state()
}

/// Starts [`get`]; completes with [`Completion::Get`](crate::Completion::Get).
pub fn get_async(path: &str, context: &[u8]) -> Result<(), ZkError> {
    imports::get_async(path, context)
}

/// Starts [`exists`]; completes with [`Completion::Exists`](crate::Completion::Exists).
pub fn exists_async(path: &str, context: &[u8]) -> Result<(), ZkError> {
    imports::exists_async(path, context)
}

/// Starts [`children`]; completes with [`Completion::Children`](crate::Completion::Children).
pub fn children_async(path: &str, context: &[u8]) -> Result<(), ZkError> {
    imports::children_async(path, context)
}

/// Starts [`create`]; completes with [`Completion::Create`](crate::Completion::Create).
pub fn create_async(
    path: &str,
    data: &[u8],
    mode: CreateMode,
    context: &[u8],
) -> Result<(), ZkError> {
    imports::create_async(path, data, mode, context)
}

/// Starts [`set`]; completes with [`Completion::Set`](crate::Completion::Set).
pub fn set_async(
    path: &str,
    data: &[u8],
    version: Option<i32>,
    context: &[u8],
) -> Result<(), ZkError> {
    imports::set_async(path, data, version, context)
}

/// Starts [`delete`]; completes with [`Completion::Delete`](crate::Completion::Delete).
pub fn delete_async(path: &str, version: Option<i32>, context: &[u8]) -> Result<(), ZkError> {
    imports::delete_async(path, version, context)
}

/// Writes `data` to `path`: sets it when it exists, otherwise creates it persistent, making its
/// missing ancestors with [`ensure_path`] (a convenience built on [`set`], [`ensure_path`] and
/// [`create`]).
pub fn set_or_create(path: &str, data: &[u8]) -> Result<(), ZkError> {
    match set(path, data, None) {
        Err(ZkError::NoNode) => {}
        other => return other.map(drop),
    }
    if let Some(parent) = parent(path) {
        ensure_path(parent)?;
    }
    match create(path, data, CreateMode::Persistent) {
        // Created meanwhile by someone else: overwrite it.
        Err(ZkError::NodeExists) => set(path, data, None).map(drop),
        other => other.map(drop),
    }
}

/// The parent of an absolute path, `None` for `/` and for paths directly below it.
pub fn parent(path: &str) -> Option<&str> {
    match path.rfind('/') {
        Some(0) | None => None,
        Some(i) => Some(&path[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::parent;

    #[test]
    fn parents() {
        assert_eq!(parent("/a/b/c"), Some("/a/b"));
        assert_eq!(parent("/a"), None);
        assert_eq!(parent("/"), None);
    }
}
