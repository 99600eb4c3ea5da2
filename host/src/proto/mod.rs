//! The wire protocol: jute encoding of every record the client sends or receives, and framing.
//! Pure code on `bytes`, no I/O: the session feeds it bytes and gets typed values or typed errors.

pub(crate) mod codec;
pub(crate) mod frame;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub(crate) mod multi;
pub(crate) mod ops;
#[cfg(test)]
mod proptests;
pub(crate) mod records;
