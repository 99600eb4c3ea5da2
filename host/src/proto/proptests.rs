//! Property tests of the codec's internals that the public API does not reach directly: the jute
//! primitives, the handshake records, SetWatches2 batching, truncation and trailing bytes, and
//! the chroot. (`tests/prop_codec.rs` runs every request and response through a client.)

use bytes::{BufMut, BytesMut};
use proptest::prelude::*;

use super::codec::{JuteWrite, Reader};
use super::frame::next_frame;
use super::multi::read_multi;
use super::ops::{self, op, SetWatches};
use super::records::{Acl, ConnectRequest, ConnectResponse, Perms, Stat, STAT_LEN};
use crate::error::Error;
use crate::path::{validate_path, Chroot};

fn stat() -> impl Strategy<Value = Stat> {
    (
        (any::<i64>(), any::<i64>(), any::<i64>(), any::<i64>()),
        (any::<i32>(), any::<i32>(), any::<i32>(), any::<i64>()),
        (any::<i32>(), any::<i32>(), any::<i64>()),
    )
        .prop_map(|((a, b, c, d), (e, f, g, h), (i, j, k))| Stat {
            czxid: a,
            mzxid: b,
            ctime: c,
            mtime: d,
            version: e,
            cversion: f,
            aversion: g,
            ephemeral_owner: h,
            data_length: i,
            num_children: j,
            pzxid: k,
        })
}

fn acl() -> impl Strategy<Value = Vec<Acl>> {
    prop::collection::vec(
        (any::<i32>(), ".*", ".*").prop_map(|(p, s, i)| Acl::new(Perms::from_bits(p), &s, &i)),
        0..6,
    )
}

/// One jute value of any kind.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i32),
    Long(i64),
    Bool(bool),
    Str(String),
    Buf(Vec<u8>),
    Strs(Vec<String>),
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i32>().prop_map(Value::Int),
        any::<i64>().prop_map(Value::Long),
        any::<bool>().prop_map(Value::Bool),
        ".*".prop_map(Value::Str),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Value::Buf),
        prop::collection::vec(".*", 0..5).prop_map(Value::Strs),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        "[a-z0-9.é-]{1,6}".prop_filter("not . or ..", |s| s != "." && s != ".."),
        1..4,
    )
    .prop_map(|v| format!("/{}", v.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn primitives_round_trip(values in prop::collection::vec(value(), 0..20)) {
        let mut b = BytesMut::new();
        for v in &values {
            match v {
                Value::Int(x) => b.put_i32(*x),
                Value::Long(x) => b.put_i64(*x),
                Value::Bool(x) => b.put_bool_j(*x),
                Value::Str(x) => b.put_str_j(x),
                Value::Buf(x) => b.put_buf_j(x),
                Value::Strs(x) => b.put_strs_j(x),
            }
        }
        let mut r = Reader::new(&b);
        for v in &values {
            let got = match v {
                Value::Int(_) => Value::Int(r.i32().unwrap()),
                Value::Long(_) => Value::Long(r.i64().unwrap()),
                Value::Bool(_) => Value::Bool(r.bool().unwrap()),
                Value::Str(_) => Value::Str(r.str().unwrap()),
                Value::Buf(_) => Value::Buf(r.buf().unwrap().to_vec()),
                Value::Strs(_) => Value::Strs(r.strs().unwrap()),
            };
            prop_assert_eq!(&got, v);
        }
        prop_assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn a_hostile_count_never_allocates(n in any::<i32>(), tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut b = BytesMut::new();
        b.put_i32(n);
        b.put_slice(&tail);
        match Reader::new(&b).strs() {
            // Each string takes at least its 4-byte length.
            Ok(v) => prop_assert!(v.len() * 4 <= tail.len()),
            Err(e) => prop_assert!(matches!(e, Error::MalformedResponse(_))),
        }
    }

    #[test]
    fn stat_and_acl_round_trip(s in stat(), a in acl()) {
        let mut b = BytesMut::new();
        Acl::write_all(&a, &mut b);
        s.write(&mut b);
        let mut r = Reader::new(&b);
        prop_assert_eq!(Acl::read_all(&mut r).unwrap(), a.clone());
        prop_assert_eq!(Stat::read(&mut r).unwrap(), s);
        prop_assert_eq!(r.remaining(), 0);
        // The response decoder takes exactly this, nothing shorter, nothing longer.
        prop_assert_eq!(ops::read_acl_stat(&b).unwrap(), (a, s));
        for cut in [0, 1, b.len() / 2, b.len() - 1] {
            prop_assert!(ops::read_acl_stat(&b[..cut]).is_err());
        }
        b.put_u8(0);
        prop_assert!(ops::read_acl_stat(&b).is_err());
    }

    #[test]
    fn data_and_children_replies_refuse_truncation_and_trailing_bytes(
        data in prop::collection::vec(any::<u8>(), 0..100),
        children in prop::collection::vec(".*", 0..6),
        s in stat(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut d = BytesMut::new();
        d.put_buf_j(&data);
        s.write(&mut d);
        prop_assert_eq!(ops::read_data_stat(&d).unwrap(), (data, s));
        prop_assert!(ops::read_data_stat(&d[..cut.index(d.len())]).is_err());
        let mut c = BytesMut::new();
        c.put_strs_j(&children);
        s.write(&mut c);
        prop_assert_eq!(ops::read_children_stat(&c).unwrap(), (children, s));
        prop_assert!(ops::read_children_stat(&c[..cut.index(c.len())]).is_err());
        c.put_u8(1);
        prop_assert!(ops::read_children_stat(&c).is_err());
    }

    #[test]
    fn handshake_records_round_trip(
        zxid in any::<i64>(),
        timeout in any::<i32>(),
        session in any::<i64>(),
        passwd in prop::collection::vec(any::<u8>(), 0..32),
        read_only in any::<bool>(),
        with_read_only_byte in any::<bool>(),
    ) {
        let req = ConnectRequest {
            last_zxid_seen: zxid,
            timeout_ms: timeout,
            session_id: session,
            passwd: passwd.clone(),
            read_only,
        };
        let mut b = BytesMut::new();
        req.write(&mut b);
        let mut r = Reader::new(&b);
        prop_assert_eq!(r.i32().unwrap(), 0);
        prop_assert_eq!(r.i64().unwrap(), zxid);
        prop_assert_eq!(r.i32().unwrap(), timeout);
        prop_assert_eq!(r.i64().unwrap(), session);
        prop_assert_eq!(r.buf().unwrap(), &passwd[..]);
        prop_assert_eq!(r.bool().unwrap(), read_only);
        prop_assert_eq!(r.remaining(), 0);

        let resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms: timeout,
            session_id: session,
            passwd,
            read_only,
        };
        let mut b = BytesMut::new();
        resp.write(&mut b, with_read_only_byte);
        let got = ConnectResponse::read(&b).unwrap();
        prop_assert_eq!(got, ConnectResponse { read_only: read_only && with_read_only_byte, ..resp });
    }

    #[test]
    fn set_watches_batches_keep_every_path_in_order(
        lists in prop::collection::vec(prop::collection::vec(path(), 0..30), 5),
        zxid in any::<i64>(),
        max_bytes in 1usize..400,
    ) {
        let w = SetWatches {
            data: lists[0].clone(),
            exist: lists[1].clone(),
            child: lists[2].clone(),
            persistent: lists[3].clone(),
            persistent_recursive: lists[4].clone(),
        };
        let frames = w.into_frames(zxid, max_bytes);
        prop_assert!(!frames.is_empty());
        let mut seen: Vec<Vec<String>> = vec![Vec::new(); 5];
        for f in &frames {
            prop_assert_eq!(ops::frame_opcode(f), op::SET_WATCHES2);
            let mut r = Reader::new(&f[12..]);
            prop_assert_eq!(r.i64().unwrap(), zxid);
            let mut bytes = 0;
            let mut paths = 0;
            for kind in seen.iter_mut() {
                let l = r.strs().unwrap();
                bytes += l.iter().map(|p| p.len() + 4).sum::<usize>();
                paths += l.len();
                kind.extend(l);
            }
            prop_assert_eq!(r.remaining(), 0);
            // A batch stays within the bound unless a single path is larger than it.
            prop_assert!(bytes <= max_bytes || paths == 1, "{} bytes in {} paths", bytes, paths);
        }
        prop_assert_eq!(seen, lists);
    }

    #[test]
    fn frames_split_any_stream_back_into_its_payloads(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..50), 0..8),
        chunk in 1usize..64,
    ) {
        let mut stream = Vec::new();
        for p in &payloads {
            stream.extend_from_slice(&(p.len() as i32).to_be_bytes());
            stream.extend_from_slice(p);
        }
        // Fed in arbitrary chunks, as a socket would.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.put_slice(piece);
            while let Some(f) = next_frame(&mut buf, 64).unwrap() {
                got.push(f.to_vec());
            }
        }
        prop_assert_eq!(got, payloads);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn a_truncated_multi_reply_is_refused(s in stat(), p in path(), cut in any::<prop::sample::Index>()) {
        let mut b = BytesMut::new();
        for (ty, body) in [(op::CREATE2, true), (op::SET_DATA, true), (op::CHECK, false)] {
            b.put_i32(ty.as_i32());
            b.put_bool_j(false);
            b.put_i32(0);
            if ty == op::CREATE2 {
                b.put_str_j(&p);
            }
            if body {
                s.write(&mut b);
            }
        }
        b.put_i32(-1);
        b.put_bool_j(true);
        b.put_i32(-1);
        prop_assert_eq!(read_multi(&b, |x| x.to_string()).unwrap().len(), 3);
        let cut = cut.index(b.len());
        prop_assert!(read_multi(&b[..cut], |x| x.to_string()).is_err());
    }

    #[test]
    fn chroot_strip_undoes_apply(root in path(), p in prop_oneof![Just("/".to_string()), path()]) {
        let c = Chroot::new(&root).unwrap();
        let server = c.apply(&p);
        prop_assert!(validate_path(&server, false).is_ok());
        let inside = format!("{root}/");
        prop_assert!(server == root || server.starts_with(&inside));
        prop_assert_eq!(c.strip(&server), p.as_str());
    }
}

#[test]
fn stat_is_68_bytes() {
    let mut b = BytesMut::new();
    Stat::default().write(&mut b);
    assert_eq!(b.len(), STAT_LEN);
}
