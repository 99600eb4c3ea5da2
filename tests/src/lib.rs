//! Test harness for wazoo: real ZooKeeper servers and ensembles on free
//! loopback ports, and a fault-injecting proxy to put between a client and a
//! server.
//!
//! * [`ZkServer`]: a standalone server (a real JVM from Debian's `zookeeper`
//!   package) that can be stopped and started again on the same port.
//! * [`Ensemble`]: a quorum of servers; members can be stopped and restarted,
//!   and the leader found.
//! * [`FaultProxy`]: drops, blackholes, rejects, delays or cuts connections
//!   after the reply to a chosen request type.
//! * [`TestPki`] and [`ServerSecurity`]: certificates made per run, and servers
//!   with a TLS client port and/or SASL DIGEST-MD5 users.
//! * [`shared_server`] and [`fresh_chroot`]: one server per test binary, a chroot per test.
//! * [`guest`], [`load_guest`]: the wasm guests, built once and loaded into a plugin host.
//! * [`Proxied`], [`next_state`], [`await_state`], [`await_data`]: common setups and bounded
//!   waits on events.
//! * [`frames`]: ZooKeeper's framing by hand, for tests that speak the protocol themselves.
//! * [`free_port`], [`four_letter_word`], [`init_tracing`], [`wait_until`].
//! * [`chaos`]: the chaos soak's seeded fault plan, request ledger, invariant
//!   checker and memory sampling (`tests/tests/soak.rs`).
//!
//! ZooKeeper must be installed: a missing `java` or missing jars make every
//! start fail loudly with an error that says to install Debian's `zookeeper`
//! package (or to run `.ci/run`). Nothing is ever skipped. The jars are
//! looked up in `/usr/share/java` unless `WAZOO_ZK_JARS` names another
//! directory or `WAZOO_ZK_CLASSPATH` gives a full classpath; `java` comes from
//! `WAZOO_JAVA`, `JAVA_HOME`, `/usr/bin/java` or `PATH`. Set
//! `WAZOO_KEEP_TEST_DIRS=1` to keep the servers' directories (configuration,
//! data and log) after a test, and `WAZOO_ZK_CDS=0` to start the JVMs without
//! the class-data-sharing archive the harness builds in the temporary
//! directory.
//!
//! Each JVM is killed when its handle is dropped, and also, through a small
//! `sh` watchdog, when the test process dies without dropping it (an abort, a
//! `SIGKILL`, a server kept in a `static`).
//!
//! Starting and waiting block the calling thread; from async tests prefer the
//! multi-thread runtime flavour so that other tasks keep running meanwhile.

pub mod chaos;
mod fixtures;
pub mod frames;
mod guests;
pub mod js;
pub mod kazoo;
pub mod logs;
mod proxy;
mod python;
mod secure;
mod support;
mod util;
mod zk;

use std::time::Duration;

pub use fixtures::{fresh_chroot, shared_server};
pub use guests::{guest, load_guest, test_cache_dir};
pub use proxy::FaultProxy;
pub use python::py_guest;
pub use secure::{CertFiles, ClientAuth, ServerSecurity, ServerTls, TestPki};
pub use support::{await_data, await_state, next_state, Proxied};
pub use util::{four_letter_word, free_port};
pub use zk::{Ensemble, EnsembleBuilder, ZkServer, ZkServerBuilder};

/// Installs a `tracing` subscriber that prints through the test harness's
/// capture, filtered by `RUST_LOG` (default `warn`). Calling it again, or
/// after another subscriber was installed, does nothing.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Polls `f` every 10 ms until it returns true, or fails after `timeout`
/// with an error naming `what`.
///
/// Only for conditions that offer no event to await (a counter, a server's
/// state); prefer awaiting the event itself where there is one.
pub async fn wait_until<F: FnMut() -> bool>(
    what: &str,
    timeout: Duration,
    mut f: F,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
