//! SASL for ZooKeeper sessions: the DIGEST-MD5 mechanism (RFC 2831), which is what a ZooKeeper
//! server configured with `authProvider.sasl=...SASLAuthenticationProvider` and a JAAS `Server`
//! section using `DigestLoginModule` speaks, and the in-band exchange (op code 102) that carries
//! its tokens right after the connect response.
//!
//! The exchange, as the real server runs it:
//!
//! 1. client: an empty token (DIGEST-MD5 has no initial response);
//! 2. server: the digest challenge (`realm="zk-sasl-md5",nonce="...",qop="auth",
//!    charset=utf-8,algorithm=md5-sess`);
//! 3. client: the digest response (`username`, `realm`, `nonce`, `cnonce`, `nc`, `qop`,
//!    `digest-uri="zookeeper/zk-sasl-md5"`, `response`);
//! 4. server: `rspauth=...`, which the client checks: it proves the server knows the password
//!    too.
//!
//! A wrong user name or password makes the server answer step 3 with a reply header whose error
//! is `AUTHFAILED` (-115), or `SESSIONCLOSEDREQUIRESASLAUTH` (-124) when it enforces SASL, and
//! close the connection: the session then fails with [`Error::AuthFailed`] or
//! [`Error::SessionClosedRequireSaslAuth`].
//!
//! Pure but for [`exchange`], which runs the four steps over a connection during the handshake.

use std::fmt::Write as _;

use bytes::BytesMut;
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Error;
use crate::proto::codec::{JuteWrite, Reader};
use crate::proto::frame::next_frame;
use crate::proto::ops::{self, op};
use crate::proto::records::ReplyHeader;

/// The SASL "server name" ZooKeeper's DIGEST-MD5 uses (its realm too).
const ZK_SERVER_NAME: &str = "zk-sasl-md5";
/// The SASL protocol name ZooKeeper uses.
const ZK_PROTOCOL: &str = "zookeeper";
/// How many rounds a well-behaved server needs (challenge, then rspauth), with room to spare.
const MAX_ROUNDS: usize = 4;

/// SASL credentials for a session: DIGEST-MD5 with a user name and password, as configured in
/// the server's JAAS `Server` section (`user_<name>="<password>"`).
///
/// The password is never printed: `Debug` shows it as `<redacted>`.
///
/// ```
/// let sasl = wazoo::SaslConfig::digest_md5("bob", "secret");
/// assert_eq!(sasl.user(), "bob");
/// assert!(!format!("{sasl:?}").contains("secret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SaslConfig {
    user: String,
    password: String,
}

impl SaslConfig {
    /// DIGEST-MD5 with this user name and password.
    pub fn digest_md5(user: impl Into<String>, password: impl Into<String>) -> SaslConfig {
        SaslConfig {
            user: user.into(),
            password: password.into(),
        }
    }

    /// DIGEST-MD5 with the password read from a file (its first line; a trailing newline is not
    /// part of the password). Fails with [`Error::InvalidArgument`] naming the file (never its
    /// content) when it cannot be read or is empty.
    pub fn digest_md5_password_file(
        user: impl Into<String>,
        path: impl AsRef<std::path::Path>,
    ) -> Result<SaslConfig, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidArgument(format!(
                "cannot read the SASL password file {}: {e}",
                path.display()
            ))
        })?;
        let password = text.lines().next().unwrap_or("").to_string();
        if password.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "the SASL password file {} is empty",
                path.display()
            )));
        }
        Ok(SaslConfig::digest_md5(user, password))
    }

    /// The user name.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The mechanism's name, as SASL spells it.
    pub fn mechanism(&self) -> &'static str {
        "DIGEST-MD5"
    }
}

impl std::fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslConfig")
            .field("mechanism", &self.mechanism())
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a DIGEST-MD5 step failed on the client's side.
fn sasl_err(msg: impl Into<String>) -> Error {
    Error::Sasl(msg.into())
}

/// The client half of one DIGEST-MD5 authentication.
pub(crate) struct DigestMd5 {
    user: String,
    password: String,
    cnonce: String,
    digest_uri: String,
    /// The hex `rspauth` the server must send back (set by `respond`).
    expected_rspauth: Option<String>,
}

impl DigestMd5 {
    /// A new authentication for ZooKeeper (`digest-uri` `zookeeper/zk-sasl-md5`) with a fresh
    /// random client nonce.
    pub(crate) fn for_zookeeper(cfg: &SaslConfig) -> Result<DigestMd5, Error> {
        let mut raw = [0u8; 18];
        rustls::crypto::ring::default_provider()
            .secure_random
            .fill(&mut raw)
            .map_err(|_| sasl_err("no secure random numbers for the client nonce"))?;
        Ok(DigestMd5::with(
            cfg,
            &hex(&raw),
            &format!("{ZK_PROTOCOL}/{ZK_SERVER_NAME}"),
        ))
    }

    /// With a given client nonce and digest-uri (tests).
    fn with(cfg: &SaslConfig, cnonce: &str, digest_uri: &str) -> DigestMd5 {
        DigestMd5 {
            user: cfg.user.clone(),
            password: cfg.password.clone(),
            cnonce: cnonce.to_string(),
            digest_uri: digest_uri.to_string(),
            expected_rspauth: None,
        }
    }

    /// Answers the server's digest challenge (step 2) with the digest response (step 3).
    pub(crate) fn respond(&mut self, challenge: &[u8]) -> Result<Vec<u8>, Error> {
        let text = std::str::from_utf8(challenge)
            .map_err(|_| sasl_err("the DIGEST-MD5 challenge is not UTF-8"))?;
        let dirs = parse_directives(text)?;
        let get = |k: &str| dirs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        let nonce = get("nonce").ok_or_else(|| sasl_err("the challenge has no nonce"))?;
        if let Some(alg) = get("algorithm") {
            if !alg.eq_ignore_ascii_case("md5-sess") {
                return Err(sasl_err(format!(
                    "the challenge asks for algorithm {alg:?}; DIGEST-MD5 needs md5-sess"
                )));
            }
        } else {
            return Err(sasl_err(
                "the challenge has no algorithm (md5-sess expected)",
            ));
        }
        // qop defaults to "auth" (RFC 2831 2.1.1); only "auth" is spoken here: no integrity
        // or confidentiality layer (TLS is the way to protect the connection).
        let qop_offered = get("qop").unwrap_or("auth");
        if !qop_offered
            .split(',')
            .any(|q| q.trim().eq_ignore_ascii_case("auth"))
        {
            return Err(sasl_err(format!(
                "the server offers qop {qop_offered:?} but not \"auth\"; only \"auth\" is supported"
            )));
        }
        let realm = get("realm").unwrap_or("");
        let utf8 = get("charset").is_some_and(|c| c.eq_ignore_ascii_case("utf-8"));
        let nc = "00000001";
        let qop = "auth";

        let ha1 = self.ha1(realm, nonce, utf8);
        let response = kd_hex(
            &ha1,
            nonce,
            nc,
            &self.cnonce,
            qop,
            &format!("AUTHENTICATE:{}", self.digest_uri),
        );
        self.expected_rspauth = Some(kd_hex(
            &ha1,
            nonce,
            nc,
            &self.cnonce,
            qop,
            &format!(":{}", self.digest_uri),
        ));

        let mut out = String::new();
        if utf8 {
            out.push_str("charset=utf-8,");
        }
        write!(
            out,
            "username={},realm={},nonce={},nc={nc},cnonce={},digest-uri={},maxbuf=65536,response={response},qop={qop}",
            quote(&self.user),
            quote(realm),
            quote(nonce),
            quote(&self.cnonce),
            quote(&self.digest_uri),
        )
        .expect("writing to a String");
        Ok(out.into_bytes())
    }

    /// Checks the server's final message (step 4): `rspauth` must prove it knows the password.
    pub(crate) fn verify_final(&self, msg: &[u8]) -> Result<(), Error> {
        let expected = self
            .expected_rspauth
            .as_deref()
            .ok_or_else(|| sasl_err("rspauth before the challenge was answered"))?;
        let text = std::str::from_utf8(msg)
            .map_err(|_| sasl_err("the server's final DIGEST-MD5 message is not UTF-8"))?;
        let dirs = parse_directives(text)?;
        match dirs.iter().find(|(k, _)| k == "rspauth") {
            Some((_, v)) if v.eq_ignore_ascii_case(expected) => Ok(()),
            Some(_) => Err(sasl_err(
                "the server's rspauth does not match: it does not know this user's password \
                 (a server in the middle?)",
            )),
            None => Err(sasl_err("the server's final message has no rspauth")),
        }
    }

    /// H(A1) for md5-sess: MD5 of `MD5(user:realm:password) : nonce : cnonce`.
    fn ha1(&self, realm: &str, nonce: &str, utf8: bool) -> [u8; 16] {
        let mut inner = Md5::new();
        inner.update(encode(&self.user, utf8));
        inner.update(b":");
        inner.update(encode(realm, utf8));
        inner.update(b":");
        inner.update(encode(&self.password, utf8));
        let secret = inner.finalize();
        let mut outer = Md5::new();
        outer.update(secret);
        outer.update(b":");
        outer.update(nonce.as_bytes());
        outer.update(b":");
        outer.update(self.cnonce.as_bytes());
        outer.finalize().into()
    }
}

/// `HEX(KD(HEX(H(A1)), nonce:nc:cnonce:qop:HEX(H(A2))))`, with `KD(k, s) = H(k:s)`.
fn kd_hex(ha1: &[u8; 16], nonce: &str, nc: &str, cnonce: &str, qop: &str, a2: &str) -> String {
    let ha2 = hex(&Md5::digest(a2.as_bytes()));
    let mut h = Md5::new();
    h.update(hex(ha1).as_bytes());
    for part in [nonce, nc, cnonce, qop, &ha2] {
        h.update(b":");
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

/// Strings in the digest: UTF-8 when the server said `charset=utf-8` (as Java's SASL does), else
/// ISO 8859-1 (characters outside it cannot be sent and become `?`).
fn encode(s: &str, utf8: bool) -> Vec<u8> {
    if utf8 {
        s.as_bytes().to_vec()
    } else {
        s.chars()
            .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(s, "{b:02x}").expect("writing to a String");
    }
    s
}

/// A quoted-string, with `"` and `\` escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Parses `key=value` directives separated by commas; values are tokens or quoted-strings. Keys
/// come back lower-cased; a repeated key (several `realm`s) keeps every occurrence in order.
fn parse_directives(s: &str) -> Result<Vec<(String, String)>, Error> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            key.push(c.to_ascii_lowercase());
            chars.next();
        }
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(sasl_err(format!(
                "malformed DIGEST-MD5 message: directive {key:?} has no value"
            )));
        }
        while matches!(chars.peek(), Some(c) if c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err(sasl_err(
                                "malformed DIGEST-MD5 message: unterminated quoted string",
                            ))
                        }
                    },
                    Some(c) => value.push(c),
                    None => {
                        return Err(sasl_err(
                            "malformed DIGEST-MD5 message: unterminated quoted string",
                        ))
                    }
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value.truncate(value.trim_end().len());
        }
        if key.is_empty() {
            return Err(sasl_err(
                "malformed DIGEST-MD5 message: empty directive name",
            ));
        }
        out.push((key, value));
    }
}

/// One SASL request frame (`GetSASLRequest{buffer token}`) with its xid.
fn sasl_frame(xid: i32, token: &[u8]) -> BytesMut {
    let mut f = ops::start_frame(op::SASL, 4 + token.len());
    f.put_buf_j(token);
    ops::seal_frame(&mut f, xid);
    f
}

/// Sends one token and reads the server's answer (`SetSASLResponse{buffer token}`). A reply
/// header with an error becomes that error (`AuthFailed` for a wrong password).
async fn round<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    max_frame: usize,
    xid: i32,
    token: &[u8],
) -> Result<Vec<u8>, SaslFailure> {
    stream
        .write_all(&sasl_frame(xid, token))
        .await
        .map_err(SaslFailure::Io)?;
    loop {
        if let Some(frame) = next_frame(rbuf, max_frame).map_err(SaslFailure::Fatal)? {
            let mut r = Reader::new(&frame);
            let h = ReplyHeader::read(&mut r).map_err(SaslFailure::Fatal)?;
            if h.xid != xid {
                return Err(SaslFailure::Fatal(Error::MalformedResponse(format!(
                    "reply for xid {} during the SASL exchange (xid {xid} expected)",
                    h.xid
                ))));
            }
            if h.err != 0 {
                return Err(SaslFailure::Fatal(Error::from_code(h.err)));
            }
            // A null token reads as empty.
            let token = if r.remaining() == 0 {
                &[][..]
            } else {
                r.buf().map_err(SaslFailure::Fatal)?
            };
            return Ok(token.to_vec());
        }
        rbuf.reserve(4096);
        let n = stream.read_buf(rbuf).await.map_err(SaslFailure::Io)?;
        if n == 0 {
            return Err(SaslFailure::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection during the SASL exchange",
            )));
        }
    }
}

/// How the SASL exchange failed.
#[derive(Debug)]
pub(crate) enum SaslFailure {
    /// The connection failed (try another server).
    Io(std::io::Error),
    /// The server refused the credentials, or the exchange itself went wrong.
    Fatal(Error),
}

/// Runs the whole DIGEST-MD5 exchange on a fresh connection, right after the connect response
/// and before anything else is sent. `rbuf` holds whatever was read past the connect response.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    max_frame: usize,
    cfg: &SaslConfig,
) -> Result<(), SaslFailure> {
    let mut mech = DigestMd5::for_zookeeper(cfg).map_err(SaslFailure::Fatal)?;
    // Xids of this exchange: the server echoes them and orders nothing by them; the session's
    // own counter starts afresh after it.
    let challenge = round(stream, rbuf, max_frame, 1, &[]).await?;
    if challenge.is_empty() {
        return Err(SaslFailure::Fatal(sasl_err(
            "the server sent no DIGEST-MD5 challenge: is SASL enabled on it \
             (authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider and a \
             JAAS Server section)?",
        )));
    }
    let response = mech.respond(&challenge).map_err(SaslFailure::Fatal)?;
    let mut token = round(stream, rbuf, max_frame, 2, &response).await?;
    for xid in 3..(3 + MAX_ROUNDS as i32) {
        if !token.is_empty() {
            break;
        }
        // Some servers send the rspauth only after an empty round; ZooKeeper does not, but an
        // empty answer is not an error.
        token = round(stream, rbuf, max_frame, xid, &[]).await?;
    }
    mech.verify_final(&token).map_err(SaslFailure::Fatal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_2831_worked_example() {
        // RFC 2831 section 4: user chris, password secret, IMAP on elwood.innosoft.com.
        let cfg = SaslConfig::digest_md5("chris", "secret");
        let mut m = DigestMd5::with(&cfg, "OA6MHXh6VqTrRk", "imap/elwood.innosoft.com");
        let challenge = b"realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\",qop=\"auth\",\
                          algorithm=md5-sess,charset=utf-8";
        let resp = String::from_utf8(m.respond(challenge).unwrap()).unwrap();
        let dirs = parse_directives(&resp).unwrap();
        let get = |k: &str| {
            dirs.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get("response"), "d388dad90d4bbd760a152321f2143af7");
        assert_eq!(get("username"), "chris");
        assert_eq!(get("realm"), "elwood.innosoft.com");
        assert_eq!(get("nonce"), "OA6MG9tEQGm2hh");
        assert_eq!(get("cnonce"), "OA6MHXh6VqTrRk");
        assert_eq!(get("nc"), "00000001");
        assert_eq!(get("qop"), "auth");
        assert_eq!(get("digest-uri"), "imap/elwood.innosoft.com");
        assert_eq!(get("charset"), "utf-8");
        m.verify_final(b"rspauth=ea40f60335c427b5527b84dbabcdfffd")
            .unwrap();
        assert!(matches!(
            m.verify_final(b"rspauth=00000000000000000000000000000000"),
            Err(Error::Sasl(_))
        ));
    }

    #[test]
    fn zookeeper_digest_uri_and_fresh_cnonces() {
        let cfg = SaslConfig::digest_md5("bob", "secret");
        let a = DigestMd5::for_zookeeper(&cfg).unwrap();
        let b = DigestMd5::for_zookeeper(&cfg).unwrap();
        assert_eq!(a.digest_uri, "zookeeper/zk-sasl-md5");
        assert_eq!(a.cnonce.len(), 36);
        assert_ne!(a.cnonce, b.cnonce);
    }

    #[test]
    fn refuses_what_it_cannot_speak() {
        let cfg = SaslConfig::digest_md5("bob", "secret");
        let mut m = DigestMd5::with(&cfg, "c", "zookeeper/zk-sasl-md5");
        for bad in [
            &b"nonce=\"n\",qop=\"auth-conf\",algorithm=md5-sess"[..],
            b"nonce=\"n\",algorithm=md5",
            b"qop=\"auth\",algorithm=md5-sess",
            b"nonce=\"n\",algorithm=md5-sess,realm=\"unterminated",
            b"nonce",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(m.respond(bad), Err(Error::Sasl(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(
            matches!(m.verify_final(b"rspauth=x"), Err(Error::Sasl(_))),
            "rspauth before respond"
        );
    }

    #[test]
    fn directives_tokens_quotes_and_escapes() {
        let d = parse_directives(
            " realm=\"a\\\"b\", Nonce=xyz ,qop=\"auth,auth-int\",realm=\"second\",,stale=true",
        )
        .unwrap();
        assert_eq!(
            d,
            vec![
                ("realm".to_string(), "a\"b".to_string()),
                ("nonce".to_string(), "xyz".to_string()),
                ("qop".to_string(), "auth,auth-int".to_string()),
                ("realm".to_string(), "second".to_string()),
                ("stale".to_string(), "true".to_string()),
            ]
        );
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn quoting_round_trips_odd_user_names() {
        let cfg = SaslConfig::digest_md5("we\"ird\\user", "pw");
        let mut m = DigestMd5::with(&cfg, "c", "zookeeper/zk-sasl-md5");
        let resp = m
            .respond(b"realm=\"zk-sasl-md5\",nonce=\"n\",algorithm=md5-sess,charset=utf-8")
            .unwrap();
        let dirs = parse_directives(std::str::from_utf8(&resp).unwrap()).unwrap();
        assert!(dirs
            .iter()
            .any(|(k, v)| k == "username" && v == "we\"ird\\user"));
    }

    #[test]
    fn debug_redacts_the_password() {
        let cfg = SaslConfig::digest_md5("bob", "hunter2");
        let s = format!("{cfg:?}");
        assert!(s.contains("bob") && s.contains("<redacted>") && !s.contains("hunter2"));
    }

    #[test]
    fn password_file_first_line_and_errors() {
        let dir = std::env::temp_dir().join(format!("wazoo-sasl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pw");
        std::fs::write(&p, "s3cret\n").unwrap();
        let c = SaslConfig::digest_md5_password_file("bob", &p).unwrap();
        assert_eq!(c, SaslConfig::digest_md5("bob", "s3cret"));
        std::fs::write(&p, "\n").unwrap();
        let e = SaslConfig::digest_md5_password_file("bob", &p).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = SaslConfig::digest_md5_password_file("bob", dir.join("missing")).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn frames_carry_op_102_and_the_token() {
        let f = sasl_frame(7, b"tok");
        assert_eq!(&f[0..4], &(f.len() as i32 - 4).to_be_bytes());
        assert_eq!(&f[4..8], &7i32.to_be_bytes());
        assert_eq!(&f[8..12], &102i32.to_be_bytes());
        assert_eq!(&f[12..16], &3i32.to_be_bytes());
        assert_eq!(&f[16..], b"tok");
    }
}
