//! `config-mirror`: keeps `target` a copy of the tree under `source`.
//!
//! Configuration: `source` (default `/config`) and `target` (default `/mirror`), absolute paths
//! neither of which may contain the other. Bind it to a persistent recursive watch on `source`.
//!
//! * `node-created` / `node-data-changed` on `source/<rel>`: reads it and writes the same bytes to
//!   `target/<rel>` (unless it already holds them), creating the missing parents with
//!   `ensure_path`.
//! * `node-deleted` on `source/<rel>`: deletes `target/<rel>` (and whatever is left below it).
//! * `resync` (the watch was re-armed after a reconnect), or the session becoming connected:
//!   copies every node under `source` again and deletes the mirror entries that have no source.
//!
//! Events on `source` itself are ignored: only its descendants are mirrored. Every copy and
//! delete is logged at debug (`copied /config/a to /mirror/a (5 bytes)`, `deleted /mirror/a`),
//! every resync at info with its counts (`resync (connected): 3 copied, 0 unchanged, 1 deleted,
//! 0 failed, /config -> /mirror`), failures at warn.

use wazoo_guest::{
    config, debug, info, warn, zk, CreateMode, EventType, Plugin, SessionEvent, SessionState,
    WatchEvent, ZkError,
};

/// The plugin: the two roots, without trailing slashes.
struct ConfigMirror {
    source: String,
    target: String,
}

/// `path` without trailing slashes (`/` stays `/`).
fn root(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

/// `base` joined with the relative path `rel` (`""` is `base` itself; `rel` starts with `/`).
fn join(base: &str, rel: &str) -> String {
    if base == "/" && !rel.is_empty() {
        rel.to_string()
    } else {
        format!("{base}{rel}")
    }
}

/// The part of `path` below `base`, starting with `/`, or `None` when `path` is not below it.
fn below<'a>(base: &str, path: &'a str) -> Option<&'a str> {
    let rest = if base == "/" {
        path
    } else {
        path.strip_prefix(base)?
    };
    (rest.starts_with('/') && rest.len() > 1).then_some(rest)
}

impl ConfigMirror {
    /// Copies `source/<rel>` to `target/<rel>` unless the mirror already holds the same bytes
    /// (then returns `false`); mirrors a vanished source as a deletion.
    fn copy(&self, rel: &str) -> Result<bool, ZkError> {
        let (from, to) = (join(&self.source, rel), join(&self.target, rel));
        let data = match zk::get(&from) {
            Ok((data, _)) => data,
            Err(ZkError::NoNode) => return self.remove(rel).map(|()| true),
            Err(e) => return Err(e),
        };
        match zk::get(&to) {
            Ok((old, _)) if old == data => return Ok(false),
            Ok(_) | Err(ZkError::NoNode) => {}
            Err(e) => return Err(e),
        }
        match zk::set(&to, &data, None) {
            Ok(_) => {}
            Err(ZkError::NoNode) => {
                if let Some(parent) = to.rfind('/').map(|i| &to[..i]).filter(|p| !p.is_empty()) {
                    zk::ensure_path(parent)?;
                }
                match zk::create(&to, &data, CreateMode::Persistent) {
                    Ok(_) => {}
                    // Created meanwhile (by the other lane's resync, say): overwrite it.
                    Err(ZkError::NodeExists) => {
                        zk::set(&to, &data, None)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        debug!("copied {from} to {to} ({} bytes)", data.len());
        Ok(true)
    }

    /// Deletes `target/<rel>` and everything below it; a missing node is fine.
    fn remove(&self, rel: &str) -> Result<(), ZkError> {
        let to = join(&self.target, rel);
        delete_tree(&to)?;
        debug!("deleted {to}");
        Ok(())
    }

    /// Copies the whole source tree and deletes the mirror entries that have no source.
    fn resync(&self, why: &str) {
        let (mut copied, mut unchanged, mut failed) = (0usize, 0usize, 0usize);
        let mut source_rels = Vec::new();
        match descendants(&self.source) {
            Ok(rels) => source_rels = rels,
            Err(ZkError::NoNode) => {}
            Err(e) => {
                warn!(
                    "resync ({why}): cannot list {}: {}",
                    self.source,
                    e.describe()
                );
                return;
            }
        }
        for rel in &source_rels {
            match self.copy(rel) {
                Ok(true) => copied += 1,
                Ok(false) => unchanged += 1,
                Err(e) => {
                    failed += 1;
                    warn!("resync ({why}): cannot copy {rel}: {}", e.describe());
                }
            }
        }
        // Mirror entries without a source; each deletion takes its subtree along, so the
        // entries below an entry already deleted are skipped.
        let mut deleted: Vec<String> = Vec::new();
        match descendants(&self.target) {
            Ok(mirror_rels) => {
                for rel in mirror_rels {
                    let gone = deleted.iter().any(|d| {
                        rel.strip_prefix(d.as_str())
                            .is_some_and(|r| r.starts_with('/'))
                    });
                    if gone || source_rels.contains(&rel) {
                        continue;
                    }
                    match zk::exists(&join(&self.source, &rel)) {
                        Ok(Some(_)) => continue,
                        Ok(None) => {}
                        Err(e) => {
                            failed += 1;
                            warn!("resync ({why}): cannot check {rel}: {}", e.describe());
                            continue;
                        }
                    }
                    match self.remove(&rel) {
                        Ok(()) => deleted.push(rel),
                        Err(e) => {
                            failed += 1;
                            warn!("resync ({why}): cannot delete {rel}: {}", e.describe());
                        }
                    }
                }
            }
            Err(ZkError::NoNode) => {}
            Err(e) => {
                failed += 1;
                warn!(
                    "resync ({why}): cannot list {}: {}",
                    self.target,
                    e.describe()
                );
            }
        }
        info!(
            "resync ({why}): {copied} copied, {unchanged} unchanged, {} deleted, {failed} failed, \
             {} -> {}",
            deleted.len(),
            self.source,
            self.target
        );
    }
}

/// The paths below `base`, relative to it (each starting with `/`), parents before children.
fn descendants(base: &str) -> Result<Vec<String>, ZkError> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let children = match zk::children(&join(base, &rel)) {
            Ok(c) => c,
            // Deleted while walking: it and its subtree are simply not there.
            Err(ZkError::NoNode) if !rel.is_empty() => continue,
            Err(e) => return Err(e),
        };
        for child in children {
            let rel_child = format!("{rel}/{child}");
            out.push(rel_child.clone());
            stack.push(rel_child);
        }
    }
    Ok(out)
}

/// Deletes `path` and everything below it, children first; a missing node is fine.
fn delete_tree(path: &str) -> Result<(), ZkError> {
    loop {
        match zk::delete(path, None) {
            Ok(()) | Err(ZkError::NoNode) => return Ok(()),
            Err(ZkError::NotEmpty) => {
                let children = match zk::children(path) {
                    Ok(c) => c,
                    Err(ZkError::NoNode) => return Ok(()),
                    Err(e) => return Err(e),
                };
                for child in children {
                    let sub = if path == "/" {
                        format!("/{child}")
                    } else {
                        format!("{path}/{child}")
                    };
                    delete_tree(&sub)?;
                }
            }
            Err(e) => return Err(e),
        }
    }
}

impl Plugin for ConfigMirror {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        let source = root(config::get_or(config, "source", "/config"));
        let target = root(config::get_or(config, "target", "/mirror"));
        for (key, path) in [("source", &source), ("target", &target)] {
            if !path.starts_with('/') {
                return Err(format!("{key} must be an absolute path, not {path:?}"));
            }
        }
        if source == target
            || below(&source, &target).is_some()
            || below(&target, &source).is_some()
        {
            return Err(format!(
                "source {source:?} and target {target:?} must not contain one another"
            ));
        }
        Ok(ConfigMirror { source, target })
    }

    fn on_session(&mut self, ev: SessionEvent) {
        if ev.state == SessionState::Connected {
            self.resync("connected");
        }
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        if ev.event_type == EventType::Resync {
            self.resync("resync");
            return;
        }
        let Some(rel) = below(&self.source, &ev.path) else {
            return;
        };
        let result = match ev.event_type {
            EventType::NodeCreated | EventType::NodeDataChanged => self.copy(rel).map(drop),
            EventType::NodeDeleted => self.remove(rel),
            _ => return,
        };
        if let Err(e) = result {
            warn!(
                "{} {}: cannot mirror it: {}",
                ev.event_type,
                ev.path,
                e.describe()
            );
        }
    }
}

wazoo_guest::export_plugin!(ConfigMirror);
