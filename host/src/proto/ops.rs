//! Requests (encoded straight into a ready-to-send frame) and responses (decoded from a reply
//! body) for every operation the client speaks.

use bytes::{BufMut, BytesMut};

use super::codec::{JuteWrite, Reader};
use super::records::{finish, Acl, ClientInfo, CreateMode, Stat};
use crate::error::{Error, Result};

/// An operation code (`ZooDefs.OpCode`), the type of a request as the wire carries it. A code
/// read from the wire may be one this client does not know, so this is a number with names for
/// the known ones rather than an enum.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub(crate) struct OpCode(i32);

/// The op codes under the short name the encoders spell them with (`op::GET_DATA`).
pub(crate) use OpCode as op;

impl OpCode {
    pub(crate) const CREATE: OpCode = OpCode(1);
    pub(crate) const DELETE: OpCode = OpCode(2);
    pub(crate) const EXISTS: OpCode = OpCode(3);
    pub(crate) const GET_DATA: OpCode = OpCode(4);
    pub(crate) const SET_DATA: OpCode = OpCode(5);
    pub(crate) const GET_ACL: OpCode = OpCode(6);
    pub(crate) const SET_ACL: OpCode = OpCode(7);
    pub(crate) const GET_CHILDREN: OpCode = OpCode(8);
    pub(crate) const SYNC: OpCode = OpCode(9);
    pub(crate) const PING: OpCode = OpCode(11);
    pub(crate) const GET_CHILDREN2: OpCode = OpCode(12);
    pub(crate) const CHECK: OpCode = OpCode(13);
    pub(crate) const MULTI: OpCode = OpCode(14);
    pub(crate) const CREATE2: OpCode = OpCode(15);
    pub(crate) const CHECK_WATCHES: OpCode = OpCode(17);
    pub(crate) const REMOVE_WATCHES: OpCode = OpCode(18);
    pub(crate) const CREATE_CONTAINER: OpCode = OpCode(19);
    pub(crate) const CREATE_TTL: OpCode = OpCode(21);
    pub(crate) const MULTI_READ: OpCode = OpCode(22);
    pub(crate) const AUTH: OpCode = OpCode(100);
    pub(crate) const SET_WATCHES2: OpCode = OpCode(105);
    /// A SASL token exchange.
    pub(crate) const SASL: OpCode = OpCode(102);
    pub(crate) const GET_EPHEMERALS: OpCode = OpCode(103);
    pub(crate) const GET_ALL_CHILDREN_NUMBER: OpCode = OpCode(104);
    pub(crate) const ADD_WATCH: OpCode = OpCode(106);
    pub(crate) const WHO_AM_I: OpCode = OpCode(107);
    pub(crate) const CLOSE: OpCode = OpCode(-11);
    pub(crate) const ERROR: OpCode = OpCode(-1);

    /// A code as read from the wire.
    pub(crate) const fn from_wire(code: i32) -> OpCode {
        OpCode(code)
    }

    /// The code as the wire carries it.
    pub(crate) const fn as_i32(self) -> i32 {
        self.0
    }

    /// The name of a known code.
    fn name(self) -> Option<&'static str> {
        Some(match self {
            OpCode::CREATE => "CREATE",
            OpCode::DELETE => "DELETE",
            OpCode::EXISTS => "EXISTS",
            OpCode::GET_DATA => "GET_DATA",
            OpCode::SET_DATA => "SET_DATA",
            OpCode::GET_ACL => "GET_ACL",
            OpCode::SET_ACL => "SET_ACL",
            OpCode::GET_CHILDREN => "GET_CHILDREN",
            OpCode::SYNC => "SYNC",
            OpCode::PING => "PING",
            OpCode::GET_CHILDREN2 => "GET_CHILDREN2",
            OpCode::CHECK => "CHECK",
            OpCode::MULTI => "MULTI",
            OpCode::CREATE2 => "CREATE2",
            OpCode::CHECK_WATCHES => "CHECK_WATCHES",
            OpCode::REMOVE_WATCHES => "REMOVE_WATCHES",
            OpCode::CREATE_CONTAINER => "CREATE_CONTAINER",
            OpCode::CREATE_TTL => "CREATE_TTL",
            OpCode::MULTI_READ => "MULTI_READ",
            OpCode::AUTH => "AUTH",
            OpCode::SET_WATCHES2 => "SET_WATCHES2",
            OpCode::SASL => "SASL",
            OpCode::GET_EPHEMERALS => "GET_EPHEMERALS",
            OpCode::GET_ALL_CHILDREN_NUMBER => "GET_ALL_CHILDREN_NUMBER",
            OpCode::ADD_WATCH => "ADD_WATCH",
            OpCode::WHO_AM_I => "WHO_AM_I",
            OpCode::CLOSE => "CLOSE",
            OpCode::ERROR => "ERROR",
            _ => return None,
        })
    }
}

impl std::fmt::Debug for OpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "OpCode({})", self.0),
        }
    }
}

/// The number, as the server's messages and ours have always shown it.
impl std::fmt::Display for OpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Starts a frame: length placeholder, xid placeholder (filled in by the session), op code.
pub(crate) fn start_frame(opcode: OpCode, capacity: usize) -> BytesMut {
    let mut b = BytesMut::with_capacity(12 + capacity);
    b.put_i32(0);
    b.put_i32(0);
    b.put_i32(opcode.as_i32());
    b
}

/// Writes the frame's length prefix and the xid.
pub(crate) fn seal_frame(b: &mut [u8], xid: i32) {
    let len = (b.len() - 4) as i32;
    b[0..4].copy_from_slice(&len.to_be_bytes());
    b[4..8].copy_from_slice(&xid.to_be_bytes());
}

/// The op code of a sealed or unsealed frame.
pub(crate) fn frame_opcode(b: &[u8]) -> OpCode {
    OpCode(i32::from_be_bytes([b[8], b[9], b[10], b[11]]))
}

/// The opcode a create uses for this mode.
pub(crate) fn create_opcode(mode: CreateMode) -> OpCode {
    match mode {
        CreateMode::Container => op::CREATE_CONTAINER,
        CreateMode::PersistentWithTtl(_) | CreateMode::PersistentSequentialWithTtl(_) => {
            op::CREATE_TTL
        }
        _ => op::CREATE2,
    }
}

pub(crate) fn write_create(
    b: &mut BytesMut,
    path: &str,
    data: &[u8],
    acl: &[Acl],
    mode: CreateMode,
) {
    b.put_str_j(path);
    b.put_buf_j(data);
    Acl::write_all(acl, b);
    b.put_i32(mode.flags());
    if let Some(ttl) = mode.ttl() {
        b.put_i64(ttl);
    }
}

pub(crate) fn write_path_version(b: &mut BytesMut, path: &str, version: i32) {
    b.put_str_j(path);
    b.put_i32(version);
}

pub(crate) fn write_path_watch(b: &mut BytesMut, path: &str, watch: bool) {
    b.put_str_j(path);
    b.put_bool_j(watch);
}

pub(crate) fn write_set_data(b: &mut BytesMut, path: &str, data: &[u8], version: i32) {
    b.put_str_j(path);
    b.put_buf_j(data);
    b.put_i32(version);
}

pub(crate) fn write_set_acl(b: &mut BytesMut, path: &str, acl: &[Acl], version: i32) {
    b.put_str_j(path);
    Acl::write_all(acl, b);
    b.put_i32(version);
}

pub(crate) fn write_auth(b: &mut BytesMut, scheme: &str, auth: &[u8]) {
    b.put_i32(0);
    b.put_str_j(scheme);
    b.put_buf_j(auth);
}

/// The five path lists of SetWatches2, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SetWatches {
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub persistent_recursive: Vec<String>,
}

impl SetWatches {
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
            && self.exist.is_empty()
            && self.child.is_empty()
            && self.persistent.is_empty()
            && self.persistent_recursive.is_empty()
    }

    /// Splits the watches into frames of at most `max_bytes` of paths each (the Java client
    /// uses 128 KB), every frame a SetWatches2 request relative to `zxid`.
    pub(crate) fn into_frames(self, zxid: i64, max_bytes: usize) -> Vec<BytesMut> {
        let lists = [
            self.data,
            self.exist,
            self.child,
            self.persistent,
            self.persistent_recursive,
        ];
        let mut batches: Vec<[Vec<String>; 5]> = vec![Default::default()];
        let mut size = 0;
        for (kind, list) in lists.into_iter().enumerate() {
            for path in list {
                let len = path.len() + 4;
                if size + len > max_bytes && size > 0 {
                    batches.push(Default::default());
                    size = 0;
                }
                size += len;
                batches
                    .last_mut()
                    .expect("never empty")
                    .get_mut(kind)
                    .expect("5 kinds")
                    .push(path);
            }
        }
        batches
            .into_iter()
            .map(|lists| {
                let mut b = start_frame(op::SET_WATCHES2, 8 + 20 + size);
                b.put_i64(zxid);
                for l in &lists {
                    b.put_strs_j(l);
                }
                b
            })
            .collect()
    }
}

// ---- responses ----

pub(crate) fn read_path(body: &[u8]) -> Result<String> {
    let mut r = Reader::new(body);
    let p = r.str()?;
    finish(&r, "a path")?;
    Ok(p)
}

pub(crate) fn read_path_stat(body: &[u8]) -> Result<(String, Stat)> {
    let mut r = Reader::new(body);
    let p = r.str()?;
    let s = Stat::read(&mut r)?;
    finish(&r, "a path and stat")?;
    Ok((p, s))
}

pub(crate) fn read_stat(body: &[u8]) -> Result<Stat> {
    let mut r = Reader::new(body);
    let s = Stat::read(&mut r)?;
    finish(&r, "a stat")?;
    Ok(s)
}

pub(crate) fn read_data_stat(body: &[u8]) -> Result<(Vec<u8>, Stat)> {
    let mut r = Reader::new(body);
    let d = r.buf()?.to_vec();
    let s = Stat::read(&mut r)?;
    finish(&r, "data and stat")?;
    Ok((d, s))
}

pub(crate) fn read_children_stat(body: &[u8]) -> Result<(Vec<String>, Stat)> {
    let mut r = Reader::new(body);
    let c = r.strs()?;
    let s = Stat::read(&mut r)?;
    finish(&r, "children and stat")?;
    Ok((c, s))
}

pub(crate) fn read_strings(body: &[u8]) -> Result<Vec<String>> {
    let mut r = Reader::new(body);
    let c = r.strs()?;
    finish(&r, "a list of strings")?;
    Ok(c)
}

pub(crate) fn read_acl_stat(body: &[u8]) -> Result<(Vec<Acl>, Stat)> {
    let mut r = Reader::new(body);
    let a = Acl::read_all(&mut r)?;
    let s = Stat::read(&mut r)?;
    finish(&r, "an ACL and stat")?;
    Ok((a, s))
}

pub(crate) fn read_i32(body: &[u8]) -> Result<i32> {
    let mut r = Reader::new(body);
    let n = r.i32()?;
    finish(&r, "an int")?;
    Ok(n)
}

pub(crate) fn read_whoami(body: &[u8]) -> Result<Vec<ClientInfo>> {
    let mut r = Reader::new(body);
    let n = r.count(8)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(ClientInfo {
            auth_scheme: r.str()?,
            user: r.str()?,
        });
    }
    finish(&r, "whoami's identities")?;
    Ok(v)
}

/// An empty body, or (addWatch) a 4-byte error code.
pub(crate) fn read_empty_or_err(body: &[u8]) -> Result<()> {
    match body.len() {
        0 => Ok(()),
        4 => match read_i32(body)? {
            0 => Ok(()),
            code => Err(Error::from_code(code)),
        },
        n => Err(Error::MalformedResponse(format!(
            "expected an empty reply, got {n} bytes"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_length_xid_and_opcode() {
        let mut b = start_frame(op::GET_DATA, 16);
        write_path_watch(&mut b, "/a", true);
        seal_frame(&mut b, 42);
        assert_eq!(&b[0..4], &((b.len() - 4) as i32).to_be_bytes());
        assert_eq!(&b[4..8], &42i32.to_be_bytes());
        assert_eq!(frame_opcode(&b), op::GET_DATA);
        let mut r = Reader::new(&b[12..]);
        assert_eq!(r.str().unwrap(), "/a");
        assert!(r.bool().unwrap());
    }

    #[test]
    fn create_encodes_ttl_only_for_ttl_modes() {
        let mut a = BytesMut::new();
        write_create(
            &mut a,
            "/t",
            b"x",
            &Acl::open_unsafe(),
            CreateMode::PersistentWithTtl(500),
        );
        let mut b = BytesMut::new();
        write_create(
            &mut b,
            "/t",
            b"x",
            &Acl::open_unsafe(),
            CreateMode::Persistent,
        );
        assert_eq!(a.len(), b.len() + 8);
        assert_eq!(
            create_opcode(CreateMode::PersistentWithTtl(1)),
            op::CREATE_TTL
        );
        assert_eq!(create_opcode(CreateMode::Container), op::CREATE_CONTAINER);
        assert_eq!(create_opcode(CreateMode::EphemeralSequential), op::CREATE2);
    }

    #[test]
    fn set_watches_are_batched_by_size() {
        let w = SetWatches {
            data: (0..100).map(|i| format!("/data/{i:04}")).collect(),
            child: vec!["/c".into()],
            ..Default::default()
        };
        let frames = w.clone().into_frames(7, 200);
        assert!(frames.len() > 1);
        let mut total = [0usize; 5];
        for f in &frames {
            assert!(f.len() < 400);
            let mut r = Reader::new(&f[12..]);
            assert_eq!(r.i64().unwrap(), 7);
            for t in &mut total {
                *t += r.strs().unwrap().len();
            }
            assert_eq!(r.remaining(), 0);
        }
        assert_eq!(total, [100, 0, 1, 0, 0]);
        assert_eq!(w.into_frames(7, 128 * 1024).len(), 1);
    }

    #[test]
    fn truncated_and_trailing_responses_are_refused() {
        let mut b = BytesMut::new();
        b.put_str_j("/x");
        assert_eq!(read_path(&b).unwrap(), "/x");
        assert!(read_path(&b[..3]).is_err());
        b.put_u8(0);
        assert!(matches!(read_path(&b), Err(Error::MalformedResponse(_))));
        assert!(read_stat(&[0; 67]).is_err());
        assert!(read_empty_or_err(&[]).is_ok());
        assert_eq!(
            read_empty_or_err(&(-101i32).to_be_bytes()),
            Err(Error::NoNode)
        );
    }
}
