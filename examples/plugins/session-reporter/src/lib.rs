//! `session-reporter`: publishes the host session's state in an ephemeral znode.
//!
//! Configuration: `name` (default `reporter`) and `node` (default `/reporters/<name>`).
//!
//! On every session event it writes the state's name (`connected`, `connected-read-only`,
//! `suspended`, `lost`, `closed`) into `node`. When connected, it makes sure `node` is an
//! ephemeral node of the current session: it creates the parent path, creates the node
//! ephemeral, or sets it when it exists (replacing an ephemeral left by an older session). In
//! the other states the write usually cannot reach the server (it waits for the reconnect, or
//! fails); the failure is logged at debug. Every state is logged at info:
//! `session suspended (session id 0x..., seq 4)`.

use wazoo_guest::{
    config, debug, info, warn, zk, CreateMode, Plugin, SessionEvent, SessionState, ZkError,
};

/// The plugin: where it reports.
struct SessionReporter {
    node: String,
}

impl SessionReporter {
    /// Makes `node` an ephemeral node of session `session_id` holding `text`.
    fn publish(&self, session_id: i64, text: &str) -> Result<&'static str, ZkError> {
        if let Some(parent) = self.node.rfind('/').map(|i| &self.node[..i]) {
            if !parent.is_empty() {
                zk::ensure_path(parent)?;
            }
        }
        loop {
            match zk::create(&self.node, text.as_bytes(), CreateMode::Ephemeral) {
                Ok(_) => return Ok("created"),
                Err(ZkError::NodeExists) => {}
                Err(e) => return Err(e),
            }
            match zk::exists(&self.node)? {
                // Gone meanwhile: create it again.
                None => continue,
                // An ephemeral of an older session that the server has not removed yet.
                Some(stat) if stat.ephemeral_owner != 0 && stat.ephemeral_owner != session_id => {
                    match zk::delete(&self.node, Some(stat.version)) {
                        Ok(()) | Err(ZkError::NoNode) | Err(ZkError::BadVersion) => continue,
                        Err(e) => return Err(e),
                    }
                }
                Some(stat) => {
                    return match zk::set(&self.node, text.as_bytes(), Some(stat.version)) {
                        Ok(_) => Ok("set"),
                        Err(ZkError::NoNode) | Err(ZkError::BadVersion) => continue,
                        Err(e) => Err(e),
                    }
                }
            }
        }
    }
}

impl Plugin for SessionReporter {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        let name = config::get_or(config, "name", "reporter");
        let node = match config::get(config, "node") {
            Some(node) => node.trim_end_matches('/').to_string(),
            None => format!("/reporters/{name}"),
        };
        if !node.starts_with('/') || node.len() < 2 {
            return Err(format!(
                "node must be an absolute path below /, not {node:?}"
            ));
        }
        Ok(SessionReporter { node })
    }

    fn on_session(&mut self, ev: SessionEvent) {
        let state = ev.state.as_str();
        info!(
            "session {state} (session id {:#x}, seq {})",
            ev.session_id, ev.seq
        );
        match ev.state {
            SessionState::Connected | SessionState::ConnectedReadOnly => {
                match self.publish(ev.session_id, state) {
                    Ok(how) => info!("{how} {} = {state}", self.node),
                    Err(e) => warn!("cannot publish {state} in {}: {}", self.node, e.describe()),
                }
            }
            _ => match zk::set(&self.node, state.as_bytes(), None) {
                Ok(_) => info!("set {} = {state}", self.node),
                Err(e) => debug!("cannot write {state} to {}: {}", self.node, e.describe()),
            },
        }
    }
}

wazoo_guest::export_plugin!(SessionReporter);
