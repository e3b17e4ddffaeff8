//! The Hyper-V backend: VMs on one or more Hyper-V hosts, driven by PowerShell.
//!
//! ```text
//!  HyperV (Hypervisor) ── placement by host capacity ──> host i: AnyPsHost
//!     │                                                  ├─ Local   powershell.exe
//!     │  scripts::host (New-VHD, New-VM, Checkpoint-VM…) ├─ Remote  WinRM / SSH (lab-transport)
//!     │                                                  └─ Scripted test double / dry run
//!  HyperVGuest (Guest) ── scripts::guest ──> PowerShell Direct through the host
//!                                        └─> or WinRM / SSH straight to the guest
//! ```
//! Every script is built from typed inputs with each value a quoted literal
//! ([`script`]), prints one JSON envelope ([`parse`]), and fails with a typed error record
//! ([`error`]). Readiness is heartbeat first, then a command round trip, retrying the
//! well-known boot-time failures within the caller's budget.

pub mod archive;
pub mod debugger;
pub mod dry_run;
pub mod error;
#[cfg(feature = "test-support")]
pub mod fake;
#[cfg(feature = "test-support")]
pub mod fixture;
mod guest;
pub mod health;
pub mod host;
pub mod lease;
mod owned;
pub mod parse;
pub mod script;
pub mod scripts;
mod vm;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use guest::{HyperVGuest, PageFileError, page_file_check};
pub use health::{HealthNeeds, HostReport};
pub use host::{AnyPsHost, LocalPowerShell, PowerShellHost, RemotePowerShell, ScriptedHost};
use lab_transport::SecretRef;
pub use vm::HyperV;

/// A Hyper-V lab as the backend sees it (translated from the validated lab file).
#[derive(Debug, Clone)]
pub struct HyperVConfig {
    /// Hosts, in the order their [`AnyPsHost`]s are given to [`HyperV::new`].
    pub hosts: Vec<HostConfig>,
    pub templates: Vec<TemplateConfig>,
    pub timing: Timing,
    /// `false` for a dry run: secrets are never read, scripts show a placeholder.
    pub read_secrets: bool,
}

/// One Hyper-V host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    pub name: String,
    /// Most hvlab VMs on this host at once.
    pub capacity: u32,
    /// Where VM folders (config, differencing disk, checkpoints) go on the host.
    pub vm_dir: String,
    /// Virtual switch for guests reached over the network.
    pub switch: Option<String>,
}

impl HostConfig {
    /// Host folder for files in transit to and from guests.
    pub fn staging_dir(&self) -> String {
        format!("{}\\.hvlab-staging", self.vm_dir.trim_end_matches('\\'))
    }
}

/// Checkpoint kind (`Set-VM -CheckpointType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointKind {
    /// Keeps memory: a restore resumes the guest without a boot.
    Standard,
    /// VSS inside the guest: a restore boots.
    Production,
}

impl CheckpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Standard => "Standard",
            CheckpointKind::Production => "Production",
        }
    }
}

/// A VM template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateConfig {
    pub name: String,
    /// Base VHDX on the host; each VM gets a differencing disk on top of it.
    pub base_vhdx: String,
    pub generation: u8,
    pub secure_boot: bool,
    pub checkpoint: CheckpointKind,
    pub guest: GuestAccess,
}

/// How hvlab reaches a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestAccessKind {
    /// `Invoke-Command -VMName` on the host: no guest network needed.
    PowerShellDirect,
    /// WinRM to the guest's address (NTLM; HTTPS unless the port is 5985).
    Winrm,
    /// SSH to the guest's OpenSSH server.
    Ssh,
}

/// Guest account and channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestAccess {
    pub kind: GuestAccessKind,
    pub port: Option<u16>,
    pub user: String,
    pub password: Option<SecretRef>,
    /// SSH private key file (SSH guests).
    pub private_key: Option<PathBuf>,
}

/// Timeouts and polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// One host or guest script (VM creation included).
    pub op_timeout: Duration,
    /// One file copy between this machine, the host and the guest.
    pub transfer_timeout: Duration,
    /// Pause between readiness probes.
    pub poll: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            op_timeout: Duration::from_secs(120),
            transfer_timeout: Duration::from_secs(1800),
            poll: Duration::from_secs(2),
        }
    }
}

/// Builds the host connections of a lab: shared by the CLI and the opt-in real-host tests.
pub type Hosts = Vec<Arc<AnyPsHost>>;
