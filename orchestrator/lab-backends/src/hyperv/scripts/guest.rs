//! Guest scripts: run inside Windows, through PowerShell Direct or a guest transport. Native
//! tools (`sc.exe`, `bcdedit.exe`, `verifier.exe`, `tar.exe`, test binaries) are started
//! with a command line quoted in Rust by [`windows_command_line`], with a timeout that kills
//! the process tree.

use serde::Deserialize;

use super::files::HASH_BODY;
use crate::hyperv::script::{Script, windows_command_line};

/// Starts `$file` with `$cmdline`, collects both streams without deadlock, kills the tree
/// at the timeout. Output is capped so one chatty tool cannot blow up the envelope.
macro_rules! process_fn {
    () => {
        r#"function Invoke-HvlabProcess([string]$file, [string]$cmdline, [int]$timeoutMs, [int]$cap) {
  $psi = New-Object System.Diagnostics.ProcessStartInfo
  $psi.FileName = $file
  $psi.Arguments = $cmdline
  $psi.UseShellExecute = $false
  $psi.CreateNoWindow = $true
  $psi.RedirectStandardOutput = $true
  $psi.RedirectStandardError = $true
  $p = [System.Diagnostics.Process]::Start($psi)
  $out = $p.StandardOutput.ReadToEndAsync()
  $err = $p.StandardError.ReadToEndAsync()
  $timedOut = -not $p.WaitForExit($timeoutMs)
  if ($timedOut) {
    # Under Windows PowerShell 5.1 with $ErrorActionPreference = 'Stop', a line taskkill
    # writes to stderr (say, a child that already exited) becomes a terminating error, and
    # the timeout would be reported as a failed script: tolerate it here.
    $eap = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try { & taskkill.exe /T /F /PID $p.Id 2>&1 | Out-Null } catch { } finally { $ErrorActionPreference = $eap }
    [void]$p.WaitForExit(10000)
  } else { $p.WaitForExit() }
  $o = ''; $e = ''
  if ($out.Wait(10000)) { $o = $out.Result }
  if ($err.Wait(10000)) { $e = $err.Result }
  if ($o.Length -gt $cap) { $o = $o.Substring(0, $cap) }
  if ($e.Length -gt $cap) { $e = $e.Substring(0, $cap) }
  $code = -1
  if (-not $timedOut) { $code = $p.ExitCode }
  [ordered]@{ ExitCode = $code; Stdout = $o; Stderr = $e; TimedOut = $timedOut }
}
"#
    };
}

// Host scripts that run a native tool (the host debugger) use the same function.
pub(crate) use process_fn;

/// Output kept per stream (characters).
pub const OUTPUT_CAP: i64 = 4 * 1024 * 1024;

/// What a process run returned.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessResult {
    pub exit_code: i32,
    #[serde(default)]
    pub stdout: String,
    #[serde(default)]
    pub stderr: String,
    #[serde(default)]
    pub timed_out: bool,
}

/// Runs `program` with `args` (each quoted for the Windows command line).
pub fn process(op: &'static str, program: &str, args: &[String], timeout_ms: u64) -> Script {
    Script::new(
        op,
        concat!(
            process_fn!(),
            "Invoke-HvlabProcess $P.Program $P.Arguments $P.TimeoutMs $P.OutputCap"
        ),
    )
    .with("Program", program)
    .with("Arguments", windows_command_line(args))
    .with("TimeoutMs", timeout_ms.min(i32::MAX as u64) as i64)
    .with("OutputCap", OUTPUT_CAP)
}

/// `Win32_OperatingSystem.LastBootUpTime`, in UTC: changes on every boot, and is the same
/// after a standard checkpoint is restored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BootInfo {
    pub last_boot_up_time: String,
}

pub fn boot_id() -> Script {
    Script::new(
        "guest.boot_id",
        r#"$os = Get-CimInstance -ClassName Win32_OperatingSystem
[ordered]@{ LastBootUpTime = $os.LastBootUpTime.ToUniversalTime().ToString('o') }"#,
    )
}

pub fn stat(path: &str) -> Script {
    Script::new("guest.stat", HASH_BODY).with("Path", path)
}

/// A directory entry as listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    pub name: String,
    #[serde(default)]
    pub length: u64,
    #[serde(default)]
    pub is_dir: bool,
}

/// Lists a folder; a missing folder is an empty list (no `Minidump` folder = no dumps).
pub fn list_dir(path: &str) -> Script {
    Script::new(
        "guest.list_dir",
        r#"if (-not (Test-Path -LiteralPath $P.Path -PathType Container)) { return ,@() }
,@(Get-ChildItem -LiteralPath $P.Path -Force | ForEach-Object {
  [ordered]@{ Name = $_.Name; Length = $(if ($_.PSIsContainer) { 0 } else { $_.Length }); IsDir = $_.PSIsContainer }
})"#,
    )
    .with("Path", path)
}

pub fn remove(path: &str) -> Script {
    Script::new(
        "guest.remove",
        r#"if (Test-Path -LiteralPath $P.Path) { Remove-Item -LiteralPath $P.Path -Recurse -Force }
$null"#,
    )
    .with("Path", path)
}

/// Page file and memory, read back after CrashControl is written, so a dump kind the page
/// file cannot hold is reported now rather than as a missing dump after a crash.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PageFile {
    pub ram_mb: u64,
    #[serde(default)]
    pub page_file_mb: u64,
    #[serde(default)]
    pub automatic_page_file: bool,
}

pub fn set_crash_control(
    dump_enabled: u32,
    auto_reboot: bool,
    always_keep: bool,
    nmi_crash_dump: bool,
) -> Script {
    Script::new(
        "guest.set_crash_control",
        r#"$key = 'HKLM:\SYSTEM\CurrentControlSet\Control\CrashControl'
foreach ($name in @('CrashDumpEnabled', 'AutoReboot', 'AlwaysKeepMemoryDump', 'NMICrashDump')) {
  New-ItemProperty -LiteralPath $key -Name $name -Value ([int]$P[$name]) -PropertyType DWord -Force | Out-Null
}
$cs = Get-CimInstance -ClassName Win32_ComputerSystem
$pf = @(Get-CimInstance -ClassName Win32_PageFileUsage)
$pfMb = 0
foreach ($f in $pf) { $pfMb += [int64]$f.AllocatedBaseSize }
[ordered]@{ RamMb = [int64]($cs.TotalPhysicalMemory / 1MB); PageFileMb = $pfMb; AutomaticPageFile = [bool]$cs.AutomaticManagedPagefile }"#,
    )
    .with("CrashDumpEnabled", i64::from(dump_enabled))
    .with("AutoReboot", i64::from(auto_reboot))
    .with("AlwaysKeepMemoryDump", i64::from(always_keep))
    .with("NMICrashDump", i64::from(nmi_crash_dump))
}

/// An event as read from the System log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Event {
    pub record_id: u64,
    pub id: u32,
    #[serde(default)]
    pub provider_name: String,
    #[serde(default)]
    pub time_created: String,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub data: Option<std::collections::BTreeMap<String, Option<String>>>,
}

impl From<Event> for crate::EventRecord {
    fn from(e: Event) -> Self {
        crate::EventRecord {
            record_id: e.record_id,
            event_id: e.id,
            provider: e.provider_name,
            // The script writes round-trip ('o') UTC times; a record without one keeps its
            // place by id and reads as the epoch rather than being dropped.
            time_created: chrono::DateTime::parse_from_rfc3339(&e.time_created)
                .map(|t| t.to_utc())
                .unwrap_or_default(),
            // Get-WinEvent's level is not in the script's output; nothing reads it.
            level: String::new(),
            message: e.message.unwrap_or_default(),
            data: e
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect(),
        }
    }
}

/// Most records one call returns (the newest ones).
pub const MAX_EVENTS: i64 = 2000;

/// System log records after `since`, oldest first, with their named data fields
/// (unnamed fields are `param1`, `param2`, ...). No records is an empty list, not
/// `Get-WinEvent`'s "No events were found" error.
pub fn events(since: u64) -> Script {
    Script::new(
        "guest.events",
        r#"$filter = "*[System[EventRecordID>$([int64]$P.Since)]]"
try {
  $ev = @(Get-WinEvent -LogName System -FilterXPath $filter -MaxEvents $P.Max -ErrorAction Stop)
} catch {
  if ($_.FullyQualifiedErrorId -like 'NoMatchingEventsFound*') { $ev = @() } else { throw }
}
,@($ev | Sort-Object RecordId | ForEach-Object {
  $data = [ordered]@{}
  $i = 0
  foreach ($d in @(([xml]$_.ToXml()).Event.EventData.Data)) {
    $i++
    if ($null -eq $d) { continue }
    if ($d -is [string]) { $data["param$i"] = $d }
    elseif ($d.Name) { $data[[string]$d.Name] = [string]$d.'#text' }
    else { $data["param$i"] = [string]$d.'#text' }
  }
  [ordered]@{ RecordId = $_.RecordId; Id = $_.Id; ProviderName = $_.ProviderName
    TimeCreated = $_.TimeCreated.ToUniversalTime().ToString('o'); Message = $_.Message; Data = $data }
})"#,
    )
    .with("Since", since as i64)
    .with("Max", MAX_EVENTS)
}

/// Outstanding bytes and allocations of one pool tag.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PoolUsage {
    pub bytes: i64,
    pub allocs: i64,
}

/// Pool usage of a tag from `NtQuerySystemInformation(SystemPoolTagInformation)`, the
/// same numbers poolmon shows, without installing poolmon. x64 guests only.
pub fn pool_tag(tag: &str) -> Script {
    Script::new(
        "guest.pool_tag",
        r#"if (-not ('HvlabPoolTags' -as [type])) {
  Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;
public static class HvlabPoolTags {
  [DllImport("ntdll.dll")]
  static extern int NtQuerySystemInformation(int cls, IntPtr buf, int len, out int needed);
  public static long[] Query(string tag) {
    if (IntPtr.Size != 8) { throw new PlatformNotSupportedException("pool tag query needs a 64-bit guest"); }
    int len = 1 << 20;
    while (true) {
      IntPtr buf = Marshal.AllocHGlobal(len);
      try {
        int needed;
        int st = NtQuerySystemInformation(22, buf, len, out needed);
        if (st == unchecked((int)0xC0000004)) { len = Math.Max(len * 2, needed + 4096); continue; }
        if (st != 0) { throw new InvalidOperationException("NtQuerySystemInformation(SystemPoolTagInformation) failed: NTSTATUS 0x" + st.ToString("X8")); }
        int count = Marshal.ReadInt32(buf);
        long bytes = 0, allocs = 0;
        for (int i = 0; i < count; i++) {
          IntPtr e = IntPtr.Add(buf, 8 + i * 40);
          byte[] t = new byte[4];
          Marshal.Copy(e, t, 0, 4);
          if (System.Text.Encoding.ASCII.GetString(t) != tag) { continue; }
          allocs += (long)(uint)Marshal.ReadInt32(e, 4) - (uint)Marshal.ReadInt32(e, 8)
                  + (uint)Marshal.ReadInt32(e, 24) - (uint)Marshal.ReadInt32(e, 28);
          bytes += Marshal.ReadInt64(e, 16) + Marshal.ReadInt64(e, 32);
        }
        return new long[] { bytes, allocs };
      } finally { Marshal.FreeHGlobal(buf); }
    }
  }
}
'@
}
$q = [HvlabPoolTags]::Query($P.Tag.PadRight(4))
[ordered]@{ Bytes = $q[0]; Allocs = $q[1] }"#,
    )
    .with("Tag", tag)
}

/// A file moved into place from the deploy archive, hashed where it landed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Placed {
    pub path: String,
    pub length: u64,
    pub hash: String,
}

/// Extracts the deploy archive (`tar.exe`, built into Windows since 1803) into a staging
/// folder, moves each entry to its destination and hashes it there.
pub fn extract(
    archive: &str,
    staging: &str,
    entries: &[String],
    destinations: &[String],
) -> Script {
    Script::new(
        "guest.extract",
        concat!(
            process_fn!(),
            r#"if (Test-Path -LiteralPath $P.Staging) { Remove-Item -LiteralPath $P.Staging -Recurse -Force }
New-Item -ItemType Directory -Force -Path $P.Staging | Out-Null
$tar = Invoke-HvlabProcess 'tar.exe' $P.TarArguments 600000 65536
if ($tar.ExitCode -ne 0) {
  throw [System.IO.IOException]::new("tar.exe could not extract '$($P.Archive)' (exit code $($tar.ExitCode)): $($tar.Stderr)")
}
$placed = @()
for ($i = 0; $i -lt $P.Entries.Count; $i++) {
  $src = Join-Path $P.Staging $P.Entries[$i]
  $dst = $P.Destinations[$i]
  $dir = Split-Path -Parent $dst
  if ($dir -and -not (Test-Path -LiteralPath $dir)) { New-Item -ItemType Directory -Force -Path $dir | Out-Null }
  Move-Item -LiteralPath $src -Destination $dst -Force
  $placed += [ordered]@{ Path = $dst; Length = (Get-Item -LiteralPath $dst -Force).Length
    Hash = (Get-FileHash -LiteralPath $dst -Algorithm SHA256).Hash.ToLowerInvariant() }
}
Remove-Item -LiteralPath $P.Staging -Recurse -Force
Remove-Item -LiteralPath $P.Archive -Force
,$placed"#
        ),
    )
    .with("Archive", archive)
    .with("Staging", staging)
    .with(
        "TarArguments",
        windows_command_line(&[
            "-xzf".into(),
            archive.to_owned(),
            "-C".into(),
            staging.to_owned(),
        ]),
    )
    .with("Entries", entries.to_vec())
    .with("Destinations", destinations.to_vec())
}

/// The original's size and hash, and the size of its gzip copy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Compressed {
    pub length: u64,
    pub hash: String,
    pub compressed: u64,
}

/// Gzips a file (a dump) for transfer; kernel dumps shrink several times.
pub fn compress(path: &str, out: &str) -> Script {
    Script::new(
        "guest.compress",
        r#"$hash = (Get-FileHash -LiteralPath $P.Path -Algorithm SHA256).Hash.ToLowerInvariant()
$dir = Split-Path -Parent $P.Out
if ($dir) { New-Item -ItemType Directory -Force -Path $dir | Out-Null }
$in = [IO.File]::Open($P.Path, [IO.FileMode]::Open, [IO.FileAccess]::Read, [IO.FileShare]::ReadWrite)
try {
  $o = [IO.File]::Create($P.Out)
  try {
    $gz = New-Object IO.Compression.GZipStream ($o, [IO.Compression.CompressionMode]::Compress)
    $in.CopyTo($gz)
    $gz.Close()
  } finally { $o.Close() }
} finally { $in.Close() }
[ordered]@{ Length = (Get-Item -LiteralPath $P.Path -Force).Length; Hash = $hash
  Compressed = (Get-Item -LiteralPath $P.Out -Force).Length }"#,
    )
    .with("Path", path)
    .with("Out", out)
}
