//! Connect strings: `host:port[,host:port...][/chroot]`, hosts as IPv4, `[IPv6]` or names,
//! each optionally marked `tls://` (this server over TLS) or `tcp://` (this server in plain
//! text); an unmarked server follows the client's global switch ([`crate::ClientBuilder::tls`]).
//! Which server uses TLS, and with what connector, is decided here too.

use crate::error::{Error, Result};
use crate::path::Chroot;
use crate::tls::{TlsConfig, TlsConnector};

/// One server to try, as written in the connect string (names are resolved on every attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub host: String,
    pub port: u16,
    /// `Some(true)` for `tls://`, `Some(false)` for `tcp://`, `None` when unmarked.
    pub tls: Option<bool>,
}

/// A parsed connect string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectString {
    pub hosts: Vec<HostPort>,
    pub chroot: Chroot,
}

const DEFAULT_PORT: u16 = 2181;

impl ConnectString {
    pub(crate) fn parse(input: &str) -> Result<ConnectString> {
        let bad = |reason: &str| Error::InvalidConnectString {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (hosts_part, chroot) = match chroot_start(input) {
            Some(i) => (
                &input[..i],
                Chroot::new(&input[i..]).map_err(|e| bad(&e.to_string()))?,
            ),
            None => (input, Chroot::default()),
        };
        let mut hosts = Vec::new();
        for item in hosts_part.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (tls, item) = match scheme_of(item) {
                Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                    "tls" => (Some(true), rest),
                    "tcp" => (Some(false), rest),
                    _ => {
                        return Err(bad(&format!(
                            "unknown scheme {scheme:?}: a host may be marked tls:// or tcp://"
                        )))
                    }
                },
                None => (None, item),
            };
            let (host, port) = if let Some(rest) = item.strip_prefix('[') {
                let end = rest
                    .find(']')
                    .ok_or_else(|| bad("unclosed '[' in an IPv6 address"))?;
                let host = &rest[..end];
                let after = &rest[end + 1..];
                let port = match after.strip_prefix(':') {
                    Some(p) => p.parse().map_err(|_| bad(&format!("invalid port {p:?}")))?,
                    None if after.is_empty() => DEFAULT_PORT,
                    None => {
                        return Err(bad(&format!("unexpected {after:?} after an IPv6 address")))
                    }
                };
                (host.to_string(), port)
            } else if item.matches(':').count() > 1 {
                return Err(bad(
                    "an IPv6 address must be written in brackets: [::1]:2181",
                ));
            } else {
                match item.split_once(':') {
                    Some((h, p)) => (
                        h.to_string(),
                        p.parse().map_err(|_| bad(&format!("invalid port {p:?}")))?,
                    ),
                    None => (item.to_string(), DEFAULT_PORT),
                }
            };
            if host.is_empty() {
                return Err(bad("empty host name"));
            }
            if port == 0 {
                return Err(bad("port 0"));
            }
            hosts.push(HostPort { host, port, tls });
        }
        if hosts.is_empty() {
            return Err(bad("no hosts"));
        }
        Ok(ConnectString { hosts, chroot })
    }
}

/// `scheme://rest` at the start of a host item: the scheme and the rest.
fn scheme_of(item: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = item.split_once("://")?;
    let plain = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    plain.then_some((scheme, rest))
}

/// Where the chroot starts: the first `/` that is not part of a host's `scheme://`.
fn chroot_start(input: &str) -> Option<usize> {
    let mut at = 0;
    for item in input.split(',') {
        let lead = item.len() - item.trim_start().len();
        let skip = scheme_of(item.trim_start()).map_or(0, |(s, _)| s.len() + 3);
        if let Some(i) = item[lead + skip..].find('/') {
            return Some(at + lead + skip + i);
        }
        at += item.len() + 1;
    }
    None
}

/// TLS as a session uses it: the user's settings, whether servers the connect string does not
/// mark use them, and (once the client connects) what they were built into.
#[derive(Debug, Clone)]
pub(crate) struct TlsSetting {
    pub config: TlsConfig,
    /// Unmarked servers use TLS ([`crate::ClientBuilder::tls`]) or not
    /// ([`crate::ClientBuilder::tls_per_host`]).
    pub every_host: bool,
    /// Built by [`prepare_tls`].
    pub connector: Option<TlsConnector>,
}

/// Builds the connector when some server uses TLS (reading the files once), and refuses a
/// connect string that marks servers `tls://` when there are no TLS settings.
pub(crate) fn prepare_tls(tls: &mut Option<TlsSetting>, hosts: &[HostPort]) -> Result<()> {
    let uses = |h: &HostPort, every: bool| h.tls.unwrap_or(every);
    match tls {
        None => match hosts.iter().find(|h| h.tls == Some(true)) {
            Some(h) => Err(Error::TlsConfig(format!(
                "the connect string marks {}:{} tls:// but no TLS settings were given                  (ClientBuilder::tls or tls_per_host, or the [zookeeper.tls] section)",
                h.host, h.port
            ))),
            None => Ok(()),
        },
        Some(t) => {
            if hosts.iter().any(|h| uses(h, t.every_host)) {
                t.connector = Some(t.config.build()?);
            }
            Ok(())
        }
    }
}

/// The connector for `host` if it uses TLS.
pub(crate) fn tls_for<'a>(
    tls: &'a Option<TlsSetting>,
    host: &HostPort,
) -> Option<&'a TlsConnector> {
    let t = tls.as_ref()?;
    if host.tls.unwrap_or(t.every_host) {
        t.connector.as_ref()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ipv6_names_and_chroot() {
        let c =
            ConnectString::parse("127.0.0.1:2181,[::1]:2182,zk.example,[fe80::1]/app/x").unwrap();
        assert_eq!(
            c.hosts,
            vec![
                HostPort {
                    host: "127.0.0.1".into(),
                    port: 2181,
                    tls: None
                },
                HostPort {
                    host: "::1".into(),
                    port: 2182,
                    tls: None
                },
                HostPort {
                    host: "zk.example".into(),
                    port: 2181,
                    tls: None
                },
                HostPort {
                    host: "fe80::1".into(),
                    port: 2181,
                    tls: None
                },
            ]
        );
        assert_eq!(c.chroot.prefix(), Some("/app/x"));
        assert_eq!(ConnectString::parse("h:1/").unwrap().chroot.prefix(), None);
    }

    #[test]
    fn hosts_marked_tls_or_tcp() {
        let c = ConnectString::parse("tls://a:2281, tcp://[::1]:2181,b,TLS://c/app").unwrap();
        let marks: Vec<(&str, u16, Option<bool>)> = c
            .hosts
            .iter()
            .map(|h| (h.host.as_str(), h.port, h.tls))
            .collect();
        assert_eq!(
            marks,
            vec![
                ("a", 2281, Some(true)),
                ("::1", 2181, Some(false)),
                ("b", 2181, None),
                ("c", 2181, Some(true)),
            ]
        );
        assert_eq!(c.chroot.prefix(), Some("/app"));
        let c = ConnectString::parse("tls://h:1").unwrap();
        assert_eq!(c.chroot.prefix(), None);
        let e = ConnectString::parse("http://h:1").unwrap_err();
        assert!(e.to_string().contains("unknown scheme"), "{e}");
    }

    #[test]
    fn refuses_bad_connect_strings() {
        for s in [
            "",
            ",",
            "h:x",
            "h:0",
            "::1:2181",
            "[::1",
            "h:1/bad//root",
            "[::1]x",
            ":1",
            "tls://",
            "tls://:1",
        ] {
            assert!(
                matches!(
                    ConnectString::parse(s),
                    Err(Error::InvalidConnectString { .. })
                ),
                "{s:?}"
            );
        }
    }
}
