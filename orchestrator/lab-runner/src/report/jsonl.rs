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

/// A file that only ever holds whole lines: the backing writer of `events.jsonl`.
///
/// Each `write` call is one whole line, handed to the file in one `write`. If that fails or
/// writes only part of the line (a full disk), the file is cut back to the end of the last
/// whole line and the log stops: every later line is refused with that same first error
/// (so it is reported once, not once per event), and a reader never meets half a JSON
/// object.
#[derive(Debug)]
pub struct LineLog<F> {
    file: F,
    /// Bytes of whole lines written so far.
    len: u64,
    /// Why the log stopped, once it has.
    stopped: Option<(std::io::ErrorKind, String)>,
}

/// What [`LineLog`] needs from its file: plain writes, and cutting back to a length.
pub trait Truncate {
    fn truncate(&mut self, len: u64) -> std::io::Result<()>;
}

impl Truncate for std::fs::File {
    fn truncate(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }
}

impl<F: Write + Truncate> LineLog<F> {
    /// A log appending to `file`, which holds `len` bytes of whole lines already.
    pub fn new(file: F, len: u64) -> Self {
        LineLog {
            file,
            len,
            stopped: None,
        }
    }

    pub fn into_inner(self) -> F {
        self.file
    }
}

impl<F: Write + Truncate> Write for LineLog<F> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        use std::io::{Error, ErrorKind};
        if let Some((kind, why)) = &self.stopped {
            return Err(Error::new(*kind, why.clone()));
        }
        let failure = match self.file.write(line) {
            Ok(n) if n == line.len() => {
                self.len += n as u64;
                return Ok(n);
            }
            Ok(n) => Error::new(
                ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", line.len()),
            ),
            Err(e) => e,
        };
        self.stopped = Some((failure.kind(), failure.to_string()));
        if let Err(e) = self.file.truncate(self.len) {
            return Err(Error::new(
                failure.kind(),
                format!("{failure}; cutting the file back to its last whole line also failed: {e}"),
            ));
        }
        Err(failure)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};

    use super::{LineLog, Truncate};

    /// A file with room for `room` bytes; a write past it lands partly (like ENOSPC after a
    /// short write), the next one fails outright.
    struct Tiny {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for Tiny {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let free = self.room.saturating_sub(self.data.len());
            if free == 0 {
                return Err(io::Error::from_raw_os_error(28));
            }
            let n = free.min(buf.len());
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Truncate for Tiny {
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn a_short_write_is_cut_back_to_the_last_whole_line_and_the_log_stops() {
        let mut log = LineLog::new(
            Tiny {
                data: vec![],
                room: 20,
            },
            0,
        );
        log.write_all(b"{\"a\":1}\n").unwrap();
        let e = log.write_all(b"{\"b\":\"long line\"}\n").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WriteZero, "{e}");
        assert!(e.to_string().contains("short write"), "{e}");
        // Room is free again after the cut, but the log stays stopped with the same error.
        let again = log.write_all(b"{}\n").unwrap_err();
        assert_eq!(again.to_string(), e.to_string());
        assert_eq!(log.into_inner().data, b"{\"a\":1}\n");
    }

    #[test]
    fn enospc_is_returned_with_its_os_cause() {
        let mut log = LineLog::new(
            Tiny {
                data: vec![],
                room: 8,
            },
            0,
        );
        log.write_all(b"{\"a\":1}\n").unwrap();
        let e = log.write_all(b"{}\n").unwrap_err().to_string();
        assert!(e.contains("No space left on device (os error 28)"), "{e}");
        assert_eq!(log.into_inner().data, b"{\"a\":1}\n");
    }
}
