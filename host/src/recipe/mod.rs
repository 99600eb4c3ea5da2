//! Recipes built on the client: Kazoo's DataWatch and ChildrenWatch, protected create, and the
//! coordination recipes (lock, election, counter, queue, ...) with Kazoo's node layouts.
//!
//! Each coordination recipe is a state machine without I/O (what to send next, what a reply or
//! an event means), tested without a server, and a native async driver over the public
//! [`crate::Client`] API. [`BlockingLock`] is the lock's blocking facade (the lock's timeouts
//! need tokio's timer, so it runs each call on a small runtime of its own); the other recipes'
//! futures need no timer when given no timeout and run under [`crate::block_on`]. The shared
//! vocabulary is in `driver.rs`.

mod barrier;
mod counter;
mod driver;
mod election;
mod lock;
mod locking_queue;
mod party;
mod persistent_node;
mod protected;
mod queue;
mod semaphore;
mod set_partitioner;
mod tree_cache;
mod watchers;

pub use barrier::{Barrier, DoubleBarrier};
pub use counter::{Counter, CounterChange};
pub use election::{Election, LeaderLatch};
pub use lock::{BlockingLock, FencingToken, Lock, LockEvents, LockState};
pub use locking_queue::LockingQueue;
pub use party::Party;
pub use persistent_node::PersistentNode;
pub use protected::create_protected;
pub use queue::{Queue, DEFAULT_PRIORITY};
pub use semaphore::Semaphore;
pub use set_partitioner::{PartitionEvents, PartitionState, SetPartitioner};
pub use tree_cache::{TreeCache, TreeEvent, TreeEvents};
pub use watchers::{ChildrenWatch, DataWatch};
