//! Host scripts: VM lifecycle with the Hyper-V module (`New-VHD`, `New-VM`, `Set-VM`,
//! `Set-VMFirmware`, `Checkpoint-VM`, `Restore-VMSnapshot`, `Debug-VM`, ...) and file copies
//! between the host and a guest (`Copy-VMFile`, `Copy-Item -FromSession`).

use super::find_vm;
use crate::hyperv::parse::TAG_PREFIX;
use crate::hyperv::script::{PsValue, Script, windows_command_line};

/// Integration service ids (the names are localised; the ids are not).
pub const GUEST_SERVICE_INTERFACE_ID: &str = "6C09BB55-D683-4DA0-8931-C9BF705F6480";
pub const HEARTBEAT_ID: &str = "84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47";

/// Everything `New-VM` needs, from the template and the VM spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVm {
    pub name: String,
    pub vm_root: String,
    pub base_vhdx: String,
    pub generation: u8,
    pub memory_bytes: u64,
    pub vcpus: u32,
    pub secure_boot: bool,
    /// `Standard` (memory kept: restore needs no boot) or `Production`.
    pub checkpoint_type: &'static str,
    pub switch: Option<String>,
    pub notes: String,
}

/// A differencing disk from the base image, a Gen2 VM with fixed memory, Secure Boot as the
/// template says, the Guest Service Interface on, tagged in Notes. A failure part-way
/// removes what was made, so a failed create leaves nothing behind.
pub fn create(v: &NewVm) -> Script {
    Script::new(
        "vm.create",
        concat!(
            r#"if (@(Get-VM | Where-Object { $_.Name -ceq $P.Name }).Count -gt 0) {
  throw [System.InvalidOperationException]::new("a virtual machine named '$($P.Name)' already exists on this host")
}
$dir = Join-Path $P.VmRoot $P.Name
$vhd = Join-Path $dir ($P.Name + '.vhdx')
New-Item -ItemType Directory -Force -Path $dir | Out-Null
try {
  New-VHD -Path $vhd -ParentPath $P.BaseVhdx -Differencing | Out-Null
  $vm = New-VM -Name $P.Name -Generation $P.Generation -MemoryStartupBytes $P.MemoryBytes -VHDPath $vhd -Path $P.VmRoot
  Set-VM -VM $vm -StaticMemory -ProcessorCount $P.Vcpus -CheckpointType $P.CheckpointType -AutomaticStopAction TurnOff -Notes $P.Notes
  if ($P.Generation -eq 2) {
    Set-VMFirmware -VM $vm -EnableSecureBoot $(if ($P.SecureBoot) { 'On' } else { 'Off' })
  }
  Get-VMIntegrationService -VM $vm |
    Where-Object { ([string]$_.Id).EndsWith('\"#,
            "6C09BB55-D683-4DA0-8931-C9BF705F6480",
            r#"', [StringComparison]::OrdinalIgnoreCase) } |
    Enable-VMIntegrationService
  if ($P.Switch) { Connect-VMNetworkAdapter -VMName $vm.Name -SwitchName $P.Switch }
} catch {
  $failure = $_
  Get-VM | Where-Object { $_.Name -ceq $P.Name } | Remove-VM -Force -ErrorAction SilentlyContinue
  Remove-Item -LiteralPath $dir -Recurse -Force -ErrorAction SilentlyContinue
  throw $failure
}
[ordered]@{ Name = $vm.Name; Id = $vm.Id.ToString(); Path = $dir }"#
        ),
    )
    .with("Name", v.name.as_str())
    .with("VmRoot", v.vm_root.as_str())
    .with("BaseVhdx", v.base_vhdx.as_str())
    .with("Generation", i64::from(v.generation))
    .with("MemoryBytes", v.memory_bytes as i64)
    .with("Vcpus", i64::from(v.vcpus))
    .with("SecureBoot", v.secure_boot)
    .with("CheckpointType", v.checkpoint_type)
    .with("Switch", v.switch.clone().unwrap_or_default())
    .with("Notes", v.notes.as_str())
}

pub fn start(vm: &str) -> Script {
    Script::new(
        "vm.start",
        concat!(
            find_vm!(),
            "if ($vm.State -ne 'Running') { Start-VM -VM $vm }\n$null"
        ),
    )
    .with("Name", vm)
}

/// `Stop-VM` (the guest shuts down) or `Stop-VM -TurnOff` (power pulled).
pub fn stop(vm: &str, turn_off: bool) -> Script {
    Script::new(
        "vm.stop",
        concat!(
            find_vm!(),
            r#"if ($vm.State -ne 'Off') {
  if ($P.TurnOff) { Stop-VM -VM $vm -TurnOff -Force } else { Stop-VM -VM $vm -Force }
}
$null"#
        ),
    )
    .with("Name", vm)
    .with("TurnOff", turn_off)
}

pub fn state(vm: &str) -> Script {
    Script::new(
        "vm.state",
        concat!(
            find_vm!(),
            "[ordered]@{ Name = $vm.Name; State = $vm.State.ToString(); Notes = $vm.Notes }"
        ),
    )
    .with("Name", vm)
}

pub fn heartbeat(vm: &str) -> Script {
    Script::new(
        "vm.heartbeat",
        concat!(
            find_vm!(),
            r#"$hb = @(Get-VMIntegrationService -VM $vm |
  Where-Object { ([string]$_.Id).EndsWith('\84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47', [StringComparison]::OrdinalIgnoreCase) })
$status = $null
if ($hb.Count -gt 0 -and $null -ne $hb[0].PrimaryOperationalStatus) { $status = $hb[0].PrimaryOperationalStatus.ToString() }
[ordered]@{ State = $vm.State.ToString(); Status = $status; Enabled = ($hb.Count -gt 0 -and [bool]$hb[0].Enabled) }"#
        ),
    )
    .with("Name", vm)
}

/// The guest's addresses as the data-exchange integration service reports them.
pub fn addresses(vm: &str) -> Script {
    Script::new(
        "vm.addresses",
        concat!(
            find_vm!(),
            ",@(Get-VMNetworkAdapter -VM $vm | ForEach-Object { $_.IPAddresses } | Where-Object { $_ })"
        ),
    )
    .with("Name", vm)
}

/// Replaces a checkpoint of that name with a new one.
pub fn checkpoint(vm: &str, name: &str) -> Script {
    Script::new(
        "vm.checkpoint",
        concat!(
            find_vm!(),
            r#"Get-VMSnapshot -VM $vm | Where-Object { $_.Name -ceq $P.Checkpoint } | Remove-VMSnapshot -Confirm:$false
Checkpoint-VM -VM $vm -SnapshotName $P.Checkpoint
$null"#
        ),
    )
    .with("Name", vm)
    .with("Checkpoint", name)
}

/// Applies a checkpoint and resumes the VM: a standard checkpoint brings back memory, so
/// the guest continues where it was checkpointed, without booting. Answers as
/// [`heartbeat`] does, so a guest whose heartbeat is already `Ok` needs no separate read.
pub fn restore(vm: &str, name: &str) -> Script {
    Script::new(
        "vm.restore",
        concat!(
            find_vm!(),
            r#"$cp = @(Get-VMSnapshot -VM $vm | Where-Object { $_.Name -ceq $P.Checkpoint })
if ($cp.Count -eq 0) {
  throw [System.Management.Automation.ItemNotFoundException]::new("virtual machine '$($P.Name)' has no checkpoint named '$($P.Checkpoint)'")
}
Restore-VMSnapshot -VMSnapshot $cp[0] -Confirm:$false
$vm = Get-VM -Id $vm.Id
if ($vm.State -ne 'Running') { Start-VM -VM $vm }
$vm = Get-VM -Id $vm.Id
$hb = @(Get-VMIntegrationService -VM $vm |
  Where-Object { ([string]$_.Id).EndsWith('\84EAAE65-2F2E-45F5-9BB5-0E857DC8EB47', [StringComparison]::OrdinalIgnoreCase) })
$status = $null
if ($hb.Count -gt 0 -and $null -ne $hb[0].PrimaryOperationalStatus) { $status = $hb[0].PrimaryOperationalStatus.ToString() }
[ordered]@{ State = $vm.State.ToString(); Status = $status; Enabled = ($hb.Count -gt 0 -and [bool]$hb[0].Enabled) }"#
        ),
    )
    .with("Name", vm)
    .with("Checkpoint", name)
}

/// Turns the VM off and removes it with its checkpoints, disks and folder. Refuses a VM
/// hvlab did not tag; a VM that is already gone is not an error.
pub fn remove(vm: &str, vm_root: &str) -> Script {
    Script::new(
        "vm.remove",
        r#"$vm = @(Get-VM | Where-Object { $_.Name -ceq $P.Name })
if ($vm.Count -eq 0) { return [ordered]@{ Removed = $false } }
$vm = $vm[0]
if (-not ([string]$vm.Notes).StartsWith($P.TagPrefix)) {
  throw [System.InvalidOperationException]::new("virtual machine '$($P.Name)' is not tagged as created by hvlab; not removing it")
}
if ($vm.State -ne 'Off') { Stop-VM -VM $vm -TurnOff -Force }
$disks = @(Get-VMHardDiskDrive -VM $vm | ForEach-Object { $_.Path })
Remove-VM -VM $vm -Force
foreach ($d in $disks) { if ($d -and (Test-Path -LiteralPath $d)) { Remove-Item -LiteralPath $d -Force } }
$dir = Join-Path $P.VmRoot $P.Name
if (Test-Path -LiteralPath $dir) { Remove-Item -LiteralPath $dir -Recurse -Force }
[ordered]@{ Removed = $true }"#,
    )
    .with("Name", vm)
    .with("VmRoot", vm_root)
    .with("TagPrefix", TAG_PREFIX)
}

/// `Debug-VM -InjectNonMaskableInterrupt`: works while nothing inside the guest does.
pub fn inject_nmi(vm: &str) -> Script {
    Script::new(
        "vm.nmi",
        concat!(
            find_vm!(),
            "Debug-VM -VM $vm -InjectNonMaskableInterrupt -Force\n$null"
        ),
    )
    .with("Name", vm)
}

/// Every VM on the host carrying hvlab's tag.
pub fn list_owned() -> Script {
    Script::new(
        "vm.list_owned",
        r#",@(Get-VM | Where-Object { ([string]$_.Notes).StartsWith($P.TagPrefix) } |
  ForEach-Object { [ordered]@{ Name = $_.Name; State = $_.State.ToString(); Notes = $_.Notes; Created = $_.CreationTime.ToUniversalTime().ToString('o') } })"#,
    )
    .with("TagPrefix", TAG_PREFIX)
}

/// Host -> guest through the Guest Service Interface (no guest credentials needed).
pub fn copy_to_guest(vm: &str, host_path: &str, guest_path: &str) -> Script {
    Script::new(
        "vm.copy_to_guest",
        concat!(
            find_vm!(),
            "Copy-VMFile -VM $vm -SourcePath $P.Source -DestinationPath $P.Destination -FileSource Host -CreateFullPath -Force\n$null"
        ),
    )
    .with("Name", vm)
    .with("Source", host_path)
    .with("Destination", guest_path)
}

/// Guest -> host through a PowerShell Direct session (`Copy-VMFile` only goes the other
/// way).
pub fn copy_from_guest(
    vm: &str,
    user: &str,
    password: PsValue,
    guest_path: &str,
    host_path: &str,
) -> Script {
    Script::new(
        "vm.copy_from_guest",
        r#"$pw = ConvertTo-SecureString -String $P.Password -AsPlainText -Force
$cred = New-Object System.Management.Automation.PSCredential ($P.User, $pw)
$dir = Split-Path -Parent $P.Destination
if ($dir) { New-Item -ItemType Directory -Force -Path $dir | Out-Null }
$s = New-PSSession -VMName $P.Name -Credential $cred
try { Copy-Item -FromSession $s -LiteralPath $P.Source -Destination $P.Destination -Force }
finally { Remove-PSSession -Session $s }
$null"#,
    )
    .with("Name", vm)
    .with("User", user)
    .with("Password", password)
    .with("Source", guest_path)
    .with("Destination", host_path)
}

/// Rewrites the Notes of an hvlab VM (a renewed lease). Refuses a VM without hvlab's tag:
/// renewal never tags a VM hvlab did not create.
pub fn set_notes(vm: &str, notes: &str) -> Script {
    Script::new(
        "vm.set_notes",
        concat!(
            find_vm!(),
            r#"if (-not ([string]$vm.Notes).StartsWith($P.TagPrefix)) {
  throw [System.InvalidOperationException]::new("virtual machine '$($P.Name)' is not tagged as created by hvlab; not changing its notes")
}
Set-VM -VM $vm -Notes $P.Notes
$null"#
        ),
    )
    .with("Name", vm)
    .with("Notes", notes)
    .with("TagPrefix", TAG_PREFIX)
}

/// The host answers at all (a cheap probe after a failed call: lost, or a hiccup?).
pub fn ping() -> Script {
    Script::new("host.ping", "$null")
}

/// What a host must have before it takes work, in one round trip: the Hyper-V module,
/// free memory, free disk on the drive of `vm_dir`, each base disk (hashed when its
/// expected SHA-256 is known: `hash` lists those paths) and the switch. The facts come
/// back; the verdict is made in Rust ([`crate::hyperv::health`]).
pub fn health(vm_dir: &str, switch: Option<&str>, bases: Vec<String>, hash: Vec<String>) -> Script {
    Script::new(
        "host.health",
        r#"$module = @(Get-Module -ListAvailable -Name 'Hyper-V').Count -gt 0
$os = Get-CimInstance -ClassName Win32_OperatingSystem
$disk = $null
$root = [System.IO.Path]::GetPathRoot($P.VmDir)
if ($root) { try { $disk = [int64]([System.IO.DriveInfo]::new($root)).AvailableFreeSpace } catch { $disk = $null } }
$bases = @(foreach ($b in $P.Bases) {
  $exists = Test-Path -LiteralPath $b -PathType Leaf
  $sha = $null
  if ($exists -and ($P.Hash -contains $b)) { $sha = (Get-FileHash -LiteralPath $b -Algorithm SHA256).Hash.ToLowerInvariant() }
  [ordered]@{ Path = $b; Exists = $exists; Sha256 = $sha }
})
$switch = $null
if ($P.Switch -and $module) { $switch = @(Get-VMSwitch | Where-Object { $_.Name -ceq $P.Switch }).Count -gt 0 }
[ordered]@{ Module = $module; FreeMemoryBytes = [int64]$os.FreePhysicalMemory * 1024; FreeDiskBytes = $disk; Bases = $bases; SwitchExists = $switch }"#,
    )
    .with("VmDir", vm_dir)
    .with("Switch", switch.unwrap_or_default())
    .with("Bases", bases)
    .with("Hash", hash)
}

/// `!analyze -v` of a crash dump on the host, by the lab's `debugger:` (kd.exe / cdb.exe):
/// `-z <dump> [-y <symbol path>] -c "!analyze -v; q"`, killed at the timeout. What it
/// printed comes back; parsing is the runner's. No secret is needed or passed.
pub fn debugger_analyze(
    debugger: &str,
    dump: &str,
    symbol_path: Option<&str>,
    timeout_ms: u64,
) -> Script {
    let mut args = vec!["-z".to_owned(), dump.to_owned()];
    if let Some(s) = symbol_path {
        args.extend(["-y".to_owned(), s.to_owned()]);
    }
    args.extend(["-c".to_owned(), "!analyze -v; q".to_owned()]);
    Script::new(
        "host.debugger_analyze",
        concat!(
            super::guest::process_fn!(),
            r#"if (-not (Test-Path -LiteralPath $P.Debugger -PathType Leaf)) {
  throw [System.IO.FileNotFoundException]::new("no debugger at '$($P.Debugger)' on this host (debugger.path in the lab file)")
}
if (-not (Test-Path -LiteralPath $P.Dump -PathType Leaf)) {
  throw [System.IO.FileNotFoundException]::new("no dump at '$($P.Dump)' on this host")
}
Invoke-HvlabProcess $P.Debugger $P.Arguments $P.TimeoutMs $P.OutputCap"#
        ),
    )
    .with("Debugger", debugger)
    .with("Dump", dump)
    .with("Arguments", windows_command_line(&args))
    .with("TimeoutMs", timeout_ms.min(i32::MAX as u64) as i64)
    .with("OutputCap", super::guest::OUTPUT_CAP)
}
