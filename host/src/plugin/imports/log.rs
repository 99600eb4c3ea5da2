//! `wazoo:plugin/log`: a guest's log lines, under its name, in the host's log.

use super::ImportCtx;
use crate::plugin::bindings::wazoo::plugin::{log, types as wit};

impl log::Host for ImportCtx<'_> {
    async fn log(&mut self, level: wit::LogLevel, message: String) -> wasmtime::Result<()> {
        let name = self.plugin.name();
        let message: String = message.chars().take(8192).collect();
        match level {
            wit::LogLevel::Trace => tracing::trace!(plugin = %name, "{message}"),
            wit::LogLevel::Debug => tracing::debug!(plugin = %name, "{message}"),
            wit::LogLevel::Info => tracing::info!(plugin = %name, "{message}"),
            wit::LogLevel::Warn => tracing::warn!(plugin = %name, "{message}"),
            wit::LogLevel::Error => tracing::error!(plugin = %name, "{message}"),
        }
        Ok(())
    }
}
