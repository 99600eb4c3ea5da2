//! A real Kazoo client for interop tests: `tests/kazoo/peer.py`, run by Debian's
//! `python3-kazoo` (`/usr/bin/python3` unless `WAZOO_PYTHON` names another interpreter), driven
//! line by line over its stdin and stdout.
//!
//! A missing Kazoo is a loud failure, never a skip: [`KazooPeer::start`] says to install
//! `python3-kazoo` (`scripts/setup.sh` does).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::sync::mpsc;

/// A Kazoo client in a Python process of its own, connected to a server.
pub struct KazooPeer {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
}

/// The interpreter that has Debian's Kazoo.
fn python() -> String {
    std::env::var("WAZOO_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".to_string())
}

impl KazooPeer {
    /// Starts a peer connected to `hosts` and waits until its session is up.
    pub async fn start(hosts: &str) -> Result<KazooPeer> {
        let py = python();
        let check = Command::new(&py)
            .args(["-c", "import kazoo.recipe.lock, kazoo.recipe.election"])
            .output()
            .with_context(|| format!("cannot run {py} (install python3; scripts/setup.sh)"))?;
        if !check.status.success() {
            bail!(
                "Kazoo is missing for {py}: install Debian's python3-kazoo \
                 (`apt-get install -y python3-kazoo`, or run scripts/setup.sh); {}",
                String::from_utf8_lossy(&check.stderr).trim()
            );
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kazoo/peer.py");
        let mut child = Command::new(&py)
            .args(["-u", script, hosts])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {script}"))?;
        let stdin = child.stdin.take().context("peer stdin")?;
        let stdout = child.stdout.take().context("peer stdout")?;
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut peer = KazooPeer {
            child,
            stdin,
            lines,
        };
        let hello = peer.line(Duration::from_secs(30)).await?;
        if hello != "ready" {
            bail!("the Kazoo peer said {hello:?} instead of \"ready\"");
        }
        Ok(peer)
    }

    /// Sends one command (see `tests/kazoo/peer.py`) without waiting for its answer.
    pub fn send(&mut self, command: &str) -> Result<()> {
        writeln!(self.stdin, "{command}").context("write to the Kazoo peer")?;
        self.stdin.flush().context("flush the Kazoo peer's stdin")
    }

    /// The peer's next line, within `wait`. An `error ...` line fails.
    pub async fn line(&mut self, wait: Duration) -> Result<String> {
        let line = tokio::time::timeout(wait, self.lines.recv())
            .await
            .with_context(|| format!("the Kazoo peer said nothing within {wait:?}"))?
            .context("the Kazoo peer exited")?;
        if line.starts_with("error ") {
            bail!("the Kazoo peer failed: {line}");
        }
        Ok(line)
    }

    /// Whether a line is already waiting (without waiting for one).
    pub fn has_line(&mut self) -> bool {
        !self.lines.is_empty()
    }

    /// Sends a command and returns its answer, within 30 s.
    pub async fn call(&mut self, command: &str) -> Result<String> {
        self.send(command)?;
        self.line(Duration::from_secs(30)).await
    }
}

impl Drop for KazooPeer {
    fn drop(&mut self) {
        // Let it close its session (its ephemerals go at once), then make sure it is gone.
        let _ = self.send("quit");
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
