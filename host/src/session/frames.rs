//! The session's traffic on a connection: requests written out (with the watch registry's
//! rules for what the server may be asked), and every frame from the server handled (replies,
//! notifications, auth and SetWatches2 answers), with the registry kept in step.

use bytes::{Buf, BytesMut};
use tracing::{debug, warn};

use super::connection::{Connection, Disconnect};
use super::pending::Reply;
use super::state::Session;
use super::watches::WatchKind;
use super::{Effect, Request};
use crate::error::Error;
use crate::proto::codec::Reader;
use crate::proto::ops::{self, op};
use crate::proto::records::{
    EventType, KeeperState, ReplyHeader, WatchedEvent, WatcherType, REPLY_HEADER_LEN, XID_AUTH,
    XID_NOTIFICATION, XID_PING, XID_SET_WATCHES,
};

impl Session {
    /// A caller's request while connected: written at once when nothing waits and the
    /// connection's window is open (the common case, and every sequential caller's), else
    /// queued for its owner's turn.
    pub(super) fn submit(&mut self, req: Request, conn: &mut Connection) {
        if self.queued.is_empty() && conn.window_open() {
            self.write_request(req, conn);
        } else {
            let bytes = req.frame.len();
            self.queued.push(req.owner, req, bytes);
        }
    }

    /// Hands queued requests to the connection, owners in turn, while its window is open.
    pub(super) fn pump(&mut self, conn: &mut Connection) {
        while conn.window_open() {
            let Some((_, req)) = self.queued.pop() else {
                break;
            };
            self.write_request(req, conn);
        }
    }

    /// Hands every queued request to the connection (before closeSession, which the server
    /// answers after them).
    pub(super) fn flush_queued(&mut self, conn: &mut Connection) {
        while let Some((_, req)) = self.queued.pop() {
            self.write_request(req, conn);
        }
    }

    /// Writes a caller's request, or fails it when the registry refuses its watch.
    pub(super) fn write_request(&mut self, mut req: Request, conn: &mut Connection) {
        if let Effect::Watch { kind, path, .. } = &req.effect {
            if let Some(e) = self.watches.mode_conflict(*kind, path) {
                let seq = self.stamp();
                req.reply.complete(seq, Err(e));
                return;
            }
            match kind {
                WatchKind::Persistent | WatchKind::PersistentRecursive => {
                    self.watches.adding(*kind, path)
                }
                // A persistent watch here already sees what this one-shot watch would: ask
                // the server for none (it would replace the persistent one), register it
                // here only. The read's watch flag is the last byte of its frame.
                k if self.watches.shadowed(*k, path) => {
                    if let Some(flag) = req.frame.last_mut() {
                        *flag = 0;
                    }
                }
                _ => {}
            }
        }
        conn.send(req.frame, Reply::User(req.reply), req.effect);
    }

    /// Removes a watch nobody wants any more from the server. ZooKeeper 3.8 removes persistent
    /// watches only with type Any (3); when no other watch is left at the path that is exact,
    /// else the per-mode type (3.9+) is tried.
    pub(super) fn remove_on_server(
        &mut self,
        path: &str,
        kind: WatcherType,
        conn: &mut Connection,
    ) {
        // ZooKeeper 3.8 removes a persistent watch only with `Any` (see
        // `WatcherType::wire_code`); the one-shot watches that takes along are armed again.
        let mut f = ops::start_frame(op::REMOVE_WATCHES, path.len() + 8);
        ops::write_path_version(&mut f, path, kind.wire_code());
        conn.send(f, Reply::Internal, Effect::None);
        if kind.is_persistent() {
            self.rearm_uncovered(path, conn);
        }
    }

    /// This session's persistent watch at `path` left the server: sets again the one-shot
    /// watches it covered there (see [`super::watches::WatchRegistry::shadowed`]), which were
    /// registered here only. Their watchers stay registered; these requests only arm the server.
    fn rearm_uncovered(&mut self, path: &str, conn: &mut Connection) {
        let (data, child) = self.watches.uncovered(path);
        for (needed, opcode) in [(data, op::EXISTS), (child, op::GET_CHILDREN2)] {
            if needed {
                let mut f = ops::start_frame(opcode, path.len() + 8);
                ops::write_path_watch(&mut f, path, true);
                conn.send(f, Reply::Internal, Effect::None);
            }
        }
    }

    /// Handles every complete frame the connection has read.
    pub(super) fn take_frames(&mut self, conn: &mut Connection) -> Result<(), Disconnect> {
        while let Some(frame) = conn.next_frame()? {
            self.on_frame(frame, conn)?;
        }
        Ok(())
    }

    /// Handles one frame from the server.
    fn on_frame(&mut self, mut frame: BytesMut, conn: &mut Connection) -> Result<(), Disconnect> {
        let mut r = Reader::new(&frame);
        let h = ReplyHeader::read(&mut r).map_err(Disconnect::Protocol)?;
        match h.xid {
            XID_NOTIFICATION => {
                let (ty, state, path) = WatchedEvent::read(&mut r).map_err(Disconnect::Protocol)?;
                let ev = WatchedEvent {
                    event_type: EventType::from_code(ty),
                    keeper_state: KeeperState::from_code(state),
                    path: self.chroot.strip(&path).to_string(),
                    zxid: h.zxid,
                };
                let seq = self.stamp();
                let emptied = self.watches.dispatch(seq, &path, ev);
                for (kind, p) in emptied {
                    // Nobody listens any more: remove the watch on the server too.
                    let kind = if kind == WatchKind::Persistent {
                        WatcherType::Persistent
                    } else {
                        WatcherType::PersistentRecursive
                    };
                    self.remove_on_server(&p, kind, conn);
                }
            }
            XID_PING => {}
            XID_AUTH => {
                let id = conn.pending.auth_answered()?;
                let Some(pos) = self.auths.iter().position(|a| a.id == id) else {
                    return Ok(());
                };
                if h.err == 0 {
                    if let Some(w) = self.auths[pos].waiter.take() {
                        let _ = w.send(Ok(()));
                    }
                } else {
                    let a = self.auths.remove(pos);
                    warn!(scheme = %a.scheme, "authentication failed");
                    if let Some(w) = a.waiter {
                        let _ = w.send(Err(Error::AuthFailed));
                    }
                    self.tell(KeeperState::AuthFailed);
                }
            }
            XID_SET_WATCHES => {
                if conn.pending.set_watches_answered() {
                    // Every watch is armed again: from here on no change goes unreported, so
                    // this is the moment to tell persistent watchers to re-read.
                    let chroot = self.chroot.clone();
                    let seq = self.stamp();
                    self.watches.resync(seq, |p| chroot.strip(p).to_string());
                }
                if h.err != 0 {
                    warn!(
                        err = h.err,
                        "the server refused to restore watches: {}",
                        Error::from_code(h.err)
                    );
                }
            }
            xid => {
                let p = conn.pending.answered(xid)?;
                if h.zxid > 0 && h.zxid > self.last_zxid {
                    self.last_zxid = h.zxid;
                }
                let seq = self.stamp();
                if let Some(path) = self.apply_effect(seq, p.effect, h.err) {
                    self.rearm_uncovered(&path, conn);
                }
                match p.reply {
                    Reply::User(sink) => {
                        let res = if h.err == 0 {
                            frame.advance(REPLY_HEADER_LEN);
                            Ok(frame.freeze())
                        } else {
                            Err(Error::from_code(h.err))
                        };
                        sink.complete(seq, res);
                    }
                    Reply::Internal => {
                        if h.err != 0 {
                            debug!(
                                opcode = ?p.opcode,
                                "internal request failed: {}",
                                Error::from_code(h.err)
                            );
                        }
                    }
                    Reply::Close => return Err(Disconnect::Closed),
                }
            }
        }
        Ok(())
    }

    /// Applies a request's effect on the registry once its reply came. Returns a path whose
    /// persistent watch left the server, for [`Session::rearm_uncovered`].
    fn apply_effect(&mut self, seq: u64, effect: Effect, err: i32) -> Option<String> {
        match effect {
            Effect::None => None,
            Effect::Watch { kind, path, sink } => {
                self.watches.added(kind, &path);
                let kind = match (kind, err) {
                    (WatchKind::Exist, 0) => Some(WatchKind::Data),
                    (WatchKind::Exist, -101) => Some(WatchKind::Exist),
                    (k, 0) => Some(k),
                    _ => None,
                };
                if let Some(k) = kind {
                    self.watches.add(k, path, sink);
                }
                None
            }
            Effect::RemoveWatches {
                path,
                user_path,
                watcher_type,
            } => {
                if err != 0 {
                    return None;
                }
                self.watches.remove(seq, &path, watcher_type, &user_path);
                watcher_type.is_persistent().then_some(path)
            }
        }
    }
}
