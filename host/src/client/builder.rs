//! Configuring and connecting a [`Client`]: [`ClientBuilder`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::dispatch::Lanes;
use crate::error::{Error, Result};
use crate::session::hosts::{self, ConnectString, TlsSetting};
use crate::session::{self, Command, SessionConfig, SessionState};

use super::{Client, Inner};

/// Configures and connects a [`Client`].
///
/// ```no_run
/// # async fn demo() -> Result<(), wazoo::Error> {
/// use std::time::Duration;
/// let zk = wazoo::Client::builder("127.0.0.1:2181,127.0.0.1:2182/app")
///     .session_timeout(Duration::from_secs(6))
///     .allow_read_only(true)
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    connect_string: String,
    cfg: SessionConfig,
    wait: Duration,
    auth: Vec<(String, Vec<u8>)>,
    lanes: Option<Lanes>,
    suppress_resync: bool,
}

impl ClientBuilder {
    /// The session timeout to ask for (default 10 s; the server clamps it to 2..20 ticks).
    pub fn session_timeout(mut self, t: Duration) -> Self {
        self.cfg.session_timeout = t;
        self
    }
    /// Time allowed for each server's TCP connect and handshake (default: session timeout divided
    /// by the number of servers, at least 500 ms).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.cfg.connect_timeout = Some(t);
        self
    }
    /// Accept read-only servers when quorum is lost (default false). Reads then work and writes
    /// fail with [`Error::NotReadOnly`]; the client keeps probing for a read-write server.
    pub fn allow_read_only(mut self, yes: bool) -> Self {
        self.cfg.allow_read_only = yes;
        self
    }
    /// Largest frame accepted from the server (default 1 MiB plus headers, as `jute.maxbuffer`).
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.cfg.max_frame = bytes;
        self
    }
    /// How many requests may wait while disconnected before new ones fail with
    /// [`Error::QueueFull`] (default 10,000).
    pub fn max_queued_requests(mut self, n: usize) -> Self {
        self.cfg.max_queued = n;
        self
    }
    /// The longest pause between two reconnect cycles (default 2 s; jittered).
    pub fn max_backoff(mut self, t: Duration) -> Self {
        self.cfg.max_backoff = t;
        self
    }
    /// How long [`ClientBuilder::connect`] waits for the first connection (default 15 s).
    pub fn wait_for_connection(mut self, t: Duration) -> Self {
        self.wait = t;
        self
    }
    /// Run the session actor as a task on the caller's tokio runtime instead of on a thread of
    /// its own (default false).
    ///
    /// This saves a cross-thread wake-up per request and per reply (about a third of the
    /// client's CPU per operation, see BENCHMARKS.md), at a price: a task of yours that hogs the
    /// runtime without yielding then delays pings and may lose the session. Keep the default when
    /// callbacks or other work may monopolise the runtime's threads.
    pub fn session_on_current_runtime(mut self, yes: bool) -> Self {
        self.cfg.on_caller_runtime = yes;
        self
    }

    /// Credentials to add before anything else (replayed on every reconnect), e.g.
    /// `("digest", b"user:password")`.
    pub fn auth(mut self, scheme: &str, auth: &[u8]) -> Self {
        self.auth.push((scheme.to_string(), auth.to_vec()));
        self
    }

    /// Connects to every server over TLS with these settings, except servers marked `tcp://` in
    /// the connect string (the global switch). See [`TlsConfig`](crate::TlsConfig).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), wazoo::Error> {
    /// let tls = wazoo::TlsConfig::new().ca_file("/etc/zookeeper/ca.pem");
    /// let zk = wazoo::Client::builder("zk1:2281,zk2:2281").tls(tls).connect().await?;
    /// # Ok(()) }
    /// ```
    pub fn tls(mut self, cfg: crate::TlsConfig) -> Self {
        self.cfg.tls = Some(TlsSetting {
            config: cfg,
            every_host: true,
            connector: None,
        });
        self
    }

    /// TLS settings for the servers marked `tls://` in the connect string only; the others are
    /// reached in plain text (`tls://zk1:2281,zk2:2181`: the first over TLS).
    pub fn tls_per_host(mut self, cfg: crate::TlsConfig) -> Self {
        self.cfg.tls = Some(TlsSetting {
            config: cfg,
            every_host: false,
            connector: None,
        });
        self
    }

    /// Authenticates every connection with SASL (DIGEST-MD5) right after the handshake, before
    /// any request: reconnects authenticate again. Wrong credentials make
    /// [`ClientBuilder::connect`] fail with [`Error::AuthFailed`] (or
    /// [`Error::SessionClosedRequireSaslAuth`] when the server enforces SASL); ACLs can then
    /// name the user with the `sasl` scheme ([`crate::Acl::new`]`(perms, "sasl", "bob")`).
    pub fn sasl(mut self, cfg: crate::SaslConfig) -> Self {
        self.cfg.sasl = Some(cfg);
        self
    }

    /// The lanes callbacks run on (default: a new set named after the connect string).
    pub fn lanes(mut self, lanes: Lanes) -> Self {
        self.lanes = Some(lanes);
        self
    }

    /// Test-only: this client's persistent watchers never hear [`EventType::Resync`], as if the
    /// client did not tell them about reconnects. It breaks a guarantee on purpose, so that the
    /// chaos soak (`tests/tests/soak.rs`) can show its checker catches the loss. Not for use:
    /// behind the `test-support` feature, which semver does not cover.
    #[cfg(feature = "test-support")]
    pub fn suppress_resync_for_tests(mut self, yes: bool) -> Self {
        self.suppress_resync = yes;
        self
    }

    /// Starts the session and waits until it is connected (read-write, or read-only when
    /// allowed). Fails with [`Error::Timeout`] if no server accepted it in time, or at once
    /// with what a person must fix when every server failed that way: [`Error::Tls`]
    /// (certificates), [`Error::AuthFailed`] (SASL credentials); with [`Error::TlsConfig`] when
    /// the TLS settings cannot be loaded.
    pub async fn connect(mut self) -> Result<Client> {
        let cs = ConnectString::parse(&self.connect_string)?;
        hosts::prepare_tls(&mut self.cfg.tls, &cs.hosts)?;
        let chroot = cs.chroot.clone();
        let (tx, snap) = session::spawn(self.cfg, cs)
            .map_err(|e| Error::InvalidArgument(format!("cannot start the session thread: {e}")))?;
        let lanes = self.lanes.unwrap_or_else(|| Lanes::new("client"));
        let client = Client {
            inner: Arc::new(Inner {
                tx,
                snap,
                chroot,
                suppress_resync: self.suppress_resync,
            }),
            lanes,
            tenant: None,
        };
        let mut auth_replies = Vec::new();
        for (scheme, auth) in self.auth {
            let (reply, rx) = oneshot::channel();
            client.send(Command::AddAuth {
                scheme,
                auth,
                reply,
            })?;
            auth_replies.push(rx);
        }
        let mut snap = client.inner.snap.clone();
        let connected = tokio::time::timeout(self.wait, async {
            loop {
                let s = snap.borrow_and_update().clone();
                if matches!(
                    s.state,
                    SessionState::Connected | SessionState::ConnectedReadOnly
                ) {
                    return Ok(());
                }
                if let Some(f) = s.failure.filter(|f| f.every_server) {
                    return Err(f.error);
                }
                if snap.changed().await.is_err() {
                    return Err(Error::Closed);
                }
            }
        })
        .await;
        match connected {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                client.close().await;
                return Err(e);
            }
            Err(_) => {
                let failure = client.inner.snap.borrow().failure.clone();
                client.close().await;
                return Err(failure.map_or(Error::Timeout(self.wait), |f| f.error));
            }
        }
        for rx in auth_replies {
            rx.await.map_err(|_| Error::Closed)??;
        }
        Ok(client)
    }
}

impl Client {
    /// A builder for a client on `connect_string` (`host:port[,host:port...][/chroot]`).
    pub fn builder(connect_string: &str) -> ClientBuilder {
        ClientBuilder {
            connect_string: connect_string.to_string(),
            cfg: SessionConfig::default(),
            wait: Duration::from_secs(15),
            auth: Vec::new(),
            lanes: None,
            suppress_resync: false,
        }
    }

    /// Connects with the defaults.
    pub async fn connect(connect_string: &str) -> Result<Client> {
        Client::builder(connect_string).connect().await
    }
}
