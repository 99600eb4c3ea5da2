//! A private ZooKeeper for `wazoo run` when no hosts are configured: one standalone server from
//! Debian's `zookeeper` package, on a free loopback port, in a temporary folder that is removed
//! when it stops.
//!
//! The JVM runs in a process group of its own, so a Ctrl-C at the terminal reaches only `wazoo`,
//! which closes its session before it stops the server. Should `wazoo` die without stopping it
//! (SIGKILL), a guard shell, whose standard input is a pipe only `wazoo` holds, sees the pipe
//! close and kills the JVM.
//!
//! Ready means answering `srvr` with a `Mode:` line, and `conf` naming this server's data
//! folder (another process could have taken the port between our probe and the JVM's bind).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};

/// The jars the server needs, from Debian's `zookeeper` package.
const JARS: [&str; 6] = [
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "slf4j-api.jar",
    "slf4j-simple.jar",
    "metrics-core.jar",
    "snappy-java.jar",
];

/// JVM flags: a small heap and quick start-up, no admin server; TTL nodes enabled
/// (`extendedTypesEnabled`), and no fsync of the transaction log (a throwaway server).
const JVM_FLAGS: [&str; 7] = [
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Dzookeeper.admin.enableServer=false",
    "-Dzookeeper.extendedTypesEnabled=true",
    "-Dzookeeper.forceSync=no",
];

/// How long a start may take before it is given up.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Attempts on fresh ports when the port was taken meanwhile.
const ATTEMPTS: usize = 3;

/// A running private ZooKeeper. Stopped (and its folder removed) by [`LocalZk::stop`] or on drop.
#[derive(Debug)]
pub struct LocalZk {
    dir: PathBuf,
    port: u16,
    jvm: Option<Child>,
    guard: Option<Child>,
}

impl LocalZk {
    /// Starts a server and waits until it serves. `cancel` aborts the wait (a signal arrived):
    /// whatever was started is stopped and removed.
    pub fn start(cancel: &AtomicBool) -> Result<LocalZk> {
        let jars = std::env::var_os("WAZOO_ZK_JARS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/share/java"));
        let missing: Vec<&str> = JARS
            .iter()
            .copied()
            .filter(|j| !jars.join(j).is_file())
            .collect();
        if !missing.is_empty() {
            bail!(
                "cannot start a private ZooKeeper: {} missing in {} (install Debian's zookeeper \
                 package, e.g. with scripts/setup.sh, point WAZOO_ZK_JARS at the jars, or set \
                 zookeeper.hosts)",
                missing.join(", "),
                jars.display()
            );
        }
        let classpath = std::env::join_paths(JARS.iter().map(|j| jars.join(j)))
            .context("building the class path")?;
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let dir = make_dir()?;
            let mut zk = LocalZk {
                dir,
                port: free_port()?,
                jvm: None,
                guard: None,
            };
            match zk.launch(&classpath, cancel) {
                Ok(()) => return Ok(zk),
                Err(e) => {
                    let retry = e.to_string().contains("Address already in use")
                        || e.to_string().contains("another server");
                    zk.stop();
                    if !retry || cancel.load(Ordering::Relaxed) {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("cannot start a private ZooKeeper")))
    }

    /// `127.0.0.1:PORT`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's temporary folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn launch(&mut self, classpath: &std::ffi::OsStr, cancel: &AtomicBool) -> Result<()> {
        let data = self.dir.join("data");
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        let mut cfg = String::new();
        writeln!(cfg, "tickTime=2000")?;
        writeln!(cfg, "dataDir={}", data.display())?;
        writeln!(cfg, "clientPort={}", self.port)?;
        writeln!(cfg, "clientPortAddress=127.0.0.1")?;
        writeln!(cfg, "maxClientCnxns=0")?;
        writeln!(cfg, "admin.enableServer=false")?;
        writeln!(cfg, "4lw.commands.whitelist=*")?;
        let cfg_path = self.dir.join("zoo.cfg");
        std::fs::write(&cfg_path, cfg)
            .with_context(|| format!("writing {}", cfg_path.display()))?;
        let log_path = self.dir.join("zookeeper.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let jvm = Command::new("java")
            .args(JVM_FLAGS)
            .arg("-cp")
            .arg(classpath)
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| {
                anyhow!("cannot start a private ZooKeeper: running `java` failed: {e} (is a Java runtime on PATH? scripts/setup.sh installs one)")
            })?;
        let pid = jvm.id();
        self.jvm = Some(jvm);
        // The guard: kills the JVM when our end of its stdin closes, that is when we are gone.
        let guard = Command::new("sh")
            .arg("-c")
            .arg("read _ignored; kill -9 \"$0\" 2>/dev/null")
            .arg(pid.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the guard shell of the private ZooKeeper")?;
        self.guard = Some(guard);
        self.wait_ready(&log_path, cancel)
    }

    fn wait_ready(&mut self, log_path: &Path, cancel: &AtomicBool) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let data = self.dir.join("data");
        loop {
            if cancel.load(Ordering::Relaxed) {
                bail!("interrupted while the private ZooKeeper was starting");
            }
            if let Some(jvm) = self.jvm.as_mut() {
                if let Some(status) = jvm.try_wait()? {
                    bail!(
                        "the private ZooKeeper exited during start-up ({status}); its log ends:\n{}",
                        tail(log_path, 20)
                    );
                }
            }
            let srvr = four_letter(addr, "srvr");
            if srvr.lines().any(|l| l.starts_with("Mode:")) {
                let conf = four_letter(addr, "conf");
                if conf.contains(&*data.to_string_lossy()) {
                    return Ok(());
                }
                if !conf.is_empty() {
                    bail!(
                        "another server answers on port {} (Address already in use)",
                        self.port
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "the private ZooKeeper did not serve within {START_TIMEOUT:?}; its log ends:\n{}",
                    tail(log_path, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (kill, wait) and removes its folder. Idempotent.
    pub fn stop(&mut self) {
        // The guard first: once the JVM is reaped its pid may be reused.
        if let Some(mut g) = self.guard.take() {
            let _ = g.kill();
            let _ = g.wait();
        }
        if let Some(mut jvm) = self.jvm.take() {
            let _ = jvm.kill();
            let _ = jvm.wait();
        }
        if self.dir.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), "cannot remove the private ZooKeeper's folder: {e}");
            }
        }
    }
}

impl Drop for LocalZk {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh folder under the system's temporary folder.
fn make_dir() -> Result<PathBuf> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    for i in 0..100u32 {
        let dir =
            std::env::temp_dir().join(format!("wazoo-zk-{}-{:08x}{i}", std::process::id(), nanos));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    bail!("cannot create a temporary folder for the private ZooKeeper")
}

/// A port that was free a moment ago.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// Sends a four-letter word and reads the answer (empty on any failure). Stops reading at the
/// first complete answer: a server still loading may keep the socket open.
fn four_letter(addr: SocketAddr, word: &str) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(word.as_bytes()).is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&out);
                let done = match word {
                    "srvr" => {
                        text.contains("Node count:") || text.contains("not currently serving")
                    }
                    _ => false,
                };
                if done {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
