//! A server shared by the tests of one test binary, and a fresh chroot on it per test.

use std::sync::OnceLock;

use wazoo::{Client, CreateMode};

use crate::ZkServer;

/// One standalone server for every test of this test binary that does not stop or break its
/// server (it is started on first use and killed by its watchdog when the process exits).
/// Tests keep apart by working under chroots of their own ([`fresh_chroot`]).
pub fn shared_server() -> &'static ZkServer {
    static SERVER: OnceLock<ZkServer> = OnceLock::new();
    SERVER.get_or_init(|| ZkServer::start().expect("start ZooKeeper"))
}

/// Makes `root` an empty persistent node on `server` (removing what an earlier run left there)
/// and returns the server's connect string chrooted at it.
pub async fn fresh_chroot(server: &ZkServer, root: &str) -> String {
    let admin = Client::connect(&server.connect_string())
        .await
        .expect("connect");
    let _ = admin.delete_recursive(root).await;
    admin
        .create(root, b"", CreateMode::Persistent)
        .await
        .expect("create the test's root");
    admin.close().await;
    format!("{}{root}", server.connect_string())
}
