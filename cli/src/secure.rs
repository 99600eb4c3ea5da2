//! TLS and SASL for the binary: the `[zookeeper.tls]` and `[zookeeper.sasl]` sections of the
//! configuration file, and the `--tls-*` / `--sasl-*` flags of the zkCli-like commands.
//!
//! Secrets (the SASL password) come from an environment variable or a file, or inline in the
//! configuration file; they are read once, kept in a [`Secret`] and never printed.
//!
//! ```toml
//! [zookeeper]
//! hosts = "zk1:2281,zk2:2281"
//!
//! [zookeeper.tls]
//! ca = "ca.pem"              # the CA bundle that signed the servers' certificates
//! cert = "client.pem"        # optional: a client certificate (mutual TLS) ...
//! key = "client.key"         # ... and its key
//! verify_hostname = true     # default; false accepts a trusted certificate for any name
//! every_host = true          # default; false: only hosts marked tls:// use TLS
//!
//! [zookeeper.sasl]
//! user = "bob"               # DIGEST-MD5
//! password_env = "ZK_PASSWORD"   # or password_file = "...", or password = "..."
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Deserialize;
use wazoo::{ClientBuilder, SaslConfig, TlsConfig};

/// Credentials: never printed, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `[zookeeper.tls]` as written.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    ca: String,
    cert: Option<String>,
    key: Option<String>,
    #[serde(default = "yes")]
    verify_hostname: bool,
    #[serde(default = "yes")]
    every_host: bool,
}

fn yes() -> bool {
    true
}

/// `[zookeeper.sasl]` as written.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawSasl {
    user: String,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<String>,
}

/// `[zookeeper.tls]`, validated: files resolved against the configuration's folder and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The CA bundle.
    pub ca: PathBuf,
    /// Client certificate and key.
    pub client: Option<(PathBuf, PathBuf)>,
    /// Hostname verification.
    pub verify_hostname: bool,
    /// Whether hosts not marked in `hosts` use TLS.
    pub every_host: bool,
}

/// `[zookeeper.sasl]`, validated: the password read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    /// The user name.
    pub user: String,
    /// The password.
    pub password: Secret,
}

impl TlsSettings {
    fn config(&self) -> TlsConfig {
        let mut t = TlsConfig::new()
            .ca_file(&self.ca)
            .verify_hostname(self.verify_hostname);
        if let Some((cert, key)) = &self.client {
            t = t.client_cert_files(cert, key);
        }
        t
    }
}

/// Adds the TLS and SASL settings of the configuration to a client builder.
pub fn apply(
    b: ClientBuilder,
    tls: Option<&TlsSettings>,
    sasl: Option<&SaslSettings>,
) -> ClientBuilder {
    let b = match tls {
        Some(t) if t.every_host => b.tls(t.config()),
        Some(t) => b.tls_per_host(t.config()),
        None => b,
    };
    match sasl {
        Some(s) => b.sasl(SaslConfig::digest_md5(
            &s.user,
            String::from_utf8_lossy(&s.password.0),
        )),
        None => b,
    }
}

/// Checks `[zookeeper.tls]`. `resolve` anchors relative paths; `err` makes the caller's error
/// from a key path and what is wrong with it.
pub fn validate_tls<E>(
    raw: RawTls,
    resolve: &dyn Fn(&str) -> PathBuf,
    err: &dyn Fn(String, String) -> E,
) -> Result<TlsSettings, E> {
    let file = |key: &str, p: &str| -> Result<PathBuf, E> {
        let path = resolve(p);
        if path.is_file() {
            Ok(path)
        } else {
            Err(err(
                format!("zookeeper.tls.{key}"),
                format!("{} is not a readable file", path.display()),
            ))
        }
    };
    let ca = file("ca", &raw.ca)?;
    let client = match (raw.cert, raw.key) {
        (Some(c), Some(k)) => Some((file("cert", &c)?, file("key", &k)?)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(err(
                "zookeeper.tls.key".into(),
                "is missing: cert needs its key".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(err(
                "zookeeper.tls.cert".into(),
                "is missing: key needs its certificate".into(),
            ))
        }
    };
    Ok(TlsSettings {
        ca,
        client,
        verify_hostname: raw.verify_hostname,
        every_host: raw.every_host,
    })
}

/// Checks `[zookeeper.sasl]` and reads the password; `resolve` and `err` as for
/// [`validate_tls`].
pub fn validate_sasl<E>(
    raw: RawSasl,
    resolve: &dyn Fn(&str) -> PathBuf,
    err: &dyn Fn(String, String) -> E,
) -> Result<SaslSettings, E> {
    if raw.user.trim().is_empty() {
        return Err(err(
            "zookeeper.sasl.user".into(),
            "must not be empty".into(),
        ));
    }
    let given = [
        raw.password.is_some(),
        raw.password_env.is_some(),
        raw.password_file.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        return Err(err(
            "zookeeper.sasl".into(),
            format!("give exactly one of password, password_env and password_file ({given} given)"),
        ));
    }
    let password = if let Some(p) = raw.password {
        p.into_bytes()
    } else if let Some(var) = raw.password_env {
        match std::env::var_os(&var) {
            Some(v) if !v.is_empty() => v.into_encoded_bytes(),
            _ => {
                return Err(err(
                    "zookeeper.sasl.password_env".into(),
                    format!("the environment variable {var:?} is not set or empty"),
                ))
            }
        }
    } else {
        let path = resolve(&raw.password_file.unwrap_or_default());
        read_password_file(&path).map_err(|m| err("zookeeper.sasl.password_file".into(), m))?
    };
    Ok(SaslSettings {
        user: raw.user,
        password: Secret(password),
    })
}

/// A password file's first line (no trailing newline); an error names the file, never its text.
fn read_password_file(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let first = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = first.strip_suffix(b"\r").unwrap_or(first).to_vec();
    if line.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(line)
}

/// The `--tls-*` and `--sasl-*` flags of the zkCli-like commands.
#[derive(Args, Debug, Clone, Default)]
pub struct SecureArgs {
    /// Connect over TLS, verifying servers with the CA certificates in FILE (PEM)
    /// [env: WAZOO_TLS_CA].
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Accept a server certificate signed by the CA whatever host name it names.
    #[arg(long)]
    tls_no_verify_hostname: bool,
    /// Authenticate with SASL DIGEST-MD5 as USER; the password comes from
    /// --sasl-password-file or the WAZOO_SASL_PASSWORD environment variable.
    #[arg(long, value_name = "USER")]
    sasl_user: Option<String>,
    /// File whose first line is the SASL password.
    #[arg(long, value_name = "FILE", requires = "sasl_user")]
    sasl_password_file: Option<PathBuf>,
}

impl SecureArgs {
    /// Adds what the flags ask for to a client builder; fails on a flag that cannot work
    /// (TLS options without a CA, a SASL user without a password).
    pub fn apply(&self, b: ClientBuilder) -> anyhow::Result<ClientBuilder> {
        let ca = self.tls_ca.clone().or_else(|| {
            std::env::var_os("WAZOO_TLS_CA")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let b = match ca {
            Some(ca) => {
                let mut t = TlsConfig::new()
                    .ca_file(ca)
                    .verify_hostname(!self.tls_no_verify_hostname);
                if let (Some(c), Some(k)) = (&self.tls_cert, &self.tls_key) {
                    t = t.client_cert_files(c, k);
                }
                b.tls(t)
            }
            None if self.tls_cert.is_some() || self.tls_no_verify_hostname => {
                anyhow::bail!("--tls-cert, --tls-key and --tls-no-verify-hostname need --tls-ca")
            }
            None => b,
        };
        let Some(user) = &self.sasl_user else {
            return Ok(b);
        };
        let password = match &self.sasl_password_file {
            Some(f) => read_password_file(f).map_err(anyhow::Error::msg)?,
            None => match std::env::var_os("WAZOO_SASL_PASSWORD") {
                Some(v) if !v.is_empty() => v.into_encoded_bytes(),
                _ => anyhow::bail!(
                    "--sasl-user needs a password: --sasl-password-file FILE or the \
                     WAZOO_SASL_PASSWORD environment variable"
                ),
            },
        };
        Ok(b.sasl(SaslConfig::digest_md5(
            user,
            String::from_utf8_lossy(&password),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keyed error as the configuration parser makes them.
    #[derive(Debug)]
    struct KeyError {
        key: Option<String>,
        message: String,
    }

    impl std::fmt::Display for KeyError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:?}: {}", self.key, self.message)
        }
    }

    fn err(key: String, message: String) -> KeyError {
        KeyError {
            key: Some(key),
            message,
        }
    }

    #[test]
    fn password_files_first_line_only() {
        let dir = std::env::temp_dir().join(format!("wazoo-bin-secure-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pw");
        std::fs::write(&p, "s3cret\r\nnext").unwrap();
        assert_eq!(read_password_file(&p).unwrap(), b"s3cret");
        std::fs::write(&p, "s3cret").unwrap();
        assert_eq!(read_password_file(&p).unwrap(), b"s3cret");
        std::fs::write(&p, "\n").unwrap();
        assert!(read_password_file(&p).unwrap_err().contains("empty"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sasl_needs_exactly_one_password_source() {
        let resolve = |p: &str| PathBuf::from(p);
        let raw = |password: Option<&str>, env: Option<&str>| RawSasl {
            user: "bob".into(),
            password: password.map(String::from),
            password_env: env.map(String::from),
            password_file: None,
        };
        let e = validate_sasl(raw(None, None), &resolve, &err).unwrap_err();
        assert!(e.message.contains("0 given"), "{e}");
        let e = validate_sasl(raw(Some("a"), Some("B")), &resolve, &err).unwrap_err();
        assert!(e.message.contains("2 given"), "{e}");
        let e =
            validate_sasl(raw(None, Some("WAZOO_SURELY_UNSET_VAR")), &resolve, &err).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("zookeeper.sasl.password_env"));
        let s = validate_sasl(raw(Some("pw"), None), &resolve, &err).unwrap();
        assert_eq!(s.password, Secret(b"pw".to_vec()));
        assert!(!format!("{s:?}").contains("pw\""));
    }

    #[test]
    fn tls_files_must_exist_and_pair() {
        let resolve = |p: &str| PathBuf::from(p);
        let raw = |ca: &str, cert: Option<&str>, key: Option<&str>| RawTls {
            ca: ca.into(),
            cert: cert.map(String::from),
            key: key.map(String::from),
            verify_hostname: true,
            every_host: true,
        };
        let e = validate_tls(raw("/nonexistent/ca.pem", None, None), &resolve, &err).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("zookeeper.tls.ca"));
        let here = std::env::current_exe().unwrap();
        let here = here.to_str().unwrap();
        let e = validate_tls(raw(here, Some(here), None), &resolve, &err).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("zookeeper.tls.key"));
        let t = validate_tls(raw(here, Some(here), Some(here)), &resolve, &err).unwrap();
        assert!(t.client.is_some() && t.verify_hostname && t.every_host);
    }
}
