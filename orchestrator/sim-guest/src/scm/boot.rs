//! The SCM at boot: services marked for deletion are dropped, boot/system/auto services
//! (or, on a resume, those that were running) are started, and `memory.json` records what
//! runs; also which running driver holds a file open.

use std::collections::BTreeMap;
use std::path::Path;

use crate::bootstat::SavedState;
use crate::disk::{self, DiskError};
use crate::eventlog::{LEVEL_ERROR, NewEvent, PROVIDER_SCM};
use crate::guest::GuestCore;
use crate::protocol::StartType;
use crate::registry::ServiceEntry;

impl GuestCore {
    /// Services marked for deletion in a previous boot are gone after a reboot.
    pub(crate) fn finish_pending_deletes(&self) -> Result<(), DiskError> {
        self.registry
            .update(|reg| {
                reg.services.retain(|_, s| !s.delete_pending);
                Ok::<_, ()>(())
            })
            .map(|_| ())
    }

    /// Starts boot, system and auto services (dependencies first), or on a resume the
    /// services that were running when the checkpoint was taken. Failures are logged as
    /// events 7026 (boot/system drivers) and 7000, as Windows does, and the boot goes on.
    pub(crate) fn start_services_at_boot(&self, resumed: Option<&[String]>) {
        let _scm_lock = self.scm_guard();
        let reg = self.registry.snapshot();
        let mut order: Vec<&ServiceEntry> = match resumed {
            Some(names) => names.iter().filter_map(|n| reg.service(n)).collect(),
            None => reg
                .services
                .values()
                .filter(|s| s.start_type <= StartType::Auto)
                .collect(),
        };
        if resumed.is_none() {
            order.sort_by_key(|s| (s.start_type, s.name.to_lowercase()));
        }
        let mut failed_boot_drivers = Vec::new();
        for entry in order {
            if self
                .start_with_dependencies(&reg, &entry.name, &mut Vec::new())
                .is_err()
                && entry.start_type <= StartType::System
            {
                failed_boot_drivers.push(entry.name.clone());
            }
        }
        if !failed_boot_drivers.is_empty() {
            let _ = self.events.append(NewEvent {
                event_id: 7026,
                provider: PROVIDER_SCM,
                level: LEVEL_ERROR,
                message: format!(
                    "The following boot-start or system-start driver(s) did not load: {}",
                    failed_boot_drivers.join(", ")
                ),
                data: BTreeMap::new(),
            });
        }
    }

    /// The running service whose driver file is `host`, if any (such a file is in use).
    pub(crate) fn image_in_use(&self, host: &Path) -> Option<String> {
        let reg = self.registry.snapshot();
        reg.services
            .values()
            .filter(|s| self.is_active(&s.name))
            .find(|s| {
                self.files
                    .host_path(&s.binary_path)
                    .is_ok_and(|p| p == host)
            })
            .map(|s| s.name.clone())
    }

    /// Writes `memory.json` (what a checkpoint restore resumes).
    pub(crate) fn save_running_state(&self) {
        let state = SavedState {
            test_signing: self.test_signing,
            verifier: self.verifier.clone(),
            running_services: self.scm.lock().started.clone(),
        };
        let _ = disk::write_json(&self.disk.memory_json(), &state);
    }
}
