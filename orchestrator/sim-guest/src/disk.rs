//! The guest's disk directory: its layout, `vm.json`, `agent.json`, and atomic file writes.
//!
//! See the crate docs for the layout. Everything the guest persists is written through
//! [`write_atomic`] (temporary file in the same directory, then rename), so a guest killed
//! at any moment (power off = SIGKILL) leaves either the old or the new content. Nothing is
//! fsynced: a killed process loses nothing the kernel's page cache holds, and a crash of
//! the host itself is not a failure the simulated lab models (fsyncs made a boot 4x slower).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::registry::Registry;

/// Why the disk directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("open disk directory {0}: it does not exist or is not a directory")]
    Missing(PathBuf),
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("validate {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

pub use crate::protocol::launch::{AgentInfo, VmConfig};

/// Paths inside a disk directory.
#[derive(Debug, Clone)]
pub struct Disk {
    root: PathBuf,
}

impl Disk {
    /// A disk directory that must exist.
    pub fn open(root: impl Into<PathBuf>) -> Result<Disk, DiskError> {
        let root = root.into();
        if !root.is_dir() {
            return Err(DiskError::Missing(root));
        }
        Ok(Disk { root })
    }

    /// Creates a fresh disk directory (a "template"): `vm.json`, a default registry and the
    /// Windows folders. Existing files are overwritten.
    pub fn create(root: impl Into<PathBuf>, vm: &VmConfig) -> Result<Disk, DiskError> {
        let disk = Disk { root: root.into() };
        for dir in [
            disk.drivers_dir(),
            disk.minidump_dir(),
            disk.eventlog_dir(),
            disk.root.join("C").join("ebpf"),
        ] {
            fs::create_dir_all(&dir).map_err(|source| DiskError::Write { path: dir, source })?;
        }
        disk.write_vm_config(vm)?;
        write_json(&disk.registry_path(), &Registry::default())?;
        Ok(disk)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn vm_json(&self) -> PathBuf {
        self.root.join("vm.json")
    }
    pub fn registry_path(&self) -> PathBuf {
        self.root.join("registry.json")
    }
    pub fn agent_json(&self) -> PathBuf {
        self.root.join("agent.json")
    }
    pub fn bootstat_path(&self) -> PathBuf {
        self.root.join("bootstat.json")
    }
    pub fn memory_json(&self) -> PathBuf {
        self.root.join("memory.json")
    }
    pub fn eventlog_dir(&self) -> PathBuf {
        self.root.join("eventlog")
    }
    pub fn windows_dir(&self) -> PathBuf {
        self.root.join("C").join("Windows")
    }
    pub fn drivers_dir(&self) -> PathBuf {
        self.windows_dir().join("System32").join("drivers")
    }
    pub fn memory_dmp(&self) -> PathBuf {
        self.windows_dir().join("MEMORY.DMP")
    }
    pub fn minidump_dir(&self) -> PathBuf {
        self.windows_dir().join("Minidump")
    }
    /// Where uploads are staged until their hash is verified (outside `C/`, so a partial
    /// file is never visible to the guest).
    pub fn staging_dir(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// Reads and checks `vm.json`.
    pub fn vm_config(&self) -> Result<VmConfig, DiskError> {
        let path = self.vm_json();
        let vm: VmConfig = read_json(&path)?;
        let invalid = |reason: &str| DiskError::Invalid {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        if vm.name.is_empty() {
            return Err(invalid("`name` is empty"));
        }
        if !(1..=256).contains(&vm.cpus) {
            return Err(invalid("`cpus` must be between 1 and 256"));
        }
        if vm.memory_mb == 0 {
            return Err(invalid("`memory_mb` must be positive"));
        }
        if vm.boot_delay_ms > 600_000 {
            return Err(invalid("`boot_delay_ms` must be at most 600000"));
        }
        Ok(vm)
    }

    pub fn write_vm_config(&self, vm: &VmConfig) -> Result<(), DiskError> {
        write_json(&self.vm_json(), vm)
    }

    /// Reads `agent.json` (the hypervisor's side of the handshake).
    pub fn agent_info(&self) -> Result<AgentInfo, DiskError> {
        read_json(&self.agent_json())
    }
}

/// Reads a JSON file into `T`.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DiskError> {
    let bytes = fs::read(path).map_err(|source| DiskError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| DiskError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), DiskError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| DiskError::Write {
        path: path.to_owned(),
        source: io::Error::other(e),
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(|source| DiskError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Replaces `path` with `bytes` atomically: temp file beside it, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn vm() -> VmConfig {
        VmConfig {
            name: "vm1".into(),
            cpus: 2,
            memory_mb: 512,
            boot_delay_ms: 0,
            resume: false,
            tags: BTreeMap::new(),
        }
    }

    #[test]
    fn create_then_open_reads_vm_json() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::create(dir.path().join("d"), &vm()).unwrap();
        assert!(disk.drivers_dir().is_dir());
        assert!(disk.minidump_dir().is_dir());
        let again = Disk::open(disk.root()).unwrap();
        assert_eq!(again.vm_config().unwrap(), vm());
    }

    #[test]
    fn invalid_vm_json_says_which_field() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::create(dir.path(), &VmConfig { cpus: 0, ..vm() }).unwrap();
        let err = disk.vm_config().unwrap_err().to_string();
        assert!(
            err.ends_with("vm.json: `cpus` must be between 1 and 256"),
            "{err}"
        );
        fs::write(disk.vm_json(), "{").unwrap();
        let err = disk.vm_config().unwrap_err().to_string();
        assert!(err.contains("parse") && err.contains("EOF"), "{err}");
    }

    #[test]
    fn missing_disk_is_an_error() {
        let err = Disk::open("/nonexistent/disk").unwrap_err();
        assert_eq!(
            err.to_string(),
            "open disk directory /nonexistent/disk: it does not exist or is not a directory"
        );
    }
}
