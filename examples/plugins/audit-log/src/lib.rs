//! `audit-log`: logs every change under the watched path with the node's mzxid and version.
//!
//! Bind it to a persistent recursive watch. ZooKeeper 3.8's notifications carry no zxid, so for
//! each event the plugin reads the node's stat (`zk::exists`) and logs, at info:
//!
//! * `node-created /a/b mzxid=0x1f version=0 seq=7` (and likewise for `node-data-changed`, and
//!   `node-children-changed` which adds `cversion` and `pzxid`);
//! * `node-deleted /a/b seq=8` (a deleted node has no stat left);
//! * `node-data-changed /a/b gone before it could be read seq=9` when the node vanished meanwhile;
//! * `resync /a seq=10: changes made while disconnected were not reported`.
//!
//! Failed reads are logged at warn. No configuration.

use wazoo_guest::{info, warn, zk, EventType, Plugin, SessionEvent, WatchEvent};

/// The plugin; it keeps no state.
struct AuditLog;

impl Plugin for AuditLog {
    fn init(_config: &[(String, String)]) -> Result<Self, String> {
        Ok(AuditLog)
    }

    fn on_session(&mut self, ev: SessionEvent) {
        info!(
            "session {} (session id {:#x}, seq {})",
            ev.state, ev.session_id, ev.seq
        );
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        let (kind, path, seq) = (ev.event_type, &ev.path, ev.seq);
        match kind {
            EventType::NodeDeleted => info!("{kind} {path} seq={seq}"),
            EventType::Resync => {
                info!("{kind} {path} seq={seq}: changes made while disconnected were not reported")
            }
            _ => match zk::exists(path) {
                Ok(Some(stat)) if kind == EventType::NodeChildrenChanged => info!(
                    "{kind} {path} mzxid={:#x} version={} cversion={} pzxid={:#x} seq={seq}",
                    stat.mzxid, stat.version, stat.cversion, stat.pzxid
                ),
                Ok(Some(stat)) => info!(
                    "{kind} {path} mzxid={:#x} version={} seq={seq}",
                    stat.mzxid, stat.version
                ),
                Ok(None) => info!("{kind} {path} gone before it could be read seq={seq}"),
                Err(e) => warn!(
                    "{kind} {path} seq={seq}: cannot read its stat: {}",
                    e.describe()
                ),
            },
        }
    }
}

wazoo_guest::export_plugin!(AuditLog);
