//! The `wazoo` binary, end to end: configuration errors, `check`, every zkCli-like subcommand
//! (human and `--json` output, exit codes, `watch` streaming another client's changes), and
//! `run` with the example plugins on a private ZooKeeper that `wazoo run` starts itself,
//! including reloads, the metrics endpoint and a clean SIGTERM with events in flight.
//!
//! ZooKeeper servers here are private servers of `wazoo run` processes (a configuration
//! without plugins serves as a plain server). Every wait is bounded; lines of output are awaited
//! as they arrive.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use wazoo::{BlockingClient, Client, CreateMode, CreateOptions};

/// Start-up of a private server, plugin compilation included (debug build, 2 cores, tests in
/// parallel).
const START: Duration = Duration::from_secs(240);
/// Anything else awaited.
const WAIT: Duration = Duration::from_secs(60);

// ---- helpers ----

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_wazoo")
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

/// The folder of the guest components, built once (if missing) by scripts/build-guests.sh.
fn guests() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = root()
                .join(
                    std::env::var("WAZOO_WASM_TARGET_DIR").unwrap_or_else(|_| "target/wasm".into()),
                )
                .join("wasm32-wasip2/release");
            let needed = [
                "audit_log",
                "config_mirror",
                "session_reporter",
                "async_counter",
                "slow_ok",
                "panic",
            ];
            if needed
                .iter()
                .any(|g| !dir.join(format!("{g}.wasm")).is_file())
            {
                let out = Command::new("bash")
                    .arg(root().join("scripts/build-guests.sh"))
                    .output()
                    .expect("running scripts/build-guests.sh");
                assert!(
                    out.status.success(),
                    "scripts/build-guests.sh failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            dir
        })
        .clone()
}

fn guest(name: &str) -> PathBuf {
    guests().join(format!("{name}.wasm"))
}

/// The compilation cache shared by this file's tests.
fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("wazoo-cli-cache")
}

/// A temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cli-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines of a child's output as they arrive.
#[derive(Clone, Default)]
struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    fn pump(r: impl Read + Send + 'static, tag: &'static str) -> Lines {
        let lines = Lines::default();
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{tag}] {line}");
                let (m, cv) = &*l.0;
                m.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        lines
    }

    /// Waits for the `n`th line (1-based) matching `pred`.
    fn wait_nth(&self, n: usize, what: &str, t: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + t;
        let (m, cv) = &*self.0;
        let mut g = m.lock().unwrap();
        loop {
            if let Some(l) = g.iter().filter(|l| pred(l)).nth(n - 1) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no line #{n} {what} within {t:?}; lines so far:\n{}",
                g.join("\n")
            );
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }

    fn wait(&self, what: &str, t: Duration, pred: impl Fn(&str) -> bool) -> String {
        self.wait_nth(1, what, t, pred)
    }

    fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.0 .0.lock().unwrap().iter().filter(|l| pred(l)).count()
    }

    fn all(&self) -> String {
        self.0 .0.lock().unwrap().join("\n")
    }
}

/// A `wazoo` process with its output; SIGTERMed (then killed) on drop.
struct Proc {
    child: Child,
    out: Lines,
    err: Lines,
}

impl Proc {
    fn spawn(args: &[&str], tag: &'static str) -> Proc {
        let mut child = Command::new(bin())
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning wazoo");
        let out = Lines::pump(child.stdout.take().unwrap(), tag);
        let err = Lines::pump(child.stderr.take().unwrap(), tag);
        Proc { child, out, err }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .expect("running kill")
            .success();
        assert!(ok, "kill -s {sig} failed");
    }

    fn wait_exit(&mut self, t: Duration) -> ExitStatus {
        let deadline = Instant::now() + t;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "wazoo did not exit within {t:?}; its log:\n{}",
                self.err.all()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `wazoo run` with `config`, up to its `wazoo: ready`; returns it and the hosts it announced.
fn start_run(config: &Path, tag: &'static str) -> (Proc, String) {
    let p = Proc::spawn(&["run", config.to_str().unwrap()], tag);
    let line = p.out.wait("announcing ZooKeeper", START, |l| {
        l.starts_with("wazoo: ZooKeeper at ")
    });
    let hosts = line["wazoo: ZooKeeper at ".len()..].to_string();
    p.out.wait("wazoo: ready", START, |l| l == "wazoo: ready");
    (p, hosts)
}

/// A plain ZooKeeper: the private server of a `wazoo run` without plugins.
fn server(tmp: &TempDir) -> (Proc, String) {
    let cfg = tmp.file("server.toml", "[host]\nisolation = \"shared\"\n");
    start_run(&cfg, "server")
}

/// Runs the CLI to completion.
fn cli(hosts: &str, args: &[&str]) -> (i32, String, String) {
    let out: Output = Command::new(bin())
        .args(args)
        .env("WAZOO_HOSTS", hosts)
        .stdin(Stdio::null())
        .output()
        .expect("running wazoo");
    let r = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("[cli] wazoo {args:?} -> {r:?}");
    r
}

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {s:?}"))
}

/// A library client on `connect` (its runtime is only for connecting).
fn client(connect: &str) -> (tokio::runtime::Runtime, BlockingClient) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let zk = rt
        .block_on(Client::connect(connect))
        .expect("connecting a test client");
    (rt, BlockingClient::new(zk))
}

/// Waits until `path` holds `want` (awaiting watches, never sleeping).
fn wait_data(rt: &tokio::runtime::Runtime, zk: &BlockingClient, path: &str, want: &[u8]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (now, watcher) = match zk.get_data_watch(path) {
            Ok((data, _, w)) => (Some(data), w),
            Err(wazoo::Error::NoNode) => match zk.exists_watch(path).unwrap() {
                (Some(_), _) => continue,
                (None, w) => (None, w),
            },
            Err(e) => panic!("reading {path}: {e}"),
        };
        if now.as_deref() == Some(want) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            rt.block_on(async { tokio::time::timeout(left, watcher.changed()).await })
                .is_ok(),
            "{path} did not become {:?} within {WAIT:?} (it is {:?})",
            String::from_utf8_lossy(want),
            now.map(|d| String::from_utf8_lossy(&d).into_owned())
        );
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// A metric's value from a Prometheus text body.
fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
}

/// Checks a histogram series (`labels` without braces) against Prometheus' rules: `le`
/// buckets from about 10 µs to about 10 s and `+Inf`, cumulative, ending at `_count`, with a
/// `_sum`. Returns its count.
fn histogram(body: &str, name: &str, labels: &str) -> f64 {
    let prefix = format!("{name}_bucket{{{labels},le=\"");
    let buckets: Vec<(String, f64)> = body
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, value) = rest.split_once("\"} ")?;
            Some((le.to_string(), value.parse().ok()?))
        })
        .collect();
    assert!(
        buckets.len() >= 10,
        "too few buckets of {name}{{{labels}}}:\n{body}"
    );
    let first: f64 = buckets[0].0.parse().unwrap();
    assert!((5e-6..=20e-6).contains(&first), "first bound {first}");
    let bounds: Vec<f64> = buckets[..buckets.len() - 1]
        .iter()
        .map(|(le, _)| le.parse().unwrap())
        .collect();
    assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
    let last = *bounds.last().unwrap();
    assert!((5.0..=20.0).contains(&last), "last bound {last}");
    assert_eq!(buckets.last().unwrap().0, "+Inf");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "not cumulative: {buckets:?}"
    );
    let count = metric(body, &format!("{name}_count{{{labels}}}"));
    assert_eq!(buckets.last().unwrap().1, count, "+Inf bucket and count");
    let sum = metric(body, &format!("{name}_sum{{{labels}}}"));
    assert!(sum >= 0.0 && (count > 0.0 || sum == 0.0), "sum {sum}");
    count
}

// ---- configuration errors ----

#[test]
fn config_errors_name_the_file_the_key_and_the_problem() {
    let tmp = TempDir::new("config");
    let comp = tmp.file("p.wasm", "not checked before loading");
    let ok_plugin = |name: &str| {
        format!("[[plugin]]\nname = \"{name}\"\ncomponent = \"p.wasm\"\nread = [\"/app\"]\n")
    };
    assert!(comp.is_file());
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("syntax", "[zookeeper\n".into(), "syntax.toml:1:", "invalid table header"),
        ("unknown-top", "bogus = 1\n".into(), ": bogus:", "unknown field `bogus`"),
        (
            "unknown-plugin-key",
            format!("{}{}nmae = \"x\"\n", ok_plugin("a"), ok_plugin("b")),
            ": plugin[1].nmae:",
            "unknown field `nmae`",
        ),
        (
            "wrong-type",
            format!("{}memory_mb = \"big\"\n", ok_plugin("a")),
            ": plugin[0].memory_mb:",
            "invalid type: string \"big\", expected u64",
        ),
        (
            "wrong-type-section",
            "plugin = 3\n".into(),
            ": plugin:",
            "invalid type: integer `3`",
        ),
        (
            "missing-field",
            "[[plugin]]\ncomponent = \"p.wasm\"\n".into(),
            ": plugin[0]:",
            "missing field `name`",
        ),
        (
            "missing-component",
            "[[plugin]]\nname = \"a\"\ncomponent = \"nope/x.wasm\"\n".into(),
            ": plugin[0].component:",
            "nope/x.wasm does not exist",
        ),
        (
            "invalid-read-path",
            "[[plugin]]\nname = \"a\"\ncomponent = \"p.wasm\"\nread = [\"/ok\", \"/app/\"]\n".into(),
            ": plugin[0].read[1]:",
            "must not end with '/'",
        ),
        (
            "invalid-bind-path",
            format!("{}bind = [{{ data = \"/app//x\" }}]\n", ok_plugin("a")),
            ": plugin[0].bind[0].data:",
            "empty segment",
        ),
        (
            "unknown-binding",
            format!("{}bind = [{{ session = true }}, {{ exist = \"/app\" }}]\n", ok_plugin("a")),
            ": plugin[0].bind[1].exist:",
            "unknown variant `exist`, expected one of `data`, `children`, `exists`",
        ),
        (
            "empty-binding",
            format!("{}bind = [{{}}]\n", ok_plugin("a")),
            ": plugin[0].bind[0]:",
            "exactly one key",
        ),
        (
            "binding-outside-allow-list",
            format!("{}bind = [{{ recursive = \"/other\" }}]\n", ok_plugin("a")),
            ": plugin[0].bind[0].recursive:",
            "/other is outside the plugin's read allow-list",
        ),
        (
            "session-false",
            format!("{}bind = [{{ session = false }}]\n", ok_plugin("a")),
            ": plugin[0].bind[0].session:",
            "binds nothing",
        ),
        (
            "duplicate-binding",
            format!("{}bind = [{{ data = \"/app\" }}, {{ data = \"/app\" }}]\n", ok_plugin("a")),
            ": plugin[0].bind[1]:",
            "the same binding as plugin[0].bind[0]",
        ),
        (
            "shutdown-duration-without-unit",
            "[shutdown]\ndrain_timeout = \"5\"\n".into(),
            ": shutdown.drain_timeout:",
            "\"5\" is not a duration: expected a number and a unit (us, ms, s or m)",
        ),
        (
            "shutdown-duration-zero",
            "[shutdown]\nclose_timeout = \"0s\"\n".into(),
            ": shutdown.close_timeout:",
            "must be greater than 0",
        ),
        (
            "shutdown-duration-too-long",
            "[shutdown]\nclose_timeout = \"90m\"\n".into(),
            ": shutdown.close_timeout:",
            "over the maximum of 1 hour",
        ),
        (
            "shutdown-duration-number",
            "[shutdown]\ndrain_timeout = 5\n".into(),
            ": shutdown.drain_timeout:",
            "invalid type: integer `5`, expected a string",
        ),
        (
            "shutdown-unknown-key",
            "[shutdown]\ndrain = \"5s\"\n".into(),
            ": shutdown.drain:",
            "unknown field `drain`",
        ),
        (
            "persistent-mode-conflict",
            format!(
                "{}bind = [{{ recursive = \"/app\" }}]\n{}bind = [{{ persistent = \"/app\" }}]\n",
                ok_plugin("a"),
                ok_plugin("b")
            ),
            ": plugin[1].bind[0]:",
            "conflicts with the recursive watch of plugin[0].bind[0]",
        ),
        (
            "unknown-isolation",
            "[host]\nisolation = \"solo\"\n".into(),
            ": host.isolation:",
            "unknown variant `solo`, expected `shared` or `per-plugin`",
        ),
        (
            "unknown-log",
            "[host]\nlog = \"xml\"\n".into(),
            ": host.log:",
            "unknown variant `xml`",
        ),
        (
            "bad-metrics",
            "[host]\nmetrics = \"localhost\"\n".into(),
            ": host.metrics:",
            "expected IP:PORT",
        ),
        (
            "duplicate-name",
            format!("{}{}", ok_plugin("same"), ok_plugin("same")),
            ": plugin[1].name:",
            "duplicate plugin name \"same\" (already used by plugin[0])",
        ),
        (
            "bad-name",
            ok_plugin("a b"),
            ": plugin[0].name:",
            "is not a plugin name",
        ),
        (
            "zero-limit",
            format!("{}wall_ms = 0\n", ok_plugin("a")),
            ": plugin[0].wall_ms:",
            "must be greater than 0",
        ),
        (
            "config-value-table",
            format!("{}config = {{ a = {{ b = 1 }} }}\n", ok_plugin("a")),
            ": plugin[0].config.a:",
            "expected a string, a number or a boolean",
        ),
        (
            "bad-chroot",
            "[zookeeper]\nchroot = \"app\"\n".into(),
            ": zookeeper.chroot:",
            "must start with '/'",
        ),
        (
            "hosts-with-chroot",
            "[zookeeper]\nhosts = \"127.0.0.1:2181/app\"\n".into(),
            ": zookeeper.hosts:",
            "contains a chroot",
        ),
        (
            "two-credential-sources",
            "[zookeeper]\nauth = [{ scheme = \"digest\", credentials = \"u:secret-one\", credentials_env = \"X\" }]\n".into(),
            ": zookeeper.auth[0]:",
            "exactly one of credentials, credentials_env and credentials_file",
        ),
        (
            "credentials-env-unset",
            "[zookeeper]\nauth = [{ scheme = \"digest\", credentials_env = \"WAZOO_TEST_SURELY_UNSET\" }]\n".into(),
            ": zookeeper.auth[0].credentials_env:",
            "\"WAZOO_TEST_SURELY_UNSET\" is not set",
        ),
        (
            "credentials-file-missing",
            "[zookeeper]\nauth = [{ scheme = \"digest\", credentials_file = \"nope.txt\" }]\n".into(),
            ": zookeeper.auth[0].credentials_file:",
            "cannot read",
        ),
    ];
    let mut wrong = Vec::new();
    for (name, text, key, message) in &cases {
        let file = tmp.file(&format!("{name}.toml"), text);
        let (code, out, err) = cli("127.0.0.1:1", &["run", file.to_str().unwrap()]);
        let ok = code == 1
            && out.is_empty()
            && err.contains(file.to_str().unwrap())
            && err.contains(key)
            && err.contains(message)
            && !err.contains("secret-one");
        if !ok {
            wrong.push(format!(
                "{name}: wanted exit 1, nothing on stdout, {key:?} and {message:?} on stderr; \
                 got exit {code}, stdout {out:?}, stderr {err:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let (code, _, err) = cli("127.0.0.1:1", &["run", "/nonexistent/wazoo.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/wazoo.toml")
            && err.contains("cannot read the configuration file"),
        "{err}"
    );

    // A compilation cache others may write is refused before ZooKeeper is tried (nothing
    // listens on port 1: connecting would fail only after its timeout, and say so).
    use std::os::unix::fs::PermissionsExt;
    let shared = tmp.0.join("shared-cache");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let file = tmp.file(
        "shared-cache.toml",
        &format!(
            "[zookeeper]\nhosts = \"127.0.0.1:1\"\n[host]\ncache_dir = \"{}\"\n",
            shared.display()
        ),
    );
    let (code, out, err) = cli("127.0.0.1:1", &["run", file.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(
        err.contains(&shared.display().to_string())
            && err.contains("not safe to load native code")
            && err.contains("writable by every user")
            && !err.contains("connect"),
        "{err}"
    );
}

// ---- check ----

#[test]
fn check_accepts_plugins_and_explains_rejections() {
    let tmp = TempDir::new("check");
    let audit = guest("audit_log");
    let (code, out, _) = cli("", &["check", audit.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("accepted"), "{out}");
    let (code, out, _) = cli("", &["check", "--json", audit.to_str().unwrap()]);
    assert_eq!(code, 0);
    let v = json(&out);
    assert_eq!(v["accepted"], true, "{v}");

    let garbage = tmp.file("garbage.wasm", "hello, not wasm");
    let (code, out, _) = cli("", &["check", garbage.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("rejected") && out.contains("not a WebAssembly file"),
        "{out}"
    );

    let core = tmp.0.join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let (code, out, _) = cli("", &["check", "--json", core.to_str().unwrap()]);
    assert_eq!(code, 1);
    let v = json(&out);
    assert_eq!(v["accepted"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("a core WebAssembly module, not a component"),
        "{v}"
    );

    let (code, out, _) = cli("", &["check", "/nonexistent/x.wasm"]);
    assert_eq!(code, 1);
    assert!(out.contains("cannot read /nonexistent/x.wasm"), "{out}");
}

// ---- the zkCli-like subcommands ----

#[test]
fn every_subcommand_with_and_without_json() {
    let tmp = TempDir::new("subcommands");
    let (_server, hosts) = server(&tmp);
    let h = hosts.as_str();

    // create: human, exists, json, makepath, missing parent, sequential, ephemeral, container, ttl
    assert_eq!(cli(h, &["create", "/t"]), (0, "/t\n".into(), String::new()));
    let (code, _, err) = cli(h, &["create", "/t"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("already exists"), "{err}");
    let (code, out, _) = cli(h, &["create", "/t/a", "hello", "--json"]);
    assert_eq!(code, 0);
    let v = json(&out);
    assert_eq!(
        (v["path"].as_str(), v["stat"]["version"].as_i64()),
        (Some("/t/a"), Some(0))
    );
    assert_eq!(cli(h, &["create", "/t/x/y/z", "deep", "--makepath"]).0, 0);
    let (code, _, err) = cli(h, &["create", "/t/none/child"]);
    assert_eq!(code, 2, "{err}");
    let (code, out, _) = cli(h, &["create", "/t/seq-", "--sequential"]);
    assert_eq!(code, 0);
    assert!(
        out.trim().len() == "/t/seq-".len() + 10 && out.starts_with("/t/seq-"),
        "{out}"
    );
    assert_eq!(cli(h, &["create", "/t/eph", "--ephemeral"]).0, 0);
    assert_eq!(
        cli(h, &["stat", "/t/eph"]).0,
        2,
        "the ephemeral went with its session"
    );
    assert_eq!(cli(h, &["create", "/t/cont", "--container"]).0, 0);
    let (code, out, err) = cli(h, &["create", "/t/ttl", "--ttl", "60000", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json(&out)["path"], "/t/ttl");
    let (code, _, err) = cli(h, &["create", "/t/bad", "--ephemeral", "--container"]);
    assert_eq!(code, 1, "a usage error: {err}");
    let (code, _, err) = cli(h, &["create", "relative"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid path"), "{err}");

    // get
    assert_eq!(cli(h, &["get", "/t/a"]).1, "hello\n");
    let (code, out, _) = cli(h, &["get", "/t/a", "--json"]);
    assert_eq!(code, 0);
    let v = json(&out);
    assert_eq!(v["path"], "/t/a");
    assert_eq!(v["data"], "hello");
    assert!(v.get("data_hex").is_none());
    assert_eq!(v["stat"]["data_length"], 5);
    assert_eq!(v["stat"]["ephemeral_owner"], 0);
    let (code, _, err) = cli(h, &["get", "/t/missing"]);
    assert_eq!(code, 2);
    assert!(err.contains("get /t/missing: no node"), "{err}");
    let (code, _, err) = cli(h, &["get", "/t/missing", "--json"]);
    assert_eq!(code, 2);
    assert_eq!(json(&err)["kind"], "no-node");
    {
        // Binary data, written by another client.
        let (_rt, zk) = client(h);
        zk.create("/t/bin", &[0xff, 0x00, 0x41], CreateMode::Persistent)
            .unwrap();
        zk.close();
    }
    assert_eq!(cli(h, &["get", "/t/bin"]).1, "0xff0041\n");
    let v = json(&cli(h, &["get", "/t/bin", "--json"]).1);
    assert_eq!(v["data_hex"], "ff0041");
    assert!(v.get("data").is_none());

    // set, with and without a version
    assert_eq!(
        cli(h, &["set", "/t/a", "v2"]),
        (0, "/t/a: version 1\n".into(), String::new())
    );
    let (code, _, err) = cli(h, &["set", "/t/a", "v3", "--version", "0"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("version mismatch"), "{err}");
    let (code, out, _) = cli(h, &["set", "/t/a", "v3", "--version", "1", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(json(&out)["stat"]["version"], 2);
    assert_eq!(cli(h, &["set", "/t/missing", "x"]).0, 2);

    // ls
    let (code, out, _) = cli(h, &["ls", "/t"]);
    assert_eq!(code, 0);
    let names: Vec<&str> = out.lines().collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert_eq!(names[..3], ["a", "bin", "cont"]);
    assert!(names[3].starts_with("seq-"), "{names:?}");
    assert_eq!(names[4..], ["ttl", "x"]);
    let (code, out, _) = cli(h, &["ls", "/t/x", "--stat"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("y\n\ncZxid = 0x"), "{out}");
    assert!(out.contains("numChildren = 1\n"), "{out}");
    let v = json(&cli(h, &["ls", "/t", "--json"]).1);
    assert_eq!(v["path"], "/t");
    assert_eq!(v["children"][0], "a");
    assert_eq!(v["stat"]["num_children"].as_u64(), Some(names.len() as u64));
    assert_eq!(cli(h, &["ls", "/t/missing"]).0, 2);

    // stat
    let (code, out, _) = cli(h, &["stat", "/t/a"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("dataVersion = 2\n") && out.contains("dataLength = 2\n"),
        "{out}"
    );
    assert!(out.contains("ctime = 20"), "a UTC date: {out}");
    let v = json(&cli(h, &["stat", "/t/a", "--json"]).1);
    assert_eq!(
        (v["path"].as_str(), v["stat"]["version"].as_i64()),
        (Some("/t/a"), Some(2))
    );

    // delete: version, non-empty, recursive, missing
    assert_eq!(cli(h, &["delete", "/t/a", "--version", "0"]).0, 4);
    assert_eq!(
        cli(h, &["delete", "/t/a", "--version", "2"]),
        (0, "deleted /t/a\n".into(), String::new())
    );
    let (code, _, err) = cli(h, &["delete", "/t/x"]);
    assert_eq!(code, 1, "not empty is another failure: {err}");
    assert!(err.contains("has children"), "{err}");
    let (code, out, _) = cli(h, &["delete", "/t/x", "--recursive", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        json(&out),
        serde_json::json!({ "path": "/t/x", "deleted": true })
    );
    assert_eq!(cli(h, &["delete", "/t/x", "--recursive"]).0, 2);
    assert_eq!(cli(h, &["delete", "/t/x"]).0, 2);

    // --hosts wins over WAZOO_HOSTS; an unreachable server is another failure.
    let (code, out, _) = cli("127.0.0.1:1", &["get", "/t/bin", "--hosts", h]);
    assert_eq!((code, out.as_str()), (0, "0xff0041\n"));
    let (code, _, err) = cli("127.0.0.1:1", &["get", "/", "--timeout", "1"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot connect to ZooKeeper at 127.0.0.1:1"),
        "{err}"
    );
    // A chroot in the connect string.
    assert_eq!(cli(&format!("{h}/t"), &["get", "/bin"]).1, "0xff0041\n");
}

#[test]
fn watch_streams_another_clients_changes() {
    let tmp = TempDir::new("watch");
    let (_server, hosts) = server(&tmp);
    let h = hosts.as_str();

    // Recursive, human output.
    let mut w = Proc::spawn(&["watch", "/w", "--recursive", "--hosts", h], "watch");
    w.err
        .wait("the watch armed", WAIT, |l| l.contains("watching /w"));
    assert_eq!(cli(h, &["create", "/w/a", "1", "--makepath"]).0, 0);
    assert_eq!(cli(h, &["set", "/w/a", "2"]).0, 0);
    assert_eq!(cli(h, &["delete", "/w/a"]).0, 0);
    for (i, want) in [
        "node-created /w",
        "node-created /w/a",
        "node-data-changed /w/a",
        "node-deleted /w/a",
    ]
    .iter()
    .enumerate()
    {
        let got = w.out.wait_nth(i + 1, "an event", WAIT, |_| true);
        assert_eq!(&got, want);
    }
    w.signal("TERM");
    assert!(w.wait_exit(WAIT).success());

    // Persistent (not recursive), JSON output, stopped with SIGINT.
    let mut w = Proc::spawn(&["watch", "/w", "--json", "--hosts", h], "watch-json");
    w.err
        .wait("the watch armed", WAIT, |l| l.contains("watching /w"));
    assert_eq!(cli(h, &["create", "/w/b"]).0, 0);
    assert_eq!(cli(h, &["create", "/w/b/deeper"]).0, 0); // not reported: not recursive
    assert_eq!(cli(h, &["set", "/w", "x"]).0, 0);
    let first = json(&w.out.wait_nth(1, "an event", WAIT, |_| true));
    assert_eq!(
        first,
        serde_json::json!({ "type": "node-children-changed", "path": "/w" })
    );
    let second = json(&w.out.wait_nth(2, "an event", WAIT, |_| true));
    assert_eq!(
        second,
        serde_json::json!({ "type": "node-data-changed", "path": "/w" })
    );
    w.signal("INT");
    assert!(w.wait_exit(WAIT).success());
    assert_eq!(w.out.count(|_| true), 2, "{}", w.out.all());
}

// ---- run ----

/// A plugin section.
fn plugin(name: &str, component: &Path, rest: &str) -> String {
    format!(
        "[[plugin]]\nname = \"{name}\"\ncomponent = \"{}\"\n{rest}\n",
        component.display()
    )
}

#[test]
fn run_serves_plugins_on_its_private_zookeeper() {
    let tmp = TempDir::new("run");
    // The mirror's component is a copy, relative to the configuration, so it can be rewritten.
    std::fs::copy(guest("config_mirror"), tmp.0.join("mirror.wasm")).unwrap();
    let cfg = tmp.file(
        "run.toml",
        &format!(
            "[zookeeper]\nchroot = \"/app\"\nsession_timeout_ms = 8000\n\
             auth = [{{ scheme = \"digest\", credentials = \"tester:s3cret-pw\" }}]\n\
             [host]\nisolation = \"per-plugin\"\ncache_dir = \"{}\"\nmetrics = \"127.0.0.1:0\"\n\n{}{}{}{}{}",
            cache_dir().display(),
            plugin(
                "mirror",
                Path::new("mirror.wasm"),
                "config = { source = \"/config\", target = \"/mirror\" }\nread = [\"/config\"]\nwrite = [\"/mirror\"]\nbind = [{ recursive = \"/config\" }]"
            ),
            plugin(
                "audit",
                &guest("audit_log"),
                "read = [\"/config\", \"/flag\"]\nbind = [{ recursive = \"/config\" }, { exists = \"/flag\" }]"
            ),
            plugin(
                "crashy",
                &guest("panic"),
                "read = [\"/boom\"]\nmax_crashes = 2\nbind = [{ recursive = \"/boom\" }]"
            ),
            plugin(
                "reporter",
                &guest("session_reporter"),
                "config = { name = \"t\" }\nwrite = [\"/reporters\"]\nbind = [{ session = true }]"
            ),
            plugin(
                "counter",
                &guest("async_counter"),
                "config = { counter = \"/counter\", limit = 3 }\nwrite = [\"/counter\"]\nmemory_mb = 32\ncompute_ms = 50\nwall_ms = 5000\nbind = [{ data = \"/counter\" }]"
            ),
        ),
    );
    let (mut run, hosts) = start_run(&cfg, "run");
    let started = run.err.wait("the private server's start", WAIT, |l| {
        l.contains("no hosts configured: started a private ZooKeeper on ")
    });
    let dir = started
        .split(" in ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(PathBuf::from)
        .expect("the server's folder in the log");
    assert!(dir.is_dir(), "{dir:?}");
    assert!(started.contains(&hosts), "{started}");
    let metrics_line = run.out.wait("the metrics address", WAIT, |l| {
        l.starts_with("wazoo: metrics at http://")
    });
    let metrics_addr = metrics_line["wazoo: metrics at http://".len()..]
        .trim_end_matches("/metrics")
        .to_string();

    let (rt, zk) = client(&format!("{hosts}/app"));
    // session-reporter: its ephemeral holds "connected".
    wait_data(&rt, &zk, "/reporters/t", b"connected");
    let owner = zk.exists("/reporters/t").unwrap().unwrap().ephemeral_owner;
    assert_ne!(owner, 0);
    let before = http_get(&metrics_addr, "/metrics");
    // config-mirror copies a value; audit-log reports it.
    zk.create_with(
        "/config/a",
        b"v1",
        &CreateOptions {
            makepath: true,
            ..Default::default()
        },
    )
    .unwrap();
    wait_data(&rt, &zk, "/mirror/a", b"v1");
    run.err.wait("audit's report", WAIT, |l| {
        l.contains("node-created /config/a") && l.contains("plugin=audit")
    });
    // async-counter counts to its limit; audit's exists binding sees /flag appear.
    zk.create("/counter", b"0", CreateMode::Persistent).unwrap();
    wait_data(&rt, &zk, "/counter", b"3");
    // audit's exists binding hears /flag appear and go, not its data change.
    let audit_flag = |l: &str| l.contains("plugin=audit") && l.contains(" /flag ");
    zk.create("/flag", b"", CreateMode::Persistent).unwrap();
    run.err.wait("audit's exists binding", WAIT, |l| {
        audit_flag(l) && l.contains("node-created /flag")
    });
    zk.set_data("/flag", b"changed", None).unwrap();
    zk.delete("/flag", None).unwrap();
    run.err.wait("the deletion", WAIT, |l| {
        audit_flag(l) && l.contains("node-deleted /flag")
    });
    zk.create("/flag", b"", CreateMode::Persistent).unwrap();
    run.err.wait_nth(2, "the second creation", WAIT, |l| {
        audit_flag(l) && l.contains("node-created /flag")
    });
    assert_eq!(run.err.count(audit_flag), 3, "{}", run.err.all());
    // A plugin that traps on every event: rebuilt once, then disabled.
    zk.create("/boom", b"", CreateMode::Persistent).unwrap();
    zk.create("/boom/1", b"", CreateMode::Persistent).unwrap();
    run.err.wait("crashy's first trap", WAIT, |l| {
        l.contains("plugin=crashy") && l.contains("instance will be rebuilt")
    });
    zk.create("/boom/2", b"", CreateMode::Persistent).unwrap();
    run.err.wait("crashy disabled", WAIT, |l| {
        l.contains("plugin=crashy") && l.contains("plugin disabled")
    });

    // The metrics endpoint: the events above moved the lanes' counters and histograms.
    let body = http_get(&metrics_addr, "/metrics");
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    for (name, labels) in [
        (
            "wazoo_plugin_lane_callback_seconds",
            "plugin=\"mirror\",lane=\"watch\"",
        ),
        (
            "wazoo_plugin_lane_wait_seconds",
            "plugin=\"mirror\",lane=\"watch\"",
        ),
        (
            "wazoo_plugin_lane_callback_seconds",
            "plugin=\"counter\",lane=\"completion\"",
        ),
        (
            "wazoo_plugin_lane_callback_seconds",
            "plugin=\"audit\",lane=\"watch\"",
        ),
        (
            "wazoo_lane_callback_seconds",
            "lanes=\"forward\",lane=\"watch\"",
        ),
        (
            "wazoo_lane_wait_seconds",
            "lanes=\"forward\",lane=\"watch\"",
        ),
    ] {
        let (was, now) = (
            histogram(&before, name, labels),
            histogram(&body, name, labels),
        );
        assert!(now > was, "{name}{{{labels}}} stayed at {was}");
    }
    assert_eq!(
        metric(
            &body,
            "wazoo_plugin_lane_events_total{plugin=\"audit\",lane=\"watch\"}"
        ),
        histogram(
            &body,
            "wazoo_plugin_lane_callback_seconds",
            "plugin=\"audit\",lane=\"watch\""
        ),
    );
    assert!(
        metric(
            &body,
            "wazoo_plugin_lane_events_total{plugin=\"counter\",lane=\"completion\"}"
        ) >= 3.0
    );
    assert!(
        histogram(
            &body,
            "wazoo_plugin_lane_callback_seconds",
            "plugin=\"reporter\",lane=\"session\""
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &body,
            "wazoo_plugin_lane_failures_total{plugin=\"crashy\",lane=\"watch\"}"
        ),
        2.0
    );
    assert_eq!(
        metric(&body, "wazoo_plugin_traps_total{plugin=\"crashy\"}"),
        2.0
    );
    assert_eq!(
        metric(&body, "wazoo_plugin_restarts_total{plugin=\"crashy\"}"),
        1.0
    );
    assert_eq!(
        metric(&body, "wazoo_plugin_disabled{plugin=\"crashy\"}"),
        1.0
    );
    assert_eq!(metric(&body, "wazoo_plugins_disabled"), 1.0);
    assert_eq!(
        metric(&body, "wazoo_plugin_restarts_total{plugin=\"mirror\"}"),
        0.0
    );
    assert!(
        body.contains("Content-Type: text/plain; version=0.0.4"),
        "{body}"
    );
    assert!(metric(&body, "wazoo_plugin_calls_total{plugin=\"mirror\"}") >= 1.0);
    assert!(metric(&body, "wazoo_plugin_calls_total{plugin=\"counter\"}") >= 3.0);
    // Plugins that have run have computed for a moment, and well under a second.
    let computed = metric(
        &body,
        "wazoo_plugin_compute_seconds_total{plugin=\"counter\"}",
    );
    assert!(
        computed > 0.0 && computed < 1.0,
        "counter computed {computed} s"
    );
    assert_eq!(
        metric(&body, "wazoo_plugin_traps_total{plugin=\"audit\"}"),
        0.0
    );
    assert!(
        metric(
            &body,
            "wazoo_plugin_instantiations_total{plugin=\"reporter\"}"
        ) >= 1.0
    );
    assert_eq!(
        metric(&body, "wazoo_plugin_disabled{plugin=\"counter\"}"),
        0.0
    );
    assert_eq!(
        metric(&body, "wazoo_session_state{state=\"connected\"}"),
        1.0
    );
    assert_eq!(
        metric(&body, "wazoo_session_state{state=\"suspended\"}"),
        0.0
    );
    for lanes in ["client", "forward"] {
        for lane in ["session", "watch", "completion"] {
            let labels = format!("lanes=\"{lanes}\",lane=\"{lane}\"");
            metric(&body, &format!("wazoo_lane_events_total{{{labels}}}"));
            metric(&body, &format!("wazoo_lane_queue_depth{{{labels}}}"));
            metric(&body, &format!("wazoo_lane_busy_seconds_total{{{labels}}}"));
            histogram(&body, "wazoo_lane_callback_seconds", &labels);
        }
    }
    for plugin in ["mirror", "audit", "reporter", "counter", "crashy"] {
        for lane in ["session", "watch", "completion"] {
            let labels = format!("plugin=\"{plugin}\",lane=\"{lane}\"");
            metric(&body, &format!("wazoo_plugin_lane_queue_depth{{{labels}}}"));
            histogram(&body, "wazoo_plugin_lane_wait_seconds", &labels);
        }
    }
    assert!(
        metric(
            &body,
            "wazoo_lane_events_total{lanes=\"client\",lane=\"session\"}"
        ) >= 1.0
    );
    assert!(http_get(&metrics_addr, "/other").starts_with("HTTP/1.1 404"));

    // SIGHUP reloads every plugin; the watches stay armed.
    let reloaded = |l: &str| l.contains("plugin reloaded");
    assert_eq!(run.err.count(reloaded), 0);
    run.signal("HUP");
    run.err.wait_nth(5, "five reloads", WAIT, reloaded);
    zk.create("/config/b", b"after-hup", CreateMode::Persistent)
        .unwrap();
    wait_data(&rt, &zk, "/mirror/b", b"after-hup");

    // Rewriting a component file reloads that plugin alone.
    let bytes = std::fs::read(tmp.0.join("mirror.wasm")).unwrap();
    std::fs::write(tmp.0.join("mirror.wasm"), &bytes).unwrap();
    let line = run.err.wait_nth(6, "a sixth reload", WAIT, reloaded);
    assert!(line.contains("plugin=mirror"), "{line}");
    run.err.wait("the reason", WAIT, |l| {
        l.contains("reloading (its file changed)") && l.contains("plugin=mirror")
    });
    zk.create("/config/c", b"after-touch", CreateMode::Persistent)
        .unwrap();
    wait_data(&rt, &zk, "/mirror/c", b"after-touch");
    // The session never dropped.
    assert_eq!(
        zk.exists("/reporters/t").unwrap().unwrap().ephemeral_owner,
        owner
    );
    zk.close();

    // SIGTERM: a clean exit that stops the private server and removes its folder.
    run.signal("TERM");
    assert!(run.wait_exit(WAIT).success(), "{}", run.err.all());
    let log = run.err.all();
    for needle in [
        "SIGTERM: shutting down",
        "plugins unloaded",
        "closed the ZooKeeper session",
        "private ZooKeeper stopped",
    ] {
        assert!(log.contains(needle), "no {needle:?} in:\n{log}");
    }
    assert!(!log.contains("s3cret-pw"), "the credentials were logged");
    assert!(!dir.exists(), "{dir:?} was not removed");
    assert!(
        TcpStream::connect(&hosts).is_err(),
        "the private server still listens"
    );
}

/// The metrics address `wazoo run` announced.
fn metrics_address(run: &Proc) -> String {
    let line = run.out.wait("the metrics address", WAIT, |l| {
        l.starts_with("wazoo: metrics at http://")
    });
    line["wazoo: metrics at http://".len()..]
        .trim_end_matches("/metrics")
        .to_string()
}

/// Waits until `cond` holds for a scrape of the metrics endpoint (a bounded poll: the counters
/// have no event to await).
fn wait_metrics(addr: &str, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = http_get(addr, "/metrics");
        if cond(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {WAIT:?}; last scrape:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_with_events_in_flight_closes_the_session_at_once() {
    let tmp = TempDir::new("sigterm");
    let (_server, hosts) = server(&tmp);
    let config = |drain: &str, name: &str, rounds: u32| {
        format!(
            "[zookeeper]\nhosts = \"{hosts}\"\n[host]\ncache_dir = \"{}\"\nlog = \"json\"\n\
             metrics = \"127.0.0.1:0\"\n[shutdown]\ndrain_timeout = \"{drain}\"\n\
             close_timeout = \"20s\"\n\n{}{}{}",
            cache_dir().display(),
            plugin(
                "reporter",
                &guest("session_reporter"),
                &format!("config = {{ name = \"{name}\" }}\nwrite = [\"/reporters\"]\nbind = [{{ session = true }}]")
            ),
            plugin(
                "mirror",
                &guest("config_mirror"),
                "read = [\"/config\"]\nwrite = [\"/mirror\"]\nbind = [{ recursive = \"/config\" }]"
            ),
            plugin(
                "slow",
                &guest("slow_ok"),
                &format!("config = {{ path = \"/slow\", rounds = {rounds} }}\nread = [\"/slow\"]\nwrite = [\"/slow-done\"]\nwall_ms = 120000\ncompute_ms = 60000\nbind = [{{ recursive = \"/slow\" }}]")
            ),
        )
    };
    // 1. A long callback in flight and 301 events queued behind it on the shared watch lane:
    //    SIGTERM runs every one of them before the session is closed.
    let cfg = tmp.file("plugins.toml", &config("60s", "victim", 2000));
    let (mut run, announced) = start_run(&cfg, "run-json");
    assert_eq!(announced, hosts);
    let addr = metrics_address(&run);
    let (rt, zk) = client(&hosts);
    wait_data(&rt, &zk, "/reporters/victim", b"connected");
    // The log is JSON, one object a line, with the plugin's name as a field.
    let line = run.err.wait("the reporter's line", WAIT, |l| {
        l.contains("\"plugin\":\"reporter\"")
    });
    assert!(json(&line)["message"].is_string(), "{line}");

    zk.create("/slow", b"", CreateMode::Persistent).unwrap();
    run.err.wait("the slow callback started", WAIT, |l| {
        l.contains("\"plugin\":\"slow\"") && l.contains("rounds")
    });
    zk.create("/config", b"", CreateMode::Persistent).unwrap();
    let pending: Vec<_> = (0..300)
        .map(|i| {
            zk.async_client()
                .create(&format!("/config/k{i}"), b"x", CreateMode::Persistent)
        })
        .map(std::future::IntoFuture::into_future)
        .collect();
    for p in pending {
        rt.block_on(p).unwrap();
    }
    let mirror = "plugin=\"mirror\",lane=\"watch\"";
    let slow = "plugin=\"slow\",lane=\"watch\"";
    let body = wait_metrics(&addr, "the mirror's 301 events queued", |b| {
        metric(b, &format!("wazoo_plugin_lane_queue_depth{{{mirror}}}"))
            + metric(b, &format!("wazoo_plugin_lane_events_total{{{mirror}}}"))
            >= 301.0
    });
    assert_eq!(
        metric(&body, &format!("wazoo_plugin_lane_events_total{{{slow}}}")),
        0.0,
        "the slow callback is still running"
    );
    run.signal("TERM");
    let status = run.wait_exit(WAIT * 2);
    assert!(status.success(), "exit {status:?}:\n{}", run.err.all());
    run.err
        .wait("drained", WAIT, |l| l.contains("lanes drained"));
    // No callback was lost: the slow one finished and every queued event was mirrored.
    assert_eq!(zk.get_data("/slow-done").unwrap().0, b"finished");
    assert_eq!(zk.get_children("/mirror").unwrap().0.len(), 300);
    // The session was closed, not abandoned: its ephemeral is gone at once.
    assert_eq!(zk.exists("/reporters/victim").unwrap(), None);

    // 2. A callback that would run for minutes and a short drain timeout: wazoo gives up on it
    //    after shutdown.drain_timeout and still closes the session.
    zk.delete("/slow-done", None).unwrap();
    let cfg = tmp.file("stuck.toml", &config("300ms", "victim2", 1_000_000));
    let (mut run, _) = start_run(&cfg, "run-stuck");
    wait_data(&rt, &zk, "/reporters/victim2", b"connected");
    zk.set_data("/slow", b"go", None).unwrap();
    run.err.wait("the stuck callback started", WAIT, |l| {
        l.contains("\"plugin\":\"slow\"") && l.contains("1000000 rounds")
    });
    let t = Instant::now();
    run.signal("TERM");
    let status = run.wait_exit(WAIT);
    assert!(status.success(), "exit {status:?}:\n{}", run.err.all());
    run.err.wait("the drain timeout", WAIT, |l| {
        l.contains("did not drain within 300ms (shutdown.drain_timeout)")
    });
    assert!(
        t.elapsed() < Duration::from_secs(20),
        "exiting took {:?}",
        t.elapsed()
    );
    assert_eq!(zk.exists("/reporters/victim2").unwrap(), None);
    assert_eq!(
        zk.exists("/slow-done").unwrap(),
        None,
        "the callback was cut"
    );
    zk.close();
}
