//! The records of ZooKeeper's protocol (`zookeeper.jute`) that users see (Stat, ACL, events,
//! modes) and those only the session uses (handshake, headers).

use bytes::{BufMut, BytesMut};

use super::codec::{JuteWrite, Reader};
use crate::error::{Error, Result};

/// A znode's metadata, as the server keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Stat {
    /// The zxid of the change that created the node.
    pub czxid: i64,
    /// The zxid of the change that last modified the node's data.
    pub mzxid: i64,
    /// Creation time, milliseconds since the epoch.
    pub ctime: i64,
    /// Last modification time, milliseconds since the epoch.
    pub mtime: i64,
    /// Number of changes to the data.
    pub version: i32,
    /// Number of changes to the children.
    pub cversion: i32,
    /// Number of changes to the ACL.
    pub aversion: i32,
    /// The session id of the owner if the node is ephemeral, else 0.
    pub ephemeral_owner: i64,
    /// Length of the data.
    pub data_length: i32,
    /// Number of children.
    pub num_children: i32,
    /// The zxid of the change that last modified the children.
    pub pzxid: i64,
}

/// The encoded size of a [`Stat`].
#[cfg(test)]
pub(crate) const STAT_LEN: usize = 68;

impl Stat {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Stat> {
        Ok(Stat {
            czxid: r.i64()?,
            mzxid: r.i64()?,
            ctime: r.i64()?,
            mtime: r.i64()?,
            version: r.i32()?,
            cversion: r.i32()?,
            aversion: r.i32()?,
            ephemeral_owner: r.i64()?,
            data_length: r.i32()?,
            num_children: r.i32()?,
            pzxid: r.i64()?,
        })
    }

    #[cfg(test)]
    pub(crate) fn write(&self, b: &mut BytesMut) {
        b.put_i64(self.czxid);
        b.put_i64(self.mzxid);
        b.put_i64(self.ctime);
        b.put_i64(self.mtime);
        b.put_i32(self.version);
        b.put_i32(self.cversion);
        b.put_i32(self.aversion);
        b.put_i64(self.ephemeral_owner);
        b.put_i32(self.data_length);
        b.put_i32(self.num_children);
        b.put_i64(self.pzxid);
    }
}

/// Permission bits of an ACL entry.
///
/// ```
/// use wazoo::Perms;
/// let p = Perms::READ | Perms::WRITE;
/// assert!(p.contains(Perms::READ));
/// assert!(!p.contains(Perms::ADMIN));
/// assert_eq!(Perms::ALL.bits(), 31);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Perms(i32);

impl Perms {
    /// Read the data and list the children.
    pub const READ: Perms = Perms(1);
    /// Set the data.
    pub const WRITE: Perms = Perms(2);
    /// Create children.
    pub const CREATE: Perms = Perms(4);
    /// Delete children.
    pub const DELETE: Perms = Perms(8);
    /// Set the ACL.
    pub const ADMIN: Perms = Perms(16);
    /// Everything.
    pub const ALL: Perms = Perms(31);

    /// Perms from the raw bits.
    pub const fn from_bits(bits: i32) -> Perms {
        Perms(bits)
    }
    /// The raw bits.
    pub const fn bits(self) -> i32 {
        self.0
    }
    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Perms) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Perms {
    type Output = Perms;
    fn bitor(self, rhs: Perms) -> Perms {
        Perms(self.0 | rhs.0)
    }
}

/// An identity in an ACL: a scheme (`world`, `auth`, `digest`, `ip`, `sasl`, ...) and an id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Id {
    /// The scheme.
    pub scheme: String,
    /// The id within the scheme.
    pub id: String,
}

/// One ACL entry: what `id` may do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Acl {
    /// What is allowed.
    pub perms: Perms,
    /// To whom.
    pub id: Id,
}

impl Acl {
    /// `world:anyone` with every permission: ZooKeeper's `OPEN_ACL_UNSAFE`.
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl::new(Perms::ALL, "world", "anyone")]
    }
    /// `world:anyone` may read: ZooKeeper's `READ_ACL_UNSAFE`.
    pub fn read_unsafe() -> Vec<Acl> {
        vec![Acl::new(Perms::READ, "world", "anyone")]
    }
    /// Every permission for the session's authenticated identities: `CREATOR_ALL_ACL`.
    pub fn creator_all() -> Vec<Acl> {
        vec![Acl::new(Perms::ALL, "auth", "")]
    }
    /// An ACL entry.
    pub fn new(perms: Perms, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            id: Id {
                scheme: scheme.to_string(),
                id: id.to_string(),
            },
        }
    }

    pub(crate) fn write_all(acl: &[Acl], b: &mut BytesMut) {
        b.put_i32(acl.len() as i32);
        for a in acl {
            b.put_i32(a.perms.0);
            b.put_str_j(&a.id.scheme);
            b.put_str_j(&a.id.id);
        }
    }

    pub(crate) fn read_all(r: &mut Reader<'_>) -> Result<Vec<Acl>> {
        let n = r.count(12)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let perms = Perms(r.i32()?);
            let scheme = r.str()?;
            let id = r.str()?;
            v.push(Acl {
                perms,
                id: Id { scheme, id },
            });
        }
        Ok(v)
    }
}

/// How a node is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CreateMode {
    /// Lives until deleted.
    Persistent,
    /// Deleted when the creating session ends.
    Ephemeral,
    /// Persistent, with a 10-digit counter appended to the name.
    PersistentSequential,
    /// Ephemeral, with a counter appended.
    EphemeralSequential,
    /// Deleted by the server once its last child is gone (ZooKeeper 3.5.1+).
    Container,
    /// Deleted by the server when unmodified for the TTL (milliseconds) and childless
    /// (3.5.3+, needs `zookeeper.extendedTypesEnabled=true` on the server).
    PersistentWithTtl(i64),
    /// As [`CreateMode::PersistentWithTtl`], with a counter appended.
    PersistentSequentialWithTtl(i64),
}

impl CreateMode {
    /// The `flags` value on the wire.
    pub(crate) fn flags(self) -> i32 {
        match self {
            CreateMode::Persistent => 0,
            CreateMode::Ephemeral => 1,
            CreateMode::PersistentSequential => 2,
            CreateMode::EphemeralSequential => 3,
            CreateMode::Container => 4,
            CreateMode::PersistentWithTtl(_) => 5,
            CreateMode::PersistentSequentialWithTtl(_) => 6,
        }
    }

    /// Whether the server appends a sequence counter.
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl(_)
        )
    }

    /// Whether the node dies with the session.
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }

    pub(crate) fn ttl(self) -> Option<i64> {
        match self {
            CreateMode::PersistentWithTtl(t) | CreateMode::PersistentSequentialWithTtl(t) => {
                Some(t)
            }
            _ => None,
        }
    }
}

/// The raw state ZooKeeper reports in a watcher event (`Watcher.Event.KeeperState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeeperState {
    /// Not connected (0).
    Disconnected,
    /// Connected to a read-write server (3).
    SyncConnected,
    /// Authentication failed (4).
    AuthFailed,
    /// Connected to a read-only server (5).
    ConnectedReadOnly,
    /// SASL authenticated (6).
    SaslAuthenticated,
    /// The client was closed (7).
    Closed,
    /// The session expired (-112).
    Expired,
    /// A state this client does not know.
    Unknown(i32),
}

impl KeeperState {
    pub(crate) fn from_code(c: i32) -> KeeperState {
        match c {
            0 => KeeperState::Disconnected,
            3 => KeeperState::SyncConnected,
            4 => KeeperState::AuthFailed,
            5 => KeeperState::ConnectedReadOnly,
            6 => KeeperState::SaslAuthenticated,
            7 => KeeperState::Closed,
            -112 => KeeperState::Expired,
            other => KeeperState::Unknown(other),
        }
    }
}

/// What happened to a watched node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventType {
    /// No node event: a state change (-1).
    None,
    /// The node was created (1).
    NodeCreated,
    /// The node was deleted (2).
    NodeDeleted,
    /// The node's data changed (3).
    NodeDataChanged,
    /// The node's children changed (4).
    NodeChildrenChanged,
    /// A data watch was removed (5).
    DataWatchRemoved,
    /// A child watch was removed (6).
    ChildWatchRemoved,
    /// A persistent watch was removed (7).
    PersistentWatchRemoved,
    /// wazoo's own, never sent by the server: the connection was re-established and the persistent
    /// watch re-added, but the server does not replay what changed meanwhile. Re-read what you
    /// depend on.
    Resync,
    /// A type this client does not know.
    Unknown(i32),
}

impl EventType {
    pub(crate) fn from_code(c: i32) -> EventType {
        match c {
            -1 => EventType::None,
            1 => EventType::NodeCreated,
            2 => EventType::NodeDeleted,
            3 => EventType::NodeDataChanged,
            4 => EventType::NodeChildrenChanged,
            5 => EventType::DataWatchRemoved,
            6 => EventType::ChildWatchRemoved,
            7 => EventType::PersistentWatchRemoved,
            other => EventType::Unknown(other),
        }
    }
}

/// A watch notification, as delivered to a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// What happened.
    pub event_type: EventType,
    /// The session's state when it happened.
    pub keeper_state: KeeperState,
    /// The node's path, relative to the chroot. Empty for state-only events.
    pub path: String,
    /// The zxid the server put in the notification's header (-1 when the server does not say).
    pub zxid: i64,
}

impl WatchedEvent {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<(i32, i32, String)> {
        Ok((r.i32()?, r.i32()?, r.str()?))
    }
}

/// The kind of a persistent watch added with `add_watch` (ZooKeeper 3.6+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddWatchMode {
    /// Data and children events on the path itself, kept after firing.
    Persistent,
    /// Data events on the path and every descendant, kept after firing.
    PersistentRecursive,
}

impl AddWatchMode {
    pub(crate) fn code(self) -> i32 {
        match self {
            AddWatchMode::Persistent => 0,
            AddWatchMode::PersistentRecursive => 1,
        }
    }
}

/// Which watches `remove_watches` / `check_watches` act on. The discriminants are ZooKeeper's
/// `WatcherType` codes: `kind as i32` is the code, [`TryFrom<i32>`] reads one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum WatcherType {
    /// Child watches.
    Children = 1,
    /// Data and exist watches.
    Data = 2,
    /// All of them.
    Any = 3,
    /// Persistent watches (3.6+).
    Persistent = 4,
    /// Persistent recursive watches (3.6+).
    PersistentRecursive = 5,
}

impl WatcherType {
    /// The type sent to the server. ZooKeeper 3.8 refuses types 4 and 5 (a marshalling
    /// error): a persistent watch leaves the server only with `Any`, which takes this
    /// session's other watches at the path too; the session arms those again.
    pub(crate) fn wire_code(self) -> i32 {
        match self {
            WatcherType::Persistent | WatcherType::PersistentRecursive => WatcherType::Any as i32,
            other => other as i32,
        }
    }

    /// Whether this names one of the persistent kinds.
    pub(crate) fn is_persistent(self) -> bool {
        matches!(
            self,
            WatcherType::Persistent | WatcherType::PersistentRecursive
        )
    }
}

/// Reads a ZooKeeper `WatcherType` code (1 to 5); any other number is returned as the error.
impl TryFrom<i32> for WatcherType {
    type Error = i32;

    fn try_from(code: i32) -> std::result::Result<WatcherType, i32> {
        Ok(match code {
            1 => WatcherType::Children,
            2 => WatcherType::Data,
            3 => WatcherType::Any,
            4 => WatcherType::Persistent,
            5 => WatcherType::PersistentRecursive,
            other => return Err(other),
        })
    }
}

/// An identity the session is authenticated as, from `whoami`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientInfo {
    /// The auth scheme (`ip`, `digest`, `sasl`, ...).
    pub auth_scheme: String,
    /// The user within it.
    pub user: String,
}

// ---- the session's own records ----

/// Well-known xids.
pub(crate) const XID_NOTIFICATION: i32 = -1;
pub(crate) const XID_PING: i32 = -2;
pub(crate) const XID_AUTH: i32 = -4;
pub(crate) const XID_SET_WATCHES: i32 = -8;

/// The handshake's request (no header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectRequest {
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: bool,
}

impl ConnectRequest {
    pub(crate) fn write(&self, b: &mut BytesMut) {
        b.put_i32(0); // protocolVersion
        b.put_i64(self.last_zxid_seen);
        b.put_i32(self.timeout_ms);
        b.put_i64(self.session_id);
        b.put_buf_j(&self.passwd);
        b.put_bool_j(self.read_only);
    }
}

/// The handshake's response. `read_only` is false when an old server omits the byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: bool,
}

impl ConnectResponse {
    pub(crate) fn read(buf: &[u8]) -> Result<ConnectResponse> {
        if buf.is_empty() {
            return Err(Error::MalformedResponse(
                "the server refused the session with an empty handshake reply (it is behind the last zxid \
                 this client has seen, or it is read-only and the client does not allow that)"
                    .into(),
            ));
        }
        let mut r = Reader::new(buf);
        let protocol_version = r.i32()?;
        let timeout_ms = r.i32()?;
        let session_id = r.i64()?;
        let passwd = r.buf()?.to_vec();
        let read_only = if r.remaining() > 0 { r.bool()? } else { false };
        Ok(ConnectResponse {
            protocol_version,
            timeout_ms,
            session_id,
            passwd,
            read_only,
        })
    }

    #[cfg(test)]
    pub(crate) fn write(&self, b: &mut BytesMut, with_read_only: bool) {
        b.put_i32(self.protocol_version);
        b.put_i32(self.timeout_ms);
        b.put_i64(self.session_id);
        b.put_buf_j(&self.passwd);
        if with_read_only {
            b.put_bool_j(self.read_only);
        }
    }
}

/// The header of every reply after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
}

pub(crate) const REPLY_HEADER_LEN: usize = 16;

impl ReplyHeader {
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<ReplyHeader> {
        Ok(ReplyHeader {
            xid: r.i32()?,
            zxid: r.i64()?,
            err: r.i32()?,
        })
    }
}

/// Checks that a response was fully consumed.
pub(crate) fn finish(r: &Reader<'_>, what: &str) -> Result<()> {
    if r.remaining() != 0 {
        return Err(Error::MalformedResponse(format!(
            "{} unexpected trailing bytes after {what}",
            r.remaining()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_round_trips() {
        let s = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let mut b = BytesMut::new();
        s.write(&mut b);
        assert_eq!(b.len(), STAT_LEN);
        assert_eq!(Stat::read(&mut Reader::new(&b)).unwrap(), s);
        assert!(Stat::read(&mut Reader::new(&b[..60])).is_err());
    }

    #[test]
    fn connect_response_tolerates_missing_read_only_byte() {
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms: 4000,
            session_id: 0x1234,
            passwd: vec![7; 16],
            read_only: true,
        };
        for with in [true, false] {
            let mut b = BytesMut::new();
            resp.write(&mut b, with);
            let got = ConnectResponse::read(&b).unwrap();
            assert_eq!(got.read_only, with);
            assert_eq!(got.session_id, 0x1234);
            assert_eq!(got.passwd, vec![7; 16]);
        }
    }

    #[test]
    fn acl_round_trips() {
        let acl = vec![
            Acl::new(Perms::READ | Perms::ADMIN, "digest", "u:x"),
            Acl::open_unsafe()[0].clone(),
        ];
        let mut b = BytesMut::new();
        Acl::write_all(&acl, &mut b);
        assert_eq!(Acl::read_all(&mut Reader::new(&b)).unwrap(), acl);
    }

    #[test]
    fn watcher_types_are_zookeepers_codes() {
        for t in [
            WatcherType::Children,
            WatcherType::Data,
            WatcherType::Any,
            WatcherType::Persistent,
            WatcherType::PersistentRecursive,
        ] {
            assert_eq!(WatcherType::try_from(t as i32), Ok(t));
        }
        assert_eq!(WatcherType::Children as i32, 1);
        assert_eq!(WatcherType::PersistentRecursive as i32, 5);
        assert_eq!(WatcherType::try_from(0), Err(0));
        assert_eq!(WatcherType::try_from(6), Err(6));
        // 3.8 removes persistent watches only with Any.
        assert_eq!(WatcherType::Persistent.wire_code(), 3);
        assert_eq!(WatcherType::Data.wire_code(), 2);
    }
}
