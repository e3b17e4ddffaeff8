//! The CLI's error type, its exit code, and the printer that shows an error once with its
//! whole chain of causes.

use std::io::Write;

use lab_error::BoxError;

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
    #[error("{what}")]
    Infra {
        /// What was being done, a fragment that reads after "failed to".
        what: String,
        /// Why, when another error says so.
        #[source]
        source: Option<BoxError>,
    },
    /// The lab's backend could not be built from the lab file.
    #[error(transparent)]
    Connect(#[from] lab_backends::ConnectError),
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
    /// An infrastructure failure while doing `what`, because of `source`.
    pub fn infra(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        CliError::Infra {
            what: what.into(),
            source: Some(source.into()),
        }
    }

    /// An infrastructure failure whose message says everything there is to say.
    pub fn infra_msg(what: impl Into<String>) -> Self {
        CliError::Infra {
            what: what.into(),
            source: None,
        }
    }

    /// The exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => exit::CONFIG_ERROR,
            CliError::Io { .. } | CliError::Infra { .. } | CliError::Connect(_) => {
                exit::INFRA_ERROR
            }
            CliError::Run(e) => e.exit_code() as u8,
        }
    }
}

/// Prints `err` to stderr: diagnostics in full, any other error as
/// `error: failed to <what>` followed by one `because:` line per cause. The same lines go
/// to hvlab.log when the command opened one.
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
            let _ = out.write_all(render(other).as_bytes());
            tracing::error!("failed to {}", lab_error::Chain(other));
        }
    }
}

/// The lines [`print_error`] writes for an error that is not a diagnostic.
pub fn render(err: &dyn std::error::Error) -> String {
    let (what, causes) = lab_error::split(err);
    let mut s = format!("error: failed to {what}\n");
    for c in causes {
        s.push_str(&format!("  because: {c}\n"));
    }
    s
}
