//! A fixed window of futures polled inside one task (a small `FuturesUnordered`, since the
//! `futures` crate is not a dependency).
//!
//! Why not one task per slot: a wazoo reply completes from the client's session thread, and on a
//! current-thread runtime every wake of a task from another thread pushes it to the inject queue
//! *and* writes the runtime's eventfd, one `write(2)` per reply. Here every slot's waker sends
//! its index on a channel that wakes the one driver task; tokio drops the wakes that find that
//! task already notified, so a burst of replies costs a single eventfd write, and only the slots
//! that were woken are polled again.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::stats::nanos_since;

/// One slot's waker: queues the slot's index (once until it is polled again) on the ready
/// channel, whose receiver wakes the driver task.
#[derive(Debug)]
struct SlotWaker {
    index: usize,
    queued: AtomicBool,
    ready: mpsc::UnboundedSender<usize>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            // The receiver lives as long as the run; a send after it is harmless.
            let _ = self.ready.send(self.index);
        }
    }
}

/// One place in the window: the operation in flight there, when it started, and its waker.
struct Slot<Fut> {
    fut: Pin<Box<Option<Fut>>>,
    started: Instant,
    state: Arc<SlotWaker>,
    waker: Waker,
}

/// Runs operations `0..count`, made by `op(i)`, keeping up to `window` in flight, and returns
/// each one's latency (nanoseconds from creating its future to its completion), in completion
/// order. Stops at the first error.
pub async fn run<E, Fut, F>(count: usize, window: usize, mut op: F) -> Result<Vec<u64>, E>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    let width = window.clamp(1, count.max(1));
    let mut slots: Vec<Slot<Fut>> = (0..width)
        .map(|index| {
            let state = Arc::new(SlotWaker {
                index,
                queued: AtomicBool::new(false),
                ready: tx.clone(),
            });
            Slot {
                fut: Box::pin(None),
                started: Instant::now(),
                waker: Waker::from(Arc::clone(&state)),
                state,
            }
        })
        .collect();
    drop(tx);
    let mut lat = Vec::with_capacity(count);
    let mut next = 0;
    let mut in_flight = 0;
    // Every slot starts out "woken": its first poll starts its first operation.
    let mut todo: Vec<usize> = (0..width).collect();
    std::future::poll_fn(|cx| loop {
        for &i in &todo {
            let slot = &mut slots[i];
            slot.state.queued.store(false, Ordering::Release);
            let mut scx = Context::from_waker(&slot.waker);
            loop {
                if slot.fut.is_none() {
                    if next >= count {
                        break;
                    }
                    slot.fut.set(Some(op(next)));
                    slot.started = Instant::now();
                    next += 1;
                    in_flight += 1;
                }
                let fut = slot.fut.as_mut().as_pin_mut().expect("checked above");
                match fut.poll(&mut scx) {
                    Poll::Pending => break,
                    Poll::Ready(r) => {
                        slot.fut.set(None);
                        in_flight -= 1;
                        if let Err(e) = r {
                            return Poll::Ready(Err(e));
                        }
                        lat.push(nanos_since(slot.started));
                    }
                }
            }
        }
        todo.clear();
        if in_flight == 0 && next >= count {
            return Poll::Ready(Ok(()));
        }
        // Every slot's waker holds a sender, so the channel never closes here.
        match rx.poll_recv(cx) {
            Poll::Ready(Some(i)) => todo.push(i),
            Poll::Ready(None) | Poll::Pending => return Poll::Pending,
        }
        while let Ok(i) = rx.try_recv() {
            todo.push(i);
        }
    })
    .await?;
    Ok(lat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn runs_every_op_once_with_a_bounded_window() {
        use std::cell::Cell;
        let live = Cell::new(0usize);
        let peak = Cell::new(0usize);
        let seen = std::cell::RefCell::new(Vec::new());
        let lat = run(100, 7, |i| {
            let (live, peak, seen) = (&live, &peak, &seen);
            async move {
                live.set(live.get() + 1);
                peak.set(peak.get().max(live.get()));
                // Completes from another thread, as wazoo replies do.
                let (tx, rx) = tokio::sync::oneshot::channel();
                std::thread::spawn(move || tx.send(()).unwrap());
                rx.await.unwrap();
                seen.borrow_mut().push(i);
                live.set(live.get() - 1);
                Ok::<(), ()>(())
            }
        })
        .await
        .unwrap();
        assert_eq!(lat.len(), 100);
        assert!(peak.get() <= 7 && peak.get() > 1, "peak {}", peak.get());
        let mut seen = seen.into_inner();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn stops_at_the_first_error_and_handles_empty_runs() {
        let r = run(10, 3, |i| async move {
            if i == 4 {
                Err(i)
            } else {
                Ok(())
            }
        })
        .await;
        assert_eq!(r, Err(4));
        let r = run(0, 3, |_| async { Ok::<(), ()>(()) }).await;
        assert_eq!(r, Ok(vec![]));
    }
}
