//! Tenants of a shared session: who a request belongs to, and how many it may have in flight.
//!
//! Every plugin of a host shares the host's ZooKeeper session (unless it asks for its own), and
//! so the session's request pipeline. A [`Tenant`] is one owner of requests on it: it is
//! admitted up to a cap of requests in flight (sent, or waiting in the session for the socket),
//! so what one owner can queue in the session is bounded, and the session serves owners with
//! requests waiting round-robin (`session/fair.rs`), so one owner's backlog costs another at
//! most one round. A `Client` made with
//! [`crate::Client::for_tenant`] tags its requests with its tenant; every other `Client` is
//! the embedding service's own (owner 0), admitted without a cap of its own.
//!
//! Admission happens in the caller, before a request reaches the session's channel, so a full
//! tenant can never stall the actor or anybody else's requests behind it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::error::{Error, Result};
use crate::session::OwnerId;

/// The default cap on a tenant's requests in flight: far above what a well-behaved plugin keeps
/// in flight (a handler awaiting its calls has one; a burst of async reads, tens), far below what
/// would let one tenant fill the session's queue.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// One owner of requests on a shared session, with its admission cap and counters.
#[derive(Debug)]
pub struct Tenant {
    id: OwnerId,
    name: String,
    cap: usize,
    permits: Arc<Semaphore>,
    rejected: AtomicU64,
}

impl Tenant {
    /// A new tenant called `name` (for logs and metrics) that may have at most `max_in_flight`
    /// requests in flight (at least one).
    pub fn new(name: impl Into<String>, max_in_flight: usize) -> Arc<Tenant> {
        let cap = max_in_flight.max(1);
        Arc::new(Tenant {
            id: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            cap,
            permits: Arc::new(Semaphore::new(cap)),
            rejected: AtomicU64::new(0),
        })
    }

    /// The tenant's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cap on requests in flight.
    pub fn max_in_flight(&self) -> usize {
        self.cap
    }

    /// Requests in flight now (admitted and not yet completed).
    pub fn in_flight(&self) -> usize {
        self.cap - self.permits.available_permits()
    }

    /// Requests refused with [`Error::Busy`] so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The owner its requests are tagged with in the session (never 0, the service's own).
    pub(crate) fn owner(&self) -> OwnerId {
        self.id
    }

    /// Admits a request now, or refuses it with [`Error::Busy`] (counted in
    /// [`Tenant::rejected`]) when the cap is reached.
    pub(crate) fn try_admit(&self) -> Result<Admission> {
        self.admit_now().ok_or_else(|| {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            Error::Busy(self.cap)
        })
    }

    /// Admits a request now if a slot is free.
    pub(crate) fn admit_now(&self) -> Option<Admission> {
        match self.permits.clone().try_acquire_owned() {
            Ok(p) => Some(Admission { _permit: Some(p) }),
            // The semaphore is never closed.
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => None,
        }
    }

    /// Admits a request, waiting for a slot when the cap is reached.
    pub(crate) async fn admit(&self) -> Admission {
        match self.permits.clone().acquire_owned().await {
            Ok(p) => Admission { _permit: Some(p) },
            // The semaphore is never closed.
            Err(_) => Admission::default(),
        }
    }
}

/// A request's slot in its tenant's cap, given back when the request completes (it travels with
/// the request and is dropped with it). The embedding service's requests carry none.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    _permit: Option<OwnedSemaphorePermit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_admitted_up_to_its_cap_and_told_busy_beyond() {
        let t = Tenant::new("p", 2);
        let a = t.try_admit().unwrap();
        let b = t.try_admit().unwrap();
        assert_eq!(t.in_flight(), 2);
        let e = t.try_admit().unwrap_err();
        assert_eq!(e, Error::Busy(2));
        assert!(e.to_string().contains('2'), "the cap is in the text: {e}");
        assert_eq!(t.rejected(), 1);
        drop(a);
        assert_eq!(t.in_flight(), 1);
        let _c = t.try_admit().expect("a completed request frees its slot");
        drop(b);
    }

    #[test]
    fn tenants_have_distinct_owners() {
        let a = Tenant::new("a", 1);
        let b = Tenant::new("b", 1);
        assert_ne!(a.owner(), b.owner());
        assert_ne!(a.owner(), 0, "owner 0 is the embedding service");
    }

    #[tokio::test]
    async fn a_waiting_admission_gets_the_next_free_slot() {
        let t = Tenant::new("p", 1);
        let held = t.try_admit().unwrap();
        let t2 = t.clone();
        let waiter = tokio::spawn(async move {
            let _a = t2.admit().await;
            t2.in_flight()
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        assert_eq!(waiter.await.unwrap(), 1);
        assert_eq!(t.in_flight(), 0);
    }
}
