//! The Prometheus text endpoint of `wazoo run`: a minimal HTTP/1.1 responder answering
//! `GET /metrics` (and `HEAD`), one request per connection.
//!
//! Lanes are reported twice over. `wazoo_lane_*{lanes, lane}` are native lanes: `client`, the
//! session's own (its state listeners), and `forward`, the forwarding lanes every plugin event
//! passes through on its way to a guest lane. `wazoo_plugin_lane_*{plugin, lane}` are each
//! plugin's events on its guest lanes: its own lanes with per-plugin isolation, its share of the
//! shared ones otherwise. Each has a callback-time and a queueing-time histogram.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wazoo::{Client, Histogram, LaneKind, LaneMetrics, Lanes, PluginHost, SessionState};

use crate::loaded::Loaded;

/// What the endpoint reports on.
#[derive(Clone)]
pub struct Source {
    /// The session's own lanes.
    pub lanes: Lanes,
    /// The plugin host (its forwarding lanes).
    pub host: PluginHost,
    /// The session whose state is reported.
    pub client: Client,
    /// The plugins.
    pub plugins: Arc<Vec<Arc<Loaded>>>,
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

/// Seconds, as Prometheus reads them.
fn secs(d: Duration) -> String {
    format!("{}", d.as_secs_f64())
}

/// Writes one metric family: its help, its type and its samples (labels, value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, String)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// Writes one histogram family: cumulative `_bucket`s with `le`, `_sum` and `_count`.
fn histogram(out: &mut String, name: &str, help: &str, series: &[(String, Histogram)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (labels, h) in series {
        let mut count = 0;
        for (bound, cumulative) in h.cumulative() {
            let le = bound.map(secs).unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            count = cumulative;
        }
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", secs(h.sum));
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The lane families for a set of lanes, each series labelled by `labels` and its lane.
fn lane_families(out: &mut String, prefix: &str, what: &str, lanes: &[(String, LaneMetrics)]) {
    let samples = |f: &dyn Fn(&LaneMetrics) -> String| -> Vec<(String, String)> {
        lanes.iter().map(|(l, m)| (l.clone(), f(m))).collect()
    };
    family(
        out,
        &format!("{prefix}_events_total"),
        "counter",
        &format!("Callbacks run to completion on each {what}."),
        &samples(&|m| m.dispatched.to_string()),
    );
    family(
        out,
        &format!("{prefix}_queue_depth"),
        "gauge",
        &format!("Callbacks waiting (or running) on each {what}."),
        &samples(&|m| m.queue_depth.to_string()),
    );
    family(
        out,
        &format!("{prefix}_busy_seconds_total"),
        "counter",
        &format!("Time spent in callbacks on each {what}."),
        &samples(&|m| secs(m.busy)),
    );
    family(
        out,
        &format!("{prefix}_failures_total"),
        "counter",
        &format!("Callbacks on each {what} that panicked (native) or trapped (guest)."),
        &samples(&|m| m.panics.to_string()),
    );
    let hist = |f: &dyn Fn(&LaneMetrics) -> Histogram| -> Vec<(String, Histogram)> {
        lanes.iter().map(|(l, m)| (l.clone(), f(m))).collect()
    };
    histogram(
        out,
        &format!("{prefix}_callback_seconds"),
        &format!("How long each callback ran on each {what}."),
        &hist(&|m| m.callback),
    );
    histogram(
        out,
        &format!("{prefix}_wait_seconds"),
        &format!("How long each callback waited on each {what} between being queued and starting."),
        &hist(&|m| m.wait),
    );
}

/// The metrics in Prometheus' text format (version 0.0.4).
pub fn render(src: &Source) -> String {
    let mut out = String::new();
    let mut native = Vec::new();
    for kind in LaneKind::ALL {
        native.push((
            format!("lanes=\"client\",lane=\"{}\"", kind.name()),
            src.lanes.metrics(kind),
        ));
    }
    for kind in LaneKind::ALL {
        native.push((
            format!("lanes=\"forward\",lane=\"{}\"", kind.name()),
            src.host.forward_metrics(kind),
        ));
    }
    lane_families(&mut out, "wazoo_lane", "native lane", &native);

    let mut guest = Vec::new();
    for p in src.plugins.iter() {
        for kind in LaneKind::ALL {
            guest.push((
                format!("plugin=\"{}\",lane=\"{}\"", label(&p.name), kind.name()),
                p.lane_metrics(kind),
            ));
        }
    }
    lane_families(&mut out, "wazoo_plugin_lane", "plugin's guest lane", &guest);

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
        &mut out,
        "wazoo_plugin_calls_total",
        "counter",
        "Plugin handler calls that returned normally.",
        &per_plugin(&|s| s.calls),
    );
    family(
        &mut out,
        "wazoo_plugin_traps_total",
        "counter",
        "Plugin traps, exhausted budgets, timeouts and failed instance builds.",
        &per_plugin(&|s| s.traps),
    );
    family(
        &mut out,
        "wazoo_plugin_restarts_total",
        "counter",
        "Plugin instances rebuilt after a crash.",
        &per_plugin(&|s| s.restarts),
    );
    family(
        &mut out,
        "wazoo_plugin_instantiations_total",
        "counter",
        "Plugin instances built.",
        &per_plugin(&|s| s.instantiations),
    );
    family(
        &mut out,
        "wazoo_plugin_compute_seconds_total",
        "counter",
        "Guest execution of the plugin's calls, as its compute budget counts it (waiting on ZooKeeper or for a CPU not included).",
        &stats
            .iter()
            .map(|(n, s)| {
                (
                    format!("plugin=\"{n}\""),
                    format!("{:.9}", s.compute_time.as_secs_f64()),
                )
            })
            .collect::<Vec<_>>(),
    );
    family(
        &mut out,
        "wazoo_plugin_disabled",
        "gauge",
        "1 when the plugin was disabled for crashing too often.",
        &per_plugin(&|s| s.disabled as u64),
    );
    family(
        &mut out,
        "wazoo_plugins_disabled",
        "gauge",
        "How many plugins are disabled.",
        &[(
            String::new(),
            stats.iter().filter(|(_, s)| s.disabled).count().to_string(),
        )],
    );
    let current = src.client.state();
    family(
        &mut out,
        "wazoo_session_state",
        "gauge",
        "1 for the session's current state.",
        &[
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
        .collect::<Vec<_>>(),
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
