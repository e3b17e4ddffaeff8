//! The "run in progress" marker: `<run-id>/.hvlab-running` holds the orchestrator's pid
//! and process start time. It is removed when the run ends; a killed run leaves it, but a
//! marker whose process is gone (or whose pid now belongs to a process that started at
//! another time) reads as "not running", so `hvlab results prune` never waits on it forever
//! and never deletes a live run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The marker's file name inside a run folder.
pub const MARKER: &str = ".hvlab-running";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Marker {
    pid: u32,
    /// Start time of the process in clock ticks since boot (`/proc/<pid>/stat` field 22);
    /// `None` where that is not available.
    start: Option<u64>,
}

/// Holds a run folder's marker; dropping it removes the marker.
#[derive(Debug)]
pub struct RunMarker {
    path: PathBuf,
}

impl RunMarker {
    /// Marks `run_dir` as in progress by this process.
    pub fn create(run_dir: &Path) -> std::io::Result<Self> {
        let pid = std::process::id();
        let marker = Marker {
            pid,
            start: start_time(pid),
        };
        let path = run_dir.join(MARKER);
        let json = serde_json::to_vec(&marker).map_err(std::io::Error::other)?;
        crate::results::atomic_write(&path, &json).map_err(std::io::Error::other)?;
        Ok(RunMarker { path })
    }
}

impl Drop for RunMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether a run in `run_dir` is still in progress: its marker names a live process that
/// started when the marker says. A marker that does not parse counts as live (a run
/// writing it right now), so nothing is removed on a guess.
pub fn is_running(run_dir: &Path) -> bool {
    let Ok(text) = std::fs::read(run_dir.join(MARKER)) else {
        return false;
    };
    let Ok(m) = serde_json::from_slice::<Marker>(&text) else {
        return true;
    };
    if !lab_backends::process::pid_alive(m.pid) {
        return false;
    }
    match (m.start, start_time(m.pid)) {
        (Some(was), Some(now)) => was == now,
        // No start time to compare: trust the pid.
        _ => true,
    }
}

/// The process's start time from `/proc` (Linux), to tell a reused pid apart.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_live_while_held_and_gone_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_running(dir.path()));
        let m = RunMarker::create(dir.path()).unwrap();
        assert!(is_running(dir.path()));
        drop(m);
        assert!(!is_running(dir.path()));
    }

    #[test]
    fn a_killed_runs_marker_or_a_reused_pid_is_not_live() {
        let dir = tempfile::tempdir().unwrap();
        // A child that has exited and been reaped: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let dead = Marker { pid, start: None };
        std::fs::write(dir.path().join(MARKER), serde_json::to_vec(&dead).unwrap()).unwrap();
        assert!(!is_running(dir.path()));
        // Our own pid with another start time: the pid was reused.
        let reused = Marker {
            pid: std::process::id(),
            start: start_time(std::process::id()).map(|s| s + 1),
        };
        std::fs::write(
            dir.path().join(MARKER),
            serde_json::to_vec(&reused).unwrap(),
        )
        .unwrap();
        assert_eq!(
            is_running(dir.path()),
            start_time(std::process::id()).is_none()
        );
    }
}
