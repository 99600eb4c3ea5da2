//! Names and `Display` for the generated WIT enums (their WIT case names, e.g. `node-created`),
//! and [`ZkError`]'s parts.

use core::fmt;

use crate::{EventType, LogLevel, SessionState, WatchKind, ZkError};

impl SessionState {
    /// The state's WIT name: `connected`, `connected-read-only`, `suspended`, `lost` or `closed`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Connected => "connected",
            SessionState::ConnectedReadOnly => "connected-read-only",
            SessionState::Suspended => "suspended",
            SessionState::Lost => "lost",
            SessionState::Closed => "closed",
        }
    }
}

impl EventType {
    /// The event type's WIT name, e.g. `node-created`, `node-data-changed` or `resync`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::None => "none",
            EventType::NodeCreated => "node-created",
            EventType::NodeDeleted => "node-deleted",
            EventType::NodeDataChanged => "node-data-changed",
            EventType::NodeChildrenChanged => "node-children-changed",
            EventType::DataWatchRemoved => "data-watch-removed",
            EventType::ChildWatchRemoved => "child-watch-removed",
            EventType::PersistentWatchRemoved => "persistent-watch-removed",
            EventType::Resync => "resync",
        }
    }
}

impl WatchKind {
    /// The watch kind's WIT name, e.g. `data` or `persistent-recursive`.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchKind::Data => "data",
            WatchKind::Exists => "exists",
            WatchKind::Children => "children",
            WatchKind::Persistent => "persistent",
            WatchKind::PersistentRecursive => "persistent-recursive",
        }
    }
}

impl LogLevel {
    /// The level's WIT name: `trace`, `debug`, `info`, `warn` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

impl ZkError {
    /// The error's WIT case name, e.g. `no-node`, `bad-version` or `denied`.
    pub fn kind(&self) -> &'static str {
        match self {
            ZkError::NoNode => "no-node",
            ZkError::NodeExists => "node-exists",
            ZkError::BadVersion => "bad-version",
            ZkError::NotEmpty => "not-empty",
            ZkError::NoAuth => "no-auth",
            ZkError::NoChildrenForEphemerals => "no-children-for-ephemerals",
            ZkError::ConnectionLoss => "connection-loss",
            ZkError::SessionExpired => "session-expired",
            ZkError::NotReadOnly => "not-read-only",
            ZkError::Denied(_) => "denied",
            ZkError::InvalidPath(_) => "invalid-path",
            ZkError::TooLarge(_) => "too-large",
            ZkError::Other(_) => "other",
        }
    }

    /// The host's explanation, for the cases that carry one (`denied`, `invalid-path`,
    /// `too-large`, `other`).
    pub fn detail(&self) -> Option<&str> {
        match self {
            ZkError::Denied(s)
            | ZkError::InvalidPath(s)
            | ZkError::TooLarge(s)
            | ZkError::Other(s) => Some(s),
            _ => None,
        }
    }

    /// `kind`, then `: detail` when there is one, e.g. `denied: /etc is not writable`.
    pub fn describe(&self) -> String {
        match self.detail() {
            Some(d) => format!("{}: {d}", self.kind()),
            None => self.kind().to_string(),
        }
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

display_as_str!(SessionState, EventType, WatchKind, LogLevel);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_wit_names() {
        assert_eq!(
            SessionState::ConnectedReadOnly.to_string(),
            "connected-read-only"
        );
        assert_eq!(EventType::NodeDataChanged.to_string(), "node-data-changed");
        assert_eq!(
            WatchKind::PersistentRecursive.to_string(),
            "persistent-recursive"
        );
        assert_eq!(LogLevel::Warn.to_string(), "warn");
        assert_eq!(ZkError::NoNode.describe(), "no-node");
        assert_eq!(ZkError::Denied("nope".into()).describe(), "denied: nope");
    }
}
