//! A request ready to go: [`Pending`], awaited as a [`PendingFuture`] or linked to a callback
//! on the completion lane.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::dispatch::CallbackInfo;
use crate::error::{Error, Result};
use crate::path::Chroot;
use crate::session::{Effect, ReplySink};

use super::{Client, Inner};

type Decode<T> = fn(&Chroot, Result<Bytes>) -> Result<T>;

/// A request ready to go. `.await` it (it is sent when the future is created), or
/// [`rawlink`](Pending::rawlink) a callback to the completion lane (Kazoo's `rawlink`).
///
/// Invalid arguments (a bad path, an empty ACL) were already found when the request was built:
/// awaiting returns the error; `rawlink` returns it instead of calling the callback.
#[must_use = "a request is sent only when awaited or linked"]
pub struct Pending<T> {
    client: Client,
    req: Result<(BytesMut, Effect)>,
    decode: Decode<T>,
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("valid", &self.req.is_ok())
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Pending<T> {
    /// Sends the request; `f` runs on the completion lane with its result, exactly once,
    /// whatever happens to the connection (a result, `ConnectionLoss`, `SessionExpired` or
    /// `Closed`). Completion callbacks run in request order.
    pub fn rawlink(self, f: impl FnOnce(Result<T>, CallbackInfo) + Send + 'static) -> Result<()> {
        let (frame, effect) = self.req?;
        let chroot = self.client.inner.clone();
        let decode = self.decode;
        let reply = ReplySink::Lane {
            lanes: self.client.lanes.clone(),
            job: Box::new(move |res, info| f(decode(&chroot.chroot, res), info)),
        };
        self.client.send_request(frame, effect, reply)
    }
}

impl<T> IntoFuture for Pending<T> {
    type Output = Result<T>;
    type IntoFuture = PendingFuture<T>;

    fn into_future(self) -> PendingFuture<T> {
        let rx = self.req.and_then(|(frame, effect)| {
            let (tx, rx) = oneshot::channel();
            self.client
                .send_request(frame, effect, ReplySink::Oneshot(tx))?;
            Ok(rx)
        });
        PendingFuture {
            inner: self.client.inner,
            rx: Some(rx),
            decode: self.decode,
        }
    }
}

/// The future of an awaited [`Pending`].
#[must_use = "futures do nothing unless polled"]
pub struct PendingFuture<T> {
    inner: Arc<Inner>,
    rx: Option<Result<oneshot::Receiver<Result<Bytes>>>>,
    decode: Decode<T>,
}

impl<T> std::fmt::Debug for PendingFuture<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingFuture").finish_non_exhaustive()
    }
}

impl<T> Future for PendingFuture<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = &mut *self;
        let res = match this.rx.as_mut().expect("polled after completion") {
            Err(e) => Err(e.clone()),
            Ok(rx) => match Pin::new(rx).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(r) => r.unwrap_or(Err(Error::Closed)),
            },
        };
        this.rx = None;
        Poll::Ready((this.decode)(&this.inner.chroot, res))
    }
}

impl Client {
    pub(super) fn pending<T>(
        &self,
        req: Result<(BytesMut, Effect)>,
        decode: Decode<T>,
    ) -> Pending<T> {
        Pending {
            client: self.clone(),
            req,
            decode,
        }
    }
}
