//! Backend errors, with enough context to tell a user what broke and what may be left behind.

use std::path::PathBuf;

/// `Result` with a [`BackendError`].
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// Something the lab could not do. Messages are lowercase fragments that read after
/// "failed to ...", and name the VM / file involved.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A filesystem operation on the lab's own state failed.
    #[error("{what} ({path})")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The guest agent could not be reached or dropped the connection. Transient while a guest
    /// boots or reboots; the runner then checks whether the guest crashed.
    #[error("reach the guest agent of {vm}: {message}")]
    Connection {
        vm: String,
        message: String,
        /// The transport's own reason (DNS, refused, timed out, authentication), kept so
        /// every report can name it.
        #[source]
        source: Option<lab_error::BoxError>,
    },
    /// The guest answered with an error (a Windows error code where one applies).
    #[error("{operation} on {vm}: {message} (error {code})")]
    Guest {
        vm: String,
        operation: String,
        code: u32,
        message: String,
    },
    /// The guest sent something that does not follow the protocol.
    #[error("talk to {vm}: protocol error: {message}")]
    Protocol { vm: String, message: String },
    /// An operation did not finish within its timeout.
    #[error("{operation} on {vm}: timed out after {timeout:?}")]
    Timeout {
        vm: String,
        operation: String,
        timeout: std::time::Duration,
    },
    /// A transferred file did not arrive intact.
    #[error("transfer {path} to/from {vm}: sha256 mismatch (expected {expected}, got {actual})")]
    HashMismatch {
        vm: String,
        path: String,
        expected: String,
        actual: String,
    },
    /// The VM does not exist or is in the wrong state for the operation.
    #[error("{operation} on {vm}: {message}")]
    VmState {
        vm: String,
        operation: String,
        message: String,
    },
    /// A child process (guest, PowerShell) could not be started or supervised.
    #[error("start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The operation is not supported by this backend (an honest "unsupported").
    #[error("{operation} is not supported by the {backend} backend")]
    Unsupported {
        backend: &'static str,
        operation: String,
    },
    /// The operation was cancelled (Ctrl-C).
    #[error("{operation} on {vm}: cancelled")]
    Cancelled { vm: String, operation: String },
}

impl BackendError {
    /// Errors worth retrying after a short wait (a guest that is booting, a dropped socket).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BackendError::Connection { .. } | BackendError::Timeout { .. }
        )
    }

    /// A Windows error code carried by a guest error, if any.
    pub fn guest_code(&self) -> Option<u32> {
        match self {
            BackendError::Guest { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The guest agent of `vm` could not be reached; `message` says how, nothing says why.
    pub(crate) fn connection(vm: impl Into<String>, message: impl Into<String>) -> Self {
        BackendError::Connection {
            vm: vm.into(),
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let (what, path) = (what.into(), path.into());
        move |source| BackendError::Io { what, path, source }
    }
}
