//! Integration tests of lab-config: the invalid-fixture corpus (snapshotted messages),
//! generated hostile inputs, the shipped files, the resolved plan, and fuzzing of the parsers.

mod fixtures;
mod fuzz;
mod generated;
mod plan;
mod shipped;
mod tools_doc;

use std::path::{Path, PathBuf};

/// The repository root, relative to this crate (tests run in the crate's folder), so
/// paths in snapshotted messages are stable.
pub fn repo() -> PathBuf {
    PathBuf::from("../..")
}

/// Shipped files of one folder, sorted.
pub fn shipped(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

/// What kind a fixture is, from its `*.lab.yaml` / `*.payload.yaml` / `*.scenario.yaml` name.
pub fn kind(path: &Path) -> &'static str {
    let name = path.file_name().unwrap().to_str().unwrap();
    ["lab", "payload", "scenario"]
        .into_iter()
        .find(|k| name.ends_with(&format!(".{k}.yaml")))
        .unwrap_or_else(|| panic!("fixture {name} has no kind suffix"))
}

/// The `--lab` a fixture asks for in a first-line comment `# validate with: --lab <path>`
/// (path relative to the repository root).
pub fn fixture_lab(path: &Path) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let first = String::from_utf8_lossy(&text).lines().next()?.to_owned();
    first
        .strip_prefix("# validate with: --lab ")
        .map(|s| s.trim().to_owned())
}

/// Validates one file the way `hvlab validate <file>` does: labs and payloads alone,
/// scenarios against the shipped labs and payloads.
pub fn validate_one(path: &Path) -> Result<lab_config::Validated, lab_config::Diagnostics> {
    let mut req = lab_config::ValidateRequest {
        explicit_scenarios: true,
        ..Default::default()
    };
    req.lab = fixture_lab(path).map(|l| repo().join(l));
    match kind(path) {
        "lab" => req.labs.push(path.to_path_buf()),
        "payload" => req.payloads.push(path.to_path_buf()),
        _ => {
            req.scenarios.push(path.to_path_buf());
            req.payloads = shipped("driver-payloads");
            req.labs = shipped("vm-configs");
            req.default_lab = Some(repo().join("vm-configs/local-sim.yaml"));
        }
    }
    lab_config::validate(&req)
}
