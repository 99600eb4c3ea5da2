//! A capture of everything the host logs, so tests can assert on what plugins (and the host
//! about them) said. Lines are also echoed to stderr, as the test harness shows them.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let s = String::from_utf8_lossy(buf).to_string();
        eprint!("{s}");
        LOG.lock().unwrap_or_else(|p| p.into_inner()).push(s);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capture as this process's tracing subscriber (once; `RUST_LOG` filters, `info`
/// by default).
pub fn init_log_capture() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_thread_names(true)
            .with_writer(|| Capture)
            .try_init();
    });
}

fn matching<'a>(needles: &'a [&'a str]) -> impl Fn(&&String) -> bool + 'a {
    move |l| needles.iter().all(|n| l.contains(n))
}

/// Waits up to `wait` until a logged line contains every one of `needles`, and returns it;
/// fails the test otherwise.
pub async fn logged(needles: &[&str], wait: Duration) -> String {
    let deadline = Instant::now() + wait;
    loop {
        let found = LOG
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(matching(needles))
            .cloned();
        if let Some(l) = found {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} within {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many logged lines contain every one of `needles`.
pub fn count_logged(needles: &[&str]) -> usize {
    LOG.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(matching(needles))
        .count()
}
