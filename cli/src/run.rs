//! `wazoo run CONFIG.toml`: connects (starting a private ZooKeeper when no hosts are
//! configured), loads and binds every plugin, serves metrics, reloads plugins on SIGHUP and when
//! their files change, and shuts down cleanly on SIGINT or SIGTERM.
//!
//! Standard output carries a few lines for scripts and tests: `wazoo: ZooKeeper at HOSTS` once
//! the session is up (HOSTS without the chroot), `wazoo: metrics at http://ADDR/metrics` when
//! the endpoint is configured (with the real port when the configured one is 0), and
//! `wazoo: ready` once every plugin is bound. Everything else is logged on standard error.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use wazoo::{Client, Lanes, PluginHost, PluginHostConfig};

use crate::config::Config;
use crate::loaded::load;
use crate::local_zk::LocalZk;
use crate::metrics;
use crate::signals::{Sig, Signals};

/// How often component files are checked for changes.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Runs until a signal; returns the exit code.
pub async fn run(cfg: Config, mut signals: Signals) -> Result<i32> {
    // First, so that what is wrong with the engine's settings or the compilation cache is
    // said at once, not after starting or connecting to ZooKeeper.
    let max_memory = cfg
        .plugins
        .iter()
        .map(|p| p.policy.memory_limit)
        .max()
        .unwrap_or(0)
        .max(PluginHostConfig::default().max_memory);
    let host = PluginHost::new(PluginHostConfig {
        cache_dir: cfg.host.cache_dir.clone(),
        cache_max_bytes: cfg.host.cache_max_bytes,
        max_component_bytes: cfg.host.max_component_bytes,
        isolation: cfg.host.isolation,
        lane_threads: cfg.host.lane_threads,
        max_memory,
        ..Default::default()
    })
    .context("cannot set up the plugin host")?;
    // The private server, if any; shared with the forced-exit path.
    let local: Arc<Mutex<Option<LocalZk>>> = Arc::new(Mutex::new(None));
    let stop_local = {
        let local = local.clone();
        move || {
            if let Some(mut zk) = local.lock().unwrap_or_else(|p| p.into_inner()).take() {
                zk.stop();
                tracing::info!("private ZooKeeper stopped");
            }
        }
    };
    let hosts = match &cfg.zookeeper.hosts {
        Some(h) => h.clone(),
        None => {
            let cancel = Arc::new(AtomicBool::new(false));
            let c = cancel.clone();
            let mut start = tokio::task::spawn_blocking(move || LocalZk::start(&c));
            tokio::select! {
                r = &mut start => {
                    let zk = r.context("starting the private ZooKeeper")??;
                    let hosts = zk.connect_string();
                    tracing::info!(
                        hosts = %hosts,
                        dir = %zk.dir().display(),
                        "no hosts configured: started a private ZooKeeper on {hosts} in {}",
                        zk.dir().display()
                    );
                    *local.lock().unwrap_or_else(|p| p.into_inner()) = Some(zk);
                    hosts
                }
                sig = signals.next() => {
                    tracing::info!("{}: stopping the private ZooKeeper's start", sig.name());
                    cancel.store(true, Ordering::Relaxed);
                    let _ = start.await;
                    return Ok(0);
                }
            }
        }
    };
    let r = serve(&cfg, &host, &hosts, &mut signals).await;
    // Stops the guest threads (the plugins are unloaded by now).
    drop(host);
    tokio::task::spawn_blocking(stop_local)
        .await
        .context("stopping the private ZooKeeper")?;
    r
}

/// Runs `fut` unless SIGINT or SIGTERM comes first (then `None`).
async fn or_signal<T>(
    signals: &mut Signals,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        v = fut => Some(v),
        sig = signals.next() => {
            tracing::info!("{}: stopping during start-up", sig.name());
            None
        }
    }
}

/// Connects, loads and binds, then serves until a signal and shuts down.
async fn serve(cfg: &Config, host: &PluginHost, hosts: &str, signals: &mut Signals) -> Result<i32> {
    let z = &cfg.zookeeper;
    let builder = |connect: &str| {
        let mut b = Client::builder(connect)
            .allow_read_only(z.read_only)
            .lanes(Lanes::with_scheduling("wazoo", cfg.host.lanes));
        if let Some(t) = z.session_timeout {
            b = b.session_timeout(t);
        }
        for a in &z.auth {
            b = b.auth(&a.scheme, &a.credentials.0);
        }
        crate::secure::apply(b, z.tls.as_ref(), z.sasl.as_ref())
    };
    let connect = match &z.chroot {
        Some(chroot) => {
            let Some(root) = or_signal(signals, builder(hosts).connect()).await else {
                return Ok(0);
            };
            let root = root.with_context(|| format!("cannot connect to ZooKeeper at {hosts}"))?;
            let made = root.ensure_path(chroot).await;
            root.close().await;
            made.with_context(|| format!("cannot create the chroot {chroot}"))?;
            format!("{hosts}{chroot}")
        }
        None => hosts.to_string(),
    };
    let Some(client) = or_signal(signals, builder(&connect).connect()).await else {
        return Ok(0);
    };
    let client = client.with_context(|| format!("cannot connect to ZooKeeper at {connect}"))?;
    tracing::info!(
        hosts = %connect,
        session_id = %format!("{:#x}", client.session_id()),
        "connected to ZooKeeper at {connect}"
    );
    client.add_listener(|ev, info| {
        tracing::info!(
            state = metrics::state_name(ev.state),
            session_id = %format!("{:#x}", ev.session_id),
            seq = info.seq,
            "session {}",
            metrics::state_name(ev.state)
        );
    });
    println!("wazoo: ZooKeeper at {hosts}");

    let r = serve_plugins(cfg, host, &client, signals).await;
    let close_timeout = cfg.shutdown.close_timeout;
    match tokio::time::timeout(close_timeout, client.close()).await {
        Ok(()) => tracing::info!("closed the ZooKeeper session"),
        Err(_) => tracing::warn!(
            "closing the session took over {close_timeout:?} (shutdown.close_timeout); giving up"
        ),
    }
    r
}

async fn serve_plugins(
    cfg: &Config,
    host: &PluginHost,
    client: &Client,
    signals: &mut Signals,
) -> Result<i32> {
    let mut loaded = Vec::new();
    for p in &cfg.plugins {
        match or_signal(signals, load(host, client, p)).await {
            Some(l) => loaded.push(Arc::new(l?)),
            None => return Ok(0),
        }
    }
    let plugins = Arc::new(loaded);
    tracing::info!(
        plugins = %plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(","),
        "running {} plugin(s)",
        plugins.len()
    );

    let metrics_task = match cfg.host.metrics {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (host.metrics)"))?;
            let addr = listener.local_addr().unwrap_or(addr);
            tracing::info!(address = %addr, "metrics at http://{addr}/metrics");
            println!("wazoo: metrics at http://{addr}/metrics");
            Some(tokio::spawn(metrics::serve(
                listener,
                metrics::Source {
                    lanes: client.lanes().clone(),
                    host: host.clone(),
                    client: client.clone(),
                    plugins: plugins.clone(),
                },
            )))
        }
    };
    println!("wazoo: ready");

    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let sig = loop {
        tokio::select! {
            sig = signals.next_any() => match sig {
                Sig::Hup => {
                    for p in plugins.iter() {
                        p.reload("SIGHUP");
                    }
                }
                other => break other,
            },
            _ = tick.tick() => {
                for p in plugins.iter() {
                    p.reload_if_changed();
                }
            }
        }
    };

    // Shut down while a second signal may still force the exit.
    tracing::info!("{}: shutting down", sig.name());
    let shutdown = async {
        if let Some(t) = metrics_task {
            t.abort();
            let _ = t.await;
        }
        // Guest lanes first (no new events; those queued are handled), then native lanes,
        // within one deadline.
        let drain_timeout = cfg.shutdown.drain_timeout;
        let deadline = tokio::time::Instant::now() + drain_timeout;
        let guests_drained = host.drain(drain_timeout).await;
        let lanes = client.lanes().clone();
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let drained = tokio::task::spawn_blocking(move || lanes.drain(left))
            .await
            .unwrap_or(false)
            && guests_drained;
        if drained {
            tracing::info!("lanes drained");
        } else {
            tracing::warn!(
                "the lanes did not drain within {drain_timeout:?} (shutdown.drain_timeout); \
                 dropping what is left"
            );
        }
        // Taking a plugin waits for a reload in progress: off the async threads.
        let all = plugins.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for p in all.iter() {
                let plugin = p.plugin.write().unwrap_or_else(|e| e.into_inner()).take();
                drop(plugin);
            }
        })
        .await;
        tracing::info!("plugins unloaded");
    };
    tokio::select! {
        () = shutdown => {}
        sig = signals.next() => {
            tracing::warn!("{}: a second signal, exiting without waiting", sig.name());
            return Ok(1);
        }
    }
    Ok(0)
}
