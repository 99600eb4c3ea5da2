//! Turning a reply body into an operation's result, one decoder per response shape.

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::path::Chroot;
use crate::proto::multi::{self, OpResult, ReadResult};
use crate::proto::ops;
use crate::proto::records::{Acl, ClientInfo, Stat};

// ---- decoders: one per response shape ----

pub(super) fn dec_unit(_: &Chroot, r: Result<Bytes>) -> Result<()> {
    r.map(|_| ())
}
pub(super) fn dec_empty_or_err(_: &Chroot, r: Result<Bytes>) -> Result<()> {
    ops::read_empty_or_err(&r?)
}
pub(super) fn dec_path_stat(c: &Chroot, r: Result<Bytes>) -> Result<(String, Stat)> {
    let (p, s) = ops::read_path_stat(&r?)?;
    Ok((c.strip(&p).to_string(), s))
}
pub(super) fn dec_path(c: &Chroot, r: Result<Bytes>) -> Result<String> {
    dec_path_stat(c, r).map(|(p, _)| p)
}
pub(super) fn dec_exists(_: &Chroot, r: Result<Bytes>) -> Result<Option<Stat>> {
    match r {
        Ok(b) => Ok(Some(ops::read_stat(&b)?)),
        Err(Error::NoNode) => Ok(None),
        Err(e) => Err(e),
    }
}
pub(super) fn dec_stat(_: &Chroot, r: Result<Bytes>) -> Result<Stat> {
    ops::read_stat(&r?)
}
pub(super) fn dec_data(_: &Chroot, r: Result<Bytes>) -> Result<(Vec<u8>, Stat)> {
    ops::read_data_stat(&r?)
}
pub(super) fn dec_children(_: &Chroot, r: Result<Bytes>) -> Result<(Vec<String>, Stat)> {
    ops::read_children_stat(&r?)
}
pub(super) fn dec_i32(_: &Chroot, r: Result<Bytes>) -> Result<i32> {
    ops::read_i32(&r?)
}
pub(super) fn dec_paths(c: &Chroot, r: Result<Bytes>) -> Result<Vec<String>> {
    Ok(ops::read_strings(&r?)?
        .iter()
        .map(|p| c.strip(p).to_string())
        .collect())
}
pub(super) fn dec_acl(_: &Chroot, r: Result<Bytes>) -> Result<(Vec<Acl>, Stat)> {
    ops::read_acl_stat(&r?)
}
pub(super) fn dec_sync(_: &Chroot, r: Result<Bytes>) -> Result<()> {
    ops::read_path(&r?).map(|_| ())
}
pub(super) fn dec_whoami(_: &Chroot, r: Result<Bytes>) -> Result<Vec<ClientInfo>> {
    ops::read_whoami(&r?)
}
pub(super) fn dec_multi(c: &Chroot, r: Result<Bytes>) -> Result<Vec<OpResult>> {
    multi::read_multi(&r?, |p| c.strip(p).to_string())
}
pub(super) fn dec_multi_read(_: &Chroot, r: Result<Bytes>) -> Result<Vec<ReadResult>> {
    multi::read_multi_read(&r?)
}
