//! Protected create: a create answered with `ConnectionLoss` may still have been applied, and a
//! sequential node's name is then unknown. A node created this way carries a unique prefix in its
//! name, so after a lost reply the creator lists the parent and finds its own node instead of
//! creating a second one and leaving the first as an orphan (Curator's `withProtection`, Kazoo's
//! lock prefix).
//!
//! The core ([`Protected`]) does no I/O; [`create_protected`] drives it over a [`Client`].

use crate::client::{Client, CreateOptions};
use crate::error::{Error, Result};
use crate::proto::records::{CreateMode, Stat};
use crate::recipe::driver::{self, join, Reply, Request, Response};

/// Creates `path` with a unique protection prefix on its last segment, Curator's layout:
/// `/parent/name` becomes `/parent/_c_<uuid>-name` (plus the sequence suffix for a sequential
/// mode). If the reply is lost with the connection, the parent is searched for the prefix: the
/// node is created once, whatever the connection does. Returns the created path and stat.
///
/// `opts.makepath` creates missing parents; `opts.acl` is not used (the node gets an open ACL).
///
/// An ephemeral found under the prefix but owned by an earlier session (the client saw that
/// session expire before the server removed the node) is deleted and created again, so the node
/// returned always belongs to the current session.
///
/// ```no_run
/// # async fn demo(zk: wazoo::Client) -> Result<(), wazoo::Error> {
/// use wazoo::{CreateMode, CreateOptions};
/// let opts = CreateOptions { mode: CreateMode::EphemeralSequential, makepath: true, ..Default::default() };
/// let (path, _stat) = wazoo::create_protected(&zk, "/workers/w-", b"host-a", &opts).await?;
/// assert!(path.starts_with("/workers/_c_"));
/// # Ok(()) }
/// ```
pub async fn create_protected(
    client: &Client,
    path: &str,
    data: &[u8],
    opts: &CreateOptions,
) -> Result<(String, Stat)> {
    crate::path::validate_path(path, opts.mode.is_sequential())?;
    let (parent, name) = match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => return Err(Error::InvalidArgument(format!("not a path: {path:?}"))),
    };
    let prefix = curator_prefix();
    let mut core = Protected::new(
        parent,
        &prefix,
        &format!("{prefix}{name}"),
        data,
        opts.mode,
        opts.makepath,
    );
    run(client, &mut core).await
}

/// Curator's protection prefix: `_c_` and a UUID in its usual 8-4-4-4-12 form, then `-`.
pub(crate) fn curator_prefix() -> String {
    let h = driver::uuid_hex();
    format!(
        "_c_{}-{}-{}-{}-{}-",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Drives a [`Protected`] core over the client until it is done.
pub(crate) async fn run(client: &Client, core: &mut Protected) -> Result<(String, Stat)> {
    let mut next = core.start();
    loop {
        match next {
            Next::Send(req) => {
                let (reply, _) = driver::send(client, req).await;
                next = core.on_reply(reply, client.session_id());
            }
            Next::Done(r) => return r,
        }
    }
}

/// The protected-create state machine.
#[derive(Debug, Clone)]
pub(crate) struct Protected {
    parent: String,
    /// The unique part every node of this creator starts with.
    prefix: String,
    /// The full path to create (parent, prefix, the rest of the name).
    create_path: String,
    data: Vec<u8>,
    mode: CreateMode,
    makepath: bool,
    phase: Phase,
    /// A create was sent whose outcome is unknown: search before creating again.
    tried: bool,
    /// Parents were created once already (a second NoNode is an error).
    ensured: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Ensure,
    Create,
    Find,
    Stat(String),
    DeleteStale(String),
}

/// What a [`Protected`] core wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send this and feed back the reply.
    Send(Request),
    /// Finished: the node's path and stat, or why not.
    Done(Result<(String, Stat)>),
}

impl Protected {
    /// A core that creates `parent/name`, where `name` starts with the unique `prefix`.
    pub(crate) fn new(
        parent: &str,
        prefix: &str,
        name: &str,
        data: &[u8],
        mode: CreateMode,
        makepath: bool,
    ) -> Protected {
        Protected {
            parent: parent.to_string(),
            prefix: prefix.to_string(),
            create_path: join(parent, name),
            data: data.to_vec(),
            mode,
            makepath,
            phase: Phase::Create,
            tried: false,
            ensured: false,
        }
    }

    /// The unique prefix this core's nodes start with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether a create may have been applied without its reply (the next start searches).
    pub(crate) fn tried(&self) -> bool {
        self.tried
    }

    /// Forgets an earlier attempt: the next start creates without searching first (for a
    /// caller that knows no node of this prefix exists any more).
    pub(crate) fn reset(&mut self) {
        self.tried = false;
        self.ensured = false;
    }

    /// The first request: the create, or the search when an earlier attempt was ambiguous.
    pub(crate) fn start(&mut self) -> Next {
        if self.tried {
            self.find()
        } else {
            self.create()
        }
    }

    fn create(&mut self) -> Next {
        self.phase = Phase::Create;
        Next::Send(Request::Create {
            path: self.create_path.clone(),
            data: self.data.clone(),
            mode: self.mode,
        })
    }

    fn find(&mut self) -> Next {
        self.phase = Phase::Find;
        Next::Send(Request::GetChildren(self.parent.clone()))
    }

    /// Feeds the reply to the last request. `session_id` is the client's session now (an
    /// ephemeral found under the prefix must be this session's).
    pub(crate) fn on_reply(&mut self, reply: Reply, session_id: i64) -> Next {
        match (self.phase.clone(), reply) {
            (Phase::Ensure, Ok(_)) => self.create(),
            (Phase::Ensure, Err(e)) if driver::transient(&e) => {
                Next::Send(Request::EnsurePath(self.parent.clone()))
            }
            (Phase::Create, Ok(Response::Created(path, stat))) => {
                self.tried = false;
                Next::Done(Ok((path, stat)))
            }
            (Phase::Create, Err(Error::NoNode)) if self.makepath && !self.ensured => {
                self.ensured = true;
                self.phase = Phase::Ensure;
                Next::Send(Request::EnsurePath(self.parent.clone()))
            }
            // The outcome is unknown (or, after expiry, maybe applied by the old session).
            (Phase::Create, Err(e)) if driver::transient(&e) || e == Error::SessionExpired => {
                self.tried = true;
                self.find()
            }
            (Phase::Find, Ok(Response::Children(children))) => {
                match children.iter().find(|c| c.starts_with(&self.prefix)) {
                    Some(c) => {
                        let path = join(&self.parent, c);
                        self.phase = Phase::Stat(path.clone());
                        Next::Send(Request::Exists(path))
                    }
                    None => self.create(),
                }
            }
            (Phase::Find, Err(Error::NoNode)) => self.create(),
            (Phase::Find, Err(e)) if driver::transient(&e) || e == Error::SessionExpired => {
                self.find()
            }
            (Phase::Stat(path), Ok(Response::Stat(stat))) => {
                if self.mode.is_ephemeral() && stat.ephemeral_owner != session_id {
                    // Created by a session that is gone: it will vanish; make our own.
                    self.phase = Phase::DeleteStale(path.clone());
                    Next::Send(Request::Delete { path, version: -1 })
                } else {
                    self.tried = false;
                    Next::Done(Ok((path, stat)))
                }
            }
            (Phase::Stat(_), Ok(Response::Absent)) => self.create(),
            (Phase::Stat(_) | Phase::DeleteStale(_), Err(e))
                if driver::transient(&e) || e == Error::SessionExpired =>
            {
                self.find()
            }
            (Phase::DeleteStale(_), Ok(_) | Err(Error::NoNode)) => self.create(),
            (_, Err(e)) => Next::Done(Err(e)),
            (phase, Ok(r)) => Next::Done(Err(Error::InvalidArgument(format!(
                "protected create: unexpected reply {r:?} in {phase:?}"
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(czxid: i64, owner: i64) -> Stat {
        Stat {
            czxid,
            ephemeral_owner: owner,
            ..Stat::default()
        }
    }

    fn core() -> Protected {
        Protected::new(
            "/locks",
            "_c_x-",
            "_c_x-lock-",
            b"me",
            CreateMode::EphemeralSequential,
            true,
        )
    }

    #[test]
    fn a_create_that_succeeds_is_done() {
        let mut p = core();
        assert_eq!(
            p.start(),
            Next::Send(Request::Create {
                path: "/locks/_c_x-lock-".into(),
                data: b"me".to_vec(),
                mode: CreateMode::EphemeralSequential
            })
        );
        let done = p.on_reply(
            Ok(Response::Created(
                "/locks/_c_x-lock-0000000001".into(),
                stat(5, 7),
            )),
            7,
        );
        assert_eq!(
            done,
            Next::Done(Ok(("/locks/_c_x-lock-0000000001".into(), stat(5, 7))))
        );
    }

    #[test]
    fn a_lost_reply_finds_the_node_instead_of_creating_another() {
        let mut p = core();
        p.start();
        assert_eq!(
            p.on_reply(Err(Error::ConnectionLoss), 7),
            Next::Send(Request::GetChildren("/locks".into()))
        );
        assert!(p.tried());
        let next = p.on_reply(
            Ok(Response::Children(vec![
                "_c_y-lock-0000000000".into(),
                "_c_x-lock-0000000001".into(),
            ])),
            7,
        );
        assert_eq!(
            next,
            Next::Send(Request::Exists("/locks/_c_x-lock-0000000001".into()))
        );
        assert_eq!(
            p.on_reply(Ok(Response::Stat(stat(5, 7))), 7),
            Next::Done(Ok(("/locks/_c_x-lock-0000000001".into(), stat(5, 7))))
        );
    }

    #[test]
    fn a_lost_reply_whose_create_never_happened_creates_again() {
        let mut p = core();
        p.start();
        p.on_reply(Err(Error::ConnectionLoss), 7);
        let next = p.on_reply(Ok(Response::Children(vec!["other".into()])), 7);
        assert!(
            matches!(next, Next::Send(Request::Create { .. })),
            "{next:?}"
        );
    }

    #[test]
    fn an_ephemeral_of_an_expired_session_is_replaced() {
        let mut p = core();
        p.start();
        p.on_reply(Err(Error::SessionExpired), 8);
        p.on_reply(
            Ok(Response::Children(vec!["_c_x-lock-0000000001".into()])),
            8,
        );
        assert_eq!(
            p.on_reply(Ok(Response::Stat(stat(5, 7))), 8),
            Next::Send(Request::Delete {
                path: "/locks/_c_x-lock-0000000001".into(),
                version: -1
            })
        );
        let next = p.on_reply(Err(Error::NoNode), 8);
        assert!(
            matches!(next, Next::Send(Request::Create { .. })),
            "{next:?}"
        );
    }

    #[test]
    fn a_missing_parent_is_made_once_then_reported() {
        let mut p = core();
        p.start();
        assert_eq!(
            p.on_reply(Err(Error::NoNode), 7),
            Next::Send(Request::EnsurePath("/locks".into()))
        );
        assert!(matches!(
            p.on_reply(Ok(Response::Unit), 7),
            Next::Send(Request::Create { .. })
        ));
        assert_eq!(
            p.on_reply(Err(Error::NoNode), 7),
            Next::Done(Err(Error::NoNode))
        );
    }

    #[test]
    fn other_errors_end_it() {
        let mut p = core();
        p.start();
        assert_eq!(
            p.on_reply(Err(Error::NoAuth), 7),
            Next::Done(Err(Error::NoAuth))
        );
    }

    #[test]
    fn curator_prefixes_look_like_curators() {
        let p = curator_prefix();
        assert!(p.starts_with("_c_") && p.ends_with('-'), "{p}");
        assert_eq!(p.len(), 3 + 36 + 1);
        assert_eq!(p.matches('-').count(), 5);
    }
}
