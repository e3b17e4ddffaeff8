//! Wire format of lab files (`vm-configs/*.yaml`). The `kind` is read first; then the file
//! is parsed as a sim lab or a Hyper-V lab, so unknown-field errors list the right fields.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::values::{ByteSize, HumanDuration, SecretRefWire, Sp};

/// The kind of a lab: the embedded simulated lab or Hyper-V hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabKind {
    /// Simulated VMs: processes on this machine running the eBPF runtime model.
    Sim,
    /// Windows VMs on one or more Hyper-V hosts.
    Hyperv,
}

/// Only `kind`, read before the full parse (all other keys ignored here).
#[derive(Debug, Deserialize)]
pub(crate) struct LabHeader {
    pub kind: Option<Sp<LabKind>>,
}

/// A simulated lab (`kind: sim`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Simulated lab")]
#[schemars(rename = "SimLab")]
pub(crate) struct SimLabWire {
    /// Lab name, shown in reports.
    pub name: Sp<String>,
    /// Always `sim` here.
    #[allow(dead_code)] // read through `LabHeader`; declared so the strict parse accepts it
    pub kind: Sp<LabKind>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// Most simulated VMs running at once. Default 2.
    #[serde(default)]
    pub capacity: Option<Sp<u32>>,
    /// How many times a unit that ended in an infrastructure error (the VM process died
    /// without a bugcheck record, the guest did not come back, a host stopped answering) is
    /// run again on a fresh VM. Failures of the code under test are never retried.
    /// Default 1; 0 disables (0-5).
    #[serde(default)]
    pub infra_retries: Option<Sp<u32>>,
    /// The payload scenarios run with on this lab unless they pin one (`payload:` in the
    /// scenario) or `hvlab run --payload` names another, e.g. `sim-ebpf`.
    #[serde(default)]
    pub payload: Option<Sp<String>>,
    /// A kernel debugger (kd.exe / cdb.exe) whose `!analyze -v` refines the triage of each
    /// crash: run on this machine for a sim lab, on the VM's host for a Hyper-V lab.
    #[serde(default)]
    pub debugger: Option<Sp<DebuggerWire>>,
    /// VM templates scenarios can run on.
    pub templates: Sp<Vec<SimTemplateWire>>,
}

/// The kernel debugger triage runs `!analyze -v` with.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Debugger")]
pub(crate) struct DebuggerWire {
    /// The debugger program, e.g. `C:\Program Files (x86)\Windows Kits\10\Debuggers\x64\kd.exe`
    /// (a path on the host for a Hyper-V lab).
    pub path: Sp<String>,
    /// Symbol path passed with `-y`, e.g.
    /// `srv*C:\symbols*https://msdl.microsoft.com/download/symbols`. Default: the
    /// debugger's own (`_NT_SYMBOL_PATH`).
    #[serde(default)]
    pub symbol_path: Option<Sp<String>>,
}

/// A simulated VM template.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "SimTemplate")]
pub(crate) struct SimTemplateWire {
    /// Template name, referenced by scenarios' `vms`.
    pub name: Sp<String>,
    /// Number of simulated CPUs (per-CPU epoch state). Default 2.
    #[serde(default)]
    pub vcpus: Option<Sp<u32>>,
    /// Guest memory, e.g. `4GiB` (bounds the simulated pool). Default `2GiB`.
    #[serde(default)]
    pub memory: Option<Sp<ByteSize>>,
    /// Simulated boot time, e.g. `200ms`. Default `100ms`.
    #[serde(default)]
    pub boot_delay: Option<Sp<HumanDuration>>,
    /// Time allowed for a boot to become ready. Default `30s`.
    #[serde(default)]
    pub boot_timeout: Option<Sp<HumanDuration>>,
    /// `bcdedit /set testsigning on`. Default true.
    #[serde(default)]
    pub test_signing: Option<bool>,
    /// CrashControl dump kind. Default `kernel`.
    #[serde(default)]
    pub crash_dump: Option<CrashDumpKind>,
    /// Reboot after a bugcheck (CrashControl AutoReboot). Default true.
    #[serde(default)]
    pub auto_reboot: Option<bool>,
    /// Driver Verifier settings. Default: off.
    #[serde(default)]
    pub verifier: Option<Sp<VerifierWire>>,
}

/// CrashControl `CrashDumpEnabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrashDumpKind {
    /// 0: no dump.
    None,
    /// 3: small memory dump (`Minidump\*.dmp`).
    Small,
    /// 2: kernel memory dump (`MEMORY.DMP`).
    Kernel,
    /// 1: complete memory dump (needs a page file >= RAM + 1 MB).
    Complete,
    /// 7: automatic memory dump.
    Automatic,
}

impl From<CrashDumpKind> for win_vocab::DumpKind {
    fn from(k: CrashDumpKind) -> Self {
        match k {
            CrashDumpKind::None => win_vocab::DumpKind::None,
            CrashDumpKind::Small => win_vocab::DumpKind::Small,
            CrashDumpKind::Kernel => win_vocab::DumpKind::Kernel,
            CrashDumpKind::Complete => win_vocab::DumpKind::Complete,
            CrashDumpKind::Automatic => win_vocab::DumpKind::Automatic,
        }
    }
}

/// Driver Verifier settings.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Verifier")]
pub(crate) struct VerifierWire {
    /// Driver image names, e.g. `sample_ebpf_ext.sys`.
    pub drivers: Sp<Vec<Sp<String>>>,
    /// `standard` (verifier /standard) or a flags value such as `0x209BB`. Default `standard`.
    #[serde(default)]
    pub flags: Option<Sp<String>>,
}

/// A Hyper-V lab (`kind: hyperv`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Hyper-V lab")]
#[schemars(rename = "HyperVLab")]
pub(crate) struct HyperVLabWire {
    /// Lab name, shown in reports.
    pub name: Sp<String>,
    /// Always `hyperv` here.
    #[allow(dead_code)] // read through `LabHeader`; declared so the strict parse accepts it
    pub kind: Sp<LabKind>,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// How many times a unit that ended in an infrastructure error (the VM process died
    /// without a bugcheck record, the guest did not come back, a host stopped answering) is
    /// run again on a fresh VM. Failures of the code under test are never retried.
    /// Default 1; 0 disables (0-5).
    #[serde(default)]
    pub infra_retries: Option<Sp<u32>>,
    /// The payload scenarios run with on this lab unless they pin one (`payload:` in the
    /// scenario) or `hvlab run --payload` names another, e.g. `sim-ebpf`.
    #[serde(default)]
    pub payload: Option<Sp<String>>,
    /// A kernel debugger (kd.exe / cdb.exe) whose `!analyze -v` refines the triage of each
    /// crash: run on this machine for a sim lab, on the VM's host for a Hyper-V lab.
    #[serde(default)]
    pub debugger: Option<Sp<DebuggerWire>>,
    /// Hyper-V hosts VMs are spread over.
    pub hosts: Sp<Vec<HostWire>>,
    /// VM templates scenarios can run on.
    pub templates: Sp<Vec<HyperVTemplateWire>>,
}

/// How hvlab reaches a Hyper-V host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// hvlab runs on the host itself (local `powershell.exe`).
    Local,
    /// WinRM (HTTPS by default).
    Winrm,
    /// SSH to Windows OpenSSH.
    Ssh,
}

/// A Hyper-V host.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Host")]
pub(crate) struct HostWire {
    /// Host name used in reports and VM placement.
    pub name: Sp<String>,
    /// DNS name or IP address (not needed for `local`).
    #[serde(default)]
    pub address: Option<Sp<String>>,
    /// How to reach the host. Default `local`.
    #[serde(default)]
    pub connection: Option<Sp<ConnectionWire>>,
    /// Most VMs this host runs at once. Default 1.
    #[serde(default)]
    pub capacity: Option<Sp<u32>>,
    /// Where VM disks are created on the host. Default `C:\hvlab\vms`.
    #[serde(default)]
    pub vm_dir: Option<Sp<String>>,
    /// Virtual switch for VMs that the guest transport reaches over the network.
    #[serde(default)]
    pub switch: Option<Sp<String>>,
}

/// Connection details for a host.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Connection")]
pub(crate) struct ConnectionWire {
    /// `local`, `winrm` or `ssh`.
    pub kind: Sp<ConnectionKind>,
    /// Port. Default 5986 (WinRM HTTPS), 5985 (WinRM HTTP) or 22 (SSH).
    #[serde(default)]
    pub port: Option<Sp<u16>>,
    /// WinRM only: use HTTPS. Default true.
    #[serde(default)]
    pub https: Option<Sp<bool>>,
    /// WinRM HTTPS only: SHA-256 fingerprint of the host certificate to pin.
    #[serde(default)]
    pub cert_sha256: Option<Sp<String>>,
    /// SSH only: SHA-256 fingerprint of the host key to pin.
    #[serde(default)]
    pub host_key_sha256: Option<Sp<String>>,
    /// Account and secret references (not for `local`).
    #[serde(default)]
    pub credentials: Option<Sp<CredentialsWire>>,
}

/// A user name and a secret by reference.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Credentials")]
pub(crate) struct CredentialsWire {
    /// User name (may be written literally), e.g. `LAB\hvlab`.
    pub user: Sp<String>,
    /// Password by reference: `{env: VAR}` or `{file: path}`. Never the password itself.
    #[serde(default)]
    pub password: Option<Sp<SecretRefWire>>,
    /// SSH private key by reference: `{env: VAR}` or `{file: path}`.
    #[serde(default)]
    pub private_key: Option<Sp<SecretRefWire>>,
}

/// Hyper-V checkpoint type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointType {
    /// Standard: keeps memory, restore needs no boot (what hvlab wants between scenarios).
    Standard,
    /// Production: VSS inside the guest, restore boots.
    Production,
}

/// How hvlab talks to a Windows guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GuestTransportKind {
    /// `Invoke-Command -VMName` through the host (no guest network needed).
    PowershellDirect,
    /// WinRM to the guest.
    Winrm,
    /// SSH to the guest's OpenSSH server.
    Ssh,
}

/// A Hyper-V VM template.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "HyperVTemplate")]
pub(crate) struct HyperVTemplateWire {
    /// Template name, referenced by scenarios' `vms`.
    pub name: Sp<String>,
    /// Base disk on the host; each VM gets a differencing disk of it.
    pub base_vhdx: Sp<String>,
    /// Expected SHA-256 of the base disk (64 hex digits): each host's health check hashes
    /// its copy and takes no work if it differs. Hashing reads the whole disk.
    #[serde(default)]
    pub base_vhdx_sha256: Option<Sp<String>>,
    /// VM generation (1 or 2). Default 2.
    #[serde(default)]
    pub generation: Option<Sp<u8>>,
    /// Virtual processors. Default 4.
    #[serde(default)]
    pub vcpus: Option<Sp<u32>>,
    /// Fixed memory, e.g. `4GiB`. Default `4GiB`.
    #[serde(default)]
    pub memory: Option<Sp<ByteSize>>,
    /// Secure Boot (must be off for test-signed drivers). Default false.
    #[serde(default)]
    pub secure_boot: Option<Sp<bool>>,
    /// Checkpoint type used for the `deployed` checkpoint. Default `standard`.
    #[serde(default)]
    pub checkpoint_type: Option<CheckpointType>,
    /// Time allowed for a boot to become ready. Default `5m`.
    #[serde(default)]
    pub boot_timeout: Option<Sp<HumanDuration>>,
    /// `bcdedit /set testsigning on`. Default true.
    #[serde(default)]
    pub test_signing: Option<bool>,
    /// CrashControl dump kind. Default `kernel`.
    #[serde(default)]
    pub crash_dump: Option<CrashDumpKind>,
    /// Reboot after a bugcheck (CrashControl AutoReboot). Default true.
    #[serde(default)]
    pub auto_reboot: Option<bool>,
    /// Driver Verifier settings. Default: off.
    #[serde(default)]
    pub verifier: Option<Sp<VerifierWire>>,
    /// How hvlab reaches the guest.
    pub guest: Sp<GuestWire>,
}

/// Guest access for a Hyper-V template.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Guest")]
pub(crate) struct GuestWire {
    /// `powershell_direct`, `winrm` or `ssh`. Default `powershell_direct`.
    #[serde(default)]
    pub transport: Option<Sp<GuestTransportKind>>,
    /// Port for `winrm` / `ssh`. Default 5986 / 22.
    #[serde(default)]
    pub port: Option<Sp<u16>>,
    /// Guest account and secret reference.
    pub credentials: Sp<CredentialsWire>,
}
