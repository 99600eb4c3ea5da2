//! Secure ZooKeeper for tests: certificates made per run ([`TestPki`]), and what a server needs
//! to serve them ([`ServerSecurity`]): a TLS client port (`secureClientPort`, Netty, PEM key and
//! trust stores, `ssl.clientAuth`) and SASL DIGEST-MD5 (a JAAS `Server` section with
//! `DigestLoginModule` users, `authProvider.sasl`).
//!
//! Give a [`ServerSecurity`] to [`ZkServerBuilder::security`](crate::ZkServerBuilder::security)
//! or [`EnsembleBuilder::security`](crate::EnsembleBuilder::security); the server then also
//! listens on a secure port ([`ZkServer::secure_addr`](crate::ZkServer::secure_addr)). Its plain
//! client port stays open: the harness probes readiness with four-letter words there, and
//! tests can use it for a plain (or SASL-only) client.
//!
//! ZooKeeper 3.8 reads PEM stores directly (`ssl.keyStore.type=PEM`: the certificate chain and
//! an unencrypted PKCS#8 key in one file; `ssl.trustStore.type=PEM`: the CA certificates), and
//! its Netty connection factory needs Debian's netty jars, which the harness appends to the
//! classpath of secure servers only (the class-data-sharing archive of the others stays valid:
//! an appended classpath is allowed).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::util::{find_jar, make_temp_dir};

/// Netty jars (Debian's names) that ZooKeeper's `NettyServerCnxnFactory` loads.
const NETTY_JARS: [&str; 8] = [
    "netty-buffer",
    "netty-codec",
    "netty-common",
    "netty-handler",
    "netty-resolver",
    "netty-transport",
    "netty-transport-native-epoll",
    "netty-transport-native-unix-common",
];

/// A certificate authority made for one test run.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Result<Ca> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2100, 1, 1);
        let cert = p.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    /// A leaf certificate for these names (DNS names or IP addresses), valid from `from` to
    /// `until` (years), good for servers and clients.
    fn issue(&self, cn: &str, names: &[&str], from: i32, until: i32) -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut p =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = date_time_ymd(from, 1, 1);
        p.not_after = date_time_ymd(until, 1, 1);
        let cert = p.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// One certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (unencrypted PKCS#8 PEM).
    pub key: PathBuf,
    /// Certificate then key in one file: ZooKeeper's PEM key store.
    pub key_store: PathBuf,
}

/// Certificates for one test run, as PEM files in a temporary directory (removed on drop):
///
/// - `ca`: the CA that signs everything below but `other_*`;
/// - `server`: for `127.0.0.1` and `localhost`;
/// - `client`: a client certificate (mutual TLS);
/// - `expired`: a server certificate for `127.0.0.1` that expired in 2002;
/// - `wrong_host`: a server certificate for `zk.invalid` only;
/// - `other_ca` and `other_client`: a CA nobody trusts, and a client certificate it signed.
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
    /// The trusted CA's certificate (PEM): the client's CA bundle and the servers' trust store.
    pub ca: PathBuf,
    /// A good server certificate.
    pub server: CertFiles,
    /// A good client certificate.
    pub client: CertFiles,
    /// An expired server certificate.
    pub expired: CertFiles,
    /// A server certificate for another host name.
    pub wrong_host: CertFiles,
    /// An untrusted CA's certificate.
    pub other_ca: PathBuf,
    /// A client certificate signed by the untrusted CA.
    pub other_client: CertFiles,
}

impl TestPki {
    /// Makes every certificate (ECDSA P-256) and writes the files.
    pub fn generate() -> Result<TestPki> {
        let dir = make_temp_dir()?.join("pki");
        fs::create_dir_all(&dir)?;
        let ca = Ca::new("wazoo test CA")?;
        let other = Ca::new("untrusted test CA")?;
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
            Ok(p)
        };
        let pair = |name: &str, (cert, key): (String, String)| -> Result<CertFiles> {
            Ok(CertFiles {
                cert: write(&format!("{name}.pem"), &cert)?,
                key: write(&format!("{name}.key"), &key)?,
                key_store: write(&format!("{name}-keystore.pem"), &format!("{cert}{key}"))?,
            })
        };
        let here = ["127.0.0.1", "localhost"];
        Ok(TestPki {
            ca: write("ca.pem", &ca.cert.pem())?,
            server: pair("server", ca.issue("zookeeper", &here, 2020, 2100)?)?,
            client: pair("client", ca.issue("wazoo client", &here, 2020, 2100)?)?,
            expired: pair("expired", ca.issue("zookeeper", &here, 2001, 2002)?)?,
            wrong_host: pair(
                "wrong-host",
                ca.issue("zookeeper", &["zk.invalid"], 2020, 2100)?,
            )?,
            other_ca: write("other-ca.pem", &other.cert.pem())?,
            other_client: pair("other-client", other.issue("stranger", &here, 2020, 2100)?)?,
            dir,
        })
    }

    /// Settings for a TLS port with `server` as its certificate and the CA as trust store.
    pub fn server_tls(&self, client_auth: ClientAuth) -> ServerTls {
        self.server_tls_with(&self.server, client_auth)
    }

    /// Settings for a TLS port with this certificate.
    pub fn server_tls_with(&self, cert: &CertFiles, client_auth: ClientAuth) -> ServerTls {
        ServerTls {
            key_store: cert.key_store.clone(),
            trust_store: self.ca.clone(),
            client_auth,
        }
    }

    /// The directory of the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        if let Some(parent) = self.dir.parent() {
            let _ = fs::remove_dir_all(parent);
        }
    }
}

/// ZooKeeper's `ssl.clientAuth`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for.
    None,
    /// One is asked for; a client without one is still served.
    Want,
    /// One is required (mutual TLS).
    Need,
}

impl ClientAuth {
    fn as_str(self) -> &'static str {
        match self {
            ClientAuth::None => "none",
            ClientAuth::Want => "want",
            ClientAuth::Need => "need",
        }
    }
}

/// A server's TLS client port.
#[derive(Clone, Debug)]
pub struct ServerTls {
    /// PEM: certificate chain then unencrypted PKCS#8 key.
    pub key_store: PathBuf,
    /// PEM: the CA certificates client certificates must chain to.
    pub trust_store: PathBuf,
    /// `ssl.clientAuth`.
    pub client_auth: ClientAuth,
}

/// What makes a server secure: a TLS client port and/or SASL DIGEST-MD5 users.
#[derive(Clone, Debug, Default)]
pub struct ServerSecurity {
    /// A TLS client port (`secureClientPort`) next to the plain one.
    pub tls: Option<ServerTls>,
    /// SASL DIGEST-MD5 users (name, password) of the JAAS `Server` section.
    pub sasl_users: Vec<(String, String)>,
    /// `enforce.auth.enabled=true`, `enforce.auth.schemes=sasl`: sessions that did not
    /// authenticate with SASL are refused.
    pub enforce_sasl: bool,
}

impl ServerSecurity {
    /// Lines for `zoo.cfg` and JVM flags for a server whose secure port is `secure_port` and
    /// whose files go to `dir`.
    pub(crate) fn apply(
        &self,
        secure_port: u16,
        dir: &Path,
        cfg: &mut String,
        jvm_args: &mut Vec<String>,
    ) -> Result<()> {
        writeln!(
            cfg,
            "serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory"
        )?;
        if let Some(tls) = &self.tls {
            writeln!(cfg, "secureClientPort={secure_port}")?;
            writeln!(cfg, "secureClientPortAddress=127.0.0.1")?;
            writeln!(cfg, "ssl.keyStore.location={}", tls.key_store.display())?;
            writeln!(cfg, "ssl.keyStore.type=PEM")?;
            writeln!(cfg, "ssl.trustStore.location={}", tls.trust_store.display())?;
            writeln!(cfg, "ssl.trustStore.type=PEM")?;
            writeln!(cfg, "ssl.clientAuth={}", tls.client_auth.as_str())?;
        }
        if !self.sasl_users.is_empty() {
            writeln!(
                cfg,
                "authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider"
            )?;
            if self.enforce_sasl {
                writeln!(cfg, "enforce.auth.enabled=true")?;
                writeln!(cfg, "enforce.auth.schemes=sasl")?;
            }
            let mut jaas = String::from(
                "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required",
            );
            for (user, password) in &self.sasl_users {
                write!(jaas, "\n  user_{user}=\"{password}\"")?;
            }
            jaas.push_str(";\n};\n");
            let path = dir.join("jaas.conf");
            fs::write(&path, jaas).with_context(|| format!("writing {}", path.display()))?;
            jvm_args.push(format!(
                "-Djava.security.auth.login.config={}",
                path.display()
            ));
        }
        Ok(())
    }
}

/// The netty jars for a server classpath, from `WAZOO_ZK_JARS` or `/usr/share/java`; empty when
/// `WAZOO_ZK_CLASSPATH` gives the whole classpath (it must then hold them).
pub(crate) fn netty_classpath() -> Result<String> {
    if std::env::var("WAZOO_ZK_CLASSPATH").is_ok_and(|cp| !cp.trim().is_empty()) {
        return Ok(String::new());
    }
    let dir = std::env::var_os("WAZOO_ZK_JARS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/java"));
    let mut jars = Vec::new();
    for stem in NETTY_JARS {
        let jar = find_jar(&dir, stem).ok_or_else(|| {
            anyhow!(
                "{stem}.jar not found in {}: a secure ZooKeeper port needs Netty. Install \
                 Debian's `zookeeper` package (it brings libnetty-java)",
                dir.display()
            )
        })?;
        jars.push(jar.display().to_string());
    }
    Ok(jars.join(":"))
}
