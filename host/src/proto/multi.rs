//! `multi` (atomic writes) and `multiRead` framing: a run of `MultiHeader`s, each followed by its
//! op's record, ended by a header with `done = true`.

use bytes::{BufMut, BytesMut};

use super::codec::{JuteWrite, Reader};
use super::ops::{self, op, OpCode};
use super::records::{finish, Acl, CreateMode, Stat};
use crate::error::{Error, Result};

/// One operation of an atomic [`multi`](crate::Client::multi).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Create a node.
    Create {
        /// Where.
        path: String,
        /// Its data.
        data: Vec<u8>,
        /// Its ACL.
        acl: Vec<Acl>,
        /// Its mode.
        mode: CreateMode,
    },
    /// Delete a node (`version` -1 for any).
    Delete {
        /// Which.
        path: String,
        /// Expected version, or -1.
        version: i32,
    },
    /// Set a node's data (`version` -1 for any).
    SetData {
        /// Which.
        path: String,
        /// The new data.
        data: Vec<u8>,
        /// Expected version, or -1.
        version: i32,
    },
    /// Fail the whole multi unless the node has this version.
    Check {
        /// Which.
        path: String,
        /// Expected version.
        version: i32,
    },
}

impl Op {
    /// A persistent create with an open ACL.
    pub fn create(path: impl Into<String>, data: impl Into<Vec<u8>>, mode: CreateMode) -> Op {
        Op::Create {
            path: path.into(),
            data: data.into(),
            acl: Acl::open_unsafe(),
            mode,
        }
    }
    /// A delete.
    pub fn delete(path: impl Into<String>, version: i32) -> Op {
        Op::Delete {
            path: path.into(),
            version,
        }
    }
    /// A set-data.
    pub fn set_data(path: impl Into<String>, data: impl Into<Vec<u8>>, version: i32) -> Op {
        Op::SetData {
            path: path.into(),
            data: data.into(),
            version,
        }
    }
    /// A version check.
    pub fn check(path: impl Into<String>, version: i32) -> Op {
        Op::Check {
            path: path.into(),
            version,
        }
    }

    /// The op's path.
    pub fn path(&self) -> &str {
        match self {
            Op::Create { path, .. }
            | Op::Delete { path, .. }
            | Op::SetData { path, .. }
            | Op::Check { path, .. } => path,
        }
    }
}

/// The result of one op of a successful multi.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpResult {
    /// A node was created (its actual path, with any sequence suffix).
    Create {
        /// The created path.
        path: String,
        /// Its stat (servers 3.5+).
        stat: Option<Stat>,
    },
    /// A node was deleted.
    Delete,
    /// Data was set.
    SetData {
        /// The node's new stat.
        stat: Stat,
    },
    /// A check passed.
    Check,
    /// This op failed (in a failed multi: the failing op has its own error, the others
    /// [`Error::RuntimeInconsistency`] or success code 0 reported as `Error(None)`).
    Error(Option<Error>),
}

/// One read of a [`multi_read`](crate::Client::multi_read).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadOp {
    /// Read a node's data.
    GetData(String),
    /// List a node's children.
    GetChildren(String),
}

/// The result of one read of a multi_read (reads are not atomic: each succeeds or fails alone).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadResult {
    /// The node's data and stat.
    Data {
        /// The data.
        data: Vec<u8>,
        /// The stat.
        stat: Stat,
    },
    /// The node's children.
    Children(Vec<String>),
    /// This read failed.
    Error(Error),
}

fn put_header(b: &mut BytesMut, ty: OpCode, done: bool) {
    b.put_i32(ty.as_i32());
    b.put_bool_j(done);
    b.put_i32(-1);
}

/// Encodes a multi body. `map` applies the chroot to each path.
/// `map` gives the server's path for a client path; for a create it is also given the mode.
pub(crate) fn write_multi(
    b: &mut BytesMut,
    ops_: &[Op],
    map: impl Fn(&str, Option<CreateMode>) -> String,
) {
    for o in ops_ {
        match o {
            Op::Create {
                path,
                data,
                acl,
                mode,
            } => {
                put_header(b, ops::create_opcode(*mode), false);
                ops::write_create(b, &map(path, Some(*mode)), data, acl, *mode);
            }
            Op::Delete { path, version } => {
                put_header(b, op::DELETE, false);
                ops::write_path_version(b, &map(path, None), *version);
            }
            Op::SetData {
                path,
                data,
                version,
            } => {
                put_header(b, op::SET_DATA, false);
                ops::write_set_data(b, &map(path, None), data, *version);
            }
            Op::Check { path, version } => {
                put_header(b, op::CHECK, false);
                ops::write_path_version(b, &map(path, None), *version);
            }
        }
    }
    put_header(b, op::ERROR, true);
}

/// Encodes a multiRead body.
pub(crate) fn write_multi_read(b: &mut BytesMut, ops_: &[ReadOp], map: impl Fn(&str) -> String) {
    for o in ops_ {
        match o {
            ReadOp::GetData(p) => {
                put_header(b, op::GET_DATA, false);
                ops::write_path_watch(b, &map(p), false);
            }
            ReadOp::GetChildren(p) => {
                put_header(b, op::GET_CHILDREN, false);
                ops::write_path_watch(b, &map(p), false);
            }
        }
    }
    put_header(b, op::ERROR, true);
}

/// Decodes a multi response. `Ok` holds every op's result when all succeeded; when the multi
/// failed, `Err(Error::MultiFailed{..})` names the first failing op and carries every op's result.
pub(crate) fn read_multi(body: &[u8], strip: impl Fn(&str) -> String) -> Result<Vec<OpResult>> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    let mut failed: Option<(usize, Error)> = None;
    loop {
        let ty = OpCode::from_wire(r.i32()?);
        let done = r.bool()?;
        let err = r.i32()?;
        if done {
            break;
        }
        if out.len() > body.len() {
            return Err(Error::MalformedResponse("multi response never ends".into()));
        }
        let res = match ty {
            op::CREATE => OpResult::Create {
                path: strip(&r.str()?),
                stat: None,
            },
            op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => {
                let path = strip(&r.str()?);
                let stat = Stat::read(&mut r)?;
                OpResult::Create {
                    path,
                    stat: Some(stat),
                }
            }
            op::DELETE => OpResult::Delete,
            op::SET_DATA => OpResult::SetData {
                stat: Stat::read(&mut r)?,
            },
            op::CHECK => OpResult::Check,
            op::ERROR => {
                let code = r.i32()?;
                if code == 0 {
                    OpResult::Error(None)
                } else {
                    let e = Error::from_code(code);
                    if failed.is_none() && e != Error::RuntimeInconsistency {
                        failed = Some((out.len(), e.clone()));
                    }
                    OpResult::Error(Some(e))
                }
            }
            other => {
                return Err(Error::MalformedResponse(format!(
                    "unexpected op type {other} (err {err}) in a multi response"
                )))
            }
        };
        out.push(res);
    }
    finish(&r, "a multi response")?;
    match failed {
        None => Ok(out),
        Some((index, error)) => Err(Error::MultiFailed {
            index,
            error: Box::new(error),
            results: out,
        }),
    }
}

/// Decodes a multiRead response.
pub(crate) fn read_multi_read(body: &[u8]) -> Result<Vec<ReadResult>> {
    let mut r = Reader::new(body);
    let mut out = Vec::new();
    loop {
        let ty = OpCode::from_wire(r.i32()?);
        let done = r.bool()?;
        let _err = r.i32()?;
        if done {
            break;
        }
        if out.len() > body.len() {
            return Err(Error::MalformedResponse(
                "multiRead response never ends".into(),
            ));
        }
        out.push(match ty {
            op::GET_DATA => {
                let data = r.buf()?.to_vec();
                let stat = Stat::read(&mut r)?;
                ReadResult::Data { data, stat }
            }
            op::GET_CHILDREN => ReadResult::Children(r.strs()?),
            op::ERROR => ReadResult::Error(Error::from_code(r.i32()?)),
            other => {
                return Err(Error::MalformedResponse(format!(
                    "unexpected op type {other} in a multiRead response"
                )))
            }
        });
    }
    finish(&r, "a multiRead response")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(p: &str) -> String {
        p.to_string()
    }

    #[test]
    fn a_failed_multi_names_the_failing_op() {
        let mut b = BytesMut::new();
        for code in [0, -101, -2] {
            put_header(&mut b, op::ERROR, false);
            b.put_i32(code);
        }
        put_header(&mut b, op::ERROR, true);
        match read_multi(&b, id) {
            Err(Error::MultiFailed {
                index,
                error,
                results,
            }) => {
                assert_eq!(index, 1);
                assert_eq!(*error, Error::NoNode);
                assert_eq!(results.len(), 3);
                assert_eq!(
                    results[2],
                    OpResult::Error(Some(Error::RuntimeInconsistency))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_successful_multi_decodes_each_result() {
        let mut b = BytesMut::new();
        put_header(&mut b, op::CREATE2, false);
        b.put_str_j("/root/a");
        Stat::default().write(&mut b);
        put_header(&mut b, op::DELETE, false);
        put_header(&mut b, op::CHECK, false);
        put_header(&mut b, op::SET_DATA, false);
        Stat {
            version: 3,
            ..Default::default()
        }
        .write(&mut b);
        put_header(&mut b, op::ERROR, true);
        let strip = |p: &str| p.strip_prefix("/root").unwrap_or(p).to_string();
        let res = read_multi(&b, strip).unwrap();
        assert_eq!(res.len(), 4);
        assert_eq!(
            res[0],
            OpResult::Create {
                path: "/a".into(),
                stat: Some(Stat::default())
            }
        );
        assert!(matches!(res[3], OpResult::SetData { stat } if stat.version == 3));
        // truncated anywhere: a typed error
        for cut in 0..b.len() {
            assert!(read_multi(&b[..cut], id).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn multi_request_ends_with_done() {
        let mut b = BytesMut::new();
        write_multi(
            &mut b,
            &[Op::check("/a", 1), Op::delete("/b", -1)],
            |p, _| id(p),
        );
        let mut r = Reader::new(&b);
        assert_eq!(r.i32().unwrap(), op::CHECK.as_i32());
        assert!(!r.bool().unwrap());
        assert_eq!(
            b[b.len() - 9..],
            [0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff]
        );
    }
}
