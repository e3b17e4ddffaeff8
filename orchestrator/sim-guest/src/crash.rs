//! The crash path: a thread blocks on the kernel's bugcheck; on one it stops the agent from
//! answering, writes the dump that CrashControl asks for (crash-triage's writer, with the
//! kernel's module list and RIP), records the crash for the next boot's events 41/1001
//! (see [`crate::bootstat`]) and raises the power event that ends the process with
//! [`crate::EXIT_BUGCHECK_REBOOT`] or [`crate::EXIT_BUGCHECK_HALT`].
//!
//! CrashControl is read when the bugcheck happens, as Windows reads it then.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crash_triage::{DumpKind as TriageKind, DumpSpec};
use sim_kernel::Bugcheck;

use crate::bootstat::CrashRecord;
use crate::disk;
use crate::guest::{GuestCore, PowerEvent};
use crate::protocol::DumpKind;
use crate::winpath::WinPath;

/// How often the watcher re-checks whether the guest is going down for another reason.
const POLL: Duration = Duration::from_millis(200);

impl GuestCore {
    /// The crash thread's body: returns when the guest goes down.
    pub(crate) fn watch_bugchecks(&self) {
        loop {
            if let Some(bc) = self.kernel.wait_bugcheck(POLL) {
                self.on_bugcheck(&bc);
                return;
            }
            if self.power.current().is_some() || self.power.halting.load(Ordering::SeqCst) {
                return;
            }
        }
    }

    fn on_bugcheck(&self, bc: &Bugcheck) {
        self.power.halting.store(true, Ordering::SeqCst);
        let cc = self.registry.snapshot().crash_control;
        let time = Utc::now();
        let (dump, dump_error) = match self.write_dump(bc, cc.dump_kind, time) {
            Ok(dump) => (dump, None),
            Err(e) => (None, Some(e)),
        };
        let record = CrashRecord {
            code: bc.code,
            params: bc.params,
            dump: dump
                .and_then(|p| WinPath::from_host(self.disk.root(), &p).map(|w| w.to_string())),
            dump_error,
            time,
        };
        {
            let mut stat = self.bootstat.lock();
            stat.bugcheck = Some(record);
            let _ = disk::write_json(&self.disk.bootstat_path(), &*stat);
        }
        self.power.request(PowerEvent::Bugcheck {
            auto_reboot: cc.auto_reboot,
        });
    }

    /// Writes the dump for `kind`; returns its path, `None` when no dump is configured, or
    /// why writing failed (the next boot logs it as event 161, as Windows does).
    fn write_dump(
        &self,
        bc: &Bugcheck,
        kind: DumpKind,
        time: DateTime<Utc>,
    ) -> Result<Option<PathBuf>, String> {
        let Some(triage_kind) = TriageKind::written_for(kind) else {
            return Ok(None);
        };
        let path = match triage_kind {
            TriageKind::Small => self.next_minidump_path(time),
            _ => self.disk.memory_dmp(),
        };
        let size32 = |size: u64| u32::try_from(size).unwrap_or(u32::MAX);
        let modules = self
            .kernel
            .modules()
            .into_iter()
            .map(|m| {
                // Each image carries its export directory, so triage can name functions.
                let exports = self
                    .kernel
                    .exports(&m)
                    .into_iter()
                    .map(|(name, addr)| crash_triage::Export {
                        name: name.to_owned(),
                        rva: size32(addr - m.base),
                    })
                    .collect();
                let mut module = crash_triage::Module::new(m.name, m.base, size32(m.size));
                module.exports = exports;
                module
            })
            .collect();
        let mut spec = DumpSpec::new(triage_kind, bc.code, bc.params, bc.rip, modules);
        spec.unloaded = self
            .kernel
            .unloaded_drivers()
            .into_iter()
            .map(|(m, at)| crash_triage::UnloadedModule {
                name: m.name,
                base: m.base,
                size: size32(m.size),
                time: DateTime::<Utc>::from(at),
            })
            .collect();
        spec.stack = bc.stack.clone();
        spec.system_time = time;
        spec.uptime = self.started.elapsed();
        spec.processors = self.vm.cpus;
        spec.physical_memory = self.vm.memory_mb.saturating_mul(1024 * 1024);
        spec.comment = Some(format!("{} in {}!{}", bc.name(), bc.module, bc.function));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        }
        crash_triage::write_dump(&path, &spec).map_err(|e| lab_error::Chain(&e).to_string())?;
        Ok(Some(path))
    }

    /// `Minidump\MMDDYY-NNNNN-01.dmp`, NNNNN counting up past the dumps already there.
    fn next_minidump_path(&self, time: DateTime<Utc>) -> PathBuf {
        let dir = self.disk.minidump_dir();
        let date = time.format("%m%d%y");
        let existing = std::fs::read_dir(&dir).map_or(0, |rd| rd.count() as u32);
        (existing + 1..)
            .map(|n| dir.join(format!("{date}-{n:05}-01.dmp")))
            .find(|p| !p.exists())
            .unwrap_or_else(|| dir.join(format!("{date}-00000-01.dmp")))
    }
}
