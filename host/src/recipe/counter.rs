//! Kazoo's `Counter`: an integer stored as decimal text in a node's data (an empty node counts
//! as the default), changed with a version-checked set and retried when another writer got in
//! first, so Kazoo and wazoo clients count together.

use crate::client::Client;
use crate::error::{Error, Result};
use crate::proto::records::Stat;
use crate::recipe::driver::{self, Reply, Request, Response};

/// A shared counter (Kazoo's `Counter` with an integer default).
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// let counter = wazoo::Counter::new(&zk, "/stats/jobs", 0)?;
/// let change = counter.add(5).await?;
/// assert_eq!(change.post, change.pre + 5);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Counter {
    client: Client,
    path: String,
    default: i64,
}

/// The value before and after one change (Kazoo's `pre_value` and `post_value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterChange {
    /// The value the change applied to.
    pub pre: i64,
    /// The value it left.
    pub post: i64,
}

impl Counter {
    /// A counter at `path` whose value is `default` while the node is empty.
    pub fn new(client: &Client, path: &str, default: i64) -> Result<Counter> {
        crate::path::validate_path(path, false)?;
        Ok(Counter {
            client: client.clone(),
            path: path.to_string(),
            default,
        })
    }

    /// The current value.
    pub async fn value(&self) -> Result<i64> {
        self.run(0, false).await.map(|c| c.pre)
    }

    /// Adds `delta` (negative to subtract) atomically.
    pub async fn add(&self, delta: i64) -> Result<CounterChange> {
        self.run(delta, true).await
    }

    async fn run(&self, delta: i64, write: bool) -> Result<CounterChange> {
        let mut core = CounterCore::new(&self.path, self.default, delta, write);
        let mut step = core.start();
        loop {
            match step {
                CounterStep::Send(req) => {
                    let (reply, _) = driver::send(&self.client, req).await;
                    step = core.on_reply(reply);
                }
                CounterStep::Done(r) => return r,
            }
        }
    }
}

/// What the counter core wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CounterStep {
    Send(Request),
    Done(Result<CounterChange>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Read,
    Ensure,
    /// A set of `post` at `version` is in flight.
    Set {
        pre: i64,
        post: i64,
        version: i32,
    },
    /// A set's reply was lost: re-read to see whether it was applied.
    Verify {
        pre: i64,
        post: i64,
        version: i32,
    },
}

/// One read or read-modify-write of the counter.
#[derive(Debug, Clone)]
pub(crate) struct CounterCore {
    path: String,
    default: i64,
    delta: i64,
    write: bool,
    phase: Phase,
}

impl CounterCore {
    pub(crate) fn new(path: &str, default: i64, delta: i64, write: bool) -> CounterCore {
        CounterCore {
            path: path.to_string(),
            default,
            delta,
            write,
            phase: Phase::Read,
        }
    }

    pub(crate) fn start(&mut self) -> CounterStep {
        self.read()
    }

    fn read(&mut self) -> CounterStep {
        self.phase = Phase::Read;
        CounterStep::Send(Request::GetData {
            path: self.path.clone(),
            watch: false,
        })
    }

    fn parse(&self, data: &[u8]) -> Result<i64> {
        if data.is_empty() {
            return Ok(self.default);
        }
        std::str::from_utf8(data)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "counter {}: {:?} is not a decimal integer",
                    self.path,
                    String::from_utf8_lossy(data)
                ))
            })
    }

    pub(crate) fn on_reply(&mut self, reply: Reply) -> CounterStep {
        match (self.phase.clone(), reply) {
            (Phase::Read, Ok(Response::Data(data, stat))) => self.got(&data, &stat),
            (Phase::Read, Err(Error::NoNode)) => {
                self.phase = Phase::Ensure;
                CounterStep::Send(Request::EnsurePath(self.path.clone()))
            }
            (Phase::Ensure, Ok(_)) => self.read(),
            (Phase::Read | Phase::Ensure, Err(e)) if driver::transient(&e) => self.read(),
            (Phase::Set { pre, post, .. }, Ok(_)) => {
                CounterStep::Done(Ok(CounterChange { pre, post }))
            }
            (Phase::Set { .. }, Err(Error::BadVersion)) => self.read(),
            (Phase::Set { pre, post, version } | Phase::Verify { pre, post, version }, Err(e))
                if driver::transient(&e) =>
            {
                self.phase = Phase::Verify { pre, post, version };
                CounterStep::Send(Request::GetData {
                    path: self.path.clone(),
                    watch: false,
                })
            }
            (Phase::Verify { pre, post, version }, Ok(Response::Data(data, stat))) => {
                // Our set applied if the node is one version on and holds our value. (Another
                // writer adding the same delta to the same value at that moment would look the
                // same; its set and ours cannot both have applied.)
                if stat.version == version + 1 && self.parse(&data).ok() == Some(post) {
                    CounterStep::Done(Ok(CounterChange { pre, post }))
                } else {
                    self.got(&data, &stat)
                }
            }
            (_, Err(e)) => CounterStep::Done(Err(e)),
            (phase, Ok(r)) => CounterStep::Done(Err(Error::InvalidArgument(format!(
                "counter: unexpected reply {r:?} in {phase:?}"
            )))),
        }
    }

    fn got(&mut self, data: &[u8], stat: &Stat) -> CounterStep {
        let pre = match self.parse(data) {
            Ok(v) => v,
            Err(e) => return CounterStep::Done(Err(e)),
        };
        if !self.write {
            return CounterStep::Done(Ok(CounterChange { pre, post: pre }));
        }
        let Some(post) = pre.checked_add(self.delta) else {
            return CounterStep::Done(Err(Error::InvalidArgument(format!(
                "counter {}: {pre} + {} overflows",
                self.path, self.delta
            ))));
        };
        self.phase = Phase::Set {
            pre,
            post,
            version: stat.version,
        };
        CounterStep::Send(Request::SetData {
            path: self.path.clone(),
            data: post.to_string().into_bytes(),
            version: stat.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(version: i32) -> Stat {
        Stat {
            version,
            ..Stat::default()
        }
    }

    fn data(d: &str, version: i32) -> Reply {
        Ok(Response::Data(d.as_bytes().to_vec(), at(version)))
    }

    #[test]
    fn adds_with_a_version_checked_set_as_decimal_text() {
        let mut c = CounterCore::new("/c", 0, 5, true);
        c.start();
        assert_eq!(
            c.on_reply(data("12", 3)),
            CounterStep::Send(Request::SetData {
                path: "/c".into(),
                data: b"17".to_vec(),
                version: 3
            })
        );
        assert_eq!(
            c.on_reply(Ok(Response::Stat(at(4)))),
            CounterStep::Done(Ok(CounterChange { pre: 12, post: 17 }))
        );
    }

    #[test]
    fn a_lost_race_reads_again() {
        let mut c = CounterCore::new("/c", 0, 1, true);
        c.start();
        c.on_reply(data("1", 0));
        assert!(matches!(
            c.on_reply(Err(Error::BadVersion)),
            CounterStep::Send(Request::GetData { .. })
        ));
        assert!(matches!(
            c.on_reply(data("2", 1)),
            CounterStep::Send(Request::SetData { version: 1, .. })
        ));
    }

    #[test]
    fn an_empty_or_missing_node_counts_as_the_default() {
        let mut c = CounterCore::new("/c", 7, 1, true);
        c.start();
        assert_eq!(
            c.on_reply(Err(Error::NoNode)),
            CounterStep::Send(Request::EnsurePath("/c".into()))
        );
        c.on_reply(Ok(Response::Unit));
        assert!(matches!(
            c.on_reply(data("", 0)),
            CounterStep::Send(Request::SetData { ref data, .. }) if data == b"8"
        ));
    }

    #[test]
    fn a_set_whose_reply_was_lost_is_not_applied_twice() {
        let mut c = CounterCore::new("/c", 0, 1, true);
        c.start();
        c.on_reply(data("4", 2));
        assert!(matches!(
            c.on_reply(Err(Error::ConnectionLoss)),
            CounterStep::Send(Request::GetData { .. })
        ));
        assert_eq!(
            c.on_reply(data("5", 3)),
            CounterStep::Done(Ok(CounterChange { pre: 4, post: 5 }))
        );
        // Not applied: try again from the value read.
        let mut c = CounterCore::new("/c", 0, 1, true);
        c.start();
        c.on_reply(data("4", 2));
        c.on_reply(Err(Error::ConnectionLoss));
        assert!(matches!(
            c.on_reply(data("4", 2)),
            CounterStep::Send(Request::SetData { version: 2, .. })
        ));
    }

    #[test]
    fn text_that_is_not_an_integer_is_an_error() {
        let mut c = CounterCore::new("/c", 0, 1, true);
        c.start();
        assert!(matches!(
            c.on_reply(data("1.5", 0)),
            CounterStep::Done(Err(Error::InvalidArgument(_)))
        ));
    }
}
