//! The Prometheus text endpoint of `wazoo run`: a minimal HTTP/1.1 responder answering
//! `GET /metrics` (and `HEAD`), one request per connection.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wazoo::{Client, LaneKind, Lanes, SessionState};

use crate::run::Loaded;

/// What the endpoint reports on.
#[derive(Clone)]
pub struct Source {
    /// The lanes whose counters are reported.
    pub lanes: Lanes,
    /// The session whose state is reported.
    pub client: Client,
    /// The plugins.
    pub plugins: Arc<Vec<Arc<Loaded>>>,
}

/// The name of a lane in labels.
pub fn lane_name(kind: LaneKind) -> &'static str {
    match kind {
        LaneKind::Session => "session",
        LaneKind::Watch => "watch",
        LaneKind::Completion => "completion",
    }
}

/// The name of a session state in labels and logs.
pub fn state_name(s: SessionState) -> &'static str {
    match s {
        SessionState::Connected => "connected",
        SessionState::ConnectedReadOnly => "connected-read-only",
        SessionState::Suspended => "suspended",
        SessionState::Lost => "lost",
        SessionState::Closed => "closed",
        _ => "unknown",
    }
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics in Prometheus' text format (version 0.0.4).
pub fn render(src: &Source) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let lanes: Vec<_> = LaneKind::ALL
        .iter()
        .map(|k| (lane_name(*k), src.lanes.metrics(*k)))
        .collect();
    family(
        "wazoo_lane_events_total",
        "counter",
        "Callbacks run to completion on each lane.",
        lanes
            .iter()
            .map(|(n, m)| (format!("lane=\"{n}\""), m.dispatched.to_string()))
            .collect(),
    );
    family(
        "wazoo_lane_queue_depth",
        "gauge",
        "Callbacks waiting on each lane.",
        lanes
            .iter()
            .map(|(n, m)| (format!("lane=\"{n}\""), m.queue_depth.to_string()))
            .collect(),
    );
    family(
        "wazoo_lane_busy_seconds_total",
        "counter",
        "Time spent in callbacks on each lane.",
        lanes
            .iter()
            .map(|(n, m)| {
                (
                    format!("lane=\"{n}\""),
                    format!("{:.6}", m.busy.as_secs_f64()),
                )
            })
            .collect(),
    );
    let stats: Vec<_> = src
        .plugins
        .iter()
        .map(|p| (label(&p.name), p.stats()))
        .collect();
    let per_plugin = |f: &dyn Fn(&wazoo::PluginStats) -> u64| -> Vec<(String, String)> {
        stats
            .iter()
            .map(|(n, s)| (format!("plugin=\"{n}\""), f(s).to_string()))
            .collect()
    };
    family(
        "wazoo_plugin_calls_total",
        "counter",
        "Plugin handler calls that returned normally.",
        per_plugin(&|s| s.calls),
    );
    family(
        "wazoo_plugin_traps_total",
        "counter",
        "Plugin traps, exhausted budgets and timeouts.",
        per_plugin(&|s| s.traps),
    );
    family(
        "wazoo_plugin_instantiations_total",
        "counter",
        "Plugin instances built.",
        per_plugin(&|s| s.instantiations),
    );
    family(
        "wazoo_plugin_disabled",
        "gauge",
        "1 when the plugin was disabled for crashing too often.",
        per_plugin(&|s| s.disabled as u64),
    );
    let current = src.client.state();
    family(
        "wazoo_session_state",
        "gauge",
        "1 for the session's current state.",
        [
            SessionState::Connected,
            SessionState::ConnectedReadOnly,
            SessionState::Suspended,
            SessionState::Lost,
            SessionState::Closed,
        ]
        .iter()
        .map(|s| {
            (
                format!("state=\"{}\"", state_name(*s)),
                ((*s == current) as u8).to_string(),
            )
        })
        .collect(),
    );
    out
}

/// Serves until the task is aborted.
pub async fn serve(listener: TcpListener, src: Source) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let src = src.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), answer(sock, &src)).await;
                });
            }
            Err(e) => {
                tracing::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads one request head and answers it.
async fn answer(mut sock: TcpStream, src: &Source) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 16 * 1024 {
            return respond(&mut sock, "431 Request Header Fields Too Large", "", false).await;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            respond(&mut sock, "200 OK", &render(src), method == "HEAD").await
        }
        ("GET" | "HEAD", _) => respond(&mut sock, "404 Not Found", "try /metrics\n", false).await,
        ("", _) => respond(&mut sock, "400 Bad Request", "", false).await,
        _ => respond(&mut sock, "405 Method Not Allowed", "", false).await,
    }
}

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        out.push_str(body);
    }
    sock.write_all(out.as_bytes()).await?;
    sock.shutdown().await
}
