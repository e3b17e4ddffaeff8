//! The runner's error: what it was doing to a VM when the lab failed, with the backend's
//! (and under it the transport's) reasons kept as sources, so that every report can name
//! the whole chain instead of the outermost words.

use std::path::PathBuf;

use lab_backends::BackendError;

use crate::deploy::DeployError;
use crate::results::ResultsError;

/// Something the lab (not the code under test) could not do for a unit. Messages are
/// lowercase fragments that read after "failed to".
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A backend call on a VM failed.
    #[error("{what}")]
    Lab {
        /// What the runner was doing, naming the VM.
        what: String,
        #[source]
        source: BackendError,
    },
    /// Deploying the payload failed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// The run's results directory failed.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// A crash dump could not be triaged or filed in the bucket index.
    #[error("{what} {}", path.display())]
    Triage {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: lab_error::BoxError,
    },
    /// A guest restart that is a lab error, not a crash (see [`crate::verdict`]).
    #[error(transparent)]
    NotACrash(#[from] crate::verdict::NotACrash),
    /// A condition the runner observed itself; there is no deeper cause.
    #[error("{0}")]
    Observed(String),
}

impl RunnerError {
    /// Wraps a backend error as "`what`" (e.g. "start hvlab-...-0").
    pub fn lab(what: impl Into<String>) -> impl FnOnce(BackendError) -> Self {
        let what = what.into();
        move |source| RunnerError::Lab { what, source }
    }
}

/// The whole chain of `e` on one line, `what: because: because`, for the places (step
/// messages, crash notes) that only hold text.
pub fn text(e: &dyn std::error::Error) -> String {
    lab_error::Chain(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_cause_stays_in_the_chain() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = RunnerError::lab("create VM v")(BackendError::Connection {
            vm: "v".into(),
            message: "vm.create on ssh://h:22".into(),
            source: Some(io.into()),
        });
        assert_eq!(
            lab_error::chain(&e),
            [
                "create VM v",
                "reach the guest agent of v: vm.create on ssh://h:22",
                "connection refused"
            ]
        );
    }
}
