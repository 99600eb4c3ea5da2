//! The single-request operations: create and delete, reads (with their one-shot watches) and
//! writes, multi and multiRead.

use bytes::{BufMut, BytesMut};
use tokio::sync::oneshot;

use crate::dispatch::CallbackInfo;
use crate::error::{Error, Result};
use crate::proto::multi::{self, Op, OpResult, ReadOp, ReadResult};
use crate::proto::ops::{self, op, OpCode};
use crate::proto::records::{Acl, CreateMode, Stat, WatchedEvent};
use crate::session::watches::{WatchKind, WatchSink};
use crate::session::Effect;

use super::decode::{
    dec_acl, dec_children, dec_data, dec_exists, dec_i32, dec_multi, dec_multi_read, dec_path,
    dec_paths, dec_stat, dec_sync, dec_unit,
};
use super::{check, check_create, Client, OneshotWatcher, Pending};

/// Options for [`Client::create_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    /// The node's mode (default persistent).
    pub mode: CreateMode,
    /// The node's ACL (default `world:anyone` all).
    pub acl: Vec<Acl>,
    /// Create missing parents as persistent nodes, as Kazoo's `makepath=True` (default false).
    pub makepath: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            mode: CreateMode::Persistent,
            acl: Acl::open_unsafe(),
            makepath: false,
        }
    }
}

impl Client {
    // ---- create / delete ----

    /// Creates a node with an open ACL; returns its path (with the sequence suffix, if any).
    pub fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Pending<String> {
        let opts = CreateOptions {
            mode,
            ..Default::default()
        };
        self.pending(self.create_req(path, data, &opts), dec_path)
    }

    pub(super) fn create_req(
        &self,
        path: &str,
        data: &[u8],
        opts: &CreateOptions,
    ) -> Result<(BytesMut, Effect)> {
        check_create(path, &opts.acl, opts.mode)?;
        let sp = self.server_create_path(path, opts.mode);
        let mut f = ops::start_frame(ops::create_opcode(opts.mode), sp.len() + data.len() + 64);
        ops::write_create(&mut f, &sp, data, &opts.acl, opts.mode);
        Ok((f, Effect::None))
    }

    /// Deletes a node, if `version` matches (None: any version).
    pub fn delete(&self, path: &str, version: Option<i32>) -> Pending<()> {
        let req = check(path).map(|_| {
            let mut f = self.path_frame(op::DELETE, path, 4);
            f.put_i32(version.unwrap_or(-1));
            (f, Effect::None)
        });
        self.pending(req, dec_unit)
    }

    // ---- reads ----

    pub(super) fn watched_req(
        &self,
        opcode: OpCode,
        kind: WatchKind,
        path: &str,
        sink: Option<WatchSink>,
    ) -> Result<(BytesMut, Effect)> {
        check(path)?;
        let mut f = self.path_frame(opcode, path, 1);
        f.put_u8(sink.is_some() as u8);
        let effect = match sink {
            Some(sink) => Effect::Watch {
                kind,
                path: self.server_path(path),
                sink,
            },
            None => Effect::None,
        };
        Ok((f, effect))
    }

    fn lane_once(&self, f: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static) -> WatchSink {
        WatchSink::LaneOnce {
            lanes: self.lanes.clone(),
            f: Box::new(f),
            alive: None,
        }
    }

    /// The node's stat, or None if it does not exist.
    pub fn exists(&self, path: &str) -> Pending<Option<Stat>> {
        self.pending(
            self.watched_req(op::EXISTS, WatchKind::Exist, path, None),
            dec_exists,
        )
    }

    /// As [`Client::exists`], and leaves a watch that fires when the node is created, deleted
    /// or its data changes.
    pub async fn exists_watch(&self, path: &str) -> Result<(Option<Stat>, OneshotWatcher)> {
        let (tx, rx) = oneshot::channel();
        let req = self.watched_req(
            op::EXISTS,
            WatchKind::Exist,
            path,
            Some(WatchSink::Once(tx)),
        );
        let s = self.pending(req, dec_exists).await?;
        Ok((s, OneshotWatcher { rx }))
    }

    /// As [`Client::exists`]; `watcher` runs on the watch lane when the watch fires.
    pub fn exists_with(
        &self,
        path: &str,
        watcher: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static,
    ) -> Pending<Option<Stat>> {
        let req = self.watched_req(
            op::EXISTS,
            WatchKind::Exist,
            path,
            Some(self.lane_once(watcher)),
        );
        self.pending(req, dec_exists)
    }

    /// The node's data and stat.
    pub fn get_data(&self, path: &str) -> Pending<(Vec<u8>, Stat)> {
        self.pending(
            self.watched_req(op::GET_DATA, WatchKind::Data, path, None),
            dec_data,
        )
    }

    /// As [`Client::get_data`], and leaves a watch that fires when the data changes or the
    /// node is deleted.
    pub async fn get_data_watch(&self, path: &str) -> Result<(Vec<u8>, Stat, OneshotWatcher)> {
        let (tx, rx) = oneshot::channel();
        let req = self.watched_req(
            op::GET_DATA,
            WatchKind::Data,
            path,
            Some(WatchSink::Once(tx)),
        );
        let (d, s) = self.pending(req, dec_data).await?;
        Ok((d, s, OneshotWatcher { rx }))
    }

    /// As [`Client::get_data`]; `watcher` runs on the watch lane when the watch fires.
    pub fn get_data_with(
        &self,
        path: &str,
        watcher: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static,
    ) -> Pending<(Vec<u8>, Stat)> {
        let req = self.watched_req(
            op::GET_DATA,
            WatchKind::Data,
            path,
            Some(self.lane_once(watcher)),
        );
        self.pending(req, dec_data)
    }

    /// The node's children (names, unsorted) and its stat.
    pub fn get_children(&self, path: &str) -> Pending<(Vec<String>, Stat)> {
        self.pending(
            self.watched_req(op::GET_CHILDREN2, WatchKind::Child, path, None),
            dec_children,
        )
    }

    /// As [`Client::get_children`], and leaves a watch that fires when a child is added or
    /// removed or the node is deleted.
    pub async fn get_children_watch(
        &self,
        path: &str,
    ) -> Result<(Vec<String>, Stat, OneshotWatcher)> {
        let (tx, rx) = oneshot::channel();
        let req = self.watched_req(
            op::GET_CHILDREN2,
            WatchKind::Child,
            path,
            Some(WatchSink::Once(tx)),
        );
        let (c, s) = self.pending(req, dec_children).await?;
        Ok((c, s, OneshotWatcher { rx }))
    }

    /// As [`Client::get_children`]; `watcher` runs on the watch lane when the watch fires.
    pub fn get_children_with(
        &self,
        path: &str,
        watcher: impl FnOnce(WatchedEvent, CallbackInfo) + Send + 'static,
    ) -> Pending<(Vec<String>, Stat)> {
        let req = self.watched_req(
            op::GET_CHILDREN2,
            WatchKind::Child,
            path,
            Some(self.lane_once(watcher)),
        );
        self.pending(req, dec_children)
    }

    /// The number of all descendants of a node (ZooKeeper 3.6+).
    pub fn get_all_children_number(&self, path: &str) -> Pending<i32> {
        self.pending(self.path_req(op::GET_ALL_CHILDREN_NUMBER, path), dec_i32)
    }

    /// The session's ephemeral nodes whose paths start with `prefix` (`/` for all; 3.6+).
    pub fn get_ephemerals(&self, prefix: &str) -> Pending<Vec<String>> {
        let req = if prefix.starts_with('/') {
            Ok((self.path_frame(op::GET_EPHEMERALS, prefix, 0), Effect::None))
        } else {
            Err(Error::InvalidPath {
                path: prefix.to_string(),
                reason: "a path must start with '/'",
            })
        };
        self.pending(req, dec_paths)
    }

    // ---- writes ----

    /// Sets a node's data, if `version` matches (None: any version); returns the new stat.
    pub fn set_data(&self, path: &str, data: &[u8], version: Option<i32>) -> Pending<Stat> {
        let req = check(path).map(|_| {
            let sp = self.server_path(path);
            let mut f = ops::start_frame(op::SET_DATA, sp.len() + data.len() + 12);
            ops::write_set_data(&mut f, &sp, data, version.unwrap_or(-1));
            (f, Effect::None)
        });
        self.pending(req, dec_stat)
    }

    /// The node's ACL and stat.
    pub fn get_acl(&self, path: &str) -> Pending<(Vec<Acl>, Stat)> {
        self.pending(self.path_req(op::GET_ACL, path), dec_acl)
    }

    /// Sets the node's ACL, if its ACL version matches (None: any).
    pub fn set_acl(&self, path: &str, acl: &[Acl], version: Option<i32>) -> Pending<Stat> {
        let req = check(path).and_then(|_| {
            if acl.is_empty() {
                return Err(Error::InvalidAcl);
            }
            let sp = self.server_path(path);
            let mut f = ops::start_frame(op::SET_ACL, sp.len() + 64);
            ops::write_set_acl(&mut f, &sp, acl, version.unwrap_or(-1));
            Ok((f, Effect::None))
        });
        self.pending(req, dec_stat)
    }

    /// Waits until the server this client talks to has caught up with the leader for `path`.
    pub fn sync(&self, path: &str) -> Pending<()> {
        self.pending(self.path_req(op::SYNC, path), dec_sync)
    }

    /// Runs writes atomically: all succeed or none is applied ([`Error::MultiFailed`] then says
    /// which op failed and carries every op's result).
    pub fn multi(&self, ops_: &[Op]) -> Pending<Vec<OpResult>> {
        let req = (|| {
            for o in ops_ {
                match o {
                    Op::Create {
                        path, mode, acl, ..
                    } => check_create(path, acl, *mode)?,
                    other => check(other.path())?,
                }
            }
            let mut f = ops::start_frame(op::MULTI, 64 * ops_.len());
            multi::write_multi(&mut f, ops_, |p, create| match create {
                Some(mode) => self.server_create_path(p, mode),
                None => self.server_path(p),
            });
            Ok((f, Effect::None))
        })();
        self.pending(req, dec_multi)
    }

    /// Runs several reads in one round trip (ZooKeeper 3.6+). Not atomic: each read succeeds or
    /// fails on its own.
    pub fn multi_read(&self, reads: &[ReadOp]) -> Pending<Vec<ReadResult>> {
        let req = (|| {
            for r in reads {
                match r {
                    ReadOp::GetData(p) | ReadOp::GetChildren(p) => check(p)?,
                }
            }
            let mut f = ops::start_frame(op::MULTI_READ, 32 * reads.len());
            multi::write_multi_read(&mut f, reads, |p| self.server_path(p));
            Ok((f, Effect::None))
        })();
        self.pending(req, dec_multi_read)
    }
}
