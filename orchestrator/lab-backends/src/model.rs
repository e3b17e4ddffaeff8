//! Backend-neutral request and answer types shared by every hypervisor and guest backend.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the runner asks a hypervisor to create. Backend-neutral: each backend maps it onto
/// its own notion (a differencing VHDX, a cloned disk directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    /// Unique VM name (`hvlab-<run-id>-<template>-<n>`).
    pub name: String,
    /// The run that owns the VM; recorded on the VM so `hvlab lab gc` can find leftovers.
    pub run_id: String,
    /// Template the VM is cloned from.
    pub template: String,
    pub vcpus: u32,
    pub memory_mb: u64,
    /// Simulated lab only: how long a cold boot takes.
    pub boot_delay: Duration,
    /// Guest configuration applied before the first boot.
    pub guest: GuestSettings,
}

/// Guest settings that need a reboot to take effect on Windows (BCD, CrashControl,
/// Driver Verifier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestSettings {
    pub test_signing: bool,
    pub crash_control: CrashControl,
    pub verifier: Verifier,
}

/// `HKLM\SYSTEM\CurrentControlSet\Control\CrashControl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashControl {
    pub dump_kind: DumpKind,
    pub auto_reboot: bool,
    pub always_keep_memory_dump: bool,
    pub nmi_crash_dump: bool,
}

impl Default for CrashControl {
    fn default() -> Self {
        CrashControl {
            dump_kind: DumpKind::Kernel,
            auto_reboot: true,
            always_keep_memory_dump: true,
            nmi_crash_dump: true,
        }
    }
}

/// `CrashDumpEnabled`: 0 none, 1 complete, 2 kernel, 3 small, 7 automatic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpKind {
    None,
    Complete,
    Kernel,
    Small,
    Automatic,
}

impl DumpKind {
    /// The registry value Windows uses.
    pub fn registry_value(self) -> u32 {
        match self {
            DumpKind::None => 0,
            DumpKind::Complete => 1,
            DumpKind::Kernel => 2,
            DumpKind::Small => 3,
            DumpKind::Automatic => 7,
        }
    }
}

/// Driver Verifier settings (`verifier /flags ... /driver ...`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verifier {
    /// Image names (`sample_ebpf_ext.sys`) or service names, as the lab file lists them.
    pub drivers: Vec<String>,
    /// Verifier flags (`/flags`); [`Verifier::STANDARD`] is `/standard`.
    pub flags: u32,
}

impl Verifier {
    /// The flag set `verifier /standard` selects.
    pub const STANDARD: u32 = 0x209BB;
}

/// Power state of a VM as the hypervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    Off,
    Starting,
    Running,
    /// Between a bugcheck and the automatic restart.
    Crashed,
    Stopping,
}

/// How to stop a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Ask the guest OS to shut down (`Stop-VM`).
    Graceful,
    /// Pull the plug (`Stop-VM -TurnOff`).
    TurnOff,
}

/// Part of a VM's serial console log, read from a mark on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSegment {
    /// The bytes read (at most the `max` asked for).
    pub bytes: Vec<u8>,
    /// Bytes the console holds from the mark on, so a caller can say how much it left out.
    pub len: u64,
}

/// A VM this tool created, found by listing the lab (for `hvlab lab status` / `gc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedVm {
    pub name: String,
    pub run_id: String,
    pub template: String,
    pub state: VmState,
    /// Whether the orchestrator process that created it is still alive (when knowable).
    pub owner_alive: Option<bool>,
    /// The host it is on (Hyper-V labs).
    pub host: Option<String>,
    /// Who owns it and until when (`ci-7 pid 4242, lease until ...`), when recorded.
    pub owner: Option<String>,
    /// Time since it was created, when the hypervisor says.
    pub age: Option<std::time::Duration>,
}

/// The result of a command run in the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The command was killed at its timeout.
    pub timed_out: bool,
}

/// Size and hash of a file after transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub size: u64,
    pub sha256: String,
}

/// A directory entry in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub name: String,
    pub size: u64,
    pub is_dir: bool,
}

/// Kernel service start type (`sc create start=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartType {
    Boot,
    System,
    Auto,
    Demand,
    Disabled,
}

/// A kernel service to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    /// Guest path of the driver binary (`C:\Windows\System32\drivers\x.sys`).
    pub binary_path: String,
    pub start_type: StartType,
    pub depends_on: Vec<String>,
}

/// Service state as `sc query` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Stopped,
    StartPending,
    Running,
    StopPending,
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServiceState::Stopped => "stopped",
            ServiceState::StartPending => "start_pending",
            ServiceState::Running => "running",
            ServiceState::StopPending => "stop_pending",
        })
    }
}

/// A System event log record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Monotonic record number within the log.
    pub record: u64,
    pub event_id: u32,
    pub provider: String,
    pub time: String,
    pub message: String,
    /// Named data fields (`BugcheckCode` in decimal, `BugcheckParameter1`, ...).
    pub data: std::collections::BTreeMap<String, String>,
}

/// A bugcheck read from event 41's data (the code is stored in decimal on Windows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBugcheck {
    pub code: u32,
    pub params: [u64; 4],
}

impl EventRecord {
    /// The bugcheck in a Kernel-Power 41 record, converting the decimal code.
    pub fn bugcheck(&self) -> Option<EventBugcheck> {
        if self.event_id != 41 {
            return None;
        }
        let code: u32 = self.data.get("BugcheckCode")?.trim().parse().ok()?;
        if code == 0 {
            return None;
        }
        let mut params = [0u64; 4];
        for (i, p) in params.iter_mut().enumerate() {
            let raw = self
                .data
                .get(&format!("BugcheckParameter{}", i + 1))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            *p = parse_u64(&raw).unwrap_or(0);
        }
        Some(EventBugcheck { code, params })
    }
}

/// Parses `0x1a`, `1A` hex or decimal strings the way event data and WMI hand them out.
fn parse_u64(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_41_code_is_decimal() {
        let mut data = std::collections::BTreeMap::new();
        data.insert("BugcheckCode".into(), "80".into());
        data.insert("BugcheckParameter1".into(), "0xffffa0001234".into());
        let rec = EventRecord {
            record: 1,
            event_id: 41,
            provider: "Microsoft-Windows-Kernel-Power".into(),
            time: String::new(),
            message: String::new(),
            data,
        };
        let bc = rec.bugcheck().unwrap();
        assert_eq!(bc.code, 0x50);
        assert_eq!(bc.params[0], 0xffff_a000_1234);
        assert_eq!(bc.params[1], 0);
    }

    #[test]
    fn clean_shutdown_41_has_no_bugcheck() {
        let mut data = std::collections::BTreeMap::new();
        data.insert("BugcheckCode".into(), "0".into());
        let rec = EventRecord {
            record: 1,
            event_id: 41,
            provider: String::new(),
            time: String::new(),
            message: String::new(),
            data,
        };
        assert!(rec.bugcheck().is_none());
    }
}
