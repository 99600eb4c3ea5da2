//! Reaching a server: one connection attempt (TCP, TLS, the handshake, SASL) within its time,
//! and, while connected to a read-only server, the search for a read-write one.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};

use super::hosts::{self, HostPort, TlsSetting};
use super::sasl::{self, SaslConfig, SaslFailure};
use super::transport::Transport;
use crate::error::Error;
use crate::proto::frame::next_frame;
use crate::proto::records::{ConnectRequest, ConnectResponse};
use crate::tls::{TlsConnector, TlsFailure};

/// A connection through its handshake.
pub(super) struct Established {
    pub stream: Transport,
    /// What was read past the handshake's answer.
    pub rbuf: BytesMut,
    pub resp: ConnectResponse,
    pub addr: SocketAddr,
    pub max_frame: usize,
}

/// Why a connection attempt failed.
pub(super) enum Failed {
    /// The network's or the server's doing (refused, reset, timed out): try the next server.
    Transient(String),
    /// Certificates or credentials a person must fix.
    Fatal(Error),
}

impl Failed {
    /// An I/O error of a connection, TLS errors sorted out.
    fn io(tls: Option<&TlsConnector>, addr: SocketAddr, e: std::io::Error) -> Failed {
        match tls {
            Some(t) => t.classify(&addr.to_string(), e).into(),
            None => Failed::Transient(e.to_string()),
        }
    }
}

impl From<TlsFailure> for Failed {
    fn from(f: TlsFailure) -> Failed {
        match f {
            TlsFailure::Io(e) => Failed::Transient(e.to_string()),
            TlsFailure::Fatal(e) => Failed::Fatal(e),
        }
    }
}

/// One connection attempt: where to, and how.
pub(super) struct Attempt {
    pub addr: SocketAddr,
    /// The server's name as the connect string gives it (what TLS verifies).
    pub host: String,
    pub tls: Option<TlsConnector>,
    pub sasl: Option<SaslConfig>,
    pub req: ConnectRequest,
    /// For the whole attempt: TCP, TLS, the handshake and SASL.
    pub timeout: Duration,
    pub max_frame: usize,
}

/// Connects (over TLS when `tls` is given, verifying `host`), runs the handshake and, with
/// `sasl`, the SASL exchange, all within `timeout`.
pub(super) async fn handshake(attempt: Attempt) -> Result<Established, Failed> {
    let Attempt {
        addr,
        host,
        tls,
        sasl,
        req,
        timeout,
        max_frame,
    } = attempt;
    let fut = async {
        let tls = tls.as_ref();
        let mut stream = Transport::connect(addr, &host, tls).await?;
        let mut b = BytesMut::with_capacity(64);
        b.put_i32(0);
        req.write(&mut b);
        let len = (b.len() - 4) as i32;
        b[0..4].copy_from_slice(&len.to_be_bytes());
        stream
            .write_all(&b)
            .await
            .map_err(|e| Failed::io(tls, addr, e))?;
        stream.flush().await.map_err(|e| Failed::io(tls, addr, e))?;
        let mut rbuf = BytesMut::with_capacity(64 * 1024);
        loop {
            if let Some(f) =
                next_frame(&mut rbuf, max_frame).map_err(|e| Failed::Transient(e.to_string()))?
            {
                let resp =
                    ConnectResponse::read(&f).map_err(|e| Failed::Transient(e.to_string()))?;
                if let (Some(cfg), true) = (&sasl, resp.timeout_ms > 0) {
                    match sasl::exchange(&mut stream, &mut rbuf, max_frame, cfg).await {
                        Ok(()) => debug!(%addr, user = cfg.user(), "SASL DIGEST-MD5 authenticated"),
                        Err(SaslFailure::Io(e)) => return Err(Failed::io(tls, addr, e)),
                        Err(SaslFailure::Fatal(e)) => {
                            if matches!(e, Error::AuthFailed | Error::SessionClosedRequireSaslAuth)
                            {
                                warn!(
                                    %addr,
                                    user = cfg.user(),
                                    "the server refused the SASL credentials: wrong user name \
                                     or password ({e})"
                                );
                            }
                            return Err(Failed::Fatal(e));
                        }
                    }
                }
                debug!(%addr, tls = stream.is_tls(), sasl = sasl.is_some(), "handshake done");
                return Ok(Established {
                    stream,
                    rbuf,
                    resp,
                    addr,
                    max_frame,
                });
            }
            let n = stream
                .read_buf(&mut rbuf)
                .await
                .map_err(|e| Failed::io(tls, addr, e))?;
            if n == 0 {
                return Err(Failed::Transient(
                    "the server closed the connection during the handshake".to_string(),
                ));
            }
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(Failed::Transient(format!(
            "no handshake within {timeout:?}"
        ))),
    }
}

/// Asks every other server `isro` (over TLS for those that use it) until one answers `rw`
/// (100 ms, doubling to 60 s).
pub(super) async fn probe_read_write(
    hosts: Vec<HostPort>,
    current: SocketAddr,
    tls: Option<TlsSetting>,
) -> SocketAddr {
    let mut delay = Duration::from_millis(100);
    loop {
        tokio::time::sleep(delay).await;
        for h in &hosts {
            let Ok(addrs) = tokio::net::lookup_host((h.host.as_str(), h.port)).await else {
                continue;
            };
            for a in addrs {
                if a == current {
                    continue;
                }
                if isro(a, &h.host, hosts::tls_for(&tls, h)).await.as_deref() == Some("rw") {
                    return a;
                }
            }
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// The four-letter word `isro`: `rw` or `ro`, or None when the server did not answer in time.
async fn isro(addr: SocketAddr, host: &str, tls: Option<&TlsConnector>) -> Option<String> {
    let fut = async {
        let mut s = Transport::connect(addr, host, tls).await.ok()?;
        s.write_all(b"isro").await.ok()?;
        s.flush().await.ok()?;
        // The server answers two bytes and closes; over TLS it may close without close_notify,
        // which reads as an error after the answer: keep what came.
        let mut out = Vec::new();
        let mut buf = [0u8; 16];
        while out.len() < 2 {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8(out).ok()
    };
    tokio::time::timeout(Duration::from_secs(1), fut)
        .await
        .ok()
        .flatten()
}
