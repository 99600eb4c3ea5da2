//! Real JavaScript guests for the tests: the example plugins of `examples/js/` and the test
//! guests of `tests/guests-js/`, built into components with the pinned componentize-js by
//! `scripts/build-guests-js.sh` once per test process (it keeps a component whose inputs have
//! not changed). A missing componentize-js (`scripts/setup.sh` installs it) or a failed build is a
//! loud failure, never a skip.

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

/// Builds every JavaScript guest (once per process) and returns the path of `name`'s
/// component (`name` as its source file is called, without `.js`: `path-router`, `probe`).
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<std::result::Result<Vec<PathBuf>, String>> = OnceLock::new();
    let built = match BUILT.get_or_init(|| build().map_err(|e| format!("{e:#}"))) {
        Ok(built) => built,
        Err(e) => panic!("building the JavaScript guests failed: {e}"),
    };
    let want = format!("{name}.wasm");
    built
        .iter()
        .find(|p| p.file_name().is_some_and(|f| f == want.as_str()))
        .unwrap_or_else(|| panic!("no JavaScript guest {name} among {built:?}"))
        .clone()
}

fn build() -> Result<Vec<PathBuf>> {
    let script = root().join("scripts/build-guests-js.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let paths: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| root().join(l))
        .collect();
    for p in &paths {
        if !p.exists() {
            bail!(
                "{} printed {} but it does not exist",
                script.display(),
                p.display()
            );
        }
    }
    Ok(paths)
}
