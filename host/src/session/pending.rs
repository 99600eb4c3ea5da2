//! What a connection has sent and still awaits an answer for: requests in xid order (the
//! server answers them in order), auth packets, SetWatches2 batches. The connection's end fails
//! whatever is left here (every request completes exactly once).

use std::collections::VecDeque;

use super::connection::Disconnect;
use super::{Effect, ReplySink};
use crate::error::Error;
use crate::proto::ops::OpCode;

/// Where a reply goes.
pub(super) enum Reply {
    /// To the caller.
    User(ReplySink),
    /// The session's own request (removing or re-arming a watch): logged if it fails.
    Internal,
    /// The answer to closeSession: the connection ends.
    Close,
}

/// A request sent (or in the write buffer) and not yet answered.
pub(super) struct InFlight {
    pub xid: i32,
    pub opcode: OpCode,
    pub reply: Reply,
    pub effect: Effect,
}

/// The in-flight queue of one connection.
pub(super) struct Pending {
    /// The last xid given out. It carries over from connection to connection, as the Java
    /// client's does.
    xid: i32,
    requests: VecDeque<InFlight>,
    /// Requests in the write buffer not yet handed to the socket (the newest `unsent` entries
    /// of `requests`).
    unsent: usize,
    /// Auth packets sent and not yet answered (by `Auth::id`).
    auths: VecDeque<u64>,
    /// SetWatches2 batches of this connection not yet answered.
    set_watches: usize,
}

impl Pending {
    /// An empty queue whose xids continue after `last_xid`.
    pub(super) fn new(last_xid: i32) -> Pending {
        Pending {
            xid: last_xid,
            requests: VecDeque::new(),
            unsent: 0,
            auths: VecDeque::new(),
            set_watches: 0,
        }
    }

    /// The last xid given out.
    pub(super) fn last_xid(&self) -> i32 {
        self.xid
    }

    /// The next xid (1 after `i32::MAX`: the negative ones are ZooKeeper's special xids).
    pub(super) fn next_xid(&mut self) -> i32 {
        self.xid = if self.xid == i32::MAX {
            1
        } else {
            self.xid + 1
        };
        self.xid
    }

    /// A request was put in the write buffer.
    pub(super) fn push(&mut self, req: InFlight) {
        self.unsent += 1;
        self.requests.push_back(req);
    }

    /// The write buffer went out entirely.
    pub(super) fn all_sent(&mut self) {
        self.unsent = 0;
    }

    /// Requests in the write buffer or sent, not yet answered.
    pub(super) fn len(&self) -> usize {
        self.requests.len()
    }

    /// Requests the socket took that still await their replies.
    pub(super) fn awaiting(&self) -> usize {
        self.requests.len() - self.unsent
    }

    /// The request a reply with `xid` answers: the oldest one, or the connection is broken.
    pub(super) fn answered(&mut self, xid: i32) -> Result<InFlight, Disconnect> {
        let Some(p) = self.requests.pop_front() else {
            return Err(Disconnect::Protocol(Error::MalformedResponse(format!(
                "reply for xid {xid} with no request in flight"
            ))));
        };
        if p.xid != xid {
            let e = Error::MalformedResponse(format!(
                "reply for xid {xid} while xid {} was next",
                p.xid
            ));
            self.requests.push_front(p);
            return Err(Disconnect::Protocol(e));
        }
        Ok(p)
    }

    /// An auth packet was sent.
    pub(super) fn auth_sent(&mut self, id: u64) {
        self.auths.push_back(id);
    }

    /// The auth an auth reply answers.
    pub(super) fn auth_answered(&mut self) -> Result<u64, Disconnect> {
        self.auths.pop_front().ok_or_else(|| {
            Disconnect::Protocol(Error::MalformedResponse(
                "an auth reply nobody asked for".into(),
            ))
        })
    }

    /// A SetWatches2 batch was sent.
    pub(super) fn set_watches_sent(&mut self) {
        self.set_watches += 1;
    }

    /// A SetWatches2 batch was answered. True when it was the last one: every watch is armed
    /// again.
    pub(super) fn set_watches_answered(&mut self) -> bool {
        self.set_watches = self.set_watches.saturating_sub(1);
        self.set_watches == 0
    }

    /// Every request still in flight, oldest first (the connection ended).
    pub(super) fn drain(&mut self) -> impl Iterator<Item = InFlight> + '_ {
        self.unsent = 0;
        self.requests.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn internal(xid: i32) -> InFlight {
        InFlight {
            xid,
            opcode: crate::proto::ops::op::PING,
            reply: Reply::Internal,
            effect: Effect::None,
        }
    }

    #[test]
    fn xids_carry_over_and_skip_the_special_ones() {
        let mut p = Pending::new(i32::MAX - 1);
        assert_eq!(p.next_xid(), i32::MAX);
        assert_eq!(
            p.next_xid(),
            1,
            "after i32::MAX comes 1, never 0 or a negative xid"
        );
        assert_eq!(Pending::new(p.last_xid()).next_xid(), 2);
    }

    #[test]
    fn replies_must_answer_the_oldest_request() {
        let mut p = Pending::new(0);
        for _ in 0..2 {
            let xid = p.next_xid();
            p.push(internal(xid));
        }
        assert_eq!(p.awaiting(), 0, "nothing handed to the socket yet");
        p.all_sent();
        assert_eq!(p.awaiting(), 2);
        assert!(matches!(p.answered(2), Err(Disconnect::Protocol(_))));
        assert_eq!(p.awaiting(), 2, "a reply out of order takes nothing");
        assert_eq!(p.answered(1).map(|r| r.xid).ok(), Some(1));
        assert_eq!(p.drain().map(|r| r.xid).collect::<Vec<_>>(), vec![2]);
        assert!(matches!(p.answered(3), Err(Disconnect::Protocol(_))));
    }

    #[test]
    fn the_last_set_watches_answer_is_known() {
        let mut p = Pending::new(0);
        p.set_watches_sent();
        p.set_watches_sent();
        assert!(!p.set_watches_answered());
        assert!(p.set_watches_answered());
        assert!(matches!(p.auth_answered(), Err(Disconnect::Protocol(_))));
        p.auth_sent(7);
        assert_eq!(p.auth_answered().ok(), Some(7));
    }
}
