//! Real ZooKeeper servers for tests: a standalone [`ZkServer`] and a quorum
//! [`Ensemble`], each JVM on fresh loopback ports with its own temporary
//! directory.
//!
//! # Process lifetime
//!
//! Every JVM is a direct child of the test process, so `stop`, `Drop` and
//! `is_running` act on it without indirection (`SIGKILL` + `wait`, no
//! zombies). Unwinding (a failing assertion) runs `Drop`. For deaths that
//! skip `Drop` (an abort, `SIGKILL` of the test binary, a server kept in a
//! `static`), each JVM has a watchdog: a tiny `sh` whose standard input is a
//! pipe held only by the test process. `read` in that shell returns when the
//! pipe closes, that is when the test process is gone however it died, and the
//! shell then kills the JVM. `Drop` kills and reaps the watchdog *before* it
//! kills and reaps the JVM, so the watchdog can never signal a recycled pid.
//!
//! # JVM flags
//!
//! Start-up dominates test time on a 2-core machine, so the JVMs run with
//! the serial collector, C1 only (`-XX:TieredStopAtLevel=1`), a 64-256 MiB
//! heap, no perf-data file, no admin server, no log4j JMX probing, and
//! `zookeeper.forceSync=no` (transaction logs are not fsynced: data still
//! survives the `SIGKILL` of [`ZkServer::stop`], which does not lose the page
//! cache). They also map a class-data-sharing archive of ZooKeeper's classes,
//! built once per machine in the background (see `cds_archive`), which cuts
//! about a third of each start's CPU.
//!
//! # Readiness
//!
//! `ruok` answers `imok` as soon as the client port is bound, long before the
//! server serves, so readiness is `srvr` showing a `Mode:` line (followed by
//! `conf` naming our data directory, in case another process won the race
//! for the port). Probes stop reading at the first complete answer: while
//! ZooKeeper 3.8.0 loads its database it answers "not currently serving
//! requests" and may then fail to close the socket.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::util::{
    four_letter_word, four_letter_word_until, free_port, launcher, log_tail, loopback,
    make_temp_dir, parse_mode, srvr_answer_complete, Launcher, KEEP_MARKER,
};

/// Lines of server log quoted in start-up errors.
const TAIL_LINES: usize = 30;
/// Read timeout of the four-letter words used to probe readiness.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Read timeout of [`ZkServer::four_letter`] and friends.
const FOUR_LETTER_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between readiness probes.
const POLL: Duration = Duration::from_millis(20);
/// How often start-up is retried on fresh ports after a port clash.
const START_ATTEMPTS: usize = 3;

/// JVM flags of every server (see the module documentation).
const BASE_JVM_ARGS: [&str; 11] = [
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.net.preferIPv4Stack=true",
    "-Dzookeeper.admin.enableServer=false",
    "-Dzookeeper.jmx.log4j.disable=true",
    "-Dzookeeper.forceSync=no",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
];

/// Settings shared by standalone servers and ensembles.
#[derive(Clone, Debug)]
struct Options {
    tick_time: u64,
    read_only: bool,
    extended_types: bool,
    startup_timeout: Duration,
    min_session_timeout: Option<u64>,
    max_session_timeout: Option<u64>,
    /// `localSessionsEnabled` (ensembles only); `None`: as `read_only`.
    local_sessions: Option<bool>,
    /// A TLS client port and/or SASL (see [`crate::secure`]).
    security: Option<crate::secure::ServerSecurity>,
}

impl Options {
    fn new(startup_timeout: Duration) -> Options {
        Options {
            tick_time: 2000,
            read_only: false,
            extended_types: true,
            startup_timeout,
            min_session_timeout: None,
            max_session_timeout: None,
            local_sessions: None,
            security: None,
        }
    }
}

/// Ports of one server.
#[derive(Clone, Copy, Debug)]
struct Ports {
    client: u16,
    quorum: u16,
    election: u16,
}

impl Ports {
    fn fresh() -> Ports {
        Ports {
            client: free_port(),
            quorum: free_port(),
            election: free_port(),
        }
    }
}

/// A running JVM and its watchdog.
struct Proc {
    jvm: Child,
    watchdog: Child,
    /// Length of the log when this JVM was started (its output follows).
    log_offset: u64,
}

impl Proc {
    /// Kills and reaps the watchdog, then the JVM (in that order: see the
    /// module documentation).
    fn kill(mut self) {
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        let _ = self.jvm.kill();
        let _ = self.jvm.wait();
    }
}

/// What a readiness probe saw.
enum Probe {
    /// `srvr` answered with this `Mode:`.
    Serving(String),
    /// The JVM runs but does not serve (yet); the text says what was seen.
    NotServing(String),
    /// The JVM is gone.
    Exited(ExitStatus),
    /// The JVM was stopped by the harness.
    Stopped,
}

/// One ZooKeeper JVM: its files, its configuration and maybe its process.
struct Instance {
    /// "ZooKeeper on 127.0.0.1:PORT" or "ensemble member N (127.0.0.1:PORT)".
    label: String,
    client_addr: SocketAddr,
    data_dir: PathBuf,
    cfg_path: PathBuf,
    log_path: PathBuf,
    jvm_args: Vec<String>,
    /// The TLS client port's address, if the server has one.
    secure_addr: Option<SocketAddr>,
    /// Jars appended to the launcher's classpath (netty, for secure servers).
    extra_classpath: String,
    /// Use the class-data-sharing archive when there is one.
    use_cds: bool,
    proc: Mutex<Option<Proc>>,
}

impl Instance {
    /// Writes the configuration into `dir`; starts nothing.
    fn prepare(
        label: String,
        dir: &Path,
        opts: &Options,
        ports: Ports,
        quorum: Option<(usize, &[Ports])>,
    ) -> Result<Instance> {
        let data_dir = dir.join("data");
        fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let mut cfg = String::new();
        writeln!(cfg, "tickTime={}", opts.tick_time)?;
        writeln!(cfg, "dataDir={}", data_dir.display())?;
        writeln!(cfg, "clientPort={}", ports.client)?;
        writeln!(cfg, "clientPortAddress=127.0.0.1")?;
        writeln!(cfg, "maxClientCnxns=0")?;
        writeln!(cfg, "admin.enableServer=false")?;
        writeln!(cfg, "4lw.commands.whitelist=*")?;
        if let Some(ms) = opts.min_session_timeout {
            writeln!(cfg, "minSessionTimeout={ms}")?;
        }
        if let Some(ms) = opts.max_session_timeout {
            writeln!(cfg, "maxSessionTimeout={ms}")?;
        }
        if opts.local_sessions.unwrap_or(opts.read_only) && quorum.is_some() {
            writeln!(cfg, "localSessionsEnabled=true")?;
            writeln!(cfg, "localSessionsUpgradingEnabled=true")?;
        }
        if let Some((index, all)) = quorum {
            // The leader waits initLimit ticks for a quorum of followers
            // before giving up and electing again; keep that stall short.
            writeln!(cfg, "initLimit=5")?;
            writeln!(cfg, "syncLimit=5")?;
            for (i, p) in all.iter().enumerate() {
                writeln!(
                    cfg,
                    "server.{}=127.0.0.1:{}:{}",
                    i + 1,
                    p.quorum,
                    p.election
                )?;
            }
            fs::write(data_dir.join("myid"), format!("{}\n", index + 1))?;
        }
        let mut secure_addr = None;
        let mut extra_classpath = String::new();
        let mut security_jvm_args = Vec::new();
        if let Some(sec) = &opts.security {
            let port = free_port();
            sec.apply(port, dir, &mut cfg, &mut security_jvm_args)?;
            secure_addr = sec.tls.as_ref().map(|_| loopback(port));
            extra_classpath = crate::secure::netty_classpath()?;
        }
        let cfg_path = dir.join("zoo.cfg");
        fs::write(&cfg_path, cfg).with_context(|| format!("writing {}", cfg_path.display()))?;

        let mut jvm_args: Vec<String> = BASE_JVM_ARGS.map(String::from).into();
        jvm_args.extend(security_jvm_args);
        if opts.extended_types {
            jvm_args.push("-Dzookeeper.extendedTypesEnabled=true".into());
        }
        if opts.read_only {
            jvm_args.push("-Dreadonlymode.enabled=true".into());
        }
        if quorum.is_some() {
            // Leader election backs off up to 60 s by default while it hears
            // nothing; cap it so a member that waited alone for its peers
            // notices them quickly once they are back.
            jvm_args.push("-Dzookeeper.fastleader.maxNotificationInterval=1000".into());
        }
        Ok(Instance {
            label,
            client_addr: loopback(ports.client),
            data_dir,
            cfg_path,
            log_path: dir.join("zookeeper.log"),
            jvm_args,
            secure_addr,
            extra_classpath,
            use_cds: true,
            proc: Mutex::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Proc>> {
        self.proc.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the JVM (and its watchdog); does not wait for it.
    fn spawn(&self) -> Result<()> {
        let mut guard = self.lock();
        if guard.is_some() {
            bail!("{} is already running", self.label);
        }
        let launcher = launcher()?;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        writeln!(log, "===== wazoo-tests: starting {} =====", self.label)?;
        let log_offset = log.metadata()?.len();
        let cds = if self.use_cds {
            cds_archive(&launcher)
        } else {
            None
        };
        let mut jvm = Command::new(&launcher.java)
            .args(&self.jvm_args)
            .args(cds.map(|a| format!("-XX:SharedArchiveFile={}", a.display())))
            .arg("-cp")
            .arg(if self.extra_classpath.is_empty() {
                launcher.classpath.clone()
            } else {
                format!("{}:{}", launcher.classpath, self.extra_classpath)
            })
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&self.cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {} for {}. Install Debian's `zookeeper` package or run .ci/run",
                    launcher.java.display(),
                    self.label
                )
            })?;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg("read -r line; kill -9 \"$0\" 2>/dev/null")
            .arg(jvm.id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let watchdog = match watchdog {
            Ok(w) => w,
            Err(e) => {
                let _ = jvm.kill();
                let _ = jvm.wait();
                return Err(e).context("spawning the `sh` watchdog of a ZooKeeper JVM");
            }
        };
        tracing::debug!(server = %self.label, pid = jvm.id(), "spawned ZooKeeper JVM");
        *guard = Some(Proc {
            jvm,
            watchdog,
            log_offset,
        });
        Ok(())
    }

    /// Kills the JVM if it runs; keeps all files.
    fn kill(&self) {
        let proc = self.lock().take();
        if let Some(proc) = proc {
            proc.kill();
            tracing::debug!(server = %self.label, "killed ZooKeeper JVM");
        }
    }

    /// Asks the JVM to exit (`SIGTERM`, running its shutdown hooks) and
    /// waits for it up to `timeout`, then kills it.
    fn terminate(&self, timeout: Duration) {
        let Some(mut proc) = self.lock().take() else {
            return;
        };
        let _ = proc.watchdog.kill();
        let _ = proc.watchdog.wait();
        // Not reaped yet, so the pid is still this JVM's.
        let _ = Command::new("sh")
            .arg("-c")
            .arg("kill -TERM \"$0\"")
            .arg(proc.jvm.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            match proc.jvm.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => {
                    let _ = proc.jvm.kill();
                    let _ = proc.jvm.wait();
                    return;
                }
            }
        }
    }

    /// The JVM's exit status if it ended by itself (reaping it then), `None`
    /// while it runs. `Err` if the harness stopped it.
    fn exit_status(&self) -> std::result::Result<Option<ExitStatus>, ()> {
        let mut guard = self.lock();
        let Some(proc) = guard.as_mut() else {
            return Err(());
        };
        match proc.jvm.try_wait() {
            Ok(None) => Ok(None),
            Ok(Some(status)) => {
                // Reaped: retire the watchdog at once so it cannot signal a
                // recycled pid.
                let _ = proc.watchdog.kill();
                let _ = proc.watchdog.wait();
                *guard = None;
                Ok(Some(status))
            }
            Err(_) => Ok(None),
        }
    }

    fn is_running(&self) -> bool {
        matches!(self.exit_status(), Ok(None))
    }

    fn four_letter(&self, word: &str) -> Result<String> {
        four_letter_word(self.client_addr, word, FOUR_LETTER_TIMEOUT)
            .with_context(|| format!("four-letter word `{word}` to {}", self.label))
    }

    fn probe(&self) -> Probe {
        match self.exit_status() {
            Err(()) => return Probe::Stopped,
            Ok(Some(status)) => return Probe::Exited(status),
            Ok(None) => {}
        }
        match four_letter_word_until(
            self.client_addr,
            "srvr",
            PROBE_TIMEOUT,
            srvr_answer_complete,
        ) {
            Ok(answer) => match parse_mode(&answer) {
                Some(mode) => Probe::Serving(mode),
                None => Probe::NotServing(format!("srvr answered {:?}", answer.trim())),
            },
            Err(e) => Probe::NotServing(format!("{e:#}")),
        }
    }

    /// Is the server answering on our port really ours? (Another process may
    /// have won the race for a port.) `conf` names the data directory.
    fn is_ours(&self) -> bool {
        match four_letter_word(self.client_addr, "conf", PROBE_TIMEOUT) {
            Ok(conf) => conf.contains(&*self.data_dir.to_string_lossy()),
            Err(_) => false,
        }
    }

    /// Did the JVM that just exited fail to bind one of its ports?
    fn exited_on_port_clash(&self, log_offset: u64) -> bool {
        let Ok(text) = fs::read(&self.log_path) else {
            return false;
        };
        let from = (log_offset as usize).min(text.len());
        let text = String::from_utf8_lossy(&text[from..]);
        text.contains("Address already in use") || text.contains("BindException")
    }

    fn current_log_offset(&self) -> u64 {
        self.lock().as_ref().map(|p| p.log_offset).unwrap_or(0)
    }

    fn log_tail(&self) -> String {
        log_tail(&self.log_path, TAIL_LINES)
    }
}

// ---------------------------------------------------------------------------
// Class-data sharing
//
// Loading and verifying ZooKeeper's classes is about a third of a server's
// start-up CPU. The first server start of a process (when no archive exists
// yet) starts, in a background thread, a throwaway server with
// `-XX:ArchiveClassesAtExit`, waits until it serves and stops it with
// SIGTERM; the JVM then writes a dynamic CDS archive of every class it
// loaded. Later JVMs map it with `-XX:SharedArchiveFile`. The archive lives
// in the temporary directory under a name that hashes the java binary, the
// classpath (with sizes and mtimes) and the flags, so an upgrade makes a new
// one; a stale or broken archive is ignored by the JVM (`-Xshare:auto`).
// `WAZOO_ZK_CDS=0` turns this off.

/// The archive to use now, if it exists; otherwise starts building it (once
/// per process) and returns `None`.
fn cds_archive(launcher: &Launcher) -> Option<PathBuf> {
    static BUILD: Once = Once::new();
    if std::env::var_os("WAZOO_ZK_CDS").is_some_and(|v| v == "0") {
        return None;
    }
    let path = cds_archive_path(launcher);
    if path.is_file() {
        return Some(path);
    }
    BUILD.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("wazoo-zk-cds".into())
            .spawn(move || {
                let begun = Instant::now();
                match build_cds_archive(&path) {
                    Ok(()) => tracing::info!(
                        archive = %path.display(),
                        elapsed_ms = begun.elapsed().as_millis() as u64,
                        "built the ZooKeeper class-data-sharing archive"
                    ),
                    Err(e) => tracing::warn!("no ZooKeeper class-data-sharing archive: {e:#}"),
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start building the CDS archive: {e}");
        }
    });
    None
}

fn cds_archive_path(launcher: &Launcher) -> PathBuf {
    fn file_identity(path: &Path, h: &mut DefaultHasher) {
        let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        path.hash(h);
        if let Ok(meta) = fs::metadata(&path) {
            meta.len().hash(h);
            meta.modified().ok().hash(h);
        }
    }
    let mut h = DefaultHasher::new();
    "wazoo-zk-cds-v1".hash(&mut h);
    BASE_JVM_ARGS.hash(&mut h);
    file_identity(&launcher.java, &mut h);
    launcher.classpath.hash(&mut h);
    for entry in launcher.classpath.split(':') {
        file_identity(Path::new(entry), &mut h);
    }
    std::env::temp_dir().join(format!("wazoo-zk-cds-{:016x}.jsa", h.finish()))
}

fn build_cds_archive(path: &Path) -> Result<()> {
    let dir = make_temp_dir()?;
    let result = (|| {
        let tmp = path.with_extension(format!("jsa.tmp-{}", std::process::id()));
        let ports = Ports {
            client: free_port(),
            quorum: 0,
            election: 0,
        };
        let opts = Options::new(Duration::from_secs(60));
        let label = format!("CDS archive builder on 127.0.0.1:{}", ports.client);
        let mut inst = Instance::prepare(label, &dir, &opts, ports, None)?;
        inst.use_cds = false;
        inst.jvm_args
            .push(format!("-XX:ArchiveClassesAtExit={}", tmp.display()));
        inst.spawn()?;
        let ready = wait_serving(
            &[&inst],
            opts.startup_timeout,
            "the CDS builder to serve",
            &|m| m == "standalone",
        );
        inst.terminate(Duration::from_secs(30));
        ready?;
        let size = fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
        if size == 0 {
            let _ = fs::remove_file(&tmp);
            bail!("the JVM wrote no archive; log tail:\n{}", inst.log_tail());
        }
        fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
        Ok(())
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

/// Why waiting for servers failed.
enum WaitError {
    /// A JVM exited; `port_clash` if it failed to bind a port.
    Exited {
        port_clash: bool,
        error: anyhow::Error,
    },
    /// Some other failure (time-out, stopped member...).
    Other(anyhow::Error),
}

impl From<WaitError> for anyhow::Error {
    fn from(e: WaitError) -> anyhow::Error {
        match e {
            WaitError::Exited { error, .. } | WaitError::Other(error) => error,
        }
    }
}

/// Waits until every instance in `which` serves in a mode `accept` likes and
/// has shown it is really ours. `what` names the goal in the error message.
fn wait_serving(
    members: &[&Instance],
    timeout: Duration,
    what: &str,
    accept: &dyn Fn(&str) -> bool,
) -> std::result::Result<(), WaitError> {
    let start = Instant::now();
    let mut ready = vec![false; members.len()];
    let mut last: Vec<String> = vec!["not probed yet".into(); members.len()];
    loop {
        for (i, m) in members.iter().enumerate() {
            if ready[i] {
                continue;
            }
            let log_offset = m.current_log_offset();
            match m.probe() {
                Probe::Serving(mode) if accept(&mode) => {
                    if m.is_ours() {
                        ready[i] = true;
                    } else {
                        last[i] = format!(
                            "a server answers on {} but `conf` does not name our data dir {}",
                            m.client_addr,
                            m.data_dir.display()
                        );
                    }
                }
                Probe::Serving(mode) => last[i] = format!("Mode: {mode}"),
                Probe::NotServing(why) => last[i] = why,
                Probe::Exited(status) => {
                    let port_clash = m.exited_on_port_clash(log_offset);
                    return Err(WaitError::Exited {
                        port_clash,
                        error: anyhow!(
                            "{} exited ({status}) before serving{}; log tail ({}):\n{}",
                            m.label,
                            if port_clash {
                                " (port already in use)"
                            } else {
                                ""
                            },
                            m.log_path.display(),
                            m.log_tail()
                        ),
                    });
                }
                Probe::Stopped => {
                    return Err(WaitError::Other(anyhow!(
                        "{} is stopped; cannot wait for {what}",
                        m.label
                    )))
                }
            }
        }
        if ready.iter().all(|r| *r) {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            let mut msg = format!("timed out after {timeout:?} waiting for {what}");
            for (i, m) in members.iter().enumerate() {
                if !ready[i] {
                    write!(
                        msg,
                        "\n--- {} last seen: {}; log tail ({}):\n{}",
                        m.label,
                        last[i],
                        m.log_path.display(),
                        m.log_tail()
                    )
                    .ok();
                }
            }
            return Err(WaitError::Other(anyhow!(msg)));
        }
        std::thread::sleep(POLL);
    }
}

/// Keeps test directories when `WAZOO_KEEP_TEST_DIRS` is set.
fn keep_dirs() -> bool {
    std::env::var_os("WAZOO_KEEP_TEST_DIRS").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Removes a test directory, unless asked to keep it. While the thread
/// panics, prints the log tails first: they are the likeliest clue.
fn cleanup(dir: &Path, instances: &[&Instance]) {
    if std::thread::panicking() {
        for inst in instances {
            eprintln!(
                "--- wazoo-tests: log tail of {} ({}):\n{}",
                inst.label,
                inst.log_path.display(),
                log_tail(&inst.log_path, 20)
            );
        }
    }
    if keep_dirs() {
        // The marker keeps other test processes' sweeps away from it.
        let _ = fs::write(dir.join(KEEP_MARKER), b"");
        eprintln!("wazoo-tests: keeping {}", dir.display());
    } else {
        let _ = fs::remove_dir_all(dir);
    }
}

// ---------------------------------------------------------------------------
// Standalone server

/// A standalone ZooKeeper server (a real JVM) on a free loopback port.
///
/// Dropping it kills the JVM and removes its temporary directory. All
/// methods take `&self`; a `ZkServer` is `Send + Sync` and can be shared.
/// Methods that wait (`start`, `start_again`) block the calling thread.
pub struct ZkServer {
    dir: PathBuf,
    inst: Instance,
    opts: Options,
}

/// Settings for a [`ZkServer`]; made by [`ZkServer::builder`].
#[derive(Clone, Debug)]
pub struct ZkServerBuilder {
    opts: Options,
}

impl ZkServerBuilder {
    /// ZooKeeper's `tickTime` in milliseconds (default 2000). Sessions may
    /// last from 2 to 20 ticks unless set otherwise.
    pub fn tick_time(mut self, ms: u64) -> Self {
        self.opts.tick_time = ms;
        self
    }

    /// Sets `-Dreadonlymode.enabled` (default false). A standalone server is
    /// always read-write; this matters only to the flag the server reports.
    pub fn read_only(mut self, on: bool) -> Self {
        self.opts.read_only = on;
        self
    }

    /// Sets `-Dzookeeper.extendedTypesEnabled` (default **true**, so TTL
    /// nodes work).
    pub fn extended_types(mut self, on: bool) -> Self {
        self.opts.extended_types = on;
        self
    }

    /// `minSessionTimeout` in milliseconds (ZooKeeper's default: 2 ticks).
    pub fn min_session_timeout(mut self, ms: u64) -> Self {
        self.opts.min_session_timeout = Some(ms);
        self
    }

    /// `maxSessionTimeout` in milliseconds (ZooKeeper's default: 20 ticks).
    pub fn max_session_timeout(mut self, ms: u64) -> Self {
        self.opts.max_session_timeout = Some(ms);
        self
    }

    /// How long `start` and `start_again` wait for the server (default 30 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.opts.startup_timeout = timeout;
        self
    }

    /// A TLS client port ([`ZkServer::secure_addr`]) and/or SASL users: see
    /// [`ServerSecurity`](crate::ServerSecurity).
    pub fn security(mut self, security: crate::ServerSecurity) -> Self {
        self.opts.security = Some(security);
        self
    }

    /// Starts the server and waits until it serves (`srvr` shows
    /// `Mode: standalone`). Retries on fresh ports if the port was taken.
    pub fn start(self) -> Result<ZkServer> {
        let begun = Instant::now();
        let mut attempt = 1;
        loop {
            let dir = make_temp_dir()?;
            let ports = Ports {
                client: free_port(),
                quorum: 0,
                election: 0,
            };
            let inst = Instance::prepare(
                format!("ZooKeeper on 127.0.0.1:{}", ports.client),
                &dir,
                &self.opts,
                ports,
                None,
            );
            let server = match inst {
                Ok(inst) => ZkServer {
                    dir,
                    inst,
                    opts: self.opts.clone(),
                },
                Err(e) => {
                    let _ = fs::remove_dir_all(&dir);
                    return Err(e);
                }
            };
            server.inst.spawn()?;
            match server.wait_ready() {
                Ok(()) => {
                    tracing::info!(
                        server = %server.inst.label,
                        elapsed_ms = begun.elapsed().as_millis() as u64,
                        "ZooKeeper standalone server ready"
                    );
                    return Ok(server);
                }
                Err(WaitError::Exited {
                    port_clash: true,
                    error,
                }) if attempt < START_ATTEMPTS => {
                    tracing::warn!("{error:#}; retrying on a fresh port");
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl ZkServer {
    /// Starts a standalone server with default settings and waits until it
    /// serves.
    pub fn start() -> Result<ZkServer> {
        ZkServer::builder().start()
    }

    /// Settings for a server: see [`ZkServerBuilder`].
    pub fn builder() -> ZkServerBuilder {
        ZkServerBuilder {
            opts: Options::new(Duration::from_secs(30)),
        }
    }

    fn wait_ready(&self) -> std::result::Result<(), WaitError> {
        wait_serving(
            &[&self.inst],
            self.opts.startup_timeout,
            &format!(
                "{} to serve (`srvr` showing `Mode: standalone`)",
                self.inst.label
            ),
            &|mode| mode == "standalone",
        )
    }

    /// The client address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.inst.client_addr
    }

    /// The TLS client port's address, when the server has one
    /// ([`ZkServerBuilder::security`]).
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        self.inst.secure_addr
    }

    /// The connect string for clients, `"127.0.0.1:PORT"`.
    pub fn connect_string(&self) -> String {
        self.inst.client_addr.to_string()
    }

    /// Kills the server (`SIGKILL`, like a crash) and keeps its data
    /// directory. Does nothing if it is not running.
    pub fn stop(&self) {
        self.inst.kill();
    }

    /// Starts the server again on the same port with the same data, and
    /// waits until it serves. Fails if it is running.
    pub fn start_again(&self) -> Result<()> {
        if self.is_running() {
            bail!("{} is running; stop it before start_again", self.inst.label);
        }
        let begun = Instant::now();
        self.inst.spawn()?;
        self.wait_ready()?;
        tracing::info!(
            server = %self.inst.label,
            elapsed_ms = begun.elapsed().as_millis() as u64,
            "ZooKeeper standalone server ready again"
        );
        Ok(())
    }

    /// Whether the JVM is alive (it may not be serving yet).
    pub fn is_running(&self) -> bool {
        self.inst.is_running()
    }

    /// Sends a four-letter word (`srvr`, `stat`, `cons`, `mntr`, `isro`,
    /// `ruok`...) and returns the answer.
    pub fn four_letter(&self, word: &str) -> Result<String> {
        self.inst.four_letter(word)
    }

    /// The server's data directory (kept by `stop`).
    pub fn data_dir(&self) -> &Path {
        &self.inst.data_dir
    }

    /// The file that receives the JVM's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.inst.log_path
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.inst.kill();
        cleanup(&self.dir, &[&self.inst]);
    }
}

impl std::fmt::Debug for ZkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkServer")
            .field("addr", &self.inst.client_addr)
            .field("dir", &self.dir)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Ensemble

/// A quorum of `n` ZooKeeper servers (real JVMs) on loopback ports.
///
/// Members are numbered from 0; member `i` has `myid` `i + 1`. Dropping the
/// ensemble kills every member and removes the temporary directory. Methods
/// take `&self` and block while they wait; they panic on a member index out
/// of range.
pub struct Ensemble {
    dir: PathBuf,
    members: Vec<Instance>,
    opts: Options,
}

/// Settings for an [`Ensemble`]; made by [`Ensemble::builder`].
#[derive(Clone, Debug)]
pub struct EnsembleBuilder {
    n: usize,
    opts: Options,
}

impl EnsembleBuilder {
    /// Sets `-Dreadonlymode.enabled` (default false): a member cut off from
    /// the quorum then serves read-only clients (`Mode: read-only`, `isro`
    /// answers `ro`) after about `max(2 s, tickTime)`.
    ///
    /// Unless [`EnsembleBuilder::local_sessions`] says otherwise, this also
    /// enables local sessions, without which ZooKeeper 3.8's read-only server
    /// accepts no client at all: it answers every new session's
    /// `createSession` with `NOTREADONLY` (a bare reply header instead of a
    /// ConnectResponse). Whatever the setting, it refuses to resume a global
    /// session (one that owns ephemerals, or any session without local
    /// sessions) and refuses clients that do not accept read-only servers;
    /// a client there needs a new session.
    pub fn read_only(mut self, on: bool) -> Self {
        self.opts.read_only = on;
        self
    }

    /// Sets `localSessionsEnabled` and `localSessionsUpgradingEnabled`
    /// (default: the same as [`EnsembleBuilder::read_only`]). A local
    /// session lives only on the member that created it, until it creates an
    /// ephemeral node, which upgrades it to a global session.
    pub fn local_sessions(mut self, on: bool) -> Self {
        self.opts.local_sessions = Some(on);
        self
    }

    /// ZooKeeper's `tickTime` in milliseconds (default 2000). `initLimit` and
    /// `syncLimit` are 5 ticks each.
    pub fn tick_time(mut self, ms: u64) -> Self {
        self.opts.tick_time = ms;
        self
    }

    /// Sets `-Dzookeeper.extendedTypesEnabled` (default **true**).
    pub fn extended_types(mut self, on: bool) -> Self {
        self.opts.extended_types = on;
        self
    }

    /// `minSessionTimeout` in milliseconds (ZooKeeper's default: 2 ticks).
    pub fn min_session_timeout(mut self, ms: u64) -> Self {
        self.opts.min_session_timeout = Some(ms);
        self
    }

    /// `maxSessionTimeout` in milliseconds (ZooKeeper's default: 20 ticks).
    pub fn max_session_timeout(mut self, ms: u64) -> Self {
        self.opts.max_session_timeout = Some(ms);
        self
    }

    /// How long `start` waits for the quorum and `start_again` for a member
    /// (default 60 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.opts.startup_timeout = timeout;
        self
    }

    /// A TLS client port on every member ([`Ensemble::secure_connect_string`]) and/or SASL
    /// users: see [`ServerSecurity`](crate::ServerSecurity).
    pub fn security(mut self, security: crate::ServerSecurity) -> Self {
        self.opts.security = Some(security);
        self
    }

    /// Starts all members at once and waits until they form a quorum (one
    /// leader, the rest followers). Retries on fresh ports after a port
    /// clash.
    pub fn start(self) -> Result<Ensemble> {
        if self.n == 0 {
            bail!("an ensemble needs at least one member");
        }
        let begun = Instant::now();
        let mut attempt = 1;
        loop {
            let dir = make_temp_dir()?;
            let ensemble = match self.prepare(dir.clone()) {
                Ok(e) => e,
                Err(e) => {
                    let _ = fs::remove_dir_all(&dir);
                    return Err(e);
                }
            };
            for m in &ensemble.members {
                m.spawn()?;
            }
            match ensemble.wait_quorum_inner(self.opts.startup_timeout) {
                Ok(()) => {
                    tracing::info!(
                        members = self.n,
                        connect = %ensemble.connect_string(),
                        elapsed_ms = begun.elapsed().as_millis() as u64,
                        "ZooKeeper ensemble ready"
                    );
                    return Ok(ensemble);
                }
                Err(WaitError::Exited {
                    port_clash: true,
                    error,
                }) if attempt < START_ATTEMPTS => {
                    tracing::warn!("{error:#}; retrying the ensemble on fresh ports");
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn prepare(&self, dir: PathBuf) -> Result<Ensemble> {
        let ports: Vec<Ports> = (0..self.n).map(|_| Ports::fresh()).collect();
        let mut members = Vec::with_capacity(self.n);
        for (i, p) in ports.iter().enumerate() {
            let member_dir = dir.join(format!("member-{i}"));
            members.push(Instance::prepare(
                format!("ensemble member {i} (127.0.0.1:{})", p.client),
                &member_dir,
                &self.opts,
                *p,
                Some((i, &ports)),
            )?);
        }
        Ok(Ensemble {
            dir,
            members,
            opts: self.opts.clone(),
        })
    }
}

impl Ensemble {
    /// Starts `n` members with default settings and waits for the quorum.
    pub fn start(n: usize) -> Result<Ensemble> {
        Ensemble::builder(n).start()
    }

    /// Settings for an ensemble of `n` members: see [`EnsembleBuilder`].
    pub fn builder(n: usize) -> EnsembleBuilder {
        EnsembleBuilder {
            n,
            opts: Options::new(Duration::from_secs(60)),
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: an ensemble has at least one member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// All members' client addresses, comma-separated (`"127.0.0.1:P1,..."`).
    pub fn connect_string(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client_addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client address of member `i`.
    pub fn member_addr(&self, i: usize) -> SocketAddr {
        self.members[i].client_addr
    }

    /// All members' TLS client addresses, comma-separated; empty when the ensemble has no
    /// TLS ports ([`EnsembleBuilder::security`]).
    pub fn secure_connect_string(&self) -> String {
        self.members
            .iter()
            .filter_map(|m| m.secure_addr.map(|a| a.to_string()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// TLS client address of member `i`, if it has one.
    pub fn member_secure_addr(&self, i: usize) -> Option<SocketAddr> {
        self.members[i].secure_addr
    }

    /// Whether member `i`'s JVM is alive.
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].is_running()
    }

    /// Sends a four-letter word to member `i`.
    pub fn four_letter(&self, i: usize, word: &str) -> Result<String> {
        self.members[i].four_letter(word)
    }

    /// Member `i`'s `Mode:` (`leader`, `follower`, `read-only`, or
    /// `standalone` for a single member); an error if it is stopped or not
    /// serving.
    pub fn mode(&self, i: usize) -> Result<String> {
        let m = &self.members[i];
        match m.probe() {
            Probe::Serving(mode) => Ok(mode),
            Probe::NotServing(why) => Err(anyhow!("{} is not serving: {why}", m.label)),
            Probe::Exited(status) => Err(anyhow!(
                "{} has exited ({status}); log tail:\n{}",
                m.label,
                m.log_tail()
            )),
            Probe::Stopped => Err(anyhow!("{} is stopped", m.label)),
        }
    }

    /// The index of the single member whose `srvr` says `Mode: leader` (or
    /// `standalone`, for a single member); an error if there is none or more
    /// than one (no waiting).
    pub fn leader(&self) -> Result<usize> {
        let modes = self.modes();
        let leaders: Vec<usize> = modes
            .iter()
            .enumerate()
            .filter(|(_, m)| matches!(m.as_deref(), Some("leader" | "standalone")))
            .map(|(i, _)| i)
            .collect();
        match leaders[..] {
            [one] => Ok(one),
            _ => bail!(
                "expected exactly one leader, members report: {}",
                describe_modes(&modes)
            ),
        }
    }

    /// Every member's mode, `None` where it is stopped or not serving.
    fn modes(&self) -> Vec<Option<String>> {
        self.members
            .iter()
            .map(|m| match m.probe() {
                Probe::Serving(mode) => Some(mode),
                _ => None,
            })
            .collect()
    }

    /// Kills member `i` (`SIGKILL`, like a crash), keeping its data.
    pub fn stop(&self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again (same ports, same data) and waits until it
    /// serves: as leader or follower if a majority of members is running,
    /// in any mode (such as `read-only`) otherwise.
    pub fn start_again(&self, i: usize) -> Result<()> {
        let m = &self.members[i];
        if m.is_running() {
            bail!("{} is running; stop it before start_again", m.label);
        }
        let begun = Instant::now();
        m.spawn()?;
        let running = self.members.iter().filter(|m| m.is_running()).count();
        let quorate = running > self.members.len() / 2;
        let what = if quorate {
            format!(
                "{} to rejoin the quorum (`Mode: leader` or `follower`)",
                m.label
            )
        } else {
            format!("{} to serve (a `Mode:` line in `srvr`)", m.label)
        };
        wait_serving(&[m], self.opts.startup_timeout, &what, &|mode| {
            !quorate || matches!(mode, "leader" | "follower" | "standalone")
        })?;
        tracing::info!(
            server = %m.label,
            elapsed_ms = begun.elapsed().as_millis() as u64,
            "ensemble member ready again"
        );
        Ok(())
    }

    /// Waits until the running members form a quorum: a majority of all
    /// members runs, every running member is leader or follower, and there
    /// is exactly one leader.
    pub fn wait_quorum(&self, timeout: Duration) -> Result<()> {
        self.wait_quorum_inner(timeout).map_err(Into::into)
    }

    fn wait_quorum_inner(&self, timeout: Duration) -> std::result::Result<(), WaitError> {
        let n = self.members.len();
        let running: Vec<&Instance> = self.members.iter().filter(|m| m.is_running()).collect();
        if running.len() <= n / 2 {
            return Err(WaitError::Other(anyhow!(
                "only {} of {n} ensemble members run; a quorum needs {}",
                running.len(),
                n / 2 + 1
            )));
        }
        let deadline = Instant::now() + timeout;
        let accept = |mode: &str| matches!(mode, "leader" | "follower" | "standalone");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            wait_serving(
                &running,
                left,
                "every running member to lead or follow",
                &accept,
            )?;
            // Each member serves; make sure they agree on one leader (a
            // member may still report an old term's role).
            let modes = self.modes();
            let leaders = modes
                .iter()
                .filter(|m| matches!(m.as_deref(), Some("leader" | "standalone")))
                .count();
            let serving = modes
                .iter()
                .filter(|m| m.as_deref().is_some_and(accept))
                .count();
            if leaders == 1 && serving == running.len() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(WaitError::Other(anyhow!(
                    "the ensemble did not settle on one leader within {timeout:?}: {}",
                    describe_modes(&modes)
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Member `i`'s data directory.
    pub fn data_dir(&self, i: usize) -> &Path {
        &self.members[i].data_dir
    }

    /// The file that receives member `i`'s stdout and stderr.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.members[i].log_path
    }
}

fn describe_modes(modes: &[Option<String>]) -> String {
    modes
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{i}: {}", m.as_deref().unwrap_or("not serving")))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        // Retire every watchdog first, then kill every JVM before reaping
        // any, so the survivors do not start elections one by one.
        let mut procs: Vec<Proc> = self
            .members
            .iter()
            .filter_map(|m| m.lock().take())
            .collect();
        for p in &mut procs {
            let _ = p.watchdog.kill();
            let _ = p.watchdog.wait();
        }
        for p in &mut procs {
            let _ = p.jvm.kill();
        }
        for p in &mut procs {
            let _ = p.jvm.wait();
        }
        let members: Vec<&Instance> = self.members.iter().collect();
        cleanup(&self.dir, &members);
    }
}

impl std::fmt::Debug for Ensemble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ensemble")
            .field("connect_string", &self.connect_string())
            .field("dir", &self.dir)
            .finish()
    }
}

// Servers are shared between tasks and threads in tests.
const _: () = {
    const fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<ZkServer>();
    is_send_sync::<Ensemble>();
};
