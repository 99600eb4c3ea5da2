//! The floor: `wazoo-bare HOST:PORT [n=20000] [path=/bench-bare]` speaks just enough of the
//! protocol over one blocking socket (connect, then `getData` one at a time, then pipelined
//! with a window of 1000) and prints the process's CPU per operation, so wazoo's numbers can be
//! read against what the kernel and the server cost on the same machine at the same moment.
//! It creates `path` (100 bytes) if missing and deletes it at the end.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

fn arg(args: &[String], key: &str, default: &str) -> String {
    args.iter()
        .find_map(|a| a.strip_prefix(&format!("{key}=")).map(str::to_string))
        .unwrap_or_else(|| default.to_string())
}

/// User + system CPU of the whole process, in seconds.
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the ')'.
    (ticks(11) + ticks(12)) / 100.0
}

fn frame(xid: i32, opcode: i32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(12 + body.len());
    b.extend_from_slice(&((8 + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&xid.to_be_bytes());
    b.extend_from_slice(&opcode.to_be_bytes());
    b.extend_from_slice(body);
    b
}

fn string(b: &mut Vec<u8>, s: &[u8]) {
    b.extend_from_slice(&(s.len() as i32).to_be_bytes());
    b.extend_from_slice(s);
}

/// Sends one request and returns the reply's error code.
fn call(s: &mut TcpStream, xid: i32, opcode: i32, body: &[u8]) -> i32 {
    s.write_all(&frame(xid, opcode, body)).expect("write");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("read");
    let mut reply = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).expect("read");
    i32::from_be_bytes(reply[12..16].try_into().unwrap())
}

fn get_request(xid: i32, path: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(32);
    let len = 4 + 4 + 4 + path.len() + 1;
    b.extend_from_slice(&(len as i32).to_be_bytes());
    b.extend_from_slice(&xid.to_be_bytes());
    b.extend_from_slice(&4i32.to_be_bytes()); // getData
    b.extend_from_slice(&(path.len() as i32).to_be_bytes());
    b.extend_from_slice(path.as_bytes());
    b.push(0);
    b
}

/// Reads one frame into `buf` (from `pending`, refilled from the socket as needed).
fn read_frame(s: &mut TcpStream, pending: &mut Vec<u8>, chunk: &mut [u8]) {
    loop {
        if pending.len() >= 4 {
            let len = i32::from_be_bytes(pending[..4].try_into().unwrap()) as usize;
            if pending.len() >= 4 + len {
                let err = i32::from_be_bytes(pending[16..20].try_into().unwrap());
                assert!(len < 16 || err == 0, "the server answered with error {err}");
                pending.drain(..4 + len);
                return;
            }
        }
        let n = s.read(chunk).expect("read");
        assert!(n > 0, "the server closed the connection");
        pending.extend_from_slice(&chunk[..n]);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let host = args
        .first()
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:2181".into());
    let n: usize = arg(&args, "n", "20000").parse().expect("n");
    let path = arg(&args, "path", "/bench-bare");
    let mut s = TcpStream::connect(&host).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    // ConnectRequest: protocol 0, lastZxid 0, timeout 30 s, session 0, 16-byte password, ro.
    let mut c = Vec::new();
    c.extend_from_slice(&0i32.to_be_bytes());
    c.extend_from_slice(&0i64.to_be_bytes());
    c.extend_from_slice(&30000i32.to_be_bytes());
    c.extend_from_slice(&0i64.to_be_bytes());
    c.extend_from_slice(&16i32.to_be_bytes());
    c.extend_from_slice(&[0u8; 16]);
    c.push(0);
    let mut f = (c.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(&c);
    s.write_all(&f).expect("connect request");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("connect response");
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("connect response");

    // create(path, 100 bytes, world:anyone all, persistent); NodeExists is fine.
    let mut body = Vec::new();
    string(&mut body, path.as_bytes());
    string(&mut body, &[b'x'; 100]);
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&31i32.to_be_bytes());
    string(&mut body, b"world");
    string(&mut body, b"anyone");
    body.extend_from_slice(&0i32.to_be_bytes());
    let err = call(&mut s, 1, 1, &body);
    assert!(err == 0 || err == -110, "create {path}: error {err}");

    let mut pending = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut xid = 1;
    let mut rows = Vec::new();

    // Sequential.
    let (t, c0) = (Instant::now(), cpu());
    for _ in 0..n {
        xid += 1;
        s.write_all(&get_request(xid, &path)).expect("write");
        read_frame(&mut s, &mut pending, &mut chunk);
    }
    rows.push(("seq_get", n, t.elapsed().as_secs_f64(), cpu() - c0));

    // Pipelined, window 1000: top the window up after each read.
    let window = 1000;
    let (t, c0) = (Instant::now(), cpu());
    let (mut sent, mut done) = (0, 0);
    let mut out = Vec::with_capacity(64 * 1024);
    while done < n {
        while sent < n && sent - done < window {
            xid += 1;
            out.extend_from_slice(&get_request(xid, &path));
            sent += 1;
        }
        if !out.is_empty() {
            s.write_all(&out).expect("write");
            out.clear();
        }
        read_frame(&mut s, &mut pending, &mut chunk);
        done += 1;
        // Take every reply already buffered before writing again.
        while done < n && pending.len() >= 4 && {
            let l = i32::from_be_bytes(pending[..4].try_into().unwrap()) as usize;
            pending.len() >= 4 + l
        } {
            read_frame(&mut s, &mut pending, &mut chunk);
            done += 1;
        }
    }
    rows.push(("pipelined_get", n, t.elapsed().as_secs_f64(), cpu() - c0));

    // delete(path, any version)
    let mut body = Vec::new();
    string(&mut body, path.as_bytes());
    body.extend_from_slice(&(-1i32).to_be_bytes());
    call(&mut s, xid + 1, 2, &body);

    for (w, n, secs, cpu_s) in rows {
        println!(
            "{{\"client\":\"bare\",\"workload\":\"{w}\",\"n\":{n},\"secs\":{secs:.3},\"ops_s\":{:.1},\"cpu_s\":{cpu_s:.3},\"cpu_us_per_op\":{:.2}}}",
            n as f64 / secs,
            cpu_s * 1e6 / n as f64
        );
    }
}
