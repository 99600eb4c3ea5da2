//! One entry point that runs every decoder on arbitrary bytes, for the fuzzer and for the
//! randomised test below. Nothing here may panic, whatever the input.

use bytes::BytesMut;

use super::codec::Reader;
use super::frame::next_frame;
use super::multi::{read_multi, read_multi_read};
use super::ops;
use super::records::{ConnectResponse, ReplyHeader, WatchedEvent};

/// Feeds `data` to the framer and, as a reply body, to every response decoder.
pub fn decode_everything(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = next_frame(&mut buf, 1 << 16) {
        let mut r = Reader::new(&frame);
        if let Ok(h) = ReplyHeader::read(&mut r) {
            if h.xid == -1 {
                let _ = WatchedEvent::read(&mut r);
            }
        }
    }
    let _ = ConnectResponse::read(data);
    let _ = ops::read_path(data);
    let _ = ops::read_path_stat(data);
    let _ = ops::read_stat(data);
    let _ = ops::read_data_stat(data);
    let _ = ops::read_children_stat(data);
    let _ = ops::read_strings(data);
    let _ = ops::read_acl_stat(data);
    let _ = ops::read_i32(data);
    let _ = ops::read_whoami(data);
    let _ = ops::read_empty_or_err(data);
    let _ = read_multi(data, |p| p.to_string());
    let _ = read_multi_read(data);
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
