//! A connection's timers: ping when nothing was sent for a third of the negotiated timeout, the
//! connection is dead when nothing was received for two thirds of it, and closeSession is given
//! [`CLOSE_WAIT`] to be answered. All are checked on one tick, every tenth of the timeout.
//!
//! Liveness is judged at tick granularity: the serve loop only notes that something was
//! received or sent, and the tick turns that into a time (no clock read per batch).

use std::time::{Duration, Instant};

use tokio::time::{Interval, MissedTickBehavior};

/// How long `close` waits for the server's answer.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// What a tick found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Due {
    /// Nothing to do.
    Nothing,
    /// Send a ping: the server must hear from us.
    Ping,
    /// Nothing was received for too long: the connection is dead.
    Dead,
    /// closeSession was not answered in time.
    CloseExpired,
}

/// The timers of one connection.
pub(super) struct Timers {
    timeout: Duration,
    tick: Interval,
    last_send: Instant,
    last_recv: Instant,
    /// Something was handed to the socket since the last tick.
    sent: bool,
    /// Something arrived since the last tick.
    heard: bool,
    /// When closeSession was sent.
    closing_since: Option<Instant>,
}

impl Timers {
    /// Timers for a connection with the negotiated `timeout`, starting now.
    pub(super) fn new(timeout: Duration) -> Timers {
        let mut tick = tokio::time::interval((timeout / 10).max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let now = Instant::now();
        Timers {
            timeout,
            tick,
            last_send: now,
            last_recv: now,
            sent: false,
            heard: false,
            closing_since: None,
        }
    }

    /// Something arrived.
    pub(super) fn heard(&mut self) {
        self.heard = true;
    }

    /// Something was handed to the socket.
    pub(super) fn sent(&mut self) {
        self.sent = true;
    }

    /// closeSession was sent: its answer is due within [`CLOSE_WAIT`].
    pub(super) fn closing(&mut self) {
        self.closing_since = Some(Instant::now());
    }

    /// Whether closeSession was sent.
    pub(super) fn is_closing(&self) -> bool {
        self.closing_since.is_some()
    }

    /// Waits for the next tick and says what is due then. A ping that is due counts as sent.
    pub(super) async fn tick(&mut self) -> Due {
        let now = self.tick.tick().await.into_std();
        if std::mem::take(&mut self.heard) {
            self.last_recv = now;
        }
        if std::mem::take(&mut self.sent) {
            self.last_send = now;
        }
        if self
            .closing_since
            .is_some_and(|since| since.elapsed() >= CLOSE_WAIT)
        {
            return Due::CloseExpired;
        }
        if self.last_recv.elapsed() >= self.timeout * 2 / 3 {
            return Due::Dead;
        }
        if self.last_send.elapsed() >= self.timeout / 3 {
            self.last_send = now;
            return Due::Ping;
        }
        Due::Nothing
    }

    /// When the server was last heard from (brought up to date now if something arrived since
    /// the last tick): what client-side expiry counts from once the connection is gone.
    pub(super) fn last_heard(&self) -> Instant {
        if self.heard {
            Instant::now()
        } else {
            self.last_recv
        }
    }
}
