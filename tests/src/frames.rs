//! ZooKeeper's length-prefixed framing by hand, for tests that play a client or a server
//! without the library (`harness.rs`, `fake_server.rs`).

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// `payload` with its big-endian length in front.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// Appends a jute string (length, then bytes).
pub fn put_string(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as i32).to_be_bytes());
    buf.extend_from_slice(s.as_bytes());
}

/// The big-endian `i32` at the start of `b` (panics if `b` is shorter).
pub fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes(b[..4].try_into().unwrap())
}

/// The big-endian `i64` at the start of `b` (panics if `b` is shorter).
pub fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b[..8].try_into().unwrap())
}

/// Reads one frame's payload; `None` once the stream ends or fails, even mid-frame. It waits as
/// long as the peer does: bound it with a timeout where the peer may stall.
pub async fn read_frame(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut payload = vec![0u8; be_i32(&len) as usize];
    stream.read_exact(&mut payload).await.ok()?;
    Some(payload)
}
