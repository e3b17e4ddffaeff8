//! Resolved lab: sim or Hyper-V hosts and VM templates with defaults applied, and secrets as
//! references that are read only when a connection is made.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Origin;
pub use crate::wire::lab::{CheckpointType, GuestTransportKind, LabKind};

/// A validated lab file.
#[derive(Debug, Clone)]
pub struct Lab {
    /// Lab name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The lab file.
    pub file: Arc<Path>,
    /// How many times a unit that errored (the lab failed, not the code under test) is
    /// run again on a fresh VM; 0 disables.
    pub infra_retries: u32,
    /// The default payload of scenarios that do not pin one, and where it is written.
    pub payload: Option<(String, Origin)>,
    /// Kind-specific settings.
    pub backend: LabBackend,
    /// The kernel debugger whose `!analyze -v` refines crash triage (`debugger:`).
    pub debugger: Option<Debugger>,
}

/// `debugger:` in a lab file: kd.exe / cdb.exe and its symbol path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debugger {
    /// The program: on this machine for a sim lab, on the VM's host for a Hyper-V lab.
    pub path: String,
    /// Passed with `-y` when set.
    pub symbol_path: Option<String>,
}

/// Kind-specific part of a lab.
#[derive(Debug, Clone)]
pub enum LabBackend {
    /// The embedded simulated lab.
    Sim(SimLab),
    /// Hyper-V hosts.
    HyperV(HyperVLab),
}

/// A simulated lab.
#[derive(Debug, Clone)]
pub struct SimLab {
    /// Most simulated VMs running at once.
    pub capacity: u32,
    /// VM templates.
    pub templates: Vec<SimTemplate>,
}

/// A simulated VM template.
#[derive(Debug, Clone)]
pub struct SimTemplate {
    /// Template name.
    pub name: String,
    /// Simulated CPUs.
    pub vcpus: u32,
    /// Memory in bytes (bounds the simulated pool).
    pub memory_bytes: u64,
    /// Simulated boot time.
    pub boot_delay: Duration,
    /// Time allowed to become ready.
    pub boot_timeout: Duration,
    /// Guest configuration.
    pub guest: GuestConfig,
    /// Where it was written.
    pub origin: Origin,
}

/// Windows guest settings applied before tests (also modelled by the sim guest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestConfig {
    /// Test signing on.
    pub test_signing: bool,
    /// CrashControl dump kind.
    pub crash_dump: win_vocab::DumpKind,
    /// Reboot after a bugcheck.
    pub auto_reboot: bool,
    /// Driver Verifier, if enabled.
    pub verifier: Option<Verifier>,
}

/// Driver Verifier settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    /// Driver image names (`x.sys`).
    pub drivers: Vec<String>,
    /// Flags.
    pub flags: VerifierFlags,
}

/// Driver Verifier flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifierFlags {
    /// `verifier /standard`.
    Standard,
    /// `verifier /flags <mask>`.
    Mask(u32),
}

/// A Hyper-V lab.
#[derive(Debug, Clone)]
pub struct HyperVLab {
    /// Hosts.
    pub hosts: Vec<Host>,
    /// VM templates.
    pub templates: Vec<HyperVTemplate>,
}

/// A Hyper-V host.
#[derive(Debug, Clone)]
pub struct Host {
    /// Host name.
    pub name: String,
    /// DNS name or address (`None` for a local host).
    pub address: Option<String>,
    /// How to reach it.
    pub connection: Connection,
    /// Most VMs at once.
    pub capacity: u32,
    /// Where VM disks go on the host.
    pub vm_dir: String,
    /// Virtual switch for networked guests.
    pub switch: Option<String>,
    /// Where it was written.
    pub origin: Origin,
}

/// How to reach a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// hvlab runs on the host.
    Local,
    /// WinRM.
    WinRm {
        /// Port.
        port: u16,
        /// HTTPS.
        https: bool,
        /// Pinned certificate SHA-256 (hex, no separators, lowercase).
        cert_sha256: Option<String>,
        /// Account.
        credentials: Credentials,
    },
    /// SSH.
    Ssh {
        /// Port.
        port: u16,
        /// Pinned host key SHA-256 fingerprint, as written.
        host_key_sha256: Option<String>,
        /// Account.
        credentials: Credentials,
    },
}

/// A user and secret references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password reference.
    pub password: Option<SecretRef>,
    /// Private key reference (SSH).
    pub private_key: Option<SecretRef>,
}

/// Where a secret is read from when needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file (relative paths resolved against the lab file's folder).
    File(PathBuf),
}

/// A secret value. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret text, for handing to a transport.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Reading a secret failed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The variable is not set.
    #[error("read secret from environment variable `{0}`: it is not set")]
    EnvUnset(String),
    /// The file could not be read.
    #[error("read secret from file `{path}`")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl SecretRef {
    /// Reads the secret now (trailing newline of a file removed).
    pub fn read(&self) -> Result<Secret, SecretError> {
        match self {
            SecretRef::Env(var) => std::env::var(var)
                .map(Secret)
                .map_err(|_| SecretError::EnvUnset(var.clone())),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                }),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(v) => write!(f, "env:{v}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

/// A Hyper-V VM template.
#[derive(Debug, Clone)]
pub struct HyperVTemplate {
    /// Template name.
    pub name: String,
    /// Base VHDX on the host.
    pub base_vhdx: String,
    /// Its expected SHA-256, lowercase hex (checked by each host's health check).
    pub base_vhdx_sha256: Option<String>,
    /// VM generation.
    pub generation: u8,
    /// Virtual processors.
    pub vcpus: u32,
    /// Fixed memory in bytes.
    pub memory_bytes: u64,
    /// Secure Boot.
    pub secure_boot: bool,
    /// Checkpoint type.
    pub checkpoint_type: CheckpointType,
    /// Time allowed to become ready.
    pub boot_timeout: Duration,
    /// Guest configuration.
    pub guest: GuestConfig,
    /// How hvlab reaches the guest.
    pub transport: GuestTransport,
    /// Where it was written.
    pub origin: Origin,
}

/// Guest transport and account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestTransport {
    /// PowerShell Direct, WinRM or SSH.
    pub kind: GuestTransportKind,
    /// Port (WinRM / SSH).
    pub port: Option<u16>,
    /// Account.
    pub credentials: Credentials,
}

/// The parts of a template every backend has.
#[derive(Debug, Clone, Copy)]
pub struct TemplateSummary<'a> {
    /// Name.
    pub name: &'a str,
    /// CPUs.
    pub vcpus: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// Guest settings.
    pub guest: &'a GuestConfig,
}

impl Lab {
    /// `sim` or `hyperv`.
    pub fn kind(&self) -> LabKind {
        match self.backend {
            LabBackend::Sim(_) => LabKind::Sim,
            LabBackend::HyperV(_) => LabKind::Hyperv,
        }
    }

    /// Templates in file order.
    pub fn templates(&self) -> Vec<TemplateSummary<'_>> {
        match &self.backend {
            LabBackend::Sim(s) => s
                .templates
                .iter()
                .map(|t| TemplateSummary {
                    name: &t.name,
                    vcpus: t.vcpus,
                    memory_bytes: t.memory_bytes,
                    guest: &t.guest,
                })
                .collect(),
            LabBackend::HyperV(h) => h
                .templates
                .iter()
                .map(|t| TemplateSummary {
                    name: &t.name,
                    vcpus: t.vcpus,
                    memory_bytes: t.memory_bytes,
                    guest: &t.guest,
                })
                .collect(),
        }
    }

    /// Template names in file order.
    pub fn template_names(&self) -> Vec<&str> {
        self.templates().into_iter().map(|t| t.name).collect()
    }

    /// Most VMs running at once across the lab.
    pub fn total_capacity(&self) -> u32 {
        match &self.backend {
            LabBackend::Sim(s) => s.capacity,
            LabBackend::HyperV(h) => h.hosts.iter().map(|h| h.capacity).sum(),
        }
    }
}
