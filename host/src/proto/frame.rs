//! Length-prefixed framing with a maximum size: a frame that announces more than the maximum is
//! refused before anything is allocated for it.

use bytes::{Buf, BytesMut};

use crate::error::Error;

/// Default maximum payload of one frame, as the server's `jute.maxbuffer` (1 MiB)... plus room for
/// the reply header and record overhead.
pub(crate) const DEFAULT_MAX_FRAME: usize = 1024 * 1024 + 1024;

/// Takes one complete frame's payload off the front of `buf`, if one is there.
pub(crate) fn next_frame(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, Error> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 {
        return Err(Error::MalformedResponse(format!(
            "negative frame length {len}"
        )));
    }
    let len = len as usize;
    if len > max {
        return Err(Error::FrameTooLarge { size: len, max });
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn frames_are_split_and_bounded() {
        let mut b = BytesMut::new();
        b.put_i32(3);
        b.put_slice(b"abc");
        b.put_i32(2);
        b.put_slice(b"d");
        assert_eq!(&next_frame(&mut b, 10).unwrap().unwrap()[..], b"abc");
        assert!(next_frame(&mut b, 10).unwrap().is_none());
        b.put_slice(b"e");
        assert_eq!(&next_frame(&mut b, 10).unwrap().unwrap()[..], b"de");
        let mut big = BytesMut::new();
        big.put_i32(11);
        assert_eq!(
            next_frame(&mut big, 10),
            Err(Error::FrameTooLarge { size: 11, max: 10 })
        );
        let mut neg = BytesMut::new();
        neg.put_i32(-5);
        assert!(matches!(
            next_frame(&mut neg, 10),
            Err(Error::MalformedResponse(_))
        ));
    }
}
