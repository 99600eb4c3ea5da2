//! The configuration file of `wazoo run`: its schema (serde, unknown keys refused), its
//! validation, and errors that name the file, the key (`plugin[1].bind[0]`) and what is wrong.
//!
//! Parsing happens in two passes over the same text. The first deserializes the typed schema
//! below; when it fails, the second reads the document as a tree of spans, so the error's byte
//! range can be turned into the key path it lies in. Semantic checks (paths, files, names,
//! conflicting watches) then run on the typed values, which know their own key paths.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;
use wazoo::{Binding, IsolationMode, Policy};

use crate::secure::{RawSasl, RawTls, SaslSettings, Secret, TlsSettings};

/// A configuration error: the file, the key it concerns (if any), what is wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file as given on the command line.
    pub file: PathBuf,
    /// The key path, e.g. `plugin[1].bind[0]` (none for a syntax error outside any key).
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// One `[[zookeeper.auth]]` entry, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// The scheme, e.g. `digest`.
    pub scheme: String,
    /// The credentials, from the file itself, an environment variable or a file.
    pub credentials: Secret,
}

/// The `[zookeeper]` section, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkSettings {
    /// The connect string without chroot; `None`: start a private ZooKeeper.
    pub hosts: Option<String>,
    /// The chroot, created if missing.
    pub chroot: Option<String>,
    /// The session timeout to ask for.
    pub session_timeout: Option<Duration>,
    /// Whether read-only servers are acceptable.
    pub read_only: bool,
    /// Credentials added to the session.
    pub auth: Vec<Auth>,
    /// `[zookeeper.tls]`.
    pub tls: Option<TlsSettings>,
    /// `[zookeeper.sasl]`.
    pub sasl: Option<SaslSettings>,
}

/// How the log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Human,
    /// One JSON object a line.
    Json,
}

/// The `[host]` section, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// How plugins share lanes.
    pub isolation: IsolationMode,
    /// The compilation cache, resolved against the configuration file's folder.
    pub cache_dir: Option<PathBuf>,
    /// How much the cache may take ([`wazoo::PluginHostConfig::cache_max_bytes`]).
    pub cache_max_bytes: u64,
    /// The largest component loaded ([`wazoo::PluginHostConfig::max_component_bytes`]).
    pub max_component_bytes: usize,
    /// Where the Prometheus endpoint listens.
    pub metrics: Option<SocketAddr>,
    /// The log format.
    pub log: LogFormat,
    /// How the native lanes' threads ask to be scheduled.
    pub lanes: wazoo::LaneScheduling,
    /// Guest threads per lane kind ([`wazoo::PluginHostConfig::lane_threads`]).
    pub lane_threads: usize,
}

/// The `[shutdown]` section, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownSettings {
    /// How long the lanes may take to run what is queued after SIGINT or SIGTERM.
    pub drain_timeout: Duration,
    /// How long closing the session may take after that.
    pub close_timeout: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        ShutdownSettings {
            drain_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(10),
        }
    }
}

/// One `[[plugin]]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSettings {
    /// Its key path, `plugin[N]`.
    pub key: String,
    /// Its unique name.
    pub name: String,
    /// The component file, resolved against the configuration file's folder.
    pub component: PathBuf,
    /// Its configuration, handed to the guest's `init`, sorted by key.
    pub config: Vec<(String, String)>,
    /// Its limits and allow-lists.
    pub policy: Policy,
    /// What it is bound to, each with its key path.
    pub bindings: Vec<(String, Binding)>,
}

/// A whole configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it came from, as given.
    pub file: PathBuf,
    /// `[zookeeper]`.
    pub zookeeper: ZkSettings,
    /// `[host]`.
    pub host: HostSettings,
    /// `[shutdown]`.
    pub shutdown: ShutdownSettings,
    /// Every `[[plugin]]`, in file order.
    pub plugins: Vec<PluginSettings>,
}

// ---- the schema, as written in the file ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    zookeeper: RawZk,
    #[serde(default)]
    host: RawHost,
    #[serde(default)]
    shutdown: RawShutdown,
    #[serde(default)]
    plugin: Vec<RawPlugin>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawShutdown {
    drain_timeout: Option<String>,
    close_timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawZk {
    hosts: Option<String>,
    chroot: Option<String>,
    session_timeout_ms: Option<u64>,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    auth: Vec<RawAuth>,
    tls: Option<RawTls>,
    sasl: Option<RawSasl>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    scheme: String,
    credentials: Option<String>,
    credentials_env: Option<String>,
    credentials_file: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RawIsolation {
    #[default]
    Shared,
    PerPlugin,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHost {
    #[serde(default)]
    isolation: RawIsolation,
    cache_dir: Option<String>,
    cache_max_mb: Option<u64>,
    max_component_mb: Option<u64>,
    metrics: Option<String>,
    #[serde(default)]
    log: LogFormat,
    lane_nice: Option<i32>,
    lane_slice: Option<String>,
    lane_threads: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    name: String,
    component: String,
    #[serde(default)]
    config: BTreeMap<String, ConfigValue>,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
    memory_mb: Option<u64>,
    compute_ms: Option<u64>,
    wall_ms: Option<u64>,
    max_payload: Option<u64>,
    max_crashes: Option<u32>,
    crash_window_ms: Option<u64>,
    #[serde(default)]
    bind: Vec<RawBind>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum RawBind {
    Data(String),
    Children(String),
    Exists(String),
    Persistent(String),
    Recursive(String),
    Session(bool),
}

/// A plugin configuration value: a string, or a number or boolean taken as its text.
struct ConfigValue(String);

impl<'de> Deserialize<'de> for ConfigValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ConfigValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ConfigValue, E> {
                Ok(ConfigValue(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

// ---- spans to key paths ----

/// The document as a tree of spans, for naming the key an error's span lies in.
enum Node {
    Table(Vec<(Spanned<String>, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    let v = m.next_value::<Spanned<Node>>()?;
                    entries.push((k, v));
                }
                Ok(Node::Table(entries))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(x) = s.next_element::<Spanned<Node>>()? {
                    items.push(x);
                }
                Ok(Node::Array(items))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
        }
        d.deserialize_any(V)
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && outer.start < outer.end
}

/// The deepest key path whose key or value covers `span`.
fn key_path(node: &Node, span: &Range<usize>, prefix: &str) -> Option<String> {
    match node {
        Node::Table(entries) => entries.iter().find_map(|(k, v)| {
            let path = if prefix.is_empty() {
                k.get_ref().clone()
            } else {
                format!("{prefix}.{}", k.get_ref())
            };
            if contains(&k.span(), span) {
                Some(path)
            } else if contains(&v.span(), span) {
                Some(key_path(v.get_ref(), span, &path).unwrap_or(path))
            } else {
                None
            }
        }),
        Node::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            let path = format!("{prefix}[{i}]");
            contains(&v.span(), span).then(|| key_path(v.get_ref(), span, &path).unwrap_or(path))
        }),
        Node::Leaf => None,
    }
}

/// 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

/// Makes serde's and toml's wording fit a configuration file.
fn reword(key: Option<&str>, message: &str) -> String {
    let is_binding = key.is_some_and(|k| {
        k.rsplit('.')
            .next()
            .is_some_and(|last| last.starts_with("bind["))
    });
    if is_binding && message.starts_with("wanted exactly 1 element") {
        return "a binding is a table with exactly one key: data, children, exists, persistent, \
                recursive or session"
            .to_string();
    }
    message.trim_end().to_string()
}

// ---- loading and validation ----

/// Reads and validates a configuration file. Credentials named by `credentials_env` and
/// `credentials_file` are read now, so a missing one is a configuration error.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
        file: file.to_path_buf(),
        key: None,
        message: format!("cannot read the configuration file: {e}"),
        position: None,
    })?;
    parse(file, &text)
}

/// Parses and validates configuration text; `file` names it in errors and anchors relative
/// paths (its folder).
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let span = e.span();
        let key = span.as_ref().and_then(|span| {
            toml::from_str::<Spanned<Node>>(text)
                .ok()
                .and_then(|tree| key_path(tree.get_ref(), span, ""))
        });
        ConfigError {
            file: file.to_path_buf(),
            message: reword(key.as_deref(), e.message()),
            key,
            position: span.map(|s| position(text, s.start)),
        }
    })?;
    let base = file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let v = Validator { file, base: &base };
    let zookeeper = v.zookeeper(raw.zookeeper)?;
    let host = v.host(raw.host)?;
    let shutdown = v.shutdown(raw.shutdown)?;
    let mut plugins = Vec::new();
    let mut names: HashMap<String, String> = HashMap::new();
    // Persistent watches per path across plugins: one session, one persistent mode per path.
    // (Data, exists and children bindings may share a persistent binding's path: the session
    // serves them from the persistent watch.)
    let mut persistent: HashMap<String, (bool, String)> = HashMap::new();
    for (i, p) in raw.plugin.into_iter().enumerate() {
        let key = format!("plugin[{i}]");
        let settings = v.plugin(&key, p)?;
        if let Some(first) = names.insert(settings.name.clone(), key.clone()) {
            return Err(v.err(
                format!("{key}.name"),
                format!(
                    "duplicate plugin name {:?} (already used by {first}); names must be unique",
                    settings.name
                ),
            ));
        }
        for (bkey, b) in &settings.bindings {
            let (path, recursive) = match b {
                Binding::Persistent(p) => (p, false),
                Binding::PersistentRecursive(p) => (p, true),
                _ => continue,
            };
            match persistent.get(path) {
                Some((mode, other)) if *mode != recursive => {
                    return Err(v.err(
                        bkey.clone(),
                        format!(
                            "a {} watch on {path} conflicts with the {} watch of {other}: \
                             ZooKeeper keeps one persistent watch mode per path and session \
                             (every plugin shares the session)",
                            mode_name(recursive),
                            mode_name(*mode)
                        ),
                    ))
                }
                Some(_) => {}
                None => {
                    persistent.insert(path.clone(), (recursive, bkey.clone()));
                }
            }
        }
        plugins.push(settings);
    }
    Ok(Config {
        file: file.to_path_buf(),
        zookeeper,
        host,
        shutdown,
        plugins,
    })
}

fn mode_name(recursive: bool) -> &'static str {
    if recursive {
        "recursive"
    } else {
        "persistent"
    }
}

struct Validator<'a> {
    file: &'a Path,
    base: &'a Path,
}

impl Validator<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            key: Some(key.into()),
            message: message.into(),
            position: None,
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn zk_path(&self, key: &str, path: &str) -> Result<(), ConfigError> {
        wazoo::validate_path(path, false).map_err(|e| self.err(key, e.to_string()))
    }

    fn positive(&self, key: String, v: Option<u64>) -> Result<Option<u64>, ConfigError> {
        match v {
            Some(0) => Err(self.err(key, "must be greater than 0")),
            other => Ok(other),
        }
    }

    fn zookeeper(&self, z: RawZk) -> Result<ZkSettings, ConfigError> {
        let hosts = match z.hosts {
            None => None,
            Some(h) => {
                let h = h.trim().to_string();
                if h.is_empty() {
                    return Err(self.err(
                        "zookeeper.hosts",
                        "is empty; remove the key to start a private ZooKeeper",
                    ));
                }
                // A chroot, not the `//` of a host marked tls:// or tcp://.
                if h.split(',').any(|item| {
                    let item = item.trim();
                    item.split_once("://")
                        .map_or(item, |(_, rest)| rest)
                        .contains('/')
                }) {
                    return Err(self.err(
                        "zookeeper.hosts",
                        format!(
                            "{h:?} contains a chroot; give only host:port pairs and put the \
                             chroot in zookeeper.chroot"
                        ),
                    ));
                }
                if let Some(bad) = h.split(',').find(|s| s.trim().is_empty()) {
                    return Err(self.err(
                        "zookeeper.hosts",
                        format!(
                            "{h:?} has an empty entry {bad:?}; expected host:port[,host:port...]"
                        ),
                    ));
                }
                Some(h)
            }
        };
        if let Some(c) = &z.chroot {
            self.zk_path("zookeeper.chroot", c)?;
            if c == "/" {
                return Err(self.err(
                    "zookeeper.chroot",
                    "\"/\" is no chroot; remove the key instead",
                ));
            }
        }
        let timeout = self.positive("zookeeper.session_timeout_ms".into(), z.session_timeout_ms)?;
        let mut auth = Vec::new();
        for (i, a) in z.auth.into_iter().enumerate() {
            let key = format!("zookeeper.auth[{i}]");
            if a.scheme.trim().is_empty() {
                return Err(self.err(format!("{key}.scheme"), "must not be empty"));
            }
            let given = [
                a.credentials.is_some(),
                a.credentials_env.is_some(),
                a.credentials_file.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
            if given != 1 {
                return Err(self.err(
                    key,
                    format!(
                        "give exactly one of credentials, credentials_env and credentials_file \
                         ({given} given)"
                    ),
                ));
            }
            let credentials = if let Some(c) = a.credentials {
                c.into_bytes()
            } else if let Some(var) = a.credentials_env {
                match std::env::var_os(&var) {
                    Some(v) => v.into_encoded_bytes(),
                    None => {
                        return Err(self.err(
                            format!("{key}.credentials_env"),
                            format!("the environment variable {var:?} is not set"),
                        ))
                    }
                }
            } else {
                let f = a.credentials_file.unwrap_or_default();
                let path = self.resolve(&f);
                let mut bytes = std::fs::read(&path).map_err(|e| {
                    self.err(
                        format!("{key}.credentials_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                bytes
            };
            auth.push(Auth {
                scheme: a.scheme,
                credentials: Secret(credentials),
            });
        }
        let resolve = |p: &str| self.resolve(p);
        let err = |k: String, m: String| self.err(k, m);
        let tls =
            match z.tls {
                Some(_) if hosts.is_none() => return Err(self.err(
                    "zookeeper.tls",
                    "needs zookeeper.hosts: the private ZooKeeper started without hosts has no \
                     TLS port",
                )),
                Some(t) => Some(crate::secure::validate_tls(t, &resolve, &err)?),
                None => None,
            };
        let sasl = match z.sasl {
            Some(s) => Some(crate::secure::validate_sasl(s, &resolve, &err)?),
            None => None,
        };
        Ok(ZkSettings {
            hosts,
            chroot: z.chroot,
            session_timeout: timeout.map(Duration::from_millis),
            read_only: z.read_only,
            auth,
            tls,
            sasl,
        })
    }

    fn host(&self, h: RawHost) -> Result<HostSettings, ConfigError> {
        let metrics = match h.metrics {
            None => None,
            Some(m) => Some(m.parse::<SocketAddr>().map_err(|_| {
                self.err(
                    "host.metrics",
                    format!("{m:?} is not an address to listen on; expected IP:PORT, e.g. 127.0.0.1:9100"),
                )
            })?),
        };
        let mut lanes = wazoo::LaneScheduling::default();
        if let Some(n) = h.lane_nice {
            if !(-20..=19).contains(&n) {
                return Err(self.err(
                    "host.lane_nice",
                    format!("{n} is not a nice value; expected -20 to 19"),
                ));
            }
            lanes = lanes.nice(n);
        }
        if let Some(d) = self.duration("host.lane_slice", h.lane_slice)? {
            if d > Duration::from_millis(100) {
                return Err(self.err(
                    "host.lane_slice",
                    "Linux takes slices of 0.1 to 100 ms; this is over 100 ms",
                ));
            }
            lanes = lanes.slice(d);
        }
        let lane_threads = match h.lane_threads {
            None => wazoo::PluginHostConfig::default().lane_threads,
            Some(n @ 1..=64) => n as usize,
            Some(n) => {
                return Err(self.err(
                    "host.lane_threads",
                    format!("{n} threads per lane kind; expected 1 to 64"),
                ))
            }
        };
        let cache_max_bytes = match self.positive("host.cache_max_mb".into(), h.cache_max_mb)? {
            None => wazoo::PluginHostConfig::default().cache_max_bytes,
            Some(mb) => mb.checked_mul(1 << 20).ok_or_else(|| {
                self.err(
                    "host.cache_max_mb",
                    format!("{mb} MiB is more than a disk holds"),
                )
            })?,
        };
        let max_component_bytes =
            match self.positive("host.max_component_mb".into(), h.max_component_mb)? {
                None => wazoo::PluginHostConfig::default().max_component_bytes,
                Some(mb @ 1..=4096) => (mb as usize) << 20,
                Some(mb) => {
                    return Err(self.err(
                        "host.max_component_mb",
                        format!("{mb} is over the maximum of 4096"),
                    ))
                }
            };
        Ok(HostSettings {
            lanes,
            lane_threads,
            cache_max_bytes,
            max_component_bytes,
            isolation: match h.isolation {
                RawIsolation::Shared => IsolationMode::Shared,
                RawIsolation::PerPlugin => IsolationMode::PerPlugin,
            },
            cache_dir: h.cache_dir.map(|d| self.resolve(&d)),
            metrics,
            log: h.log,
        })
    }

    fn duration(&self, key: &str, text: Option<String>) -> Result<Option<Duration>, ConfigError> {
        let Some(text) = text else { return Ok(None) };
        let d = parse_duration(&text).ok_or_else(|| {
            self.err(
                key,
                format!(
                    "{text:?} is not a duration: expected a number and a unit (us, ms, s or m), \
                     e.g. \"5s\" or \"500ms\""
                ),
            )
        })?;
        if d.is_zero() {
            return Err(self.err(key, "must be greater than 0"));
        }
        if d > Duration::from_secs(3600) {
            return Err(self.err(key, format!("{text:?} is over the maximum of 1 hour")));
        }
        Ok(Some(d))
    }

    fn shutdown(&self, s: RawShutdown) -> Result<ShutdownSettings, ConfigError> {
        let default = ShutdownSettings::default();
        Ok(ShutdownSettings {
            drain_timeout: self
                .duration("shutdown.drain_timeout", s.drain_timeout)?
                .unwrap_or(default.drain_timeout),
            close_timeout: self
                .duration("shutdown.close_timeout", s.close_timeout)?
                .unwrap_or(default.close_timeout),
        })
    }

    fn plugin(&self, key: &str, p: RawPlugin) -> Result<PluginSettings, ConfigError> {
        let k = |field: &str| format!("{key}.{field}");
        if p.name.is_empty()
            || p.name.len() > 64
            || !p
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(self.err(
                k("name"),
                format!(
                    "{:?} is not a plugin name: use 1 to 64 letters, digits, '-', '_' or '.'",
                    p.name
                ),
            ));
        }
        let component = self.resolve(&p.component);
        if !component.is_file() {
            let what = if component.exists() {
                "is not a file"
            } else {
                "does not exist"
            };
            return Err(self.err(
                k("component"),
                format!(
                    "the component file {} {what} (paths are relative to the configuration \
                     file's folder; scripts/build-guests.sh builds the example plugins)",
                    component.display()
                ),
            ));
        }
        for (list, field) in [(&p.read, "read"), (&p.write, "write")] {
            for (i, path) in list.iter().enumerate() {
                self.zk_path(&format!("{key}.{field}[{i}]"), path)?;
            }
        }
        let mut policy = Policy::default().read(p.read).write(p.write);
        if let Some(mb) = self.positive(k("memory_mb"), p.memory_mb)? {
            if mb > 4096 {
                return Err(self.err(k("memory_mb"), format!("{mb} is over the maximum of 4096")));
            }
            policy.memory_limit = (mb as usize) << 20;
        }
        if let Some(ms) = self.positive(k("compute_ms"), p.compute_ms)? {
            policy.compute_budget = Duration::from_millis(ms);
        }
        if let Some(ms) = self.positive(k("wall_ms"), p.wall_ms)? {
            policy.wall_limit = Duration::from_millis(ms);
        }
        if let Some(n) = self.positive(k("max_payload"), p.max_payload)? {
            policy.max_payload = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = p.max_crashes {
            if n == 0 {
                return Err(self.err(k("max_crashes"), "must be greater than 0"));
            }
            policy.max_crashes = n;
        }
        if let Some(ms) = self.positive(k("crash_window_ms"), p.crash_window_ms)? {
            policy.crash_window = Duration::from_millis(ms);
        }
        let mut bindings: Vec<(String, Binding)> = Vec::new();
        for (i, b) in p.bind.into_iter().enumerate() {
            let bkey = format!("{key}.bind[{i}]");
            let (field, binding) = match b {
                RawBind::Session(true) => ("session", Binding::Session),
                RawBind::Session(false) => {
                    return Err(self.err(
                        format!("{bkey}.session"),
                        "`session = false` binds nothing; write `session = true` or remove it",
                    ))
                }
                RawBind::Data(p) => ("data", Binding::Data(p)),
                RawBind::Exists(p) => ("exists", Binding::Exists(p)),
                RawBind::Children(p) => ("children", Binding::Children(p)),
                RawBind::Persistent(p) => ("persistent", Binding::Persistent(p)),
                RawBind::Recursive(p) => ("recursive", Binding::PersistentRecursive(p)),
            };
            let path = match &binding {
                Binding::Data(p)
                | Binding::Exists(p)
                | Binding::Children(p)
                | Binding::Persistent(p)
                | Binding::PersistentRecursive(p) => Some(p.clone()),
                _ => None,
            };
            if let Some(path) = path {
                self.zk_path(&format!("{bkey}.{field}"), &path)?;
                if !policy.may_read(&path) {
                    return Err(self.err(
                        format!("{bkey}.{field}"),
                        format!(
                            "{path} is outside the plugin's read allow-list (read = {:?}, write = \
                             {:?}); add it or a parent to `read`",
                            policy.read, policy.write
                        ),
                    ));
                }
            }
            if let Some((other, _)) = bindings.iter().find(|(_, b)| *b == binding) {
                return Err(self.err(
                    bkey,
                    format!(
                        "the same binding as {other}: every event would reach the plugin twice"
                    ),
                ));
            }
            bindings.push((bkey, binding));
        }
        Ok(PluginSettings {
            key: key.to_string(),
            name: p.name,
            component,
            config: p.config.into_iter().map(|(k, v)| (k, v.0)).collect(),
            policy,
            bindings,
        })
    }
}

/// A duration written as a number and a unit: `250ms`, `5s`, `1.5s`, `2m`.
fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = t.split_at(split);
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" => 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(value * scale).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        parse(Path::new("/nonexistent/c.toml"), text).expect_err("should fail")
    }

    #[test]
    fn errors_name_the_key() {
        let e = err("[[plugin]]\nname = \"a\"\ncomponent = \"x\"\nmemory_mb = \"big\"\n");
        assert_eq!(e.key.as_deref(), Some("plugin[0].memory_mb"), "{e}");
        assert_eq!(e.position, Some((4, 13)));
        let e = err("[host]\nisolation = \"solo\"\n");
        assert_eq!(e.key.as_deref(), Some("host.isolation"), "{e}");
        assert!(e.message.contains("unknown variant `solo`"), "{e}");
        let e =
            err("[[plugin]]\nname = \"a\"\ncomponent = \"x\"\nbind = [{ data = \"/a\" }, {}]\n");
        assert_eq!(e.key.as_deref(), Some("plugin[0].bind[1]"), "{e}");
        assert!(e.message.contains("exactly one key"), "{e}");
        let e = err("nonsense = 1\n");
        assert_eq!(e.key.as_deref(), Some("nonsense"), "{e}");
        let e = err("[zookeeper\n");
        assert_eq!(e.key, None);
        assert!(e.to_string().starts_with("/nonexistent/c.toml:1:"), "{e}");
    }

    #[test]
    fn one_shot_bindings_may_share_a_persistent_path() {
        // Any file will do as the component: loading is not checked here.
        let exe = std::env::current_exe().unwrap();
        let plugin = |name: &str, bind: &str| {
            format!(
                "[[plugin]]\nname = \"{name}\"\ncomponent = {:?}\nread = [\"/\"]\nbind = [{bind}]\n",
                exe.display().to_string()
            )
        };
        let text = plugin("a", "{ recursive = \"/app\" }")
            + &plugin(
                "b",
                "{ exists = \"/app\" }, { children = \"/app\" }, { persistent = \"/b\" }, \
                 { data = \"/b\" }",
            );
        let c = parse(Path::new("/nonexistent/c.toml"), &text).unwrap();
        assert_eq!(c.plugins.len(), 2);
        let text = plugin("a", "{ recursive = \"/app\" }, { persistent = \"/app\" }");
        let e = parse(Path::new("/nonexistent/c.toml"), &text).expect_err("two modes");
        assert_eq!(e.key.as_deref(), Some("plugin[0].bind[1]"), "{e}");
        assert!(e.message.contains("one persistent watch mode"), "{e}");
    }

    #[test]
    fn durations_have_a_unit() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("5s", Some(ms(5000))),
            ("250ms", Some(ms(250))),
            ("100us", Some(Duration::from_micros(100))),
            ("1.5s", Some(ms(1500))),
            ("2m", Some(ms(120_000))),
            (" 3s ", Some(ms(3000))),
            ("5", None),
            ("s", None),
            ("5 h", None),
            ("-1s", None),
            (".5s", None),
            ("5.s", None),
            ("1e3s", None),
            ("", None),
        ] {
            assert_eq!(parse_duration(text), want, "{text:?}");
        }
        let c = parse(
            Path::new("/nonexistent/c.toml"),
            "[shutdown]\ndrain_timeout = \"750ms\"\n",
        )
        .unwrap();
        assert_eq!(c.shutdown.drain_timeout, ms(750));
        assert_eq!(c.shutdown.close_timeout, ms(10_000), "the default");
        let c = parse(
            Path::new("/nonexistent/c.toml"),
            "[host]\nlane_nice = -5\nlane_slice = \"200us\"\nlane_threads = 4\n",
        )
        .unwrap();
        assert_eq!(c.host.lane_threads, 4);
        assert_eq!(
            c.host.lanes,
            wazoo::LaneScheduling::default()
                .nice(-5)
                .slice(Duration::from_micros(200))
        );
        let e = err("[host]\nlane_nice = -30\n");
        assert_eq!(e.key.as_deref(), Some("host.lane_nice"), "{e}");
        let e = err("[host]\nlane_threads = 0\n");
        assert_eq!(e.key.as_deref(), Some("host.lane_threads"), "{e}");
        let e = err("[host]\nlane_slice = \"1s\"\n");
        assert_eq!(e.key.as_deref(), Some("host.lane_slice"), "{e}");
        // The cache's size, in MiB; 1 GiB unless given.
        assert_eq!(c.host.cache_max_bytes, 1 << 30);
        let c = parse(
            Path::new("/nonexistent/c.toml"),
            "[host]\ncache_max_mb = 64\n",
        )
        .unwrap();
        assert_eq!(c.host.cache_max_bytes, 64 << 20);
        assert_eq!(c.host.max_component_bytes, 64 << 20, "the default");
        let c = parse(
            Path::new("/nonexistent/c.toml"),
            "[host]\nmax_component_mb = 8\n",
        )
        .unwrap();
        assert_eq!(c.host.max_component_bytes, 8 << 20);
        let e = err("[host]\nmax_component_mb = 5000\n");
        assert_eq!(e.key.as_deref(), Some("host.max_component_mb"), "{e}");
        let e = err("[host]\ncache_max_mb = 0\n");
        assert_eq!(e.key.as_deref(), Some("host.cache_max_mb"), "{e}");
        let e = err(&format!("[host]\ncache_max_mb = {}\n", i64::MAX));
        assert_eq!(e.key.as_deref(), Some("host.cache_max_mb"), "{e}");
    }

    #[test]
    fn positions_are_one_based() {
        assert_eq!(position("ab\ncd", 0), (1, 1));
        assert_eq!(position("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn secrets_are_not_printed() {
        let a = Auth {
            scheme: "digest".into(),
            credentials: Secret(b"user:pw".to_vec()),
        };
        assert!(!format!("{a:?}").contains("pw"));
    }
}
