//! The one error type of the client: ZooKeeper's own error codes plus the client's own kinds.

use std::time::Duration;

/// Everything an operation can fail with.
///
/// The variants from [`Error::System`] to [`Error::Throttled`] mirror ZooKeeper's `KeeperException`
/// codes one to one (see [`Error::code`]); the rest are the client's own kinds. The enum is
/// `#[non_exhaustive]`: match the variants you handle and keep a wildcard arm.
///
/// ```
/// use wazoo::Error;
/// let e = Error::from_code(-101);
/// assert_eq!(e, Error::NoNode);
/// assert!(!e.is_retryable());
/// assert!(Error::ConnectionLoss.is_retryable());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- ZooKeeper's codes ----
    /// The server reported a system error (-1).
    #[error("the server reported a system error (ZooKeeper code -1)")]
    System,
    /// A runtime inconsistency was found (-2); inside a failed multi, the ops after the failing one.
    #[error("runtime inconsistency (ZooKeeper code -2): in a multi, this op was not run because an earlier one failed")]
    RuntimeInconsistency,
    /// A data inconsistency was found (-3).
    #[error("data inconsistency (ZooKeeper code -3)")]
    DataInconsistency,
    /// The connection to the server was lost while the request was in flight (-4). It may or may not
    /// have been applied; retry idempotent operations (see [`crate::RetryPolicy`]).
    #[error("connection to ZooKeeper lost while the request was in flight; it may or may not have been applied")]
    ConnectionLoss,
    /// Error while marshalling or unmarshalling data (-5).
    #[error("the server could not (un)marshal the request (ZooKeeper code -5)")]
    Marshalling,
    /// The operation is not implemented by this server (-6).
    #[error("the server does not implement this operation (ZooKeeper code -6); is it older than the feature?")]
    Unimplemented,
    /// The operation timed out on the server (-7).
    #[error("the operation timed out on the server (ZooKeeper code -7)")]
    OperationTimeout,
    /// Invalid arguments (-8), e.g. a TTL on a server without extended types.
    #[error("the server refused the arguments (ZooKeeper code -8)")]
    BadArguments,
    /// The session id is unknown to the server (-12).
    #[error("unknown session (ZooKeeper code -12)")]
    UnknownSession,
    /// A reconfig's new configuration has no quorum (-13).
    #[error("the new configuration has no quorum (ZooKeeper code -13)")]
    NewConfigNoQuorum,
    /// A reconfig is already in progress (-14).
    #[error("a reconfiguration is already in progress (ZooKeeper code -14)")]
    ReconfigInProgress,
    /// Generic API error (-100).
    #[error("ZooKeeper API error (code -100)")]
    ApiError,
    /// The node does not exist (-101).
    #[error("no node at that path")]
    NoNode,
    /// Not authenticated for this operation under the node's ACL (-102).
    #[error(
        "not authorised: the node's ACL does not grant this permission to the session's identities"
    )]
    NoAuth,
    /// The expected version does not match the node's (-103).
    #[error("version mismatch: the node was changed since the version given")]
    BadVersion,
    /// Ephemeral nodes may not have children (-108).
    #[error("ephemeral nodes cannot have children")]
    NoChildrenForEphemerals,
    /// The node already exists (-110).
    #[error("a node already exists at that path")]
    NodeExists,
    /// The node has children (-111).
    #[error("the node has children; delete them first (or use a recursive delete)")]
    NotEmpty,
    /// The session has expired (-112): its ephemerals and watches are gone. A new session is needed.
    #[error("the ZooKeeper session has expired; its ephemeral nodes and watches are gone")]
    SessionExpired,
    /// Invalid callback (-113).
    #[error("invalid callback (ZooKeeper code -113)")]
    InvalidCallback,
    /// Invalid ACL (-114).
    #[error("invalid ACL: empty, or a scheme the server does not accept")]
    InvalidAcl,
    /// Authentication failed (-115): the server refused the credentials (`add_auth`, or SASL
    /// during the handshake).
    #[error(
        "authentication failed: the server refused the credentials (wrong user name or password?)"
    )]
    AuthFailed,
    /// The session moved to another server (-118).
    #[error("the session moved to another server (ZooKeeper code -118)")]
    SessionMoved,
    /// A write was sent to a read-only server (-119).
    #[error("the server is read-only (quorum lost): writes are refused until a read-write server is reached")]
    NotReadOnly,
    /// Attempt to create an ephemeral node on a local session (-120).
    #[error("ephemeral nodes cannot be created on a local session")]
    EphemeralOnLocalSession,
    /// No watch of that kind at that path (-121).
    #[error("no watch of that kind is registered at that path")]
    NoWatcher,
    /// The request timed out (-122).
    #[error("the request timed out (ZooKeeper code -122)")]
    RequestTimeout,
    /// Reconfiguration is disabled (-123).
    #[error("dynamic reconfiguration is disabled on the server")]
    ReconfigDisabled,
    /// The session requires SASL authentication (-124).
    #[error("the server requires SASL authentication for this session")]
    SessionClosedRequireSaslAuth,
    /// A quota was exceeded (-125).
    #[error("quota exceeded")]
    QuotaExceeded,
    /// The server throttled the request (-127).
    #[error("the server throttled the request; retry later")]
    Throttled,
    /// A code this client does not know.
    #[error("unknown ZooKeeper error code {0}")]
    Unknown(i32),

    // ---- the client's own kinds ----
    /// A path failed ZooKeeper's path rules; nothing was sent.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// An argument other than a path is invalid; nothing was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A frame was larger than the configured maximum; the connection was closed.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes (raise `max_frame_size` if the server allows it)")]
    FrameTooLarge {
        /// The length the frame announced.
        size: usize,
        /// The configured maximum.
        max: usize,
    },
    /// The server sent something the client could not decode; the connection was closed.
    #[error("malformed response from the server: {0}")]
    MalformedResponse(String),
    /// The client was closed; no more requests are accepted.
    #[error("the client is closed")]
    Closed,
    /// The request waited longer than allowed.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Too many requests are queued while the client is disconnected.
    #[error("{0} requests are already queued while disconnected; refusing more until the session reconnects")]
    QueueFull(usize),
    /// The request's tenant ([`crate::Tenant`]) already has its cap of requests in flight. An
    /// awaited request waits for a slot instead; a request linked to a callback
    /// ([`crate::Pending::rawlink`]) fails at once with this.
    #[error("busy: {0} requests of this tenant are already in flight (its cap); wait for their replies before sending more")]
    Busy(usize),
    /// A quota of the caller's (a plugin's) refused the request before it was sent.
    #[error("quota {quota} exceeded: {reason}")]
    OverQuota {
        /// The quota's name, as its metric labels it (`watches`, `create_rate`, ...).
        quota: String,
        /// The limit and what was asked.
        reason: String,
    },
    /// An atomic multi failed: nothing was applied. `index` is the first failing op, `error` its
    /// error, `results` every op's result as the server reported it.
    #[error("multi failed at op {index}: {error}; nothing was applied")]
    MultiFailed {
        /// Index of the first failing op.
        index: usize,
        /// Its error.
        error: Box<Error>,
        /// Every op's result.
        results: Vec<crate::proto::multi::OpResult>,
    },
    /// The connect string could not be parsed.
    #[error("invalid connect string {input:?}: {reason}")]
    InvalidConnectString {
        /// The connect string as given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A TLS connection to a server failed for a reason a person must fix: an untrusted,
    /// expired or mismatched server certificate, or a server that refused this client's
    /// certificate (or its absence). `reason` says what to change.
    #[error("TLS connection to {server} failed: {reason}")]
    Tls {
        /// The server (`address:port`).
        server: String,
        /// What went wrong, for programs.
        kind: crate::tls::TlsErrorKind,
        /// What went wrong and what to check, for people.
        reason: String,
    },
    /// The TLS settings could not be used (a missing file, bad PEM, a key that does not fit
    /// its certificate, `tls://` hosts without TLS settings); nothing was sent.
    #[error("invalid TLS settings: {0}")]
    TlsConfig(String),
    /// The SASL exchange could not complete for a reason other than refused credentials (those
    /// are [`Error::AuthFailed`]): the server does not offer SASL, or spoke it wrongly.
    #[error("SASL authentication could not complete: {0}")]
    Sasl(String),
}

impl Error {
    /// Maps a ZooKeeper error code to its variant. Code 0 is not an error: it maps to
    /// [`Error::Unknown`]`(0)`; callers check for 0 first.
    pub fn from_code(code: i32) -> Error {
        match code {
            -1 => Error::System,
            -2 => Error::RuntimeInconsistency,
            -3 => Error::DataInconsistency,
            -4 => Error::ConnectionLoss,
            -5 => Error::Marshalling,
            -6 => Error::Unimplemented,
            -7 => Error::OperationTimeout,
            -8 => Error::BadArguments,
            -12 => Error::UnknownSession,
            -13 => Error::NewConfigNoQuorum,
            -14 => Error::ReconfigInProgress,
            -100 => Error::ApiError,
            -101 => Error::NoNode,
            -102 => Error::NoAuth,
            -103 => Error::BadVersion,
            -108 => Error::NoChildrenForEphemerals,
            -110 => Error::NodeExists,
            -111 => Error::NotEmpty,
            -112 => Error::SessionExpired,
            -113 => Error::InvalidCallback,
            -114 => Error::InvalidAcl,
            -115 => Error::AuthFailed,
            -118 => Error::SessionMoved,
            -119 => Error::NotReadOnly,
            -120 => Error::EphemeralOnLocalSession,
            -121 => Error::NoWatcher,
            -122 => Error::RequestTimeout,
            -123 => Error::ReconfigDisabled,
            -124 => Error::SessionClosedRequireSaslAuth,
            -125 => Error::QuotaExceeded,
            -127 => Error::Throttled,
            other => Error::Unknown(other),
        }
    }

    /// ZooKeeper's code for this error, if it has one (the client's own kinds have none).
    pub fn code(&self) -> Option<i32> {
        Some(match self {
            Error::System => -1,
            Error::RuntimeInconsistency => -2,
            Error::DataInconsistency => -3,
            Error::ConnectionLoss => -4,
            Error::Marshalling => -5,
            Error::Unimplemented => -6,
            Error::OperationTimeout => -7,
            Error::BadArguments => -8,
            Error::UnknownSession => -12,
            Error::NewConfigNoQuorum => -13,
            Error::ReconfigInProgress => -14,
            Error::ApiError => -100,
            Error::NoNode => -101,
            Error::NoAuth => -102,
            Error::BadVersion => -103,
            Error::NoChildrenForEphemerals => -108,
            Error::NodeExists => -110,
            Error::NotEmpty => -111,
            Error::SessionExpired => -112,
            Error::InvalidCallback => -113,
            Error::InvalidAcl => -114,
            Error::AuthFailed => -115,
            Error::SessionMoved => -118,
            Error::NotReadOnly => -119,
            Error::EphemeralOnLocalSession => -120,
            Error::NoWatcher => -121,
            Error::RequestTimeout => -122,
            Error::ReconfigDisabled => -123,
            Error::SessionClosedRequireSaslAuth => -124,
            Error::QuotaExceeded => -125,
            Error::Throttled => -127,
            Error::Unknown(c) => *c,
            _ => return None,
        })
    }

    /// Whether retrying the same operation may succeed without anything else changing:
    /// [`Error::ConnectionLoss`] and [`Error::OperationTimeout`] (what KazooRetry retries).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::ConnectionLoss | Error::OperationTimeout)
    }
}

/// Shorthand for `Result<T, wazoo::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for code in [
            -1, -2, -3, -4, -5, -6, -7, -8, -12, -13, -14, -100, -101, -102, -103, -108, -110,
            -111, -112, -113, -114, -115, -118, -119, -120, -121, -122, -123, -124, -125, -127,
            -999,
        ] {
            let e = Error::from_code(code);
            assert_eq!(e.code(), Some(code), "{e:?}");
            if code != -999 {
                assert!(
                    !matches!(e, Error::Unknown(_)),
                    "code {code} has no variant"
                );
            }
        }
        assert_eq!(Error::Closed.code(), None);
    }
}
