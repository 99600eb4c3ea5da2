//! Small helpers shared by the server launcher and the proxy: port allocation,
//! temporary directories, log tails, four-letter words, locating Java and the
//! ZooKeeper jars.

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};

/// Ports handed out by [`free_port`] in this process; never handed out twice.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding `127.0.0.1:0`, reading the port the kernel
/// chose and closing the socket again. The same process never gets the same
/// port twice, so tests running in parallel threads cannot collide with each
/// other. Another process may still take the port before the server binds it;
/// [`ZkServer`](crate::ZkServer) and [`Ensemble`](crate::Ensemble) detect a
/// failed bind and retry on fresh ports.
///
/// # Panics
///
/// Panics if no port can be bound at all on 127.0.0.1 (the loopback
/// interface is unusable), which no test could survive anyway.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind any TCP port on 127.0.0.1");
        let port = listener
            .local_addr()
            .expect("local_addr of a bound listener")
            .port();
        drop(listener);
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("free_port: the kernel keeps returning ports this process already handed out");
}

/// `127.0.0.1:port`.
pub(crate) fn loopback(port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
}

static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);
const DIR_PREFIX: &str = "wazoo-test-";
/// A file in a test directory that `WAZOO_KEEP_TEST_DIRS` kept, so that no
/// sweep removes it.
pub(crate) const KEEP_MARKER: &str = "KEPT";

/// Creates a fresh directory `<temp_dir>/wazoo-test-<pid>-<counter>-<nanos>`.
///
/// The first call in a process also removes directories left behind by
/// test processes that no longer exist (killed before their `Drop` could
/// run, or holding a server in a `static`), except kept ones.
pub(crate) fn make_temp_dir() -> Result<PathBuf> {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(sweep_stale_dirs);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{n}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Removes `wazoo-test-<pid>-*` directories, and half-written class-data
/// archives (`*.jsa.tmp-<pid>`), whose process is gone.
fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let me = std::process::id();
    let gone = |pid: &str| {
        pid.parse::<u32>()
            .is_ok_and(|pid| pid != me && !Path::new(&format!("/proc/{pid}")).exists())
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if let Some(rest) = name.strip_prefix(DIR_PREFIX) {
            let pid = rest.split('-').next().unwrap_or("");
            if gone(pid) && !entry.path().join(KEEP_MARKER).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        } else if let Some((_, pid)) = name.split_once(".jsa.tmp-") {
            if name.starts_with("wazoo-zk-cds-") && gone(pid) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// The last `n` lines of a (log) file, or a note saying why there are none.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            let mut out = lines[start..].join("\n");
            if out.is_empty() {
                out = format!("(log {} is empty)", path.display());
            }
            out
        }
        Err(e) => format!("(cannot read log {}: {e})", path.display()),
    }
}

/// Sends a ZooKeeper four-letter word (`ruok`, `srvr`, `isro`, `conf`, ...)
/// to `addr` and returns the whole answer.
///
/// Connecting is bounded by 1 s and reading by `read_timeout`. Four-letter
/// words travel over the client port, so this also works through a
/// [`FaultProxy`](crate::FaultProxy).
pub fn four_letter_word(addr: SocketAddr, word: &str, read_timeout: Duration) -> Result<String> {
    four_letter_word_until(addr, word, read_timeout, |_| false)
}

/// Like [`four_letter_word`], but stops reading as soon as `complete` says
/// the answer so far is whole, without waiting for the server to close.
///
/// ZooKeeper 3.8.0 answers a four-letter word that arrives while it is still
/// loading its database ("This ZooKeeper instance is not currently serving
/// requests") and then fails to close the socket (a NullPointerException in
/// `ZooKeeperServer.removeCnxn`), so a reader waiting for end-of-stream
/// hangs until its time-out.
pub(crate) fn four_letter_word_until(
    addr: SocketAddr,
    word: &str,
    read_timeout: Duration,
    complete: impl Fn(&str) -> bool,
) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        .with_context(|| format!("connecting to {addr} for `{word}`"))?;
    stream.set_write_timeout(Some(read_timeout))?;
    stream
        .write_all(word.as_bytes())
        .with_context(|| format!("sending `{word}` to {addr}"))?;
    let deadline = Instant::now() + read_timeout;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!(
                "no complete answer to `{word}` from {addr} within {read_timeout:?} (got {:?})",
                String::from_utf8_lossy(&answer)
            );
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if complete(&String::from_utf8_lossy(&answer)) {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "reading the answer to `{word}` from {addr} (got {:?} so far)",
                        String::from_utf8_lossy(&answer)
                    )
                })
            }
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Whether a (partial) `srvr` answer already says all a readiness probe
/// needs: a whole `Mode:` line, or that the server is not serving yet.
pub(crate) fn srvr_answer_complete(answer: &str) -> bool {
    answer.contains("not currently serving requests")
        || answer
            .split_once("Mode:")
            .is_some_and(|(_, rest)| rest.contains('\n'))
}

/// The value of the `Mode:` line of a `srvr` answer, if any.
pub(crate) fn parse_mode(srvr: &str) -> Option<String> {
    srvr.lines()
        .find_map(|l| l.strip_prefix("Mode:"))
        .map(|m| m.trim().to_string())
}

/// How to launch a ZooKeeper server JVM on this machine.
#[derive(Clone, Debug)]
pub(crate) struct Launcher {
    pub java: PathBuf,
    pub classpath: String,
}

const INSTALL_HINT: &str = "Install Debian's `zookeeper` package \
     (apt-get install -y zookeeper default-jre-headless), or run scripts/setup.sh or .ci/run, \
     which install it; or point WAZOO_ZK_JARS at a directory holding the jars, or \
     WAZOO_ZK_CLASSPATH at a full classpath";

/// Jars a standalone or quorum server needs, by the names Debian gives them.
const REQUIRED_JARS: [&str; 6] = [
    "zookeeper",
    "zookeeper-jute",
    "slf4j-api",
    "slf4j-simple",
    "metrics-core",
    "snappy-java",
];

/// Finds Java and the ZooKeeper jars once per process. Missing pieces are a
/// loud error, never a skip.
pub(crate) fn launcher() -> Result<Launcher> {
    static CACHE: Mutex<Option<std::result::Result<Launcher, String>>> = Mutex::new(None);
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let found = guard.get_or_insert_with(|| find_launcher().map_err(|e| format!("{e:#}")));
    found.clone().map_err(|e| anyhow!(e))
}

fn find_launcher() -> Result<Launcher> {
    let java = find_java()?;
    let classpath = match std::env::var("WAZOO_ZK_CLASSPATH") {
        Ok(cp) if !cp.trim().is_empty() => cp,
        _ => {
            let dir = std::env::var_os("WAZOO_ZK_JARS")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/usr/share/java"));
            classpath_in(&dir)?
        }
    };
    Ok(Launcher { java, classpath })
}

/// The server's classpath from the jars in `dir`.
fn classpath_in(dir: &Path) -> Result<String> {
    let mut jars = Vec::new();
    let mut missing = Vec::new();
    for stem in REQUIRED_JARS {
        match find_jar(dir, stem) {
            Some(jar) => jars.push(jar.display().to_string()),
            None => missing.push(format!("{stem}.jar")),
        }
    }
    if !missing.is_empty() {
        bail!(
            "ZooKeeper server jars not found in {}: missing {}. {INSTALL_HINT}.",
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(jars.join(":"))
}

/// `dir/stem.jar`, or else `dir/stem-<version>.jar` (a digit after the dash).
pub(crate) fn find_jar(dir: &Path, stem: &str) -> Option<PathBuf> {
    let plain = dir.join(format!("{stem}.jar"));
    if plain.is_file() {
        return Some(plain);
    }
    let mut versioned: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name.strip_prefix(stem)?.strip_prefix('-')?;
            let starts_with_digit = version.chars().next().is_some_and(|c| c.is_ascii_digit());
            (starts_with_digit && version.ends_with(".jar")).then(|| e.path())
        })
        .collect();
    versioned.sort();
    versioned.pop()
}

fn find_java() -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(java) = std::env::var_os("WAZOO_JAVA") {
        candidates.push(PathBuf::from(java));
    }
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        candidates.push(PathBuf::from(home).join("bin/java"));
    }
    candidates.push(PathBuf::from("/usr/bin/java"));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|p| p.join("java")));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("no `java` executable found (WAZOO_JAVA, JAVA_HOME, /usr/bin/java, PATH). {INSTALL_HINT}."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_unique() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), ports.len());
    }

    #[test]
    fn mode_parsing() {
        let srvr = "Zookeeper version: 3.8.0\nLatency min/avg/max: 0/0.0/0\nMode: follower\nNode count: 5\n";
        assert_eq!(parse_mode(srvr).as_deref(), Some("follower"));
        assert_eq!(
            parse_mode("This ZooKeeper instance is not currently serving requests\n"),
            None
        );
        assert!(srvr_answer_complete(
            "This ZooKeeper instance is not currently serving requests\n"
        ));
        assert!(srvr_answer_complete(srvr));
        assert!(!srvr_answer_complete("Zookeeper version: 3.8.0\nMode: fol"));
        assert!(!srvr_answer_complete("Zookeeper version: 3.8.0\n"));
    }

    #[test]
    fn jars_are_found_by_plain_or_versioned_name_and_missing_ones_named() {
        let dir = make_temp_dir().unwrap();
        for name in [
            "zookeeper.jar",
            "zookeeper-jute-3.8.0.jar",
            "slf4j-api-1.7.32.jar",
            "slf4j-simple.jar",
            "metrics-core-3.2.6.jar",
        ] {
            fs::write(dir.join(name), b"").unwrap();
        }
        let err = classpath_in(&dir).unwrap_err().to_string();
        assert!(err.contains("missing snappy-java.jar"), "{err}");
        assert!(err.contains("zookeeper` package"), "{err}");
        fs::write(dir.join("snappy-java-1.1.8.3.jar"), b"").unwrap();
        let cp = classpath_in(&dir).unwrap();
        let names: Vec<&str> = cp
            .split(':')
            .map(|p| p.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "zookeeper.jar",
                "zookeeper-jute-3.8.0.jar",
                "slf4j-api-1.7.32.jar",
                "slf4j-simple.jar",
                "metrics-core-3.2.6.jar",
                "snappy-java-1.1.8.3.jar"
            ]
        );
        fs::remove_dir_all(dir).unwrap();
        let err = classpath_in(Path::new("/nonexistent-wazoo")).unwrap_err();
        assert!(err.to_string().contains("missing zookeeper.jar"), "{err}");
    }

    #[test]
    fn temp_dirs_are_distinct() {
        let a = make_temp_dir().unwrap();
        let b = make_temp_dir().unwrap();
        assert_ne!(a, b);
        assert!(a
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!("wazoo-test-{}-", std::process::id())));
        fs::remove_dir_all(a).unwrap();
        fs::remove_dir_all(b).unwrap();
    }
}
