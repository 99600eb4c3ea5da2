//! `wazoo:plugin/zookeeper`: ZooKeeper through the plugin's allow-lists and payload cap, every
//! check made before a request is built. A wait on ZooKeeper is never charged to the guest's
//! compute budget ([`Meter::uncharged`](crate::plugin::meter::Meter::uncharged)).

use std::future::IntoFuture;

use super::ImportCtx;
use crate::client::Client;
use crate::error::Error;
use crate::plugin::bindings::wazoo::plugin::{types as wit, zookeeper};
use crate::plugin::convert::{mode, op, op_result, stat, wit_state, zk_error};
use crate::plugin::watches::{add_persistent, watch_once, Armed};
use crate::proto::multi::Op;
use crate::proto::records::AddWatchMode;

type Res<T> = wasmtime::Result<Result<T, wit::ZkError>>;

/// Returns the refusal to the guest (an `Ok` to wasmtime: the guest goes on).
macro_rules! check {
    ($e:expr) => {
        if let Err(e) = $e {
            return Ok(Err(e));
        }
    };
}

impl<'a> ImportCtx<'a> {
    /// Awaits the ZooKeeper call `op` makes on the plugin's client, never charged to the
    /// guest's compute budget.
    async fn zk<F: IntoFuture>(&mut self, op: impl FnOnce(&'a Client) -> F) -> F::Output {
        let client = self.plugin.client();
        self.meter.uncharged(|| op(client)).await
    }

    fn deny(&self, what: &str, path: &str) -> wit::ZkError {
        tracing::warn!(plugin = %self.plugin.name(), %path, "denied: {what} outside the plugin's allow-list");
        wit::ZkError::Denied(format!("{what} {path} is outside this plugin's allow-list"))
    }

    fn read_ok(&self, path: &str) -> Result<(), wit::ZkError> {
        if self.plugin.policy().may_read(path) {
            Ok(())
        } else {
            Err(self.deny("reading", path))
        }
    }

    fn write_ok(&self, path: &str, data_len: usize) -> Result<(), wit::ZkError> {
        let policy = self.plugin.policy();
        if !policy.may_write(path) {
            return Err(self.deny("writing", path));
        }
        if data_len > policy.max_payload {
            tracing::warn!(plugin = %self.plugin.name(), %path, data_len, "denied: payload over the plugin's cap");
            return Err(wit::ZkError::TooLarge(format!(
                "{data_len} bytes exceed this plugin's payload cap of {} bytes",
                policy.max_payload
            )));
        }
        Ok(())
    }
}

impl zookeeper::Host for ImportCtx<'_> {
    async fn get(&mut self, path: String) -> Res<(Vec<u8>, wit::Stat)> {
        check!(self.read_ok(&path));
        Ok(self
            .zk(|c| c.get_data(&path))
            .await
            .map(|(d, s)| (d, stat(s)))
            .map_err(zk_error))
    }

    async fn exists(&mut self, path: String) -> Res<Option<wit::Stat>> {
        check!(self.read_ok(&path));
        Ok(self
            .zk(|c| c.exists(&path))
            .await
            .map(|s| s.map(stat))
            .map_err(zk_error))
    }

    async fn children(&mut self, path: String) -> Res<Vec<String>> {
        check!(self.read_ok(&path));
        Ok(self
            .zk(|c| c.get_children(&path))
            .await
            .map(|(c, _)| c)
            .map_err(zk_error))
    }

    async fn create(&mut self, path: String, data: Vec<u8>, m: wit::CreateMode) -> Res<String> {
        check!(self.write_ok(&path, data.len()));
        Ok(self
            .zk(|c| c.create(&path, &data, mode(m)))
            .await
            .map_err(zk_error))
    }

    async fn set(&mut self, path: String, data: Vec<u8>, version: Option<i32>) -> Res<wit::Stat> {
        check!(self.write_ok(&path, data.len()));
        Ok(self
            .zk(|c| c.set_data(&path, &data, version))
            .await
            .map(stat)
            .map_err(zk_error))
    }

    async fn delete(&mut self, path: String, version: Option<i32>) -> Res<()> {
        check!(self.write_ok(&path, 0));
        Ok(self
            .zk(|c| c.delete(&path, version))
            .await
            .map_err(zk_error))
    }

    async fn ensure_path(&mut self, path: String) -> Res<()> {
        check!(self.write_ok(&path, 0));
        Ok(self.zk(|c| c.ensure_path(&path)).await.map_err(zk_error))
    }

    async fn transaction(&mut self, ops: Vec<wit::Op>) -> Res<Vec<wit::OpResult>> {
        let mut out = Vec::with_capacity(ops.len());
        for o in ops {
            let op = op(o);
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
        Ok(match self.zk(|c| c.multi(&out)).await {
            Ok(results) => Ok(results.into_iter().map(op_result).collect()),
            Err(Error::MultiFailed { error, .. }) => Err(zk_error(*error)),
            Err(e) => Err(zk_error(e)),
        })
    }

    async fn sync(&mut self, path: String) -> Res<()> {
        check!(self.read_ok(&path));
        Ok(self.zk(|c| c.sync(&path)).await.map_err(zk_error))
    }

    async fn add_watch(&mut self, path: String, kind: wit::WatchKind) -> Res<()> {
        check!(self.read_ok(&path));
        let s = self.plugin.clone();
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
        Ok(wit_state(self.plugin.client().state()))
    }

    async fn get_async(&mut self, path: String, context: Vec<u8>) -> Res<()> {
        check!(self.read_ok(&path));
        let s = self.plugin.clone();
        let r = self.plugin.client().get_data(&path).rawlink(move |r, _| {
            s.complete(
                context,
                wit::Completion::Get(r.map(|(d, st)| (d, stat(st))).map_err(zk_error)),
            )
        });
        Ok(r.map_err(zk_error))
    }

    async fn exists_async(&mut self, path: String, context: Vec<u8>) -> Res<()> {
        check!(self.read_ok(&path));
        let s = self.plugin.clone();
        let r = self.plugin.client().exists(&path).rawlink(move |r, _| {
            s.complete(
                context,
                wit::Completion::Exists(r.map(|o| o.map(stat)).map_err(zk_error)),
            )
        });
        Ok(r.map_err(zk_error))
    }

    async fn children_async(&mut self, path: String, context: Vec<u8>) -> Res<()> {
        check!(self.read_ok(&path));
        let s = self.plugin.clone();
        let r = self
            .plugin
            .client()
            .get_children(&path)
            .rawlink(move |r, _| {
                s.complete(
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
        let s = self.plugin.clone();
        let r = self
            .plugin
            .client()
            .create(&path, &data, mode(m))
            .rawlink(move |r, _| s.complete(context, wit::Completion::Create(r.map_err(zk_error))));
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
        let s = self.plugin.clone();
        let r = self
            .plugin
            .client()
            .set_data(&path, &data, version)
            .rawlink(move |r, _| {
                s.complete(context, wit::Completion::Set(r.map(stat).map_err(zk_error)))
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
        let s = self.plugin.clone();
        let r = self
            .plugin
            .client()
            .delete(&path, version)
            .rawlink(move |r, _| s.complete(context, wit::Completion::Delete(r.map_err(zk_error))));
        Ok(r.map_err(zk_error))
    }
}
