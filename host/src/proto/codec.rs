//! Jute primitives: big-endian ints and longs, one-byte booleans, length-prefixed strings and
//! buffers (-1 = null), count-prefixed vectors. Pure: no I/O, and decoding never panics or
//! allocates more than the input can hold.

use bytes::{BufMut, BytesMut};

use crate::error::Error;

/// Appends jute values to a buffer.
pub(crate) trait JuteWrite {
    fn put_bool_j(&mut self, v: bool);
    fn put_str_j(&mut self, s: &str);
    fn put_buf_j(&mut self, b: &[u8]);
    fn put_strs_j<S: AsRef<str>>(&mut self, v: &[S]);
}

impl JuteWrite for BytesMut {
    fn put_bool_j(&mut self, v: bool) {
        self.put_u8(v as u8);
    }
    fn put_str_j(&mut self, s: &str) {
        self.put_buf_j(s.as_bytes());
    }
    fn put_buf_j(&mut self, b: &[u8]) {
        self.put_i32(b.len() as i32);
        self.put_slice(b);
    }
    fn put_strs_j<S: AsRef<str>>(&mut self, v: &[S]) {
        self.put_i32(v.len() as i32);
        for s in v {
            self.put_str_j(s.as_ref());
        }
    }
}

/// Reads jute values from a byte slice, with typed errors for truncated or invalid input.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn malformed(what: &str) -> Error {
    Error::MalformedResponse(what.to_string())
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Error> {
        if self.remaining() < n {
            return Err(Error::MalformedResponse(format!(
                "truncated {what}: needed {n} bytes, {} left",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, Error> {
        let b = self.take(4, "int")?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Error> {
        let b = self.take(8, "long")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    pub(crate) fn bool(&mut self) -> Result<bool, Error> {
        Ok(self.take(1, "boolean")?[0] != 0)
    }

    /// A buffer; null (-1) reads as empty.
    pub(crate) fn buf(&mut self) -> Result<&'a [u8], Error> {
        let n = self.i32()?;
        if n == -1 {
            return Ok(&[]);
        }
        if n < 0 {
            return Err(malformed("negative buffer length"));
        }
        self.take(n as usize, "buffer")
    }

    /// A string; null (-1) reads as empty. Invalid UTF-8 is an error.
    pub(crate) fn str(&mut self) -> Result<String, Error> {
        let b = self.buf()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| malformed("string is not UTF-8"))
    }

    /// A vector's element count; null (-1) reads as 0. The count is checked against the bytes
    /// left (each element takes at least `min_elem` bytes) so a hostile count cannot make us
    /// allocate.
    pub(crate) fn count(&mut self, min_elem: usize) -> Result<usize, Error> {
        let n = self.i32()?;
        if n == -1 {
            return Ok(0);
        }
        if n < 0 {
            return Err(malformed("negative vector length"));
        }
        let n = n as usize;
        if n.saturating_mul(min_elem.max(1)) > self.remaining() {
            return Err(Error::MalformedResponse(format!(
                "vector of {n} elements cannot fit in {} bytes",
                self.remaining()
            )));
        }
        Ok(n)
    }

    pub(crate) fn strs(&mut self) -> Result<Vec<String>, Error> {
        let n = self.count(4)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.str()?);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitives_round_trip() {
        let mut b = BytesMut::new();
        b.put_i32(-7);
        b.put_i64(1 << 40);
        b.put_bool_j(true);
        b.put_str_j("héllo");
        b.put_buf_j(&[1, 2, 3]);
        b.put_strs_j(&["a", "bc"]);
        let mut r = Reader::new(&b);
        assert_eq!(r.i32().unwrap(), -7);
        assert_eq!(r.i64().unwrap(), 1 << 40);
        assert!(r.bool().unwrap());
        assert_eq!(r.str().unwrap(), "héllo");
        assert_eq!(r.buf().unwrap(), &[1, 2, 3]);
        assert_eq!(r.strs().unwrap(), vec!["a", "bc"]);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn hostile_input_is_a_typed_error() {
        assert!(matches!(
            Reader::new(&[0, 0]).i32(),
            Err(Error::MalformedResponse(_))
        ));
        // a buffer that claims 2 GiB
        assert!(Reader::new(&[0x7f, 0xff, 0xff, 0xff, 1]).buf().is_err());
        // a vector that claims 2^31-1 strings in 4 bytes
        assert!(Reader::new(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0])
            .strs()
            .is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xfe]).buf().is_err());
        assert!(Reader::new(&[0, 0, 0, 2, 0xff, 0xfe]).str().is_err());
        // null reads as empty
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff]).buf().unwrap(),
            &[] as &[u8]
        );
    }
}
