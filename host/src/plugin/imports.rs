//! The host side of the guest's imports: ZooKeeper through the plugin's allow-lists, and the
//! log. Every check happens here, before anything reaches the session.

use std::sync::Arc;

use super::bindings::wazoo::plugin::{lane, log, types as wit, zookeeper};
use super::runtime::{completion_send, GuestEvent, GuestState, Shared};
use super::watches::{add_persistent, watch_once, wit_state, Armed};
use crate::dispatch::LaneKind;
use crate::error::Error;
use crate::proto::multi::{Op, OpResult};
use crate::proto::records::{AddWatchMode, CreateMode, Stat};

type Res<T> = wasmtime::Result<Result<T, wit::ZkError>>;

fn stat(s: Stat) -> wit::Stat {
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

fn zk_error(e: Error) -> wit::ZkError {
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

fn mode(m: wit::CreateMode) -> CreateMode {
    match m {
        wit::CreateMode::Persistent => CreateMode::Persistent,
        wit::CreateMode::Ephemeral => CreateMode::Ephemeral,
        wit::CreateMode::PersistentSequential => CreateMode::PersistentSequential,
        wit::CreateMode::EphemeralSequential => CreateMode::EphemeralSequential,
        wit::CreateMode::Container => CreateMode::Container,
        wit::CreateMode::PersistentWithTtl(t) => CreateMode::PersistentWithTtl(t),
    }
}

impl GuestState {
    fn deny(&self, what: &str, path: &str) -> wit::ZkError {
        tracing::warn!(plugin = %self.shared.name, %path, "denied: {what} outside the plugin's allow-list");
        wit::ZkError::Denied(format!("{what} {path} is outside this plugin's allow-list"))
    }

    fn read_ok(&self, path: &str) -> Result<(), wit::ZkError> {
        if self.shared.policy.may_read(path) {
            Ok(())
        } else {
            Err(self.deny("reading", path))
        }
    }

    fn write_ok(&self, path: &str, data_len: usize) -> Result<(), wit::ZkError> {
        if !self.shared.policy.may_write(path) {
            return Err(self.deny("writing", path));
        }
        if data_len > self.shared.policy.max_payload {
            tracing::warn!(plugin = %self.shared.name, %path, data_len, "denied: payload over the plugin's cap");
            return Err(wit::ZkError::TooLarge(format!(
                "{data_len} bytes exceed this plugin's payload cap of {} bytes",
                self.shared.policy.max_payload
            )));
        }
        Ok(())
    }

    fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

/// Awaits a ZooKeeper call from an import: the guest's running segment is charged up to here,
/// and a new one begins when the reply is back, so the wait is never charged.
macro_rules! timed {
    ($self:ident, $fut:expr) => {{
        $self.close_segment();
        let r = $fut.await;
        $self.resume_after_wait();
        r
    }};
}

macro_rules! check {
    ($e:expr) => {
        if let Err(e) = $e {
            return Ok(Err(e));
        }
    };
}

impl wit::Host for GuestState {}

impl lane::Host for GuestState {
    fn next_watch(&mut self) -> wasmtime::Result<Option<wit::WatchEvent>> {
        Ok(match self.take_next(LaneKind::Watch) {
            Some(GuestEvent::Watch(e)) => Some(e),
            _ => None,
        })
    }

    fn next_completion(&mut self) -> wasmtime::Result<Option<(Vec<u8>, wit::Completion)>> {
        Ok(match self.take_next(LaneKind::Completion) {
            Some(GuestEvent::Completion(c)) => Some(*c),
            _ => None,
        })
    }
}

impl log::Host for GuestState {
    async fn log(&mut self, level: wit::LogLevel, message: String) -> wasmtime::Result<()> {
        let name = &self.shared.name;
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

impl zookeeper::Host for GuestState {
    async fn get(&mut self, path: String) -> Res<(Vec<u8>, wit::Stat)> {
        check!(self.read_ok(&path));
        Ok(timed!(self, self.shared.client.get_data(&path))
            .map(|(d, s)| (d, stat(s)))
            .map_err(zk_error))
    }

    async fn exists(&mut self, path: String) -> Res<Option<wit::Stat>> {
        check!(self.read_ok(&path));
        Ok(timed!(self, self.shared.client.exists(&path))
            .map(|s| s.map(stat))
            .map_err(zk_error))
    }

    async fn children(&mut self, path: String) -> Res<Vec<String>> {
        check!(self.read_ok(&path));
        Ok(timed!(self, self.shared.client.get_children(&path))
            .map(|(c, _)| c)
            .map_err(zk_error))
    }

    async fn create(&mut self, path: String, data: Vec<u8>, m: wit::CreateMode) -> Res<String> {
        check!(self.write_ok(&path, data.len()));
        Ok(timed!(self, self.shared.client.create(&path, &data, mode(m))).map_err(zk_error))
    }

    async fn set(&mut self, path: String, data: Vec<u8>, version: Option<i32>) -> Res<wit::Stat> {
        check!(self.write_ok(&path, data.len()));
        Ok(
            timed!(self, self.shared.client.set_data(&path, &data, version))
                .map(stat)
                .map_err(zk_error),
        )
    }

    async fn delete(&mut self, path: String, version: Option<i32>) -> Res<()> {
        check!(self.write_ok(&path, 0));
        Ok(timed!(self, self.shared.client.delete(&path, version)).map_err(zk_error))
    }

    async fn ensure_path(&mut self, path: String) -> Res<()> {
        check!(self.write_ok(&path, 0));
        Ok(timed!(self, self.shared.client.ensure_path(&path)).map_err(zk_error))
    }

    async fn transaction(&mut self, ops: Vec<wit::Op>) -> Res<Vec<wit::OpResult>> {
        let mut out = Vec::with_capacity(ops.len());
        for o in ops {
            let op = match o {
                wit::Op::Create((p, d, m)) => Op::create(p, d, mode(m)),
                wit::Op::Delete((p, v)) => Op::delete(p, v.unwrap_or(-1)),
                wit::Op::SetData((p, d, v)) => Op::set_data(p, d, v.unwrap_or(-1)),
                wit::Op::Check((p, v)) => Op::check(p, v),
            };
            let len = match &op {
                Op::Create { data, .. } | Op::SetData { data, .. } => data.len(),
                _ => 0,
            };
            if matches!(op, Op::Check { .. }) {
                check!(self.read_ok(op.path()));
            } else {
                check!(self.write_ok(op.path(), len));
            }
            out.push(op);
        }
        Ok(match timed!(self, self.shared.client.multi(&out)) {
            Ok(results) => Ok(results
                .into_iter()
                .map(|r| match r {
                    OpResult::Create { path, .. } => wit::OpResult::Create(path),
                    OpResult::Delete => wit::OpResult::Delete,
                    OpResult::SetData { stat: s } => wit::OpResult::SetData(stat(s)),
                    _ => wit::OpResult::Check,
                })
                .collect()),
            Err(Error::MultiFailed { error, .. }) => Err(zk_error(*error)),
            Err(e) => Err(zk_error(e)),
        })
    }

    async fn sync(&mut self, path: String) -> Res<()> {
        check!(self.read_ok(&path));
        Ok(timed!(self, self.shared.client.sync(&path)).map_err(zk_error))
    }

    async fn add_watch(&mut self, path: String, kind: wit::WatchKind) -> Res<()> {
        check!(self.read_ok(&path));
        let s = self.shared();
        let r = match kind {
            wit::WatchKind::Data => watch_once(&s, &path, Armed::Data).await,
            wit::WatchKind::Exists => watch_once(&s, &path, Armed::Exists).await,
            wit::WatchKind::Children => watch_once(&s, &path, Armed::Children).await,
            wit::WatchKind::Persistent => add_persistent(&s, &path, AddWatchMode::Persistent).await,
            wit::WatchKind::PersistentRecursive => {
                add_persistent(&s, &path, AddWatchMode::PersistentRecursive).await
            }
        };
        Ok(r.map_err(zk_error))
    }

    async fn session_state(&mut self) -> wasmtime::Result<wit::SessionState> {
        Ok(wit_state(self.shared.client.state()))
    }

    async fn get_async(&mut self, path: String, context: Vec<u8>) -> Res<()> {
        check!(self.read_ok(&path));
        let s = self.shared();
        let r = self.shared.client.get_data(&path).rawlink(move |r, _| {
            completion_send(
                &s,
                context,
                wit::Completion::Get(r.map(|(d, st)| (d, stat(st))).map_err(zk_error)),
            )
        });
        Ok(r.map_err(zk_error))
    }

    async fn exists_async(&mut self, path: String, context: Vec<u8>) -> Res<()> {
        check!(self.read_ok(&path));
        let s = self.shared();
        let r = self.shared.client.exists(&path).rawlink(move |r, _| {
            completion_send(
                &s,
                context,
                wit::Completion::Exists(r.map(|o| o.map(stat)).map_err(zk_error)),
            )
        });
        Ok(r.map_err(zk_error))
    }

    async fn children_async(&mut self, path: String, context: Vec<u8>) -> Res<()> {
        check!(self.read_ok(&path));
        let s = self.shared();
        let r = self.shared.client.get_children(&path).rawlink(move |r, _| {
            completion_send(
                &s,
                context,
                wit::Completion::Children(r.map(|(c, _)| c).map_err(zk_error)),
            )
        });
        Ok(r.map_err(zk_error))
    }

    async fn create_async(
        &mut self,
        path: String,
        data: Vec<u8>,
        m: wit::CreateMode,
        context: Vec<u8>,
    ) -> Res<()> {
        check!(self.write_ok(&path, data.len()));
        let s = self.shared();
        let r = self
            .shared
            .client
            .create(&path, &data, mode(m))
            .rawlink(move |r, _| {
                completion_send(&s, context, wit::Completion::Create(r.map_err(zk_error)))
            });
        Ok(r.map_err(zk_error))
    }

    async fn set_async(
        &mut self,
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
        context: Vec<u8>,
    ) -> Res<()> {
        check!(self.write_ok(&path, data.len()));
        let s = self.shared();
        let r = self
            .shared
            .client
            .set_data(&path, &data, version)
            .rawlink(move |r, _| {
                completion_send(
                    &s,
                    context,
                    wit::Completion::Set(r.map(stat).map_err(zk_error)),
                )
            });
        Ok(r.map_err(zk_error))
    }

    async fn delete_async(
        &mut self,
        path: String,
        version: Option<i32>,
        context: Vec<u8>,
    ) -> Res<()> {
        check!(self.write_ok(&path, 0));
        let s = self.shared();
        let r = self
            .shared
            .client
            .delete(&path, version)
            .rawlink(move |r, _| {
                completion_send(&s, context, wit::Completion::Delete(r.map_err(zk_error)))
            });
        Ok(r.map_err(zk_error))
    }
}
