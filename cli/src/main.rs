//! `wazoo`: runs wasm plugins against ZooKeeper from a configuration file (`run`), checks a
//! plugin (`check`), and talks to ZooKeeper like zkCli (`get`, `set`, `create`, `delete`, `ls`,
//! `stat`, `watch`).

mod loaded;
mod local_zk;
mod metrics;
mod run;
mod signals;
mod zkcli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

// The configuration parser and the TLS/SASL settings live in this package's library, so that
// the fuzz targets can reach them.
use wazoo_cli::{config, secure};

use crate::config::LogFormat;
use crate::signals::Signals;
use crate::zkcli::{Conn, Op};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (`run`: stopped by SIGINT or SIGTERM after a clean shutdown)
  1  any other failure: a usage or configuration error, a rejected plugin (`check`), no
     connection, a timeout, an error from ZooKeeper not listed here
  2  no such node
  3  the node already exists
  4  bad version (the node changed since the version given)

Environment:
  WAZOO_HOSTS    connect string when --hosts is not given (default 127.0.0.1:2181)
  WAZOO_AUTH     credentials when --auth is not given, as SCHEME:CREDENTIALS
  WAZOO_TLS_CA   CA bundle (PEM) when --tls-ca is not given: connect over TLS
  WAZOO_SASL_PASSWORD  the SASL password when --sasl-user is given without
                 --sasl-password-file
  WAZOO_ZK_JARS  folder of ZooKeeper's jars for `run`'s private server (default /usr/share/java)
  RUST_LOG       log filter (default: info for `run`, warn otherwise)";

/// A ZooKeeper client with sandboxed wasm plugins.
#[derive(Parser, Debug)]
#[command(name = "wazoo", version, after_help = EXIT_CODES)]
struct Cli {
    /// Log as JSON lines (for `run`, overrides the configuration's `host.log`).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

/// Where and how to reach ZooKeeper, and how to print results.
#[derive(Args, Debug, Clone)]
struct ZkArgs {
    /// Connect string, host:port[,host:port...][/chroot] [env: WAZOO_HOSTS; default
    /// 127.0.0.1:2181].
    #[arg(long, value_name = "HOSTS")]
    hosts: Option<String>,
    /// Credentials to add to the session, SCHEME:CREDENTIALS (e.g. digest:user:password)
    /// [env: WAZOO_AUTH].
    #[arg(long, value_name = "SCHEME:CREDENTIALS")]
    auth: Option<String>,
    /// Seconds allowed to connect, and for the request.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    timeout: u64,
    /// Print one JSON object per result (per event for `watch`). Data is "data" (a string)
    /// when valid UTF-8, else "data_hex".
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    secure: secure::SecureArgs,
}

impl ZkArgs {
    fn conn(&self) -> Conn {
        Conn {
            hosts: self
                .hosts
                .clone()
                .or_else(|| std::env::var("WAZOO_HOSTS").ok().filter(|h| !h.is_empty()))
                .unwrap_or_else(|| "127.0.0.1:2181".to_string()),
            auth: self
                .auth
                .clone()
                .or_else(|| std::env::var("WAZOO_AUTH").ok().filter(|a| !a.is_empty())),
            timeout: Duration::from_secs(self.timeout.max(1)),
            json: self.json,
            secure: self.secure.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the plugins of a configuration file until SIGINT or SIGTERM
    ///
    /// With no zookeeper.hosts, starts a private ZooKeeper (Debian's zookeeper package) and
    /// stops it on exit. SIGHUP reloads every plugin from its file; a plugin whose file changes
    /// is reloaded within a second; the session and the watches stay. SIGINT or SIGTERM drains
    /// the lanes (shutdown.drain_timeout, 5 s by default), unloads the plugins, closes the
    /// session (shutdown.close_timeout, 10 s) and exits 0.
    ///
    /// Standard output gets `wazoo: ZooKeeper at HOST:PORT` once connected, `wazoo: metrics at
    /// http://ADDR/metrics` when host.metrics is set, and `wazoo: ready` once every plugin is
    /// bound. The log goes to standard error.
    Run {
        /// The configuration file (TOML).
        config: PathBuf,
    },
    /// Check that a component would be accepted as a plugin (exit 0) or say why not (exit 1)
    ///
    /// Compiles the component and links it against the wazoo:plugin@0.1.0 world, as `run`
    /// would; needs no ZooKeeper and runs no guest code.
    Check {
        /// The component file (.wasm).
        plugin: PathBuf,
        /// Print {"file": .., "accepted": .., "error": ..}.
        #[arg(long)]
        json: bool,
    },
    /// Print a node's data (UTF-8 as text, anything else as 0x-prefixed hex).
    Get {
        /// The node.
        path: String,
        #[command(flatten)]
        zk: ZkArgs,
    },
    /// Set a node's data.
    Set {
        /// The node.
        path: String,
        /// The new data (UTF-8 text).
        data: String,
        /// Only if the node's version is N.
        #[arg(long, value_name = "N")]
        version: Option<i32>,
        #[command(flatten)]
        zk: ZkArgs,
    },
    /// Create a node; prints its path (with the sequence number, if any).
    Create {
        /// The node.
        path: String,
        /// Its data (UTF-8 text; default empty).
        data: Option<String>,
        /// Ephemeral: deleted when this command's session ends, that is at once.
        #[arg(long, conflicts_with_all = ["container", "ttl"])]
        ephemeral: bool,
        /// Append a 10-digit sequence number to the name.
        #[arg(long, conflicts_with = "container")]
        sequential: bool,
        /// A container node (deleted by the server once its last child is gone).
        #[arg(long, conflicts_with = "ttl")]
        container: bool,
        /// A TTL node: deleted by the server when unmodified for MS milliseconds and childless
        /// (needs zookeeper.extendedTypesEnabled on the server; `run`'s private server has it).
        #[arg(long, value_name = "MS")]
        ttl: Option<i64>,
        /// Create missing parents.
        #[arg(long)]
        makepath: bool,
        #[command(flatten)]
        zk: ZkArgs,
    },
    /// Delete a node.
    Delete {
        /// The node.
        path: String,
        /// Delete its children first, the whole subtree.
        #[arg(long, conflicts_with = "version")]
        recursive: bool,
        /// Only if the node's version is N.
        #[arg(long, value_name = "N")]
        version: Option<i32>,
        #[command(flatten)]
        zk: ZkArgs,
    },
    /// List a node's children, sorted.
    Ls {
        /// The node.
        path: String,
        /// Print the node's stat too.
        #[arg(long)]
        stat: bool,
        #[command(flatten)]
        zk: ZkArgs,
    },
    /// Print a node's stat.
    Stat {
        /// The node.
        path: String,
        #[command(flatten)]
        zk: ZkArgs,
    },
    /// Print every change at a node (or below it, with --recursive) until interrupted
    ///
    /// One line per event, `TYPE PATH` (with --json, {"type": .., "path": ..}); TYPE is
    /// node-created, node-deleted, node-data-changed, node-children-changed (not recursive
    /// only), resync (the watch was re-added after a reconnect: changes meanwhile are not
    /// reported) or session-lost (the session expired: the watch is added again). Exits 0 on
    /// SIGINT or SIGTERM.
    Watch {
        /// The node (it need not exist).
        path: String,
        /// Watch the whole subtree.
        #[arg(long)]
        recursive: bool,
        #[command(flatten)]
        zk: ZkArgs,
    },
}

/// Sets up the log on stderr. `default` is the filter when RUST_LOG is unset.
fn init_log(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => b.with_target(false).try_init(),
        LogFormat::Json => b.json().flatten_event(true).try_init(),
    };
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Usage errors exit 1: 2 means "no such node" here.
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wazoo: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(dispatch(cli));
    // Lane threads and blocking tasks must not hold up the exit.
    rt.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

async fn dispatch(cli: Cli) -> u8 {
    match cli.command {
        Command::Run { config } => {
            let cfg = match config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("wazoo: {e}");
                    return 1;
                }
            };
            let format = if cli.log_json {
                LogFormat::Json
            } else {
                cfg.host.log
            };
            init_log(format, "info");
            let signals = match Signals::new(true) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot register signal handlers: {e}");
                    return 1;
                }
            };
            match run::run(cfg, signals).await {
                Ok(code) => code as u8,
                Err(e) => {
                    tracing::error!("{e:#}");
                    1
                }
            }
        }
        Command::Check { plugin, json } => {
            init_log(cli_log_format(cli.log_json), "warn");
            check(&plugin, json)
        }
        other => {
            let (zk, op) = zk_op(other);
            init_log(cli_log_format(cli.log_json), "warn");
            let conn = zk.conn();
            let mut signals = match Signals::new(false) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("wazoo: cannot register signal handlers: {e}");
                    return 1;
                }
            };
            match zkcli::run(&conn, op, &mut signals).await {
                Ok(code) => code as u8,
                Err(e) => {
                    if conn.json {
                        eprintln!(
                            "{}",
                            json!({ "error": format!("{e:#}"), "kind": zkcli::error_kind(&e) })
                        );
                    } else {
                        eprintln!("wazoo: {e:#}");
                    }
                    zkcli::exit_code(&e) as u8
                }
            }
        }
    }
}

/// Splits a zkCli-like subcommand into its connection arguments and its operation.
fn zk_op(c: Command) -> (ZkArgs, Op) {
    match c {
        Command::Get { path, zk } => (zk, Op::Get { path }),
        Command::Set {
            path,
            data,
            version,
            zk,
        } => (
            zk,
            Op::Set {
                path,
                data,
                version,
            },
        ),
        Command::Create {
            path,
            data,
            ephemeral,
            sequential,
            container,
            ttl,
            makepath,
            zk,
        } => {
            let mode = match (ephemeral, sequential, container, ttl) {
                (_, _, _, Some(ms)) if sequential => {
                    wazoo::CreateMode::PersistentSequentialWithTtl(ms)
                }
                (_, _, _, Some(ms)) => wazoo::CreateMode::PersistentWithTtl(ms),
                (_, _, true, _) => wazoo::CreateMode::Container,
                (true, true, _, _) => wazoo::CreateMode::EphemeralSequential,
                (true, false, _, _) => wazoo::CreateMode::Ephemeral,
                (false, true, _, _) => wazoo::CreateMode::PersistentSequential,
                (false, false, _, _) => wazoo::CreateMode::Persistent,
            };
            (
                zk,
                Op::Create {
                    path,
                    data: data.unwrap_or_default(),
                    mode,
                    makepath,
                },
            )
        }
        Command::Delete {
            path,
            recursive,
            version,
            zk,
        } => (
            zk,
            Op::Delete {
                path,
                recursive,
                version,
            },
        ),
        Command::Ls { path, stat, zk } => (zk, Op::Ls { path, stat }),
        Command::Stat { path, zk } => (zk, Op::Stat { path }),
        Command::Watch {
            path,
            recursive,
            zk,
        } => (zk, Op::Watch { path, recursive }),
        Command::Run { .. } | Command::Check { .. } => unreachable!("handled in dispatch"),
    }
}

/// `wazoo check`: compiles and links the component with a throwaway host.
fn check(file: &std::path::Path, json: bool) -> u8 {
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".to_string());
    let result = std::fs::read(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))
        .and_then(|bytes| {
            let host = wazoo::PluginHost::new(wazoo::PluginHostConfig {
                max_instances: 4,
                ..Default::default()
            })
            .map_err(|e| e.to_string())?;
            host.check(&name, &bytes).map_err(|e| e.to_string())
        });
    match (&result, json) {
        (Ok(()), true) => println!("{}", json!({ "file": file, "accepted": true })),
        (Err(e), true) => println!("{}", json!({ "file": file, "accepted": false, "error": e })),
        (Ok(()), false) => println!(
            "{}: accepted: a component that fits the wazoo:plugin@0.1.0 world",
            file.display()
        ),
        (Err(e), false) => println!("{}: rejected: {e}", file.display()),
    }
    if result.is_ok() {
        0
    } else {
        1
    }
}

/// The log format the command line asks for (`--log-json`), human otherwise.
fn cli_log_format(json: bool) -> LogFormat {
    if json {
        LogFormat::Json
    } else {
        LogFormat::Human
    }
}
