//! Real Python guests for the tests: the example plugins in `examples/python/` and the test
//! guests in `tests/guests-py/`, built with the pinned componentize-py by
//! `scripts/build-guests-py.sh` once per test process. That script installs componentize-py
//! when it is missing and rebuilds a guest only when its sources changed, so the host's
//! compile cache keeps hitting across runs.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

/// The workspace root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Builds every Python guest (once per process) and returns the path of `name`'s component
/// (its directory's name, e.g. `audit_log` or `probe`). A failed build or a missing
/// componentize-py that cannot be installed is a loud failure, never a skip.
pub fn py_guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    if let Err(e) = BUILT.get_or_init(|| build().map_err(|e| format!("{e:#}"))) {
        panic!("building the Python guests failed: {e}");
    }
    let p = root()
        .join("target/wasm/python")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "no Python guest component at {} (is {name} in examples/python or tests/guests-py?)",
        p.display()
    );
    p
}

fn build() -> Result<()> {
    let script = root().join("scripts/build-guests-py.sh");
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
