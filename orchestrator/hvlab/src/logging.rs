//! Logs go to `results/<run>/hvlab.log`, never to the terminal the reporters draw on.
//! `HVLAB_LOG` sets the filter (tracing's env-filter syntax, default `info`). Every secret
//! the transports resolve is registered with the global redactor, which masks it (and its
//! base64 forms) in everything written to the log.

use std::path::Path;
use std::sync::Mutex;

use lab_transport::redact::{RedactingMakeWriter, Redactor};
use tracing_subscriber::EnvFilter;

use crate::error::CliError;

/// Keeps the log file's writer alive for the run.
#[derive(Debug)]
pub struct LogGuard;

/// Sends tracing output to `path` (created fresh).
pub fn to_file(path: &Path) -> Result<LogGuard, CliError> {
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(path)
        .map_err(|source| CliError::Io {
            action: format!("create the log file `{}`", path.display()),
            source,
        })?;
    let filter = EnvFilter::try_from_env("HVLAB_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // A second run in the same process (tests) keeps the first subscriber: ignore that.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(RedactingMakeWriter::new(
            Mutex::new(file),
            Redactor::global().clone(),
        ))
        .try_init();
    Ok(LogGuard)
}
