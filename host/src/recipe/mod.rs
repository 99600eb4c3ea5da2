//! Recipes built on the client: Kazoo's DataWatch and ChildrenWatch.

mod watchers;

pub use watchers::{ChildrenWatch, DataWatch};
