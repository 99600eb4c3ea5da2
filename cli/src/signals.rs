//! The signals `wazoo` acts on: SIGINT and SIGTERM stop it; SIGHUP (for `run` only) reloads.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// A signal that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGINT (Ctrl-C).
    Int,
    /// SIGTERM.
    Term,
    /// SIGHUP.
    Hup,
}

impl Sig {
    /// Its usual name.
    pub fn name(self) -> &'static str {
        match self {
            Sig::Int => "SIGINT",
            Sig::Term => "SIGTERM",
            Sig::Hup => "SIGHUP",
        }
    }
}

/// The registered signal streams.
#[derive(Debug)]
pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Option<Signal>,
}

impl Signals {
    /// Registers SIGINT and SIGTERM, and SIGHUP when `hup` (otherwise SIGHUP keeps its default
    /// action).
    pub fn new(hup: bool) -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: if hup {
                Some(signal(SignalKind::hangup())?)
            } else {
                None
            },
        })
    }

    /// The next SIGINT or SIGTERM.
    pub async fn next(&mut self) -> Sig {
        tokio::select! {
            _ = self.int.recv() => Sig::Int,
            _ = self.term.recv() => Sig::Term,
        }
    }

    /// The next SIGINT, SIGTERM or (if registered) SIGHUP.
    pub async fn next_any(&mut self) -> Sig {
        let Signals { int, term, hup } = self;
        let hup = async {
            match hup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = int.recv() => Sig::Int,
            _ = term.recv() => Sig::Term,
            _ = hup => Sig::Hup,
        }
    }
}
