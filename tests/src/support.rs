//! Setups and waits that many integration tests share.

use std::sync::Arc;
use std::time::Duration;

use wazoo::{Client, Error, SessionState, StateEvents};

use crate::{FaultProxy, ZkServer};

/// A server of its own, a fault proxy in front of it, a client through the proxy (`zk`) and
/// one straight to the server (`direct`, for changes the proxied client must not see at once).
pub struct Proxied {
    /// The server.
    pub server: ZkServer,
    /// The proxy between `zk` and the server (an `Arc`, so callbacks can hold it).
    pub proxy: Arc<FaultProxy>,
    /// The client under test, through the proxy.
    pub zk: Client,
    /// A client straight to the server.
    pub direct: Client,
}

impl Proxied {
    /// Starts a server with `tick_ms` ticks (the server grants sessions of 2 to 20 ticks) and
    /// connects `zk` with `session` as its timeout and a short reconnect backoff.
    pub async fn start(tick_ms: u64, session: Duration) -> Proxied {
        crate::init_tracing();
        let server = ZkServer::builder()
            .tick_time(tick_ms)
            .start()
            .expect("start ZooKeeper");
        let proxy = Arc::new(FaultProxy::start(server.addr()).expect("start proxy"));
        let zk = Client::builder(&proxy.connect_string())
            .session_timeout(session)
            .max_backoff(Duration::from_millis(200))
            .connect()
            .await
            .expect("connect through the proxy");
        let direct = Client::connect(&server.connect_string())
            .await
            .expect("connect directly");
        Proxied {
            server,
            proxy,
            zk,
            direct,
        }
    }
}

/// The next session state, within `wait`.
pub async fn next_state(events: &mut StateEvents, wait: Duration) -> SessionState {
    tokio::time::timeout(wait, events.next())
        .await
        .expect("a session state change in time")
        .expect("the client is open")
        .state
}

/// Skips session states until `want`, within `wait`.
pub async fn await_state(events: &mut StateEvents, want: SessionState, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let ev = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("no {want:?} within {wait:?}"))
            .expect("the client is open");
        if ev.state == want {
            return;
        }
    }
}

/// Waits, on watches rather than by polling, until `path` holds `want`; false if it did not
/// within `wait` (or a read failed).
pub async fn await_data(zk: &Client, path: &str, want: &[u8], wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let changed = match zk.get_data_watch(path).await {
            Ok((d, _, _)) if d == want => return true,
            Ok((_, _, w)) => w,
            Err(Error::NoNode) => match zk.exists_watch(path).await {
                Ok((_, w)) => w,
                Err(_) => return false,
            },
            Err(_) => return false,
        };
        if tokio::time::timeout_at(deadline, changed.changed())
            .await
            .is_err()
        {
            return false;
        }
    }
}
