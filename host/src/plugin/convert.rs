//! Conversions between the guest's types (`wazoo:plugin/types`) and the library's: every one
//! in one place, for the imports, the bindings and the events that reach a guest.

use super::bindings::wazoo::plugin::types as wit;
use crate::error::Error;
use crate::proto::multi::{Op, OpResult};
use crate::proto::records::{CreateMode, EventType, Stat, WatchedEvent};
use crate::session::SessionState;

pub(crate) fn stat(s: Stat) -> wit::Stat {
    wit::Stat {
        czxid: s.czxid,
        mzxid: s.mzxid,
        ctime: s.ctime,
        mtime: s.mtime,
        version: s.version,
        cversion: s.cversion,
        aversion: s.aversion,
        ephemeral_owner: s.ephemeral_owner,
        data_length: s.data_length,
        num_children: s.num_children,
        pzxid: s.pzxid,
    }
}

pub(crate) fn zk_error(e: Error) -> wit::ZkError {
    match e {
        Error::NoNode => wit::ZkError::NoNode,
        Error::NodeExists => wit::ZkError::NodeExists,
        Error::BadVersion => wit::ZkError::BadVersion,
        Error::NotEmpty => wit::ZkError::NotEmpty,
        Error::NoAuth => wit::ZkError::NoAuth,
        Error::NoChildrenForEphemerals => wit::ZkError::NoChildrenForEphemerals,
        Error::ConnectionLoss => wit::ZkError::ConnectionLoss,
        Error::SessionExpired => wit::ZkError::SessionExpired,
        Error::NotReadOnly => wit::ZkError::NotReadOnly,
        Error::InvalidPath { path, reason } => {
            wit::ZkError::InvalidPath(format!("{path:?}: {reason}"))
        }
        other => wit::ZkError::Other(other.to_string()),
    }
}

pub(crate) fn mode(m: wit::CreateMode) -> CreateMode {
    match m {
        wit::CreateMode::Persistent => CreateMode::Persistent,
        wit::CreateMode::Ephemeral => CreateMode::Ephemeral,
        wit::CreateMode::PersistentSequential => CreateMode::PersistentSequential,
        wit::CreateMode::EphemeralSequential => CreateMode::EphemeralSequential,
        wit::CreateMode::Container => CreateMode::Container,
        wit::CreateMode::PersistentWithTtl(t) => CreateMode::PersistentWithTtl(t),
    }
}

/// A transaction's operation (a missing version: any).
pub(crate) fn op(o: wit::Op) -> Op {
    match o {
        wit::Op::Create((p, d, m)) => Op::create(p, d, mode(m)),
        wit::Op::Delete((p, v)) => Op::delete(p, v.unwrap_or(-1)),
        wit::Op::SetData((p, d, v)) => Op::set_data(p, d, v.unwrap_or(-1)),
        wit::Op::Check((p, v)) => Op::check(p, v),
    }
}

pub(crate) fn op_result(r: OpResult) -> wit::OpResult {
    match r {
        OpResult::Create { path, .. } => wit::OpResult::Create(path),
        OpResult::Delete => wit::OpResult::Delete,
        OpResult::SetData { stat: s } => wit::OpResult::SetData(stat(s)),
        _ => wit::OpResult::Check,
    }
}

pub(crate) fn wit_state(s: SessionState) -> wit::SessionState {
    match s {
        SessionState::Connected => wit::SessionState::Connected,
        SessionState::ConnectedReadOnly => wit::SessionState::ConnectedReadOnly,
        SessionState::Suspended => wit::SessionState::Suspended,
        SessionState::Lost => wit::SessionState::Lost,
        SessionState::Closed => wit::SessionState::Closed,
    }
}

pub(crate) fn wit_event(ev: &WatchedEvent, seq: u64) -> wit::WatchEvent {
    wit::WatchEvent {
        event_type: match ev.event_type {
            EventType::NodeCreated => wit::EventType::NodeCreated,
            EventType::NodeDeleted => wit::EventType::NodeDeleted,
            EventType::NodeDataChanged => wit::EventType::NodeDataChanged,
            EventType::NodeChildrenChanged => wit::EventType::NodeChildrenChanged,
            EventType::DataWatchRemoved => wit::EventType::DataWatchRemoved,
            EventType::ChildWatchRemoved => wit::EventType::ChildWatchRemoved,
            EventType::PersistentWatchRemoved => wit::EventType::PersistentWatchRemoved,
            EventType::Resync => wit::EventType::Resync,
            _ => wit::EventType::None,
        },
        path: ev.path.clone(),
        seq,
    }
}
