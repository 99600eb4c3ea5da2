//! What the recipes' cores and their drivers share: the requests a core asks for and the replies
//! it is fed, the native executor that sends them over a [`Client`], and the runtime the blocking
//! facades run the async drivers on.
//!
//! A core never does I/O: it answers each input with a [`Request`] to send (or a verdict), and
//! the driver feeds it the [`Reply`]. The native driver below sends requests with the public
//! client API; a guest adapter can send the same requests through its own imports and drive the
//! same cores.

use std::future::Future;

use crate::client::{Client, OneshotWatcher};
use crate::error::{Error, Result};
use crate::proto::records::{CreateMode, Stat};

/// A request a recipe core wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Create the node and its missing parents (Kazoo's `ensure_path`).
    EnsurePath(String),
    /// Create a node (create2: the reply has its stat).
    Create {
        path: String,
        data: Vec<u8>,
        mode: CreateMode,
    },
    /// A node's children (names).
    GetChildren(String),
    /// As `GetChildren`, leaving a one-shot children watch.
    GetChildrenWatch(String),
    /// A node's data and stat; with `watch`, a one-shot data watch is left on it.
    GetData { path: String, watch: bool },
    /// A node's stat, or `Response::Absent`.
    Exists(String),
    /// As `Exists`, leaving a one-shot watch (it fires when the node is created, changed or
    /// deleted).
    ExistsWatch(String),
    /// Set a node's data if its version matches (-1: any).
    SetData {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    /// Delete a node if its version matches (-1: any).
    Delete { path: String, version: i32 },
}

/// A successful answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Response {
    /// EnsurePath, Delete.
    Unit,
    /// Create: the node's path (with its sequence suffix) and stat.
    Created(String, Stat),
    /// GetChildren.
    Children(Vec<String>),
    /// GetData.
    Data(Vec<u8>, Stat),
    /// Exists (node there) and SetData.
    Stat(Stat),
    /// Exists: no node.
    Absent,
}

/// What a core is fed after a request.
pub(crate) type Reply = Result<Response>;

/// Sends `req` over `client`. A `GetData` with a watch, `GetChildrenWatch` and `ExistsWatch`
/// also return the watcher (a `GetData` only when the read succeeded: answered `NoNode`, it leaves no watch on
/// the server).
pub(crate) async fn send(client: &Client, req: Request) -> (Reply, Option<OneshotWatcher>) {
    let reply = match req {
        Request::EnsurePath(p) => client.ensure_path(&p).await.map(|_| Response::Unit),
        Request::Create { path, data, mode } => {
            let opts = crate::client::CreateOptions {
                mode,
                ..Default::default()
            };
            client
                .create_with(&path, &data, &opts)
                .await
                .map(|(p, s)| Response::Created(p, s))
        }
        Request::GetChildren(p) => client
            .get_children(&p)
            .await
            .map(|(c, _)| Response::Children(c)),
        Request::GetData { path, watch: true } => {
            return match client.get_data_watch(&path).await {
                Ok((d, s, w)) => (Ok(Response::Data(d, s)), Some(w)),
                Err(e) => (Err(e), None),
            }
        }
        Request::GetData { path, watch: false } => client
            .get_data(&path)
            .await
            .map(|(d, s)| Response::Data(d, s)),
        Request::GetChildrenWatch(p) => {
            return match client.get_children_watch(&p).await {
                Ok((c, _, w)) => (Ok(Response::Children(c)), Some(w)),
                Err(e) => (Err(e), None),
            }
        }
        Request::ExistsWatch(p) => {
            return match client.exists_watch(&p).await {
                Ok((s, w)) => (Ok(s.map_or(Response::Absent, Response::Stat)), Some(w)),
                Err(e) => (Err(e), None),
            }
        }
        Request::Exists(p) => client
            .exists(&p)
            .await
            .map(|s| s.map_or(Response::Absent, Response::Stat)),
        Request::SetData {
            path,
            data,
            version,
        } => client
            .set_data(&path, &data, Some(version))
            .await
            .map(Response::Stat),
        Request::Delete { path, version } => client
            .delete(&path, Some(version))
            .await
            .map(|_| Response::Unit),
    };
    (reply, None)
}

/// Errors after which a request is simply sent again: the connection dropped (the client
/// queues the next request until it reconnects) or the server timed out.
pub(crate) fn transient(e: &Error) -> bool {
    e.is_retryable() || matches!(e, Error::QueueFull(_))
}

/// Runs an async driver to completion on the calling thread, for the blocking facades. The
/// drivers need tokio's timer (for their timeouts), so a small current-thread runtime is built
/// for the call; the client's own futures need none.
pub(crate) fn run_blocking<F: Future>(fut: F) -> Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start a timer runtime: {e}")))?;
    Ok(rt.block_on(fut))
}

/// Joins a parent path and a child name.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// The last segment of a path.
pub(crate) fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// 32 lowercase hex digits of fresh randomness (a version-4 UUID's bits, as Kazoo's
/// `uuid4().hex`): the unique part of protected and contender node names. Not cryptographic;
/// unique enough that two contenders never share one (128 bits from a generator seeded by the
/// process's random hasher keys and the clock).
pub(crate) fn uuid_hex() -> String {
    let mut rng = crate::rand::Rng::new();
    let (a, b) = (rng.next_u64(), rng.next_u64());
    // The version (4) and variant (10) bits of a random UUID.
    let a = (a & !0xf000) | 0x4000;
    let b = (b & !(0b11 << 62)) | (0b10 << 62);
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_hex_and_distinct() {
        let a = uuid_hex();
        let b = uuid_hex();
        assert_eq!(a.len(), 32);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn joins_and_names() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        assert_eq!(name_of("/a/b"), "b");
    }
}
