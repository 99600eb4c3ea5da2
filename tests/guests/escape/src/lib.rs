//! `escape`: `on-watch` tries to write where its policy forbids, and once where it allows.
//!
//! Config keys: `forbidden`, a comma-separated list of paths; `allowed`, one path (optional).
//! For each forbidden path, in order, it tries `create`, `set`, `delete`, a `transaction` of one
//! create, one of one set-data and one of one delete, then `create-async`, `set-async` and
//! `delete-async`, and logs one line per attempt:
//!
//! * `escape <op> <path>: refused: <kind>[: <detail>]` at info when the host refuses the call
//!   (`denied` or `invalid-path`; e.g. `escape create /secret: refused: denied: ...`);
//! * `escape <op> <path>: ESCAPED` at error when it succeeds, and `escape <op> <path>: ESCAPED
//!   (reached ZooKeeper: <kind>)` when it fails with any other error (`no-node`, ...), which
//!   means the call got past the host;
//! * `escape <op> <path>: accepted` at warn when an async call is accepted; its outcome then
//!   arrives in `on-completion`, logged as `completion escape <op> <path>: refused: ...` (info)
//!   or `completion escape <op> <path>: ESCAPED...` (error), by the same rule.
//!
//! Then, with `allowed`, `set_or_create` of `allowed` (data `escape: allowed write`), logged as
//! `allowed write <path>: ok` (info) or `allowed write <path>: failed: <kind>...` (warn), and a
//! mixed `transaction` (set-data of `allowed`, create of the first forbidden path) that must fail
//! whole: `escape transaction-mixed <forbidden>: ...`. Finally `escape done: <n> refused, <m>
//! escaped, <k> accepted`. `on-session` logs `session <state>`.

use wazoo_guest::{
    config, error, info, warn, zk, Completion, CreateMode, Op, Plugin, SessionEvent, WatchEvent,
    ZkError,
};

struct Escape {
    forbidden: Vec<String>,
    allowed: Option<String>,
}

#[derive(Default)]
struct Tally {
    refused: usize,
    escaped: usize,
    accepted: usize,
}

impl Tally {
    fn sync<T>(&mut self, op: &str, path: &str, r: Result<T, ZkError>) {
        match r {
            Ok(_) => {
                self.escaped += 1;
                error!("escape {op} {path}: ESCAPED");
            }
            Err(e) => self.failed(op, path, e),
        }
    }

    /// Only the host's own refusals count: any other error means the call reached ZooKeeper.
    fn failed(&mut self, op: &str, path: &str, e: ZkError) {
        if refused(&e) {
            self.refused += 1;
            info!("escape {op} {path}: refused: {}", e.describe());
        } else {
            self.escaped += 1;
            error!(
                "escape {op} {path}: ESCAPED (reached ZooKeeper: {})",
                e.describe()
            );
        }
    }

    fn started(&mut self, op: &str, path: &str, r: Result<(), ZkError>) {
        match r {
            Ok(()) => {
                self.accepted += 1;
                warn!("escape {op} {path}: accepted");
            }
            Err(e) => self.failed(op, path, e),
        }
    }
}

/// Whether the host refused the call itself (outside the allow-list, or not a valid path).
fn refused(e: &ZkError) -> bool {
    matches!(e, ZkError::Denied(_) | ZkError::InvalidPath(_))
}

const DATA: &[u8] = b"escape";

impl Plugin for Escape {
    fn init(config: &[(String, String)]) -> Result<Self, String> {
        let forbidden = config::get_or(config, "forbidden", "")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect();
        let allowed = config::get(config, "allowed").map(String::from);
        Ok(Escape { forbidden, allowed })
    }

    fn on_session(&mut self, ev: SessionEvent) {
        info!("session {}", ev.state);
    }

    fn on_watch(&mut self, ev: WatchEvent) {
        info!("watch {} {} {}", ev.event_type, ev.path, ev.seq);
        let mut t = Tally::default();
        for p in &self.forbidden {
            let p = p.as_str();
            t.sync("create", p, zk::create(p, DATA, CreateMode::Persistent));
            t.sync("set", p, zk::set(p, DATA, None));
            t.sync("delete", p, zk::delete(p, None));
            let create = Op::Create((p.to_string(), DATA.to_vec(), CreateMode::Persistent));
            t.sync("transaction-create", p, zk::transaction(&[create]));
            let set = Op::SetData((p.to_string(), DATA.to_vec(), None));
            t.sync("transaction-set", p, zk::transaction(&[set]));
            let delete = Op::Delete((p.to_string(), None));
            t.sync("transaction-delete", p, zk::transaction(&[delete]));
            let ctx = |op: &str| format!("escape {op} {p}").into_bytes();
            let r = zk::create_async(p, DATA, CreateMode::Persistent, &ctx("create-async"));
            t.started("create-async", p, r);
            t.started(
                "set-async",
                p,
                zk::set_async(p, DATA, None, &ctx("set-async")),
            );
            t.started(
                "delete-async",
                p,
                zk::delete_async(p, None, &ctx("delete-async")),
            );
        }
        if let Some(allowed) = &self.allowed {
            match zk::set_or_create(allowed, b"escape: allowed write") {
                Ok(()) => info!("allowed write {allowed}: ok"),
                Err(e) => warn!("allowed write {allowed}: failed: {}", e.describe()),
            }
            if let Some(p) = self.forbidden.first() {
                let ops = [
                    Op::SetData((allowed.clone(), b"escape: mixed".to_vec(), None)),
                    Op::Create((p.clone(), DATA.to_vec(), CreateMode::Persistent)),
                ];
                t.sync("transaction-mixed", p, zk::transaction(&ops));
            }
        }
        info!(
            "escape done: {} refused, {} escaped, {} accepted",
            t.refused, t.escaped, t.accepted
        );
    }

    fn on_completion(&mut self, context: Vec<u8>, result: Completion) {
        let what = String::from_utf8_lossy(&context);
        let outcome = match result {
            Completion::Get(r) => r.map(drop),
            Completion::Exists(r) => r.map(drop),
            Completion::Children(r) => r.map(drop),
            Completion::Create(r) => r.map(drop),
            Completion::Set(r) => r.map(drop),
            Completion::Delete(r) => r,
        };
        match outcome {
            Ok(()) => error!("completion {what}: ESCAPED"),
            Err(e) if refused(&e) => info!("completion {what}: refused: {}", e.describe()),
            Err(e) => error!(
                "completion {what}: ESCAPED (reached ZooKeeper: {})",
                e.describe()
            ),
        }
    }
}

wazoo_guest::export_plugin!(Escape);
