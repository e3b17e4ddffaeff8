//! Secrets named by reference (environment variable or file), resolved at connect time into a
//! value that never prints and is registered with the log redactor.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::redact::Redactor;

/// Where a secret lives. The lab file names one of these; the value itself never appears in
/// configuration.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretRef {
    /// An environment variable of the orchestrator process.
    Env(String),
    /// A file whose contents (less one trailing newline) are the secret.
    File(PathBuf),
}

impl fmt::Debug for SecretRef {
    // The reference (a variable name or a path) is not secret; printing it helps users.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(var) => write!(f, "env:{var}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

/// Why a secret could not be read. Never carries the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("read secret from environment variable {var}: it is not set")]
    EnvMissing { var: String },
    #[error("read secret from environment variable {var}: it is not valid unicode")]
    EnvNotUnicode { var: String },
    #[error("read secret from file {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read secret from file {path}: it is not valid utf-8")]
    FileNotUtf8 { path: PathBuf },
    #[error("read secret from {reference:?}: it is empty")]
    Empty { reference: SecretRef },
}

impl SecretRef {
    /// Reads the secret and registers its value with the process-wide [`Redactor`], so that
    /// any log line that later contains it is masked.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        self.resolve_into(Redactor::global())
    }

    /// Like [`SecretRef::resolve`], registering with a specific redactor.
    pub fn resolve_into(&self, redactor: &Redactor) -> Result<Secret, SecretError> {
        let value = match self {
            SecretRef::Env(var) => match std::env::var(var) {
                Ok(v) => v,
                Err(std::env::VarError::NotPresent) => {
                    return Err(SecretError::EnvMissing { var: var.clone() });
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(SecretError::EnvNotUnicode { var: var.clone() });
                }
            },
            SecretRef::File(path) => read_secret_file(path)?,
        };
        if value.is_empty() {
            return Err(SecretError::Empty {
                reference: self.clone(),
            });
        }
        redactor.add(&value);
        Ok(Secret(value))
    }
}

fn read_secret_file(path: &Path) -> Result<String, SecretError> {
    let bytes = std::fs::read(path).map_err(|source| SecretError::File {
        path: path.to_owned(),
        source,
    })?;
    let mut text =
        String::from_utf8(bytes).map_err(|_| SecretError::FileNotUtf8 { path: path.into() })?;
    // Files written by `echo` end in a newline that is not part of the secret.
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// A resolved secret value. `Debug` and `Display` print `<redacted>`; only
/// [`Secret::expose`] gives the value, at the single place that hands it to a library.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A secret from a value already in memory (tests, or a value another component
    /// resolved). Registers it with the global redactor like [`SecretRef::resolve`].
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        Redactor::global().add(&value);
        Secret(value)
    }

    /// The value. Call only where it is handed to an authentication API.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2-value");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2-value");
    }

    #[test]
    fn file_secret_drops_one_trailing_newline_and_registers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "p4ss word\r\n").unwrap();
        let redactor = Redactor::new();
        let s = SecretRef::File(path).resolve_into(&redactor).unwrap();
        assert_eq!(s.expose(), "p4ss word");
        assert_eq!(redactor.redact("x p4ss word y"), "x *** y");
    }

    #[test]
    fn missing_env_and_file_say_which() {
        let e = SecretRef::Env("HVLAB_TEST_SURELY_UNSET_VAR".into())
            .resolve_into(&Redactor::new())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "read secret from environment variable HVLAB_TEST_SURELY_UNSET_VAR: it is not set"
        );
        let e = SecretRef::File("/nonexistent/hvlab/pw".into())
            .resolve_into(&Redactor::new())
            .unwrap_err();
        assert_eq!(e.to_string(), "read secret from file /nonexistent/hvlab/pw");
    }

    #[test]
    fn empty_secret_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "\n").unwrap();
        let e = SecretRef::File(path.clone())
            .resolve_into(&Redactor::new())
            .unwrap_err();
        assert!(e.to_string().contains("it is empty"), "{e}");
    }
}
