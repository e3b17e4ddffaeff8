//! `HKLM\SYSTEM\CurrentControlSet\Control\CrashControl`: what a bugcheck writes and does.

use serde::{Deserialize, Serialize};

/// `CrashDumpEnabled` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpKind {
    /// 0: no dump.
    None,
    /// 1: complete memory dump (`MEMORY.DMP`).
    Complete,
    /// 2: kernel memory dump (`MEMORY.DMP`).
    Kernel,
    /// 3: small memory dump (`Minidump\MMDDYY-NNNNN-01.dmp`).
    Small,
    /// 7: automatic memory dump (a kernel dump, `MEMORY.DMP`).
    Automatic,
}

impl DumpKind {
    /// The `CrashDumpEnabled` registry value.
    pub fn registry_value(self) -> u32 {
        match self {
            DumpKind::None => 0,
            DumpKind::Complete => 1,
            DumpKind::Kernel => 2,
            DumpKind::Small => 3,
            DumpKind::Automatic => 7,
        }
    }

    /// The kind a `CrashDumpEnabled` registry value selects; `None` for unknown values.
    pub fn from_registry_value(value: u32) -> Option<Self> {
        [
            DumpKind::None,
            DumpKind::Complete,
            DumpKind::Kernel,
            DumpKind::Small,
            DumpKind::Automatic,
        ]
        .into_iter()
        .find(|k| k.registry_value() == value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_values_round_trip() {
        for v in 0..10 {
            if let Some(k) = DumpKind::from_registry_value(v) {
                assert_eq!(k.registry_value(), v);
            }
        }
        assert_eq!(DumpKind::from_registry_value(7), Some(DumpKind::Automatic));
        assert_eq!(DumpKind::from_registry_value(4), None);
    }
}

/// `HKLM\SYSTEM\CurrentControlSet\Control\CrashControl` values the guest honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashControl {
    pub dump_kind: DumpKind,
    /// The hypervisor restarts the guest after a bugcheck when set.
    pub auto_reboot: bool,
    /// Keep `MEMORY.DMP` even when disk space is low (recorded; the sim never lacks space).
    pub always_keep_memory_dump: bool,
    /// An NMI bugchecks (0x80) and writes a dump when set; otherwise an NMI is ignored.
    pub nmi_crash_dump: bool,
}

impl Default for CrashControl {
    /// Windows' defaults: automatic dump, reboot, no NMI dump.
    fn default() -> Self {
        CrashControl {
            dump_kind: DumpKind::Automatic,
            auto_reboot: true,
            always_keep_memory_dump: false,
            nmi_crash_dump: false,
        }
    }
}

impl CrashControl {
    /// What a test lab wants: a kernel dump kept whatever the disk space, a reboot, and a
    /// dump on NMI (so a hung guest can be made to write one).
    pub const LAB: CrashControl = CrashControl {
        dump_kind: DumpKind::Kernel,
        auto_reboot: true,
        always_keep_memory_dump: true,
        nmi_crash_dump: true,
    };
}
