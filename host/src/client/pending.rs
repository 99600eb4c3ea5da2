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
use crate::tenant::Admission;

use super::{Client, Inner};

type Decode<T> = fn(&Chroot, Result<Bytes>) -> Result<T>;

/// A request ready to go. `.await` it (it is sent when the future is created, or, for a
/// [tenant](crate::Tenant) at its cap, as soon as one of its requests completes), or
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
    ///
    /// A handle made [for a tenant](Client::for_tenant) that already has its cap of requests in
    /// flight fails at once with [`Error::Busy`] (the callback is not called); the slot is
    /// given back when the callback has run.
    pub fn rawlink(self, f: impl FnOnce(Result<T>, CallbackInfo) + Send + 'static) -> Result<()> {
        let admission = match (&self.req, &self.client.tenant) {
            (Ok(_), Some(t)) => t.try_admit()?,
            _ => Admission::default(),
        };
        self.link(admission, f)
    }

    /// [`Pending::rawlink`], but a tenant at its cap waits for a slot instead of failing with
    /// [`Error::Busy`]. For the plugin host's bindings.
    #[cfg(feature = "plugins")]
    pub(crate) async fn rawlink_admitted(
        self,
        f: impl FnOnce(Result<T>, CallbackInfo) + Send + 'static,
    ) -> Result<()> {
        let admission = match (&self.req, &self.client.tenant) {
            (Ok(_), Some(t)) => t.admit().await,
            _ => Admission::default(),
        };
        self.link(admission, f)
    }

    fn link(
        self,
        admission: Admission,
        f: impl FnOnce(Result<T>, CallbackInfo) + Send + 'static,
    ) -> Result<()> {
        let (frame, effect) = self.req?;
        let chroot = self.client.inner.clone();
        let decode = self.decode;
        let reply = ReplySink::Lane {
            lanes: self.client.lanes.clone(),
            job: Box::new(move |res, info| {
                let _slot = admission;
                f(decode(&chroot.chroot, res), info)
            }),
        };
        self.client.send_request(frame, effect, reply)
    }
}

impl<T> IntoFuture for Pending<T> {
    type Output = Result<T>;
    type IntoFuture = PendingFuture<T>;

    fn into_future(self) -> PendingFuture<T> {
        let state = match self.req {
            Err(e) => State::Failed(e),
            Ok((frame, effect)) => match &self.client.tenant {
                None => send(&self.client, frame, effect, Admission::default()),
                Some(t) => match t.admit_now() {
                    Some(a) => send(&self.client, frame, effect, a),
                    // At the cap: wait for a slot, then send.
                    None => {
                        let t = t.clone();
                        State::Admitting {
                            admit: Box::pin(async move { t.admit().await }),
                            client: self.client.clone(),
                            req: Some((frame, effect)),
                        }
                    }
                },
            },
        };
        PendingFuture {
            inner: self.client.inner,
            state,
            decode: self.decode,
        }
    }
}

/// Sends a request: the future then awaits its reply.
fn send(client: &Client, frame: BytesMut, effect: Effect, admission: Admission) -> State {
    let (tx, rx) = oneshot::channel();
    match client.send_request(frame, effect, ReplySink::Oneshot(tx)) {
        Ok(()) => State::Sent {
            rx,
            _admission: admission,
        },
        Err(e) => State::Failed(e),
    }
}

/// The future of an awaited [`Pending`].
#[must_use = "futures do nothing unless polled"]
pub struct PendingFuture<T> {
    inner: Arc<Inner>,
    state: State,
    decode: Decode<T>,
}

enum State {
    /// Waiting for a slot in the tenant's cap.
    Admitting {
        admit: Pin<Box<dyn Future<Output = Admission> + Send>>,
        client: Client,
        req: Option<(BytesMut, Effect)>,
    },
    /// Sent; the slot is held until the reply is here.
    Sent {
        rx: oneshot::Receiver<Result<Bytes>>,
        _admission: Admission,
    },
    /// Refused before it was sent.
    Failed(Error),
    /// The result was returned.
    Done,
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
        loop {
            let res = match &mut this.state {
                State::Sent { rx, .. } => match Pin::new(rx).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(r) => r.unwrap_or(Err(Error::Closed)),
                },
                State::Admitting { admit, client, req } => {
                    let Poll::Ready(admission) = admit.as_mut().poll(cx) else {
                        return Poll::Pending;
                    };
                    let (frame, effect) = req.take().expect("admitted once");
                    this.state = send(client, frame, effect, admission);
                    continue;
                }
                State::Failed(_) => match std::mem::replace(&mut this.state, State::Done) {
                    State::Failed(e) => Err(e),
                    _ => unreachable!("matched Failed above"),
                },
                State::Done => panic!("PendingFuture polled after completion"),
            };
            // Dropping the state gives the tenant's slot back.
            this.state = State::Done;
            return Poll::Ready((this.decode)(&this.inner.chroot, res));
        }
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
