//! The session socket's receive low-water mark: fewer wake-ups while many replies are due.

use std::time::Duration;

use tokio::net::TcpStream;
use tracing::debug;

use super::connection::CORK_AWAITING;
use crate::proto::records::REPLY_HEADER_LEN;

/// The smallest reply the server sends (length prefix and reply header, no body).
const MIN_REPLY: usize = 4 + REPLY_HEADER_LEN;
/// The most the socket's receive low-water mark is raised to (see [`RecvLowat`]).
const MAX_LOWAT: usize = 16 * 1024;

/// The session socket's receive low-water mark (`SO_RCVLOWAT`): while many replies are due,
/// the kernel wakes the actor only once enough bytes for several of them have arrived, so one
/// read takes a batch instead of one reply per wake-up (on a 2-core machine with the server
/// next door, one wake-up per reply was most of the client's CPU).
///
/// The mark never exceeds what the replies still due must add up to (each is at least
/// [`MIN_REPLY`] bytes), and an end of stream is reported whatever the mark, so nothing can
/// wait for bytes that never come. It adapts to how fast replies arrive: a mark reached doubles
/// the cap (up to [`MAX_LOWAT`]); a mark not reached within [`LOWAT_WAIT`] halves it (down to
/// [`MIN_LOWAT`]) and the actor reads what is there anyway, so a reply waits at most that long
/// (plus the timer's 1 ms granularity). Values are powers of two so the option changes a few
/// times per burst, not per read. Only while at least [`CORK_AWAITING`] replies are due:
/// sequential callers never see it.
pub(super) struct RecvLowat {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::RawFd,
    /// The mark now set on the socket (1: none).
    current: usize,
    /// The most the mark may be raised to now.
    cap: usize,
    /// When the actor reads anyway although the mark is not reached.
    timer: std::pin::Pin<Box<tokio::time::Sleep>>,
}

/// See [`RecvLowat`].
const LOWAT_WAIT: Duration = Duration::from_millis(1);
/// See [`RecvLowat`].
const MIN_LOWAT: usize = 512;

impl RecvLowat {
    pub(super) fn new(stream: &TcpStream) -> RecvLowat {
        #[cfg(target_os = "linux")]
        let fd = std::os::fd::AsRawFd::as_raw_fd(stream);
        #[cfg(not(target_os = "linux"))]
        let _ = stream;
        RecvLowat {
            #[cfg(target_os = "linux")]
            fd,
            current: 1,
            cap: MAX_LOWAT,
            timer: Box::pin(tokio::time::sleep(LOWAT_WAIT)),
        }
    }

    /// Whether the wait timer is armed (the mark is raised).
    pub(super) fn waiting(&self) -> bool {
        self.current > 1
    }

    /// The wait timer.
    pub(super) async fn expired(&mut self) {
        self.timer.as_mut().await
    }

    /// The socket was readable: with a mark set, it was reached.
    pub(super) fn read(&mut self) {
        if self.current > 1 {
            self.cap = (self.cap * 2).min(MAX_LOWAT);
            self.restart();
        }
    }

    /// The mark was not reached in time.
    pub(super) fn missed(&mut self) {
        self.cap = (self.cap / 2).max(MIN_LOWAT);
        self.restart();
    }

    fn restart(&mut self) {
        self.timer
            .as_mut()
            .reset(tokio::time::Instant::now() + LOWAT_WAIT);
    }

    /// Sets the mark for `due` replies still awaited.
    pub(super) fn update(&mut self, due: usize) {
        let want = if due < CORK_AWAITING {
            1
        } else {
            let bytes = ((due - CORK_AWAITING / 2) * MIN_REPLY).min(self.cap);
            1usize << (usize::BITS - 1 - bytes.leading_zeros())
        };
        if want != self.current {
            if self.current == 1 {
                self.restart();
            }
            self.set(want);
        }
    }

    fn set(&mut self, value: usize) {
        self.current = value;
        #[cfg(target_os = "linux")]
        {
            let v = value as libc::c_int;
            // SAFETY: `fd` is the open socket this value belongs to (it outlives the serve
            // loop that owns `self`), and the option value is a valid `c_int` of the given size.
            let rc = unsafe {
                libc::setsockopt(
                    self.fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVLOWAT,
                    (&v as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                // Not fatal: without the mark reads are merely smaller.
                debug!("SO_RCVLOWAT: {}", std::io::Error::last_os_error());
                self.current = 1;
            }
        }
    }
}
