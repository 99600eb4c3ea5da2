//! The zkCli-like subcommands: `get`, `set`, `create`, `delete`, `ls`, `stat` and `watch`,
//! with human output by default and one JSON object per result (or per event) with `--json`.
//!
//! Data in JSON: `"data"` holds the node's bytes as a string when they are valid UTF-8;
//! otherwise `"data"` is absent and `"data_hex"` holds them as lowercase hex. Human output
//! prints UTF-8 data as text and other data as `0x` followed by hex.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use wazoo::{AddWatchMode, Client, CreateMode, CreateOptions, EventType, KeeperState, Stat};

use crate::signals::Signals;

/// Connection settings shared by the subcommands.
#[derive(Debug, Clone)]
pub struct Conn {
    /// The connect string.
    pub hosts: String,
    /// `scheme:credentials`, added to the session.
    pub auth: Option<String>,
    /// Time allowed to connect, and for each request.
    pub timeout: Duration,
    /// Machine-readable output.
    pub json: bool,
    /// TLS and SASL flags.
    pub secure: crate::secure::SecureArgs,
}

/// One subcommand and its arguments.
#[derive(Debug, Clone)]
pub enum Op {
    /// Print a node's data (and its stat with `--json`).
    Get { path: String },
    /// Set a node's data.
    Set {
        path: String,
        data: String,
        version: Option<i32>,
    },
    /// Create a node.
    Create {
        path: String,
        data: String,
        mode: CreateMode,
        makepath: bool,
    },
    /// Delete a node (and its subtree with `recursive`).
    Delete {
        path: String,
        recursive: bool,
        version: Option<i32>,
    },
    /// List a node's children.
    Ls { path: String, stat: bool },
    /// Print a node's stat.
    Stat { path: String },
    /// Stream the events of a persistent (recursive) watch until interrupted.
    Watch { path: String, recursive: bool },
}

/// The exit code of a failure: 2 no such node, 3 node exists, 4 bad version, 1 anything else.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    match e.downcast_ref::<wazoo::Error>() {
        Some(wazoo::Error::NoNode) => 2,
        Some(wazoo::Error::NodeExists) => 3,
        Some(wazoo::Error::BadVersion) => 4,
        _ => 1,
    }
}

/// A short name of a failure's kind, for JSON error objects.
pub fn error_kind(e: &anyhow::Error) -> &'static str {
    match exit_code(e) {
        2 => "no-node",
        3 => "node-exists",
        4 => "bad-version",
        _ => "other",
    }
}

async fn connect(conn: &Conn) -> Result<Client> {
    let mut b = Client::builder(&conn.hosts).wait_for_connection(conn.timeout);
    if let Some(a) = &conn.auth {
        let (scheme, cred) = a
            .split_once(':')
            .context("--auth / WAZOO_AUTH must be SCHEME:CREDENTIALS, e.g. digest:user:password")?;
        b = b.auth(scheme, cred.as_bytes());
    }
    let b = conn.secure.apply(b)?;
    b.connect()
        .await
        .with_context(|| format!("cannot connect to ZooKeeper at {}", conn.hosts))
}

/// Runs one subcommand; returns its exit code (0) or the failure.
pub async fn run(conn: &Conn, op: Op, signals: &mut Signals) -> Result<i32> {
    let zk = connect(conn).await?;
    let r = match op {
        Op::Watch { path, recursive } => watch(&zk, conn, &path, recursive, signals).await,
        op => {
            let what = describe(&op);
            match tokio::time::timeout(conn.timeout, one(&zk, conn.json, op)).await {
                Ok(r) => r.with_context(|| what),
                Err(_) => Err(anyhow::Error::new(wazoo::Error::Timeout(conn.timeout)))
                    .with_context(|| what),
            }
        }
    };
    zk.close().await;
    r.map(|()| 0)
}

fn describe(op: &Op) -> String {
    match op {
        Op::Get { path } => format!("get {path}"),
        Op::Set { path, .. } => format!("set {path}"),
        Op::Create { path, .. } => format!("create {path}"),
        Op::Delete { path, .. } => format!("delete {path}"),
        Op::Ls { path, .. } => format!("ls {path}"),
        Op::Stat { path } => format!("stat {path}"),
        Op::Watch { path, .. } => format!("watch {path}"),
    }
}

fn print_json(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

async fn one(zk: &Client, json: bool, op: Op) -> Result<()> {
    match op {
        Op::Get { path } => {
            let (data, stat) = zk.get_data(&path).await?;
            if json {
                let mut o = Map::new();
                o.insert("path".into(), json!(path));
                data_fields(&mut o, &data);
                o.insert("stat".into(), stat_json(&stat));
                print_json(&Value::Object(o));
            } else {
                println!("{}", data_text(&data));
            }
        }
        Op::Set {
            path,
            data,
            version,
        } => {
            let stat = zk.set_data(&path, data.as_bytes(), version).await?;
            if json {
                print_json(&json!({ "path": path, "stat": stat_json(&stat) }));
            } else {
                println!("{path}: version {}", stat.version);
            }
        }
        Op::Create {
            path,
            data,
            mode,
            makepath,
        } => {
            let opts = CreateOptions {
                mode,
                makepath,
                ..Default::default()
            };
            let (created, stat) = zk.create_with(&path, data.as_bytes(), &opts).await?;
            if json {
                print_json(&json!({ "path": created, "stat": stat_json(&stat) }));
            } else {
                println!("{created}");
            }
        }
        Op::Delete {
            path,
            recursive,
            version,
        } => {
            if recursive {
                // A recursive delete treats a missing node as done; the CLI reports it.
                if zk.exists(&path).await?.is_none() {
                    return Err(wazoo::Error::NoNode.into());
                }
                zk.delete_recursive(&path).await?;
            } else {
                zk.delete(&path, version).await?;
            }
            if json {
                print_json(&json!({ "path": path, "deleted": true }));
            } else {
                println!("deleted {path}");
            }
        }
        Op::Ls { path, stat } => {
            let (mut children, st) = zk.get_children(&path).await?;
            children.sort();
            if json {
                print_json(&json!({ "path": path, "children": children, "stat": stat_json(&st) }));
            } else {
                let mut out = String::new();
                for c in &children {
                    out.push_str(c);
                    out.push('\n');
                }
                if stat {
                    if !children.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(&stat_text(&st));
                }
                print!("{out}");
            }
        }
        Op::Stat { path } => {
            let st = zk.exists(&path).await?.ok_or(wazoo::Error::NoNode)?;
            if json {
                print_json(&json!({ "path": path, "stat": stat_json(&st) }));
            } else {
                print!("{}", stat_text(&st));
            }
        }
        Op::Watch { .. } => unreachable!("handled by watch()"),
    }
    Ok(())
}

/// Streams a persistent watch's events until a signal; re-adds it after a session loss.
async fn watch(
    zk: &Client,
    conn: &Conn,
    path: &str,
    recursive: bool,
    signals: &mut Signals,
) -> Result<()> {
    let mode = if recursive {
        AddWatchMode::PersistentRecursive
    } else {
        AddWatchMode::Persistent
    };
    let add = || async {
        tokio::time::timeout(conn.timeout, zk.add_watch(path, mode))
            .await
            .map_err(|_| wazoo::Error::Timeout(conn.timeout))?
    };
    let mut watcher = add().await.with_context(|| format!("watch {path}"))?;
    eprintln!(
        "wazoo: watching {path} ({}); Ctrl-C to stop",
        if recursive {
            "persistent recursive"
        } else {
            "persistent"
        }
    );
    loop {
        let ev = tokio::select! {
            ev = watcher.next() => ev,
            _ = signals.next() => return Ok(()),
        };
        match ev {
            Some(ev) if ev.event_type != EventType::None => {
                emit(conn.json, event_name(ev.event_type), &ev.path)
            }
            Some(ev) if ev.keeper_state != KeeperState::Expired => {}
            _ => {
                // The session was lost (or the watch ended): its watches are gone. Re-add.
                emit(conn.json, "session-lost", path);
                eprintln!("wazoo: the session was lost; re-adding the watch on {path}");
                let mut pause = Duration::from_millis(100);
                watcher = loop {
                    match add().await {
                        Ok(w) => break w,
                        Err(wazoo::Error::Closed) => {
                            return Err(wazoo::Error::Closed).context(format!("watch {path}"))
                        }
                        Err(e) => {
                            eprintln!(
                                "wazoo: re-adding the watch on {path} failed ({e}); retrying"
                            );
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = signals.next() => return Ok(()),
                    }
                    pause = (pause * 2).min(Duration::from_secs(2));
                };
            }
        }
    }
}

fn emit(json: bool, kind: &str, path: &str) {
    if json {
        print_json(&json!({ "type": kind, "path": path }));
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{kind} {path}");
        let _ = out.flush();
    }
}

/// The kebab-case name of an event type.
pub fn event_name(t: EventType) -> &'static str {
    match t {
        EventType::None => "none",
        EventType::NodeCreated => "node-created",
        EventType::NodeDeleted => "node-deleted",
        EventType::NodeDataChanged => "node-data-changed",
        EventType::NodeChildrenChanged => "node-children-changed",
        EventType::DataWatchRemoved => "data-watch-removed",
        EventType::ChildWatchRemoved => "child-watch-removed",
        EventType::PersistentWatchRemoved => "persistent-watch-removed",
        EventType::Resync => "resync",
        _ => "unknown",
    }
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// `data` (UTF-8) or `data_hex` (anything else).
fn data_fields(o: &mut Map<String, Value>, data: &[u8]) {
    match std::str::from_utf8(data) {
        Ok(s) => o.insert("data".into(), json!(s)),
        Err(_) => o.insert("data_hex".into(), json!(hex(data))),
    };
}

fn data_text(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(s) => s.to_string(),
        Err(_) => format!("0x{}", hex(data)),
    }
}

/// A stat as a JSON object (times in milliseconds since the epoch).
pub fn stat_json(s: &Stat) -> Value {
    json!({
        "czxid": s.czxid,
        "mzxid": s.mzxid,
        "pzxid": s.pzxid,
        "ctime": s.ctime,
        "mtime": s.mtime,
        "version": s.version,
        "cversion": s.cversion,
        "aversion": s.aversion,
        "ephemeral_owner": s.ephemeral_owner,
        "data_length": s.data_length,
        "num_children": s.num_children,
    })
}

/// A stat as zkCli prints it, one field a line.
fn stat_text(s: &Stat) -> String {
    format!(
        "cZxid = {:#x}\nctime = {}\nmZxid = {:#x}\nmtime = {}\npZxid = {:#x}\ncversion = {}\n\
         dataVersion = {}\naclVersion = {}\nephemeralOwner = {:#x}\ndataLength = {}\n\
         numChildren = {}\n",
        s.czxid,
        utc(s.ctime),
        s.mzxid,
        utc(s.mtime),
        s.pzxid,
        s.cversion,
        s.version,
        s.aversion,
        s.ephemeral_owner,
        s.data_length,
        s.num_children
    )
}

/// Milliseconds since the epoch as an ISO 8601 UTC time.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), by 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14T22:13:20.000Z");
    }

    #[test]
    fn data_is_text_or_hex() {
        let mut o = Map::new();
        data_fields(&mut o, b"v1");
        assert_eq!(Value::Object(o), json!({ "data": "v1" }));
        let mut o = Map::new();
        data_fields(&mut o, &[0xff, 0x00]);
        assert_eq!(Value::Object(o), json!({ "data_hex": "ff00" }));
        assert_eq!(data_text(&[0xff, 0x01]), "0xff01");
    }
}
