//! A fake server that speaks just enough of the protocol to complete the handshake, then sends
//! what a broken or hostile server might: the client must answer with typed errors and a
//! reconnect, never a panic, and never allocate what a frame merely claims.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use wazoo::{Client, Error};
use wazoo_tests::frames::{frame, read_frame};

/// What the fake server does after the handshake, on the first request of a connection.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// A reply frame that announces 2 GiB.
    Oversized,
    /// A negative frame length.
    NegativeLength,
    /// A reply whose header is cut short.
    TruncatedHeader,
    /// A reply for an xid nobody asked for.
    WrongXid,
    /// A well-framed getData reply whose body is truncated inside the Stat.
    TruncatedBody,
    /// Garbage bytes instead of a frame, then the connection closes.
    GarbageThenClose,
}

/// Serves connections; reports the session id each ConnectRequest carried.
async fn fake_server(mode: Misbehaviour) -> (String, mpsc::UnboundedReceiver<i64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut conn_no = 0u32;
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            conn_no += 1;
            let tx = tx.clone();
            tokio::spawn(async move {
                let Some(req) = read_frame(&mut s).await else {
                    return;
                };
                // ConnectRequest: int protocolVersion, long lastZxid, int timeout, long sessionId
                let session = i64::from_be_bytes(req[16..24].try_into().unwrap());
                let _ = tx.send(session);
                let mut resp = Vec::new();
                resp.extend_from_slice(&0i32.to_be_bytes());
                resp.extend_from_slice(&4000i32.to_be_bytes());
                resp.extend_from_slice(&0x5eed_i64.to_be_bytes());
                resp.extend_from_slice(&16i32.to_be_bytes());
                resp.extend_from_slice(&[9u8; 16]);
                resp.push(0);
                s.write_all(&frame(&resp)).await.unwrap();
                loop {
                    let Some(req) = read_frame(&mut s).await else {
                        return;
                    };
                    let xid = i32::from_be_bytes(req[0..4].try_into().unwrap());
                    let opcode = i32::from_be_bytes(req[4..8].try_into().unwrap());
                    if xid == -2 {
                        // ping
                        let mut h = (-2i32).to_be_bytes().to_vec();
                        h.extend_from_slice(&0i64.to_be_bytes());
                        h.extend_from_slice(&0i32.to_be_bytes());
                        let _ = s.write_all(&frame(&h)).await;
                        continue;
                    }
                    // From the second connection on, behave: answer NoNode.
                    let mut h = xid.to_be_bytes().to_vec();
                    h.extend_from_slice(&1i64.to_be_bytes());
                    if conn_no > 1 || opcode == -11 {
                        h.extend_from_slice(
                            &(if opcode == -11 { 0 } else { -101i32 }).to_be_bytes(),
                        );
                        let _ = s.write_all(&frame(&h)).await;
                        continue;
                    }
                    let bytes = match mode {
                        Misbehaviour::Oversized => 0x7fff_fff0_i32.to_be_bytes().to_vec(),
                        Misbehaviour::NegativeLength => (-5i32).to_be_bytes().to_vec(),
                        Misbehaviour::TruncatedHeader => frame(&h[..6]),
                        Misbehaviour::WrongXid => {
                            let mut w = (xid + 100).to_be_bytes().to_vec();
                            w.extend_from_slice(&[0u8; 12]);
                            frame(&w)
                        }
                        Misbehaviour::TruncatedBody => {
                            h.extend_from_slice(&0i32.to_be_bytes()); // err 0
                            h.extend_from_slice(&3i32.to_be_bytes());
                            h.extend_from_slice(b"abc");
                            h.extend_from_slice(&[0u8; 20]); // a Stat needs 68
                            frame(&h)
                        }
                        Misbehaviour::GarbageThenClose => b"\x00\x00\x00\x10garbage".to_vec(),
                    };
                    let _ = s.write_all(&bytes).await;
                    if matches!(mode, Misbehaviour::GarbageThenClose) {
                        return;
                    }
                }
            });
        }
    });
    (addr.to_string(), rx)
}

async fn check(mode: Misbehaviour, first_error: Error) {
    wazoo_tests::init_tracing();
    let (addr, mut sessions) = fake_server(mode).await;
    let zk = Client::builder(&addr)
        .max_backoff(Duration::from_millis(100))
        .connect()
        .await
        .expect("handshake");
    assert_eq!(
        sessions.recv().await,
        Some(0),
        "the first connection asks for a new session"
    );
    let r = tokio::time::timeout(Duration::from_secs(10), zk.get_data("/x"))
        .await
        .expect("an answer, not a hang");
    assert_eq!(r, Err(first_error.clone()), "{mode:?}");
    if first_error == Error::ConnectionLoss {
        // The client reconnected, carrying its session.
        let again = tokio::time::timeout(Duration::from_secs(10), sessions.recv())
            .await
            .expect("a reconnect");
        assert_eq!(
            again,
            Some(0x5eed),
            "{mode:?}: the reconnect resumes the session"
        );
    }
    // And it works afterwards.
    let r = tokio::time::timeout(Duration::from_secs(10), zk.get_data("/x"))
        .await
        .expect("an answer");
    assert_eq!(
        r,
        Err(Error::NoNode),
        "{mode:?}: the client goes on after the bad frame"
    );
    zk.close().await;
}

#[tokio::test]
async fn oversized_frame_is_refused_and_the_client_reconnects() {
    check(Misbehaviour::Oversized, Error::ConnectionLoss).await;
}

#[tokio::test]
async fn negative_frame_length_is_refused() {
    check(Misbehaviour::NegativeLength, Error::ConnectionLoss).await;
}

#[tokio::test]
async fn truncated_reply_header_is_refused() {
    check(Misbehaviour::TruncatedHeader, Error::ConnectionLoss).await;
}

#[tokio::test]
async fn reply_for_an_unknown_xid_is_refused() {
    check(Misbehaviour::WrongXid, Error::ConnectionLoss).await;
}

#[tokio::test]
async fn garbage_then_close_is_a_connection_loss() {
    check(Misbehaviour::GarbageThenClose, Error::ConnectionLoss).await;
}

#[tokio::test]
async fn truncated_body_is_a_typed_error_for_that_request_only() {
    wazoo_tests::init_tracing();
    let (addr, _sessions) = fake_server(Misbehaviour::TruncatedBody).await;
    let zk = Client::connect(&addr).await.unwrap();
    let r = zk.get_data("/x").await;
    assert!(matches!(r, Err(Error::MalformedResponse(_))), "{r:?}");
    zk.close().await;
}
