//! On-disk state of simulated VMs: directory clones (the analogue of differencing disks and
//! checkpoints) and the owner record that lets `hvlab lab gc` find leftovers of killed runs.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{BackendError, Result};
use crate::model::ConsoleSegment;

/// Written next to every VM's disk: who created it, so a later `gc` can decide whether the
/// VM is an orphan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    pub vm: String,
    pub run_id: String,
    pub template: String,
    /// The orchestrator process that created the VM.
    pub owner_pid: u32,
    pub created: chrono::DateTime<chrono::Utc>,
}

/// File names inside a VM directory.
pub(crate) const OWNER_FILE: &str = "owner.json";
pub(crate) const GUEST_PID_FILE: &str = "guest.pid";
pub(crate) const DISK_DIR: &str = "disk";
pub(crate) const CHECKPOINTS_DIR: &str = "checkpoints";
pub(crate) const CONSOLE_LOG: &str = "console.log";

/// Copies a directory tree. Used for VM clones and checkpoints: the guest appends to some
/// files in place (the event log), so hard links would let a running VM rewrite its own
/// checkpoint.
pub fn copy_tree(from: &Path, to: &Path) -> Result<u64> {
    let mut bytes = 0;
    fs::create_dir_all(to).map_err(BackendError::io("create directory", to))?;
    for entry in fs::read_dir(from).map_err(BackendError::io("read directory", from))? {
        let entry = entry.map_err(BackendError::io("read directory", from))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let ty = entry.file_type().map_err(BackendError::io("stat", &src))?;
        if ty.is_dir() {
            bytes += copy_tree(&src, &dst)?;
        } else if ty.is_file() {
            bytes += fs::copy(&src, &dst).map_err(BackendError::io("copy file", &src))?;
        }
        // Sockets, fifos and symlinks are never part of a guest disk; skip them.
    }
    Ok(bytes)
}

/// Replaces `target` with a copy of `source`, going through a sibling temp dir so a crash
/// midway never leaves a half-copied disk under the real name.
pub fn replace_tree(source: &Path, target: &Path) -> Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    let staging = parent.join(format!(
        ".{}.staging",
        target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("disk")
    ));
    remove_tree(&staging)?;
    copy_tree(source, &staging)?;
    remove_tree(target)?;
    fs::rename(&staging, target).map_err(BackendError::io("move disk into place", target))
}

/// Removes a directory tree; a missing directory is fine.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackendError::Io {
            what: "remove directory".into(),
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Writes `bytes` to `path` atomically (temp file + rename in the same directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_sibling(path);
    fs::write(&tmp, bytes).map_err(BackendError::io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(BackendError::io("rename into place", path))
}

fn tmp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

pub fn read_owner(vm_dir: &Path) -> Option<OwnerRecord> {
    let bytes = fs::read(vm_dir.join(OWNER_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Reads at most `max` bytes of a log file from byte `from` on; a missing file (no guest
/// started yet) reads as empty.
pub fn read_from(path: &Path, from: u64, max: usize) -> Result<ConsoleSegment> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ConsoleSegment {
                bytes: Vec::new(),
                len: 0,
            });
        }
        Err(e) => return Err(BackendError::io("read the console log", path)(e)),
    };
    let err = |e| BackendError::io("read the console log", path)(e);
    let total = file.metadata().map_err(err)?.len();
    // A mark past the end means the log was replaced since: read it from its start.
    let from = if from > total { 0 } else { from };
    file.seek(SeekFrom::Start(from)).map_err(err)?;
    let mut bytes = Vec::new();
    file.take(max as u64).read_to_end(&mut bytes).map_err(err)?;
    Ok(ConsoleSegment {
        bytes,
        len: total - from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_bounded_segment_from_a_mark() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        assert_eq!(read_from(&log, 0, 10).unwrap().len, 0);
        fs::write(&log, b"boot 1\nboot 2\nbugcheck 0x50\n").unwrap();
        let seg = read_from(&log, 7, 6).unwrap();
        assert_eq!(seg.bytes, b"boot 2");
        assert_eq!(seg.len, 21);
        // A mark past the end (the log was recreated) reads from the start.
        assert_eq!(read_from(&log, 1000, 6).unwrap().bytes, b"boot 1");
    }

    #[test]
    fn copy_and_replace_tree() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        fs::create_dir_all(a.join("C/Windows")).unwrap();
        fs::write(a.join("C/Windows/x.sys"), b"driver").unwrap();
        let b = dir.path().join("b");
        assert_eq!(copy_tree(&a, &b).unwrap(), 6);
        fs::write(b.join("C/Windows/x.sys"), b"changed").unwrap();
        fs::write(b.join("extra"), b"1").unwrap();
        replace_tree(&a, &b).unwrap();
        assert_eq!(fs::read(b.join("C/Windows/x.sys")).unwrap(), b"driver");
        assert!(!b.join("extra").exists());
    }

    #[test]
    fn remove_missing_tree_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        remove_tree(&dir.path().join("nope")).unwrap();
    }
}
