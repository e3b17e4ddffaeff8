//! `GuestError`: a failed agent request, carried to the client as `Response::Error`.

use std::io;
use std::path::Path;

use crate::protocol::{Response, codes};
use crate::winpath::PathError;

/// A request that failed, with the Windows error code a real guest would report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (error {code})")]
pub struct GuestError {
    pub code: u32,
    pub message: String,
}

pub type GuestResult<T> = Result<T, GuestError>;

impl GuestError {
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        GuestError {
            code,
            message: message.into(),
        }
    }

    /// An I/O failure on `path`: not-found kinds map to 2/3, the rest to an internal error.
    pub fn io(what: &str, win_path: &str, host: &Path, e: &io::Error) -> Self {
        let code = match e.kind() {
            io::ErrorKind::NotFound => {
                if host.parent().is_some_and(Path::is_dir) {
                    codes::ERROR_FILE_NOT_FOUND
                } else {
                    codes::ERROR_PATH_NOT_FOUND
                }
            }
            io::ErrorKind::PermissionDenied | io::ErrorKind::IsADirectory => {
                codes::ERROR_ACCESS_DENIED
            }
            io::ErrorKind::NotADirectory => codes::ERROR_PATH_NOT_FOUND,
            io::ErrorKind::DirectoryNotEmpty => codes::ERROR_DIR_NOT_EMPTY,
            _ => codes::ERROR_INTERNAL_ERROR,
        };
        GuestError::new(code, format!("{what} {win_path}: {e}"))
    }

    pub fn to_response(&self) -> Response {
        Response::error(self.code, self.message.clone())
    }
}

impl From<PathError> for GuestError {
    fn from(e: PathError) -> Self {
        GuestError::new(e.code, e.to_string())
    }
}
