//! Typed triage errors: what is wrong, in which file, and at which offset when known.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A dump that could not be triaged. Displays as
/// `triage <path>: <what> (at offset 0x..)`.
#[derive(Debug)]
pub struct TriageError {
    pub path: PathBuf,
    /// File offset of the offending structure, when known.
    pub offset: Option<u64>,
    pub kind: TriageErrorKind,
}

/// What is wrong with the dump.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TriageErrorKind {
    #[error("cannot read the file")]
    Io(#[source] io::Error),
    #[error("the file is {len} bytes, shorter than the 8192-byte dump header")]
    TooShort { len: u64 },
    #[error("not a kernel dump: the file starts with {found}, expected \"PAGEDU64\"")]
    NotADump { found: String },
    #[error("32-bit kernel dump (\"PAGEDUMP\"): only 64-bit dumps are supported")]
    ThirtyTwoBit,
    #[error("user-mode minidump (\"MDMP\"), not a kernel dump")]
    UserModeMinidump,
    #[error("unsupported dump type {dump_type:#x}")]
    UnsupportedDumpType { dump_type: u32 },
    #[error(
        "the {what} ends at offset {end:#x}, past the end of the file ({len:#x} bytes): the dump is truncated"
    )]
    Truncated { what: String, end: u64, len: u64 },
    #[error(
        "page data for {pages} pages ends at offset {end:#x}, past the end of the file ({len:#x} bytes)"
    )]
    PagesPastEnd { pages: u64, end: u64, len: u64 },
    #[error("malformed {0}")]
    Malformed(String),
    #[error("kdmp-parser rejected the dump: {0}")]
    Parser(String),
    #[error("kdmp-parser panicked: {0}")]
    ParserPanicked(String),
}

impl TriageErrorKind {
    /// A stable, machine-readable name for JSON output and tests.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io(_) => "io",
            Self::TooShort { .. } => "too-short",
            Self::NotADump { .. } => "not-a-dump",
            Self::ThirtyTwoBit => "32-bit",
            Self::UserModeMinidump => "user-mode-minidump",
            Self::UnsupportedDumpType { .. } => "unsupported-dump-type",
            Self::Truncated { .. } => "truncated",
            Self::PagesPastEnd { .. } => "pages-past-end",
            Self::Malformed(_) => "malformed",
            Self::Parser(_) => "parser",
            Self::ParserPanicked(_) => "parser-panicked",
        }
    }
}

impl TriageError {
    pub(crate) fn new(
        path: impl Into<PathBuf>,
        offset: Option<u64>,
        kind: TriageErrorKind,
    ) -> Self {
        Self {
            path: path.into(),
            offset,
            kind,
        }
    }
}

impl fmt::Display for TriageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "triage {}: {}", self.path.display(), self.kind)?;
        if let Some(offset) = self.offset {
            write!(f, " (at offset {offset:#x})")?;
        }
        Ok(())
    }
}

impl std::error::Error for TriageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            TriageErrorKind::Io(e) => Some(e),
            _ => None,
        }
    }
}
