//! `--known-issues-file` / `--known-issues`: which known-issues file a run reads (the
//! flag's, else `<root>/known-issues.yaml` when it exists) and what known crashes do to
//! the exit code. A bad file is a config error (exit 2) with file:line:col.

use std::path::Path;
use std::sync::Arc;

use lab_runner::known::{KnownPolicy, KnownSettings};

use crate::error::CliError;

/// Loads the known issues for a run.
pub fn settings(
    root: &Path,
    file: Option<&Path>,
    policy: KnownPolicy,
) -> Result<KnownSettings, CliError> {
    let path = match file {
        Some(p) if !p.exists() => {
            return Err(CliError::Usage(format!(
                "known-issues file `{}` does not exist",
                p.display()
            )));
        }
        Some(p) => Some(p.to_path_buf()),
        None => Some(root.join(lab_config::KNOWN_ISSUES_FILE)).filter(|p| p.exists()),
    };
    let issues = match path {
        Some(p) => Some(Arc::new(
            lab_config::load_known_issues(&p).map_err(CliError::Config)?,
        )),
        None => None,
    };
    Ok(KnownSettings {
        issues,
        policy,
        ..KnownSettings::default()
    })
}
