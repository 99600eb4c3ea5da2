//! A guided tour of wazoo against a running ZooKeeper: the three lanes at work.
//!
//! `cargo run --release -p wazoo --example tour -- 127.0.0.1:2181` (or `scripts/demo.sh`, which
//! starts a private ZooKeeper first). It sets up a state listener (session lane), a DataWatch,
//! a ChildrenWatch and a persistent recursive watch (watch lane), drives some activity and
//! prints every callback with its lane and sequence stamp. Ctrl-C stops it and closes the
//! session.

use std::time::Duration;

use wazoo::{
    AddWatchMode, BlockingClient, ChildrenWatch, Client, CreateMode, DataWatch, SessionState,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let hosts = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2181".to_string());
    println!("connecting to {hosts}");
    // The chroot must exist before a client can use it.
    let root = Client::connect(&hosts).await?;
    root.ensure_path("/wazoo-tour").await?;
    root.close().await;
    let zk = Client::connect(&format!("{hosts}/wazoo-tour")).await?;
    Ok(run(zk).await?)
}

async fn run(zk: Client) -> Result<(), wazoo::Error> {
    let sync = BlockingClient::new(zk.clone());
    zk.add_listener(move |ev, info| {
        println!("[session lane #{:>5}] state {:?}", info.seq, ev.state);
        if ev.state == SessionState::Connected {
            // A state listener may call ZooKeeper synchronously: Kazoo forbids this.
            let n = sync.get_children("/").map(|(c, _)| c.len()).unwrap_or(0);
            println!(
                "[session lane #{:>5}] the tour root has {n} children",
                info.seq
            );
        }
    });
    zk.ensure_path("/config").await?;
    zk.ensure_path("/workers").await?;
    let _config = DataWatch::new(&zk, "/config", |value, event| {
        let value = value
            .map(|(d, s)| format!("{:?} (version {})", String::from_utf8_lossy(&d), s.version));
        println!(
            "[watch lane]        DataWatch /config = {value:?} after {:?}",
            event.map(|e| e.event_type)
        );
        true
    })?;
    let _workers = ChildrenWatch::new(&zk, "/workers", |mut children| {
        children.sort();
        println!("[watch lane]        ChildrenWatch /workers = {children:?}");
        true
    })?;
    zk.add_watch_with("/", AddWatchMode::PersistentRecursive, |ev, info| {
        println!(
            "[watch lane   #{:>5}] {:?} {}",
            info.seq, ev.event_type, ev.path
        );
        true
    })
    .await?;

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut i = 0u64;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tick.tick() => {
                i += 1;
                zk.set_data("/config", format!("setting {i}").as_bytes(), None)
                    .rawlink(|r, info| println!("[completion lane #{:>5}] set /config -> version {:?}", info.seq, r.map(|s| s.version)))?;
                if i.is_multiple_of(3) {
                    zk.create("/workers/w-", b"", CreateMode::EphemeralSequential).await?;
                }
            }
        }
    }
    println!("closing the session");
    zk.close().await;
    Ok(())
}
