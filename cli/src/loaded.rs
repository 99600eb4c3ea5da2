//! The plugins of `wazoo run`, each loaded from its component file: loading and binding,
//! reloading when asked or when the file changes (keeping the current code when the new one
//! fails), and the counters the metrics endpoint reads.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use anyhow::{anyhow, Context, Result};
use wazoo::{Client, LaneKind, LaneMetrics, Plugin, PluginHost};

use crate::config::PluginSettings;

/// A loaded plugin, its file, and the file's last seen modification time.
pub struct Loaded {
    /// The plugin's name.
    pub name: String,
    /// Its component file.
    pub path: PathBuf,
    /// The plugin; taken (so unloaded) at shutdown.
    pub plugin: RwLock<Option<Plugin>>,
    /// The component file's modification time when last (re)loaded.
    mtime: Mutex<Option<SystemTime>>,
}

impl Loaded {
    /// Its counters (zero once unloaded).
    pub fn stats(&self) -> wazoo::PluginStats {
        self.plugin
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(Plugin::stats)
            .unwrap_or_default()
    }

    /// Its events on one of its guest lanes (zero once unloaded).
    pub fn lane_metrics(&self, lane: LaneKind) -> LaneMetrics {
        self.plugin
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|p| p.lane_metrics(lane))
            .unwrap_or_default()
    }

    /// Reloads the plugin from its file in the background (SIGHUP), noting the file's
    /// modification time.
    pub fn reload(self: &Arc<Self>, why: &'static str) {
        *self.mtime.lock().unwrap_or_else(|e| e.into_inner()) = mtime(&self.path);
        reload(self.clone(), why);
    }

    /// Reloads the plugin in the background if its file's modification time changed since it
    /// was last (re)loaded.
    pub fn reload_if_changed(self: &Arc<Self>) {
        let now = mtime(&self.path);
        let mut seen = self.mtime.lock().unwrap_or_else(|e| e.into_inner());
        if now.is_some() && now != *seen {
            *seen = now;
            drop(seen);
            reload(self.clone(), "its file changed");
        }
    }
}

/// Loads one plugin and binds it.
pub async fn load(host: &PluginHost, client: &Client, p: &PluginSettings) -> Result<Loaded> {
    let seen = mtime(&p.component);
    let bytes = std::fs::read(&p.component).with_context(|| {
        format!(
            "{} ({}): cannot read {}",
            p.key,
            p.name,
            p.component.display()
        )
    })?;
    let plugin = {
        let (host, client, name, policy, config) = (
            host.clone(),
            client.clone(),
            p.name.clone(),
            p.policy.clone(),
            p.config.clone(),
        );
        tokio::task::spawn_blocking(move || host.load(&client, &name, &bytes, policy, config))
            .await
            .map_err(|e| anyhow!("loading {}: {e}", p.name))?
            .with_context(|| {
                format!(
                    "{} ({}): cannot load {}",
                    p.key,
                    p.name,
                    p.component.display()
                )
            })?
    };
    for (key, b) in &p.bindings {
        plugin
            .bind(b.clone())
            .await
            .with_context(|| format!("{key}: cannot bind {b:?}"))?;
        tracing::debug!(plugin = %p.name, binding = ?b, "bound");
    }
    Ok(Loaded {
        name: p.name.clone(),
        path: p.component.clone(),
        plugin: RwLock::new(Some(plugin)),
        mtime: Mutex::new(seen),
    })
}

/// Reloads a plugin from its file in the background; on failure it keeps its current code.
fn reload(p: Arc<Loaded>, why: &'static str) {
    tokio::spawn(async move {
        let name = p.name.clone();
        let r = tokio::task::spawn_blocking(move || -> Result<()> {
            let bytes = std::fs::read(&p.path)
                .with_context(|| format!("cannot read {}", p.path.display()))?;
            tracing::info!(plugin = %p.name, file = %p.path.display(), "reloading ({why})");
            let guard = p.plugin.read().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some(plugin) => plugin.reload(&bytes).map_err(Into::into),
                None => Ok(()),
            }
        })
        .await;
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(
                plugin = %name,
                "reload failed, the plugin keeps its previous code: {e:#}"
            ),
            Err(e) => tracing::error!(plugin = %name, "reload failed: {e}"),
        }
    });
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
