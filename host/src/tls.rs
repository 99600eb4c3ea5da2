//! TLS for connections to ZooKeeper (rustls with the ring provider): the settings a user gives
//! ([`TlsConfig`]), what they become (a connector the session uses for every TLS connection),
//! and the translation of rustls's failures into errors a person can act on
//! ([`Error::Tls`] with a [`TlsErrorKind`]).
//!
//! ZooKeeper serves TLS on its `secureClientPort` (with
//! `serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory`); ZooKeeper 3.8 speaks
//! TLS 1.2 there unless `ssl.protocol` says otherwise, so both 1.2 and 1.3 are enabled.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::error::{Error, Result};

/// What went wrong in a TLS connection, so that programs can react without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The server's certificate does not chain to a CA of the configured bundle (or its
    /// signature is bad).
    UntrustedCertificate,
    /// The server's certificate (or one in its chain) has expired.
    ExpiredCertificate,
    /// The server's certificate is not valid yet (check the clocks).
    NotYetValidCertificate,
    /// The server's certificate does not name the host the client connected to.
    HostnameMismatch,
    /// The server's certificate was refused for another reason (revoked, wrong key usage,
    /// malformed...).
    InvalidCertificate,
    /// The server ended the handshake with an alert about this client's certificate: it
    /// requires one (mutual TLS) and none was given, or it does not trust the one given.
    ClientCertificateRefused,
    /// Any other TLS protocol failure (no common version or cipher suite, a plain-text server on
    /// that port...).
    Handshake,
}

/// Where PEM bytes come from.
#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Inline(Vec<u8>),
}

impl Pem {
    fn load(&self, what: &str) -> Result<Vec<u8>> {
        match self {
            Pem::File(p) => std::fs::read(p).map_err(|e| {
                Error::TlsConfig(format!("cannot read the {what} file {}: {e}", p.display()))
            }),
            Pem::Inline(b) => Ok(b.clone()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Pem::File(p) => p.display().to_string(),
            Pem::Inline(_) => "inline PEM".to_string(),
        }
    }
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pem::File(p) => write!(f, "{}", p.display()),
            Pem::Inline(b) => write!(f, "<inline PEM, {} bytes>", b.len()),
        }
    }
}

/// TLS settings for connections to ZooKeeper: the CA bundle that signs the servers'
/// certificates, optionally a client certificate and key (mutual TLS, for servers with
/// `ssl.clientAuth=need`), and whether the server's certificate must name the host connected to
/// (on by default).
///
/// Give it to [`crate::ClientBuilder::tls`] (every server over TLS, unless marked `tcp://` in
/// the connect string) or [`crate::ClientBuilder::tls_per_host`] (only servers marked
/// `tls://`). Files are read when the client connects; a missing file or bad PEM fails
/// [`crate::ClientBuilder::connect`] with [`Error::TlsConfig`].
///
/// `Debug` shows file paths but never key material.
///
/// ```no_run
/// # async fn demo() -> Result<(), wazoo::Error> {
/// use wazoo::{Client, TlsConfig};
/// let tls = TlsConfig::new()
///     .ca_file("/etc/zookeeper/ca.pem")
///     .client_cert_files("/etc/wazoo/client.pem", "/etc/wazoo/client.key");
/// let zk = Client::builder("zk1.example:2281,zk2.example:2281").tls(tls).connect().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsConfig {
    ca: Vec<Pem>,
    client: Option<(Pem, Pem)>,
    verify_hostname: bool,
    server_name: Option<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig::new()
    }
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let client = self.client.as_ref().map(|(cert, key)| {
            let key = match key {
                Pem::File(p) => p.display().to_string(),
                Pem::Inline(_) => "<redacted>".to_string(),
            };
            format!("cert {cert:?}, key {key}")
        });
        f.debug_struct("TlsConfig")
            .field("ca", &self.ca)
            .field("client", &client)
            .field("verify_hostname", &self.verify_hostname)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsConfig {
    /// No CA yet (add one: a connection needs at least one), no client certificate, hostname
    /// verification on.
    pub fn new() -> TlsConfig {
        TlsConfig {
            ca: Vec::new(),
            client: None,
            verify_hostname: true,
            server_name: None,
        }
    }

    /// Trusts the CA certificates in this PEM file (every `CERTIFICATE` block). May be called
    /// more than once: all of them are trusted.
    pub fn ca_file(mut self, path: impl AsRef<Path>) -> TlsConfig {
        self.ca.push(Pem::File(path.as_ref().to_path_buf()));
        self
    }

    /// Trusts the CA certificates in these PEM bytes.
    pub fn ca_pem(mut self, pem: impl Into<Vec<u8>>) -> TlsConfig {
        self.ca.push(Pem::Inline(pem.into()));
        self
    }

    /// Presents this certificate (PEM: the certificate, then any intermediates) and private key
    /// (PEM: PKCS#8, PKCS#1 or SEC1) to servers that ask for one (mutual TLS).
    pub fn client_cert_files(
        mut self,
        cert_path: impl AsRef<Path>,
        key_path: impl AsRef<Path>,
    ) -> TlsConfig {
        self.client = Some((
            Pem::File(cert_path.as_ref().to_path_buf()),
            Pem::File(key_path.as_ref().to_path_buf()),
        ));
        self
    }

    /// Like [`TlsConfig::client_cert_files`], from PEM bytes.
    pub fn client_cert_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> TlsConfig {
        self.client = Some((Pem::Inline(cert_pem.into()), Pem::Inline(key_pem.into())));
        self
    }

    /// Whether the server's certificate must be valid for the host name (or IP address) in the
    /// connect string (default true). Turning it off still requires a certificate signed by a
    /// trusted CA and within its validity period, but accepts it for any name: only for
    /// deployments whose certificates do not name their hosts.
    pub fn verify_hostname(mut self, yes: bool) -> TlsConfig {
        self.verify_hostname = yes;
        self
    }

    /// Verifies (and sends as SNI) this name instead of each host's name from the connect
    /// string: for servers reached by addresses their certificates do not list.
    pub fn server_name(mut self, name: impl Into<String>) -> TlsConfig {
        self.server_name = Some(name.into());
        self
    }

    /// Reads and checks everything: the connector every TLS connection of a client uses.
    pub(crate) fn build(&self) -> Result<TlsConnector> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        if self.ca.is_empty() {
            return Err(Error::TlsConfig(
                "no CA certificates: give the CA bundle that signed the servers' certificates \
                 (TlsConfig::ca_file)"
                    .into(),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        for src in &self.ca {
            let bytes = src.load("CA")?;
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert = cert.map_err(|e| {
                    Error::TlsConfig(format!("bad PEM in the CA bundle {}: {e}", src.describe()))
                })?;
                roots.add(cert).map_err(|e| {
                    Error::TlsConfig(format!(
                        "a certificate in the CA bundle {} is not usable as a CA: {e}",
                        src.describe()
                    ))
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(Error::TlsConfig(format!(
                    "no CERTIFICATE block in the CA bundle {}",
                    src.describe()
                )));
            }
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| Error::TlsConfig(format!("cannot build the certificate verifier: {e}")))?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::TlsConfig(format!("TLS versions: {e}")))?;
        let builder = if self.verify_hostname {
            builder.with_webpki_verifier(webpki)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyHostname(webpki)))
        };
        let config = match &self.client {
            None => builder.with_no_client_auth(),
            Some((cert_src, key_src)) => {
                let cert_bytes = cert_src.load("client certificate")?;
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(&cert_bytes)
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|e| {
                            Error::TlsConfig(format!(
                                "bad PEM in the client certificate {}: {e}",
                                cert_src.describe()
                            ))
                        })?;
                if chain.is_empty() {
                    return Err(Error::TlsConfig(format!(
                        "no CERTIFICATE block in the client certificate {}",
                        cert_src.describe()
                    )));
                }
                let key_bytes = key_src.load("client key")?;
                // The parser's message never quotes the key.
                let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
                    Error::TlsConfig(format!(
                        "no usable private key (PKCS#8, PKCS#1 or SEC1 PEM) in {}: {e}",
                        key_src.describe()
                    ))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::TlsConfig(format!(
                        "the client certificate {} and key {} do not fit together: {e}",
                        cert_src.describe(),
                        key_src.describe()
                    ))
                })?
            }
        };
        let server_name = match &self.server_name {
            None => None,
            Some(n) => Some(ServerName::try_from(n.clone()).map_err(|_| {
                Error::TlsConfig(format!("{n:?} is not a valid server name for TLS"))
            })?),
        };
        Ok(TlsConnector {
            inner: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
            client_cert: self.client.is_some(),
            verify_hostname: self.verify_hostname,
        })
    }
}

/// The certificate check without the name check (hostname verification turned off): the chain,
/// the validity period and the signatures are still verified.
#[derive(Debug)]
struct AnyHostname(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostname {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain (trust, validity, signatures) before the name, so a name
        // error means everything else passed.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Built TLS settings: what a session uses to open TLS connections.
#[derive(Clone)]
pub(crate) struct TlsConnector {
    inner: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
    client_cert: bool,
    verify_hostname: bool,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .field("client_cert", &self.client_cert)
            .field("verify_hostname", &self.verify_hostname)
            .finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// Runs the TLS handshake over `tcp` with `host` (from the connect string) as the name to
    /// verify, unless a server name was configured. `server` names the peer in errors.
    pub(crate) async fn connect(
        &self,
        host: &str,
        server: &str,
        tcp: TcpStream,
    ) -> std::result::Result<TlsStream<TcpStream>, TlsFailure> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(host.to_string()).map_err(|_| {
                TlsFailure::Fatal(Error::TlsConfig(format!(
                    "{host:?} is not a valid server name for TLS; set TlsConfig::server_name"
                )))
            })?,
        };
        self.inner
            .connect(name, tcp)
            .await
            .map_err(|e| self.classify(server, e))
    }

    /// Sorts an I/O error of a TLS connection: rustls's own errors are fatal (a person must fix
    /// something: certificates, settings); the rest (a reset, an early close) are the network's.
    pub(crate) fn classify(&self, server: &str, e: std::io::Error) -> TlsFailure {
        match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            Some(t) => TlsFailure::Fatal(describe(server, t, self.client_cert)),
            None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                TlsFailure::Io(std::io::Error::new(
                    e.kind(),
                    format!(
                        "{e} (is {server} a TLS port? ZooKeeper serves TLS on its \
                         secureClientPort)"
                    ),
                ))
            }
            None => TlsFailure::Io(e),
        }
    }
}

/// A TLS failure: the network's (try again, or another server) or one a person must fix.
#[derive(Debug)]
pub(crate) enum TlsFailure {
    /// The connection failed.
    Io(std::io::Error),
    /// Certificates or settings are wrong.
    Fatal(Error),
}

/// The error a person reads for a rustls failure with `server`.
fn describe(server: &str, e: &rustls::Error, client_cert: bool) -> Error {
    use TlsErrorKind as K;
    let (kind, reason) = match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => (
                K::UntrustedCertificate,
                format!(
                    "the server's certificate is not signed by a CA in the configured bundle \
                     ({e}); check the CA file (TlsConfig::ca_file, --tls-ca)"
                ),
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => (
                K::ExpiredCertificate,
                format!("the server's certificate has expired ({e}); renew it on the server"),
            ),
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
                K::NotYetValidCertificate,
                format!(
                    "the server's certificate is not valid yet ({e}); check the clocks of \
                     client and server"
                ),
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                (
                    K::HostnameMismatch,
                    format!(
                    "the server's certificate is not valid for the host name connected to ({e}); \
                     connect by a name the certificate lists, set TlsConfig::server_name, or \
                     turn hostname verification off (TlsConfig::verify_hostname(false), \
                     --tls-no-verify-hostname)"
                ),
                )
            }
            _ => (
                K::InvalidCertificate,
                format!("the server's certificate was refused: {e}"),
            ),
        },
        rustls::Error::AlertReceived(alert) if is_certificate_alert(*alert) => (
            K::ClientCertificateRefused,
            if client_cert {
                format!(
                    "the server refused this client's certificate ({e}); is it signed by a CA \
                     the server trusts (ssl.trustStore)?"
                )
            } else {
                format!(
                    "the server refused the TLS handshake ({e}); it probably requires a client \
                     certificate (ssl.clientAuth=need): give one (TlsConfig::client_cert_files, \
                     --tls-cert/--tls-key)"
                )
            },
        ),
        other => (K::Handshake, format!("TLS handshake failed: {other}")),
    };
    Error::Tls {
        server: server.to_string(),
        kind,
        reason,
    }
}

/// Alerts a server sends when it does not accept the client's certificate (or its absence).
/// A handshake failure is among them: Java's TLS 1.2 server sends it when `ssl.clientAuth=need`
/// and no certificate came.
fn is_certificate_alert(a: AlertDescription) -> bool {
    matches!(
        a,
        AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRequired
            | AlertDescription::HandshakeFailure
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_is_required_and_missing_files_are_named() {
        let e = TlsConfig::new().build().unwrap_err();
        assert!(
            matches!(e, Error::TlsConfig(ref m) if m.contains("no CA")),
            "{e}"
        );
        let e = TlsConfig::new()
            .ca_file("/nonexistent/wazoo-ca.pem")
            .build()
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/wazoo-ca.pem"), "{e}");
        let e = TlsConfig::new().ca_pem("not pem").build().unwrap_err();
        assert!(e.to_string().contains("no CERTIFICATE block"), "{e}");
    }

    #[test]
    fn debug_never_shows_inline_keys() {
        let c = TlsConfig::new()
            .ca_file("/etc/ca.pem")
            .client_cert_pem("CERT", "-----BEGIN PRIVATE KEY-----\nSECRETKEY");
        let s = format!("{c:?}");
        assert!(s.contains("/etc/ca.pem"), "{s}");
        assert!(s.contains("<redacted>") && !s.contains("SECRETKEY"), "{s}");
        let c = TlsConfig::new().client_cert_files("/c.pem", "/k.pem");
        assert!(format!("{c:?}").contains("/k.pem"));
    }

    #[test]
    fn failures_say_what_to_fix() {
        let e = describe(
            "127.0.0.1:2281",
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            false,
        );
        assert!(matches!(
            e,
            Error::Tls {
                kind: TlsErrorKind::UntrustedCertificate,
                ..
            }
        ));
        assert!(e.to_string().contains("127.0.0.1:2281"), "{e}");
        assert!(e.to_string().contains("CA"), "{e}");
        let e = describe(
            "s",
            &rustls::Error::InvalidCertificate(CertificateError::Expired),
            false,
        );
        assert!(e.to_string().contains("expired"), "{e}");
        let e = describe(
            "s",
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
            false,
        );
        assert!(e.to_string().contains("verify_hostname"), "{e}");
        let e = describe(
            "s",
            &rustls::Error::AlertReceived(AlertDescription::BadCertificate),
            false,
        );
        assert!(
            e.to_string().contains("requires a client certificate"),
            "{e}"
        );
        let e = describe(
            "s",
            &rustls::Error::AlertReceived(AlertDescription::BadCertificate),
            true,
        );
        assert!(
            e.to_string().contains("refused this client's certificate"),
            "{e}"
        );
        let e = describe(
            "s",
            &rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
            false,
        );
        assert!(matches!(
            e,
            Error::Tls {
                kind: TlsErrorKind::Handshake,
                ..
            }
        ));
    }
}
