//! The CLI's error type, its exit code, and the printer that shows an error once with its
//! whole chain of causes.

use std::error::Error as _;
use std::io::Write;

use lab_config::Diagnostics;

use crate::exit;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad command-line use.
    #[error("{0}")]
    Usage(String),
    /// Configuration files have problems (printed as diagnostics, not as a chain).
    #[error("validate configuration: {}", .0.summary())]
    Config(Diagnostics),
    /// The lab or the results directory failed (not the code under test).
    #[error("{0}")]
    Infra(String),
    /// A run could not start.
    #[error("run: {0}")]
    Run(Box<lab_runner::run::RunError>),
    /// A file-system operation failed.
    #[error("{action}")]
    Io {
        /// What was being done, e.g. "write schemas/lab.schema.json".
        action: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// The exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => exit::CONFIG_ERROR,
            CliError::Io { .. } | CliError::Infra(_) => exit::INFRA_ERROR,
            CliError::Run(e) => e.exit_code() as u8,
        }
    }
}

/// Prints `err` to stderr: diagnostics in full, any other error as
/// `error: failed to <what>` followed by one `caused by:` line per source.
pub fn print_error(err: &CliError) {
    let stderr = std::io::stderr();
    let mut out = stderr.lock();
    match err {
        CliError::Config(diags) => {
            let _ = write!(out, "{diags}");
            let _ = writeln!(out, "\nerror: {}", diags.summary());
        }
        CliError::Usage(msg) => {
            let _ = writeln!(out, "error: {msg}");
        }
        other => {
            let _ = writeln!(out, "error: failed to {other}");
            let mut source = other.source();
            while let Some(s) = source {
                let _ = writeln!(out, "  caused by: {s}");
                source = s.source();
            }
        }
    }
}
