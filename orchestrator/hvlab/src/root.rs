//! Finding the repository root (where vm-configs/, driver-payloads/ and scenarios/ live).

use std::path::{Path, PathBuf};

use crate::error::CliError;

fn is_root(dir: &Path) -> bool {
    dir.join("vm-configs").is_dir() && dir.join("driver-payloads").is_dir()
}

/// `explicit` if given, else the nearest folder upwards from the current one that has
/// `vm-configs/` and `driver-payloads/`, else the current folder. The current folder is
/// returned as `""` so that paths in messages stay short (`scenarios/smoke.yaml`).
pub fn find(explicit: Option<&Path>) -> Result<PathBuf, CliError> {
    if let Some(dir) = explicit {
        if !dir.is_dir() {
            return Err(CliError::Usage(format!(
                "--root `{}` is not a folder",
                dir.display()
            )));
        }
        return Ok(dir.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(|source| CliError::Io {
        action: "read the current folder".into(),
        source,
    })?;
    for dir in cwd.ancestors() {
        if is_root(dir) {
            return Ok(if dir == cwd {
                PathBuf::new()
            } else {
                dir.to_path_buf()
            });
        }
    }
    Ok(PathBuf::new())
}
