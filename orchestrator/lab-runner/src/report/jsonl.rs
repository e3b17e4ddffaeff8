//! JSON-lines reporter: each [`Envelope`] as one line, flushed per event, so a killed run's
//! `events.jsonl` (or a consumer reading `--format json` from a pipe) has every event that
//! happened before the kill.

use std::io::Write;
use std::path::PathBuf;

use super::{ReportError, Reporter};
use crate::events::Envelope;

/// Writes events as JSON lines to any writer (`events.jsonl`, stdout).
#[derive(Debug)]
pub struct JsonLinesReporter<W: Write + Send> {
    out: W,
    /// Names the destination in errors.
    target: PathBuf,
}

impl<W: Write + Send> JsonLinesReporter<W> {
    pub fn new(out: W, target: impl Into<PathBuf>) -> Self {
        JsonLinesReporter {
            out,
            target: target.into(),
        }
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

impl<W: Write + Send> Reporter for JsonLinesReporter<W> {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        let mut line = serde_json::to_vec(ev).map_err(|source| ReportError::Json {
            what: "an event",
            source,
        })?;
        line.push(b'\n');
        let io = |source| ReportError::Io {
            path: self.target.clone(),
            source,
        };
        self.out.write_all(&line).map_err(io)?;
        self.out.flush().map_err(io)
    }
}
