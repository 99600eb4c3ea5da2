//! One entry point that runs every decoder on arbitrary bytes, for the fuzzer and for the
//! randomised test below. Nothing here may panic, whatever the input.

use bytes::BytesMut;

use super::codec::Reader;
use super::frame::next_frame;
use super::multi::{read_multi, read_multi_read};
use super::ops;
use super::records::{ConnectResponse, ReplyHeader, WatchedEvent, REPLY_HEADER_LEN};
use crate::error::Error;
use crate::path::Chroot;

/// Feeds `data` to the framer and, as a reply body, to every response decoder. Each frame the
/// framer cuts is read as the session reads it (a reply header, then a notification or a reply
/// body) and its body goes to every response decoder too, as the client would hand it on.
pub fn decode_everything(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = next_frame(&mut buf, 1 << 16) {
        let mut r = Reader::new(&frame);
        if let Ok(h) = ReplyHeader::read(&mut r) {
            if h.xid == -1 {
                let _ = WatchedEvent::read(&mut r);
            } else {
                let _ = Error::from_code(h.err);
                decode_body(&frame[REPLY_HEADER_LEN..]);
            }
        }
    }
    let _ = ConnectResponse::read(data);
    decode_body(data);
}

/// Every response decoder on one reply body. A decoder that accepts a body must have used all of
/// it: the fixed-size ones are checked here.
fn decode_body(body: &[u8]) {
    let _ = ops::read_path(body);
    let _ = ops::read_path_stat(body);
    if ops::read_stat(body).is_ok() {
        assert_eq!(body.len(), 68, "a stat is 68 bytes");
    }
    let _ = ops::read_data_stat(body);
    let _ = ops::read_children_stat(body);
    let _ = ops::read_strings(body);
    let _ = ops::read_acl_stat(body);
    if ops::read_i32(body).is_ok() {
        assert_eq!(body.len(), 4, "an int is 4 bytes");
    }
    let _ = ops::read_whoami(body);
    let _ = ops::read_empty_or_err(body);
    let _ = read_multi(body, |p| p.to_string());
    let chroot = Chroot::new("/app").expect("a valid chroot");
    let _ = read_multi(body, |p| chroot.strip(p).to_string());
    let _ = read_multi_read(body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::Rng;

    #[test]
    fn decoders_never_panic_on_random_or_mutated_input() {
        let mut rng = Rng::new();
        // Plausible prefixes (small lengths, valid headers) make the random tails reach deep.
        let seeds: [&[u8]; 4] = [
            &[0, 0, 0, 2, b'/', b'a'],
            &[0, 0, 0, 15, 0, 0xff, 0xff, 0xff, 0xff],
            &[0, 0, 0, 1, 0, 0, 0, 1, b'x'],
            &[0, 0, 0, 0],
        ];
        for i in 0..50_000 {
            let len = (rng.next_u64() % 200) as usize;
            let mut v: Vec<u8> = seeds[i % seeds.len()].to_vec();
            v.extend((0..len).map(|_| {
                let b = rng.next_u64() as u8;
                // Bias towards small numbers and -1, the interesting values in jute.
                match b % 4 {
                    0 => 0,
                    1 => 0xff,
                    _ => b,
                }
            }));
            decode_everything(&v);
        }
    }
}
