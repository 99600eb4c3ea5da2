//! The connection under a session: plain TCP, or TLS over TCP.
//!
//! The serve loop reads and writes at once, so it splits the connection into halves. On the
//! plain path the halves are tokio's borrowed TCP halves (no lock, no allocation: the same cost
//! as before TLS existed, but for one `match` per poll). On the TLS path both halves share the
//! TLS session behind an uncontended mutex (the halves are polled by one task, one after the
//! other).
//!
//! One TLS subtlety: rustls may accept plain text from a write while the socket is full and keep
//! the encrypted records; the serve loop writes only while its own buffer has bytes, so those
//! records could wait until the next request. The TLS read half therefore flushes pending
//! records before every read: the loop always polls its read half, so whatever rustls holds
//! goes out as soon as the socket can take it.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{tcp, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::tls::{TlsConnector, TlsFailure};

type Tls = TlsStream<TcpStream>;

/// A connection to a server.
pub(crate) enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the TLS session is large).
    Tls(Box<Mutex<Tls>>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Plain(_) => "Transport::Plain",
            Transport::Tls(_) => "Transport::Tls",
        })
    }
}

impl Transport {
    /// Connects to `addr` (TCP_NODELAY set), then runs the TLS handshake when `tls` is given,
    /// with `host` (from the connect string) as the name to verify.
    pub(crate) async fn connect(
        addr: SocketAddr,
        host: &str,
        tls: Option<&TlsConnector>,
    ) -> Result<Transport, TlsFailure> {
        let tcp = TcpStream::connect(addr).await.map_err(TlsFailure::Io)?;
        tcp.set_nodelay(true).map_err(TlsFailure::Io)?;
        match tls {
            None => Ok(Transport::Plain(tcp)),
            Some(c) => {
                let s = c.connect(host, &addr.to_string(), tcp).await?;
                Ok(Transport::Tls(Box::new(Mutex::new(s))))
            }
        }
    }

    /// Whether this connection is TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// The TCP socket under the connection, for socket options (`SO_RCVLOWAT`: with TLS the
    /// kernel counts encrypted bytes, never fewer than the plain ones).
    pub(crate) fn tcp(&mut self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(m) => m.get_mut().unwrap_or_else(|e| e.into_inner()).get_ref().0,
        }
    }

    /// Halves to read and write at the same time from one task.
    pub(crate) fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        match self {
            Transport::Plain(s) => {
                let (r, w) = s.split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            Transport::Tls(s) => {
                let s: &Mutex<Tls> = s;
                (ReadHalf::Tls(s), WriteHalf::Tls(s))
            }
        }
    }
}

fn lock(m: &Mutex<Tls>) -> MutexGuard<'_, Tls> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends whatever encrypted records rustls still holds, as far as the socket takes them now
/// (when it cannot, the task is woken once it can). Errors are returned; pending is not.
fn flush_pending(s: &mut Tls, cx: &mut Context<'_>) -> io::Result<()> {
    if s.get_ref().1.wants_write() {
        if let Poll::Ready(Err(e)) = Pin::new(s).poll_flush(cx) {
            return Err(e);
        }
    }
    Ok(())
}

/// The reading half of a [`Transport`].
pub(crate) enum ReadHalf<'a> {
    Plain(tcp::ReadHalf<'a>),
    Tls(&'a Mutex<Tls>),
}

/// The writing half of a [`Transport`].
pub(crate) enum WriteHalf<'a> {
    Plain(tcp::WriteHalf<'a>),
    Tls(&'a Mutex<Tls>),
}

impl ReadHalf<'_> {
    /// Takes what can be read now without waiting (`WouldBlock` when nothing can), as
    /// `tokio::net::tcp::ReadHalf::try_read_buf` does. On the TLS path that is whatever rustls
    /// already decrypted or can decrypt from the bytes the socket holds.
    pub(crate) fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            ReadHalf::Plain(r) => r.try_read_buf(buf),
            ReadHalf::Tls(m) => {
                // A no-op waker: the serve loop polls its read half again, with its own
                // waker, before it sleeps.
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut s = lock(m);
                flush_pending(&mut s, &mut cx)?;
                let mut tmp = [0u8; 16 * 1024];
                let mut rb = ReadBuf::new(&mut tmp);
                match Pin::new(&mut *s).poll_read(&mut cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        buf.extend_from_slice(rb.filled());
                        Ok(rb.filled().len())
                    }
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }
}

impl AsyncRead for ReadHalf<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Tls(m) => {
                let mut s = lock(m);
                flush_pending(&mut s, cx)?;
                Pin::new(&mut *s).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for WriteHalf<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Tls(m) => Pin::new(&mut *lock(m)).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteHalf::Tls(m) => Pin::new(&mut *lock(m)).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteHalf::Plain(w) => w.is_write_vectored(),
            WriteHalf::Tls(_) => true,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Tls(m) => Pin::new(&mut *lock(m)).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Tls(m) => Pin::new(&mut *lock(m)).poll_shutdown(cx),
        }
    }
}

// The whole connection, for the handshake (one request, one answer at a time).

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(m) => {
                let s = m.get_mut().unwrap_or_else(|e| e.into_inner());
                flush_pending(s, cx)?;
                Pin::new(s).poll_read(cx, buf)
            }
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(m) => {
                Pin::new(m.get_mut().unwrap_or_else(|e| e.into_inner())).poll_write(cx, buf)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(m) => {
                Pin::new(m.get_mut().unwrap_or_else(|e| e.into_inner())).poll_flush(cx)
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(m) => {
                Pin::new(m.get_mut().unwrap_or_else(|e| e.into_inner())).poll_shutdown(cx)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn plain_halves_read_and_write_at_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let mut t = Transport::connect(addr, "127.0.0.1", None).await.unwrap();
        assert!(!t.is_tls());
        assert!(t.tcp().nodelay().unwrap());
        let (mut rd, mut wr) = t.split();
        let mut got = BytesMut::new();
        assert_eq!(
            rd.try_read_buf(&mut got).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        wr.write_all(b"hello").await.unwrap();
        while got.len() < 5 {
            rd.read_buf(&mut got).await.unwrap();
        }
        assert_eq!(&got[..], b"hello");
        echo.await.unwrap();
    }
}
