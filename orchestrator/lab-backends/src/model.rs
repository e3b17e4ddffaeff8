//! Backend-neutral request and answer types shared by every hypervisor and guest backend.

use std::time::Duration;

use serde::{Deserialize, Serialize};

// The Windows facts every backend speaks of, in the one spelling the whole workspace uses.
pub use win_vocab::{
    Bugcheck, CrashControl, DumpKind, EventRecord, ServiceState, StartType, Verifier,
};

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

/// A kernel service to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    /// Guest path of the driver binary (`C:\Windows\System32\drivers\x.sys`).
    pub binary_path: String,
    pub start_type: StartType,
    pub depends_on: Vec<String>,
}
