//! `registry.json`: the guest's persistent configuration (services, boot options,
//! CrashControl, Driver Verifier), the parts of the Windows registry and BCD store the
//! lab touches. Saved atomically on every change, so it survives crashes and power-offs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::disk::{self, DiskError};
use crate::protocol::{CrashControl, StartType, Verifier};

/// One installed service (`HKLM\SYSTEM\CurrentControlSet\Services\<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// The name as created (lookups ignore case, as the SCM does).
    pub name: String,
    /// Windows path of the driver file (`ImagePath`).
    pub binary_path: String,
    pub start_type: StartType,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// `sc delete` of a running service: removed once it stops (or at the next boot).
    #[serde(default)]
    pub delete_pending: bool,
}

/// Boot configuration (the BCD store's `testsigning`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootOptions {
    pub test_signing: bool,
}

/// The whole persisted configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// Keyed by lower-case name.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceEntry>,
    #[serde(default)]
    pub boot: BootOptions,
    #[serde(default)]
    pub crash_control: CrashControl,
    #[serde(default)]
    pub verifier: Verifier,
}

impl Registry {
    pub fn service(&self, name: &str) -> Option<&ServiceEntry> {
        self.services.get(&name.to_lowercase())
    }
}

/// The registry file and its in-memory copy; every change is written before it returns.
#[derive(Debug)]
pub struct RegistryStore {
    path: PathBuf,
    current: Mutex<Registry>,
}

impl RegistryStore {
    /// Loads `registry.json` (a missing file is an empty registry).
    pub fn load(path: PathBuf) -> Result<Self, DiskError> {
        let current = if path.exists() {
            disk::read_json(&path)?
        } else {
            Registry::default()
        };
        Ok(RegistryStore {
            path,
            current: Mutex::new(current),
        })
    }

    /// A copy of the current values.
    pub fn snapshot(&self) -> Registry {
        self.current.lock().clone()
    }

    /// Applies `change` and saves the result; nothing changes (in memory or on disk) when
    /// `change` returns an error or the save fails.
    pub fn update<T, E>(
        &self,
        change: impl FnOnce(&mut Registry) -> Result<T, E>,
    ) -> Result<Result<T, E>, DiskError> {
        let mut current = self.current.lock();
        let mut next = current.clone();
        let out = match change(&mut next) {
            Ok(out) => out,
            Err(e) => return Ok(Err(e)),
        };
        if next != *current {
            disk::write_json(&self.path, &next)?;
            *current = next;
        }
        Ok(Ok(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_saved_and_failed_changes_leave_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let store = RegistryStore::load(path.clone()).unwrap();
        store
            .update(|r| {
                r.boot.test_signing = true;
                Ok::<_, ()>(())
            })
            .unwrap()
            .unwrap();
        let failed = store
            .update(|r| {
                r.boot.test_signing = false;
                Err::<(), _>("refused")
            })
            .unwrap();
        assert_eq!(failed, Err("refused"));
        let reloaded = RegistryStore::load(path).unwrap().snapshot();
        assert!(reloaded.boot.test_signing);
        assert_eq!(reloaded, store.snapshot());
    }
}
