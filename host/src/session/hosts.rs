//! Connect strings: `host:port[,host:port...][/chroot]`, hosts as IPv4, `[IPv6]` or names.

use crate::error::{Error, Result};
use crate::path::Chroot;

/// One server to try, as written in the connect string (names are resolved on every attempt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub host: String,
    pub port: u16,
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
        let (hosts_part, chroot) = match input.find('/') {
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
            hosts.push(HostPort { host, port });
        }
        if hosts.is_empty() {
            return Err(bad("no hosts"));
        }
        Ok(ConnectString { hosts, chroot })
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
                    port: 2181
                },
                HostPort {
                    host: "::1".into(),
                    port: 2182
                },
                HostPort {
                    host: "zk.example".into(),
                    port: 2181
                },
                HostPort {
                    host: "fe80::1".into(),
                    port: 2181
                },
            ]
        );
        assert_eq!(c.chroot.prefix(), Some("/app/x"));
        assert_eq!(ConnectString::parse("h:1/").unwrap().chroot.prefix(), None);
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
