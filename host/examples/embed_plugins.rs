//! Embedding wazoo's plugin runtime in a service: load a wasm plugin with a policy, bind it to
//! a subtree and to session events, reload it, unload it, while the client stays connected.
//!
//! `cargo run --release -p wazoo --example embed_plugins -- 127.0.0.1:2181 path/to/audit_log.wasm`
//! (`scripts/build-guests.sh` builds the example plugins).

use std::time::Duration;

use wazoo::{Binding, Client, CreateMode, PluginHost, PluginHostConfig, Policy};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let hosts = args.next().unwrap_or_else(|| "127.0.0.1:2181".into());
    let wasm = args
        .next()
        .unwrap_or_else(|| "target/wasm/wasm32-wasip2/release/audit_log.wasm".into());

    let zk = Client::connect(&hosts).await?;
    zk.ensure_path("/service").await?;

    // One plugin host per process; plugins get their own lanes (per-plugin isolation).
    let host = PluginHost::new(PluginHostConfig {
        cache_dir: Some(std::env::temp_dir().join("wazoo-cache")),
        isolation: wazoo::IsolationMode::PerPlugin,
        ..Default::default()
    })?;
    // The plugin may read /service and nothing else; 100 ms of compute per callback.
    let policy = Policy {
        compute_budget: Duration::from_millis(100),
        ..Policy::default().read(["/service"])
    };
    let plugin = host.load_file(&zk, "audit", wasm.as_ref(), policy, vec![])?;
    plugin
        .bind(Binding::PersistentRecursive("/service".into()))
        .await?;
    plugin.bind(Binding::Session).await?;

    // Some activity for it to audit.
    for i in 0..5 {
        zk.create(&format!("/service/item-{i}"), b"", CreateMode::Persistent)
            .await?;
    }
    zk.delete_recursive("/service").await?;
    zk.sync("/").await?;
    tokio::time::sleep(Duration::from_millis(500)).await; // let the plugin's log lines print

    // Reload from the same file (e.g. after a new build): watches and session are kept.
    plugin.reload(&std::fs::read(&wasm)?)?;
    println!("plugin stats: {:?}", plugin.stats());
    plugin.unload();
    zk.close().await;
    Ok(())
}
