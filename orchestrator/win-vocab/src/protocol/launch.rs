//! How a simulated guest process is started and how it tells the hypervisor what became
//! of it: `vm.json` in, `agent.json` out, and its exit code. The simulated hypervisor and
//! the simulated guest both speak it, so it lives with the agent protocol.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Exit code: the guest was shut down (`Shutdown` request or SIGTERM), like a power-off.
pub const EXIT_POWER_OFF: i32 = 0;
/// Exit code: the disk directory or `vm.json` is missing or invalid.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: the guest could not run (I/O failure on its disk, no loopback port).
pub const EXIT_INFRA: i32 = 3;
/// Exit code: the guest asked to be restarted (`Reboot` request); start it again.
pub const EXIT_REBOOT: i32 = 10;
/// Exit code: the guest bugchecked and `AutoReboot` is on; start it again.
pub const EXIT_BUGCHECK_REBOOT: i32 = 11;
/// Exit code: the guest bugchecked and `AutoReboot` is off; it stays off (a blue screen).
pub const EXIT_BUGCHECK_HALT: i32 = 12;

/// `vm.json`: the virtual hardware, written by the hypervisor before each start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmConfig {
    /// The VM name; also the guest's computer name (`hostname`).
    pub name: String,
    pub cpus: u32,
    pub memory_mb: u64,
    /// How long "firmware + boot loader" take before the kernel starts.
    #[serde(default)]
    pub boot_delay_ms: u64,
    /// Resume from `memory.json` instead of booting cold: set by the hypervisor when it
    /// restores a checkpoint (a standard checkpoint keeps memory, so nothing boots: no boot
    /// events, the services that were running run again, boot options stay as they were).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resume: bool,
    /// Free-form labels of the hypervisor (run id, owner); the guest ignores them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// `agent.json`: written atomically by the guest once the agent listens; the hypervisor
/// waits for it (and for a new `boot_id`) to know the guest is up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub port: u16,
    pub boot_id: String,
    pub pid: u32,
}
