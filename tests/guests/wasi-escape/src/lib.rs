//! `wasi-escape`: `on-watch` tries to reach the world outside the sandbox through WASI, through
//! the standard library, and logs each outcome.
//!
//! Attempts, in order: `read /etc/passwd` (`std::fs::read`), `write /tmp/x` (`std::fs::write`),
//! `read-dir /` (`std::fs::read_dir`), `connect 127.0.0.1:1` (`TcpStream::connect`),
//! `bind-tcp 127.0.0.1:0` (`TcpListener::bind`), `bind-udp 127.0.0.1:0` (`UdpSocket::bind`),
//! `env HOME` (`std::env::var`) and `env *` (`std::env::vars`). Each logs one line:
//!
//! * `wasi-escape <attempt>: blocked: <io::ErrorKind debug>: <error>` at info when it fails as it
//!   must (for `env HOME`: `blocked: environment variable not found`; for `env *`:
//!   `blocked: empty`);
//! * `wasi-escape <attempt>: ESCAPED: <what it got>` at error when it succeeds. A connection
//!   *refused* counts as escaped: the guest could open a socket and try.
//!
//! Then `wasi-escape done: <n> blocked, <m> escaped`. `on-session` logs `session <state>`.

use std::io;
use std::net::{TcpListener, TcpStream, UdpSocket};

use wazoo_guest::{error, info, Plugin, SessionEvent, WatchEvent};

struct WasiEscape;

#[derive(Default)]
struct Tally {
    blocked: usize,
    escaped: usize,
}

impl Tally {
    fn blocked(&mut self, what: &str, why: String) {
        self.blocked += 1;
        info!("wasi-escape {what}: blocked: {why}");
    }

    fn escaped(&mut self, what: &str, got: String) {
        self.escaped += 1;
        error!("wasi-escape {what}: ESCAPED: {got}");
    }

    fn io<T>(&mut self, what: &str, r: io::Result<T>, got: impl FnOnce(T) -> String) {
        match r {
            Ok(v) => self.escaped(what, got(v)),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                self.escaped(what, format!("a connection was attempted ({e})"))
            }
            Err(e) => self.blocked(what, format!("{:?}: {e}", e.kind())),
        }
    }
}

impl Plugin for WasiEscape {
    fn init(_config: &[(String, String)]) -> Result<Self, String> {
        Ok(WasiEscape)
    }

    fn on_session(&mut self, ev: SessionEvent) {
        info!("session {}", ev.state);
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        info!("watch {} {} {}", ev.event_type, ev.path, ev.seq);
        let mut t = Tally::default();
        t.io("read /etc/passwd", std::fs::read("/etc/passwd"), |d| {
            format!("read {} bytes", d.len())
        });
        t.io(
            "write /tmp/x",
            std::fs::write("/tmp/x", b"wasi-escape"),
            |()| "wrote 11 bytes".to_string(),
        );
        t.io("read-dir /", std::fs::read_dir("/"), |d| {
            format!("listed {} entries", d.count())
        });
        t.io(
            "connect 127.0.0.1:1",
            TcpStream::connect("127.0.0.1:1"),
            |s| format!("connected to {:?}", s.peer_addr()),
        );
        t.io(
            "bind-tcp 127.0.0.1:0",
            TcpListener::bind("127.0.0.1:0"),
            |l| format!("listening on {:?}", l.local_addr()),
        );
        t.io(
            "bind-udp 127.0.0.1:0",
            UdpSocket::bind("127.0.0.1:0"),
            |s| format!("bound {:?}", s.local_addr()),
        );
        match std::env::var("HOME") {
            Ok(v) => t.escaped("env HOME", format!("HOME={v}")),
            Err(e) => t.blocked("env HOME", e.to_string()),
        }
        let keys: Vec<String> = std::env::vars_os()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        if keys.is_empty() {
            t.blocked("env *", "empty".to_string());
        } else {
            t.escaped(
                "env *",
                format!("{} variables: {}", keys.len(), keys.join(",")),
            );
        }
        info!(
            "wasi-escape done: {} blocked, {} escaped",
            t.blocked, t.escaped
        );
    }
}

wazoo_guest::export_plugin!(WasiEscape);
