//! The System event log: `eventlog/System.jsonl`, one [`EventRecord`] per line.
//!
//! Each record is written with one `write` before `append` returns (the crash path relies
//! on that; see [`crate::disk`] for why nothing is fsynced).
//! A torn last line (power-off in the middle of a write) is skipped when reading, and
//! record ids continue after the highest one found.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;

use chrono::Utc;
use parking_lot::Mutex;

use crate::protocol::EventRecord;

/// Providers of the records the guest writes.
pub const PROVIDER_KERNEL_POWER: &str = "Microsoft-Windows-Kernel-Power";
pub const PROVIDER_BUGCHECK: &str = "Microsoft-Windows-WER-SystemErrorReporting";
pub const PROVIDER_EVENTLOG: &str = "EventLog";
pub const PROVIDER_SCM: &str = "Service Control Manager";
pub const PROVIDER_VOLMGR: &str = "volmgr";

/// The only log the guest keeps.
pub const SYSTEM_LOG: &str = "System";

/// Levels as the event viewer names them.
pub const LEVEL_CRITICAL: &str = "critical";
pub const LEVEL_ERROR: &str = "error";
pub const LEVEL_INFORMATION: &str = "information";

/// A new record's content; the log assigns the id and time.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: u32,
    pub provider: &'static str,
    pub level: &'static str,
    pub message: String,
    pub data: BTreeMap<String, String>,
}

/// An append-only event log file.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    /// Serialises appends and holds the next record id.
    next_id: Mutex<u64>,
}

impl EventLog {
    /// Opens (creating the directory if needed) the log at `path`.
    pub fn open(path: PathBuf) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        drop_torn_tail(&path)?;
        let last = read_records(&path)?
            .last()
            .map_or(0, |r: &EventRecord| r.record_id);
        Ok(EventLog {
            path,
            next_id: Mutex::new(last + 1),
        })
    }

    /// Appends one record; returns it.
    pub fn append(&self, event: NewEvent) -> io::Result<EventRecord> {
        let mut next = self.next_id.lock();
        let record = EventRecord {
            record_id: *next,
            time_created: Utc::now(),
            event_id: event.event_id,
            provider: event.provider.to_owned(),
            level: event.level.to_owned(),
            message: event.message,
            data: event.data,
        };
        let mut line = serde_json::to_vec(&record).map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&line)?;
        *next += 1;
        Ok(record)
    }

    /// Records with `record_id > since`, oldest first.
    pub fn since(&self, since: u64) -> io::Result<Vec<EventRecord>> {
        // Hold the append lock so a half-written line is never read.
        let _guard = self.next_id.lock();
        Ok(read_records(&self.path)?
            .into_iter()
            .filter(|r| r.record_id > since)
            .collect())
    }
}

/// Cuts an unterminated last line (a write torn by a power-off), so the next append starts
/// on a line of its own.
fn drop_torn_tail(path: &PathBuf) -> io::Result<()> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(keep as u64)
}

fn read_records(path: &PathBuf) -> io::Result<Vec<EventRecord>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out: Vec<EventRecord> = Vec::new();
    for line in BufReader::new(file).split(b'\n') {
        // A line that does not parse is a torn write from a power-off: skip it.
        if let Ok(record) = serde_json::from_slice::<EventRecord>(&line?)
            && out.last().is_none_or(|l| l.record_id < record.record_id)
        {
            out.push(record);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: u32) -> NewEvent {
        NewEvent {
            event_id: id,
            provider: PROVIDER_EVENTLOG,
            level: LEVEL_INFORMATION,
            message: format!("event {id}"),
            data: BTreeMap::new(),
        }
    }

    #[test]
    fn ids_continue_across_reopen_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eventlog/System.jsonl");
        let log = EventLog::open(path.clone()).unwrap();
        log.append(event(6005)).unwrap();
        log.append(event(6006)).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"record_id":3,"time_cr"#).unwrap();
        drop(f);
        let log = EventLog::open(path).unwrap();
        let r = log.append(event(41)).unwrap();
        assert_eq!(r.record_id, 3);
        let all = log.since(0).unwrap();
        assert_eq!(
            all.iter().map(|r| r.event_id).collect::<Vec<_>>(),
            [6005, 6006, 41]
        );
        assert_eq!(log.since(2).unwrap().len(), 1);
    }
}
