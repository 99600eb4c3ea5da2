//! Fair queuing of requests into the socket: deficit round-robin by bytes over the owners that
//! have requests waiting (each plugin, and the embedding service's own calls).
//!
//! The actor takes every command off its channel at once and parks user requests here; the
//! write side pops them into the connection's write buffer only as fast as the server keeps up
//! (see the corking window in `actor.rs`). So whatever one owner has queued, another owner's
//! request waits behind at most one round: one quantum of bytes from each owner with work
//! waiting. A request is charged at least a quantum, so for ordinary requests (well under a
//! quantum) a round is exactly one request per owner, and large ones share the socket by bytes.
//!
//! Pure: no I/O, no clock. The queue does not bound itself: how much each owner may have
//! queued is decided before a request reaches the actor (admission, [`super::owner`]), so that a
//! full queue can never stall the channel the actor reads everything else from.

use std::collections::{HashMap, VecDeque};

/// Who a request belongs to. `0` is the embedding service (every [`crate::Client`] that was
/// not made for a tenant); plugins get one each.
pub(crate) type OwnerId = u64;

/// Bytes an owner may send per round, and the least a request is charged. Larger than almost
/// every request (a get is ~40 bytes, a set ~40 + its data), so a round is one request per
/// owner; a request larger than this waits the rounds its size is worth.
pub(crate) const QUANTUM: usize = 1024;

/// Requests waiting for the socket, per owner, served by deficit round-robin.
#[derive(Debug)]
pub(crate) struct FairQueue<T> {
    queues: HashMap<OwnerId, OwnerQueue<T>>,
    /// Owners with requests waiting, in serving order; the front is being served.
    active: VecDeque<OwnerId>,
    /// Whether the front owner has had its quantum for this turn.
    credited: bool,
    len: usize,
    quantum: usize,
}

#[derive(Debug)]
struct OwnerQueue<T> {
    items: VecDeque<(T, usize)>,
    deficit: usize,
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue::with_quantum(QUANTUM)
    }
}

impl<T> FairQueue<T> {
    /// An empty queue whose owners send `quantum` bytes per round.
    pub(crate) fn with_quantum(quantum: usize) -> Self {
        FairQueue {
            queues: HashMap::new(),
            active: VecDeque::new(),
            credited: false,
            len: 0,
            quantum: quantum.max(1),
        }
    }

    /// Parks a request of `bytes` bytes behind the owner's earlier ones. It is charged at
    /// least a quantum.
    pub(crate) fn push(&mut self, owner: OwnerId, item: T, bytes: usize) {
        let cost = bytes.max(self.quantum);
        let q = self.queues.entry(owner).or_insert_with(|| OwnerQueue {
            items: VecDeque::new(),
            deficit: 0,
        });
        if q.items.is_empty() {
            self.active.push_back(owner);
        }
        q.items.push_back((item, cost));
        self.len += 1;
    }

    /// The next request to send, with its owner: the front owner's oldest request if its
    /// deficit covers it, else the next owner's turn. An owner alone in the queue is served
    /// without waiting for credit.
    pub(crate) fn pop(&mut self) -> Option<(OwnerId, T)> {
        loop {
            let owner = *self.active.front()?;
            let alone = self.active.len() == 1;
            let q = self
                .queues
                .get_mut(&owner)
                .expect("an active owner has a queue");
            if !self.credited {
                q.deficit = q.deficit.saturating_add(self.quantum);
                self.credited = true;
            }
            let size = q.items.front().expect("an active owner has work").1;
            if size <= q.deficit || alone {
                let (item, size) = q.items.pop_front().expect("checked above");
                q.deficit = q.deficit.saturating_sub(size);
                self.len -= 1;
                if q.items.is_empty() {
                    // An owner that goes idle keeps no credit (DRR): it cannot save up a burst.
                    self.queues.remove(&owner);
                    self.active.pop_front();
                    self.credited = false;
                }
                return Some((owner, item));
            }
            // Not enough credit for its next request: its turn ends, the credit is kept.
            self.active.rotate_left(1);
            self.credited = false;
        }
    }

    /// Every waiting request, oldest first per owner (owners in serving order): for failing them
    /// all when the session ends.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (OwnerId, T)> + '_ {
        self.len = 0;
        self.credited = false;
        let order: Vec<OwnerId> = self.active.drain(..).collect();
        let mut queues = std::mem::take(&mut self.queues);
        order.into_iter().flat_map(move |o| {
            let q = queues.remove(&o).map(|q| q.items).unwrap_or_default();
            q.into_iter().map(move |(t, _)| (o, t))
        })
    }

    /// How many requests wait.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many requests `owner` has waiting.
    #[cfg(test)]
    pub(crate) fn owner_len(&self, owner: OwnerId) -> usize {
        self.queues.get(&owner).map_or(0, |q| q.items.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owners<T>(q: &mut FairQueue<T>) -> Vec<OwnerId> {
        std::iter::from_fn(|| q.pop()).map(|(o, _)| o).collect()
    }

    #[test]
    fn one_owner_is_served_in_order() {
        let mut q = FairQueue::default();
        for i in 0..5 {
            q.push(7, i, 40);
        }
        let got: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got, (0..5).map(|i| (7, i)).collect::<Vec<_>>());
        assert!(q.is_empty());
    }

    #[test]
    fn a_backlog_delays_another_owner_by_one_round_at_most() {
        let mut q = FairQueue::default();
        for i in 0..10_000 {
            q.push(1, i, 40);
        }
        // Owner 1 is in the middle of its turn when owner 2's request arrives.
        assert_eq!(q.pop(), Some((1, 0)));
        q.push(2, 0, 40);
        let (o, _) = q.pop().unwrap();
        assert_eq!(o, 2, "the flood went first");
        // From then on they alternate, one request each.
        assert_eq!(&owners(&mut q)[..1], &[1]);
    }

    #[test]
    fn small_requests_alternate_one_per_owner() {
        let mut q = FairQueue::default();
        for i in 0..4 {
            q.push(1, i, 10);
            q.push(2, i, 300);
            q.push(3, i, 1024);
        }
        assert_eq!(owners(&mut q), [1, 2, 3].repeat(4));
    }

    #[test]
    fn large_requests_share_by_bytes() {
        // Owner 1 sends 1000-byte requests, owner 2 small ones, quantum 100: owner 1 earns a
        // request every ten rounds, owner 2 sends one every round.
        let mut q = FairQueue::with_quantum(100);
        for i in 0..3 {
            q.push(1, i, 1000);
        }
        for i in 0..40 {
            q.push(2, i, 10);
        }
        let order = owners(&mut q);
        let ones: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|&(_, &o)| o == 1)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(ones.len(), 3);
        for w in ones.windows(2) {
            assert_eq!(w[1] - w[0], 11, "{order:?}");
        }
        assert_eq!(ones[0], 9, "{order:?}");
    }

    #[test]
    fn an_owner_alone_is_not_held_for_credit() {
        let mut q = FairQueue::with_quantum(10);
        q.push(1, 0, 1_000_000);
        q.push(1, 1, 1_000_000);
        assert_eq!(q.pop(), Some((1, 0)));
        assert_eq!(q.pop(), Some((1, 1)));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn an_idle_owner_keeps_no_credit() {
        let mut q = FairQueue::with_quantum(100);
        q.push(1, 0, 1000);
        q.push(2, 0, 10);
        // Owner 1 earns credit for nine rounds while owner 2 is served...
        assert_eq!(q.pop(), Some((2, 0)));
        // ...and then is alone: it is served without the rest of its credit...
        assert_eq!(q.pop(), Some((1, 0)));
        // ...and keeps none of it for later.
        q.push(1, 1, 1000);
        q.push(2, 1, 10);
        q.push(2, 2, 10);
        assert_eq!(owners(&mut q), vec![2, 2, 1]);
    }

    #[test]
    fn drain_returns_everything_once() {
        let mut q = FairQueue::default();
        for i in 0..3 {
            q.push(1, i, 40);
            q.push(2, 10 + i, 40);
        }
        assert_eq!(q.owner_len(1), 3);
        assert_eq!(q.len(), 6);
        let mut all: Vec<_> = q.drain().collect();
        all.sort();
        assert_eq!(all, vec![(1, 0), (1, 1), (1, 2), (2, 10), (2, 11), (2, 12)]);
        assert!(q.is_empty());
        assert_eq!(q.pop(), None);
        q.push(3, 99, 1);
        assert_eq!(q.pop(), Some((3, 99)));
    }
}
