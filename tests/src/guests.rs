//! Real wasm guests for the tests: the example plugins and the hostile guests, built for
//! `wasm32-wasip2` once per test process (cargo's own lock makes concurrent processes wait for
//! one another rather than build twice), and loaded into a plugin host.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use wazoo::{Client, Plugin, PluginHost, Policy};

/// The workspace root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Builds every guest (once per process) and returns the path of `name`'s component
/// (`name` as its crate is called, e.g. `audit-log` or `spin`). A failed build or a missing
/// `wasm32-wasip2` target is a loud failure, never a skip.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    if let Err(e) = BUILT.get_or_init(|| build().map_err(|e| format!("{e:#}"))) {
        panic!("building the wasm guests failed: {e}");
    }
    let p = root()
        .join("target/wasm/wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    assert!(
        p.exists(),
        "no guest component at {} (is {name} a guest crate?)",
        p.display()
    );
    p
}

/// The compile cache every test's plugin host shares (`PluginHostConfig::cache_dir`), so that
/// each component is compiled once per machine rather than once per test.
pub fn test_cache_dir() -> PathBuf {
    std::env::temp_dir().join("wazoo-test-cache")
}

/// Loads the guest crate `crate_name` into `host` as plugin `name` on `zk`, with `policy` and
/// `config`; a refusal fails the test, naming the crate.
pub fn load_guest(
    host: &PluginHost,
    zk: &Client,
    name: &str,
    crate_name: &str,
    policy: Policy,
    config: &[(&str, &str)],
) -> Plugin {
    let config = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    host.load_file(zk, name, &guest(crate_name), policy, config)
        .unwrap_or_else(|e| panic!("loading {crate_name}: {e}"))
}

fn build() -> Result<()> {
    let script = root().join("scripts/build-guests.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
