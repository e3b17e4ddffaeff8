//! What a dump says: the description the simulated guest hands to [`crate::write_dump`].

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Which dump file Windows writes. Not win-vocab's `DumpKind` (the `CrashDumpEnabled`
/// setting): a written dump is never "none", and "automatic" writes a kernel dump, so the
/// writer and triage only ever see these three; [`DumpKind::written_for`] maps a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DumpKind {
    /// `CrashDumpEnabled = 1`: all physical memory (`MEMORY.DMP`).
    Complete,
    /// `CrashDumpEnabled = 2` (and 7, automatic): kernel pages only (`MEMORY.DMP`).
    Kernel,
    /// `CrashDumpEnabled = 3`: a DumpType 4 triage dump (`Minidump\MMDDYY-N-01.dmp`).
    Small,
}

impl DumpKind {
    /// The dump a CrashControl setting writes; `None` when it writes none.
    pub fn written_for(setting: win_vocab::DumpKind) -> Option<Self> {
        match setting {
            win_vocab::DumpKind::None => None,
            win_vocab::DumpKind::Complete => Some(Self::Complete),
            win_vocab::DumpKind::Kernel | win_vocab::DumpKind::Automatic => Some(Self::Kernel),
            win_vocab::DumpKind::Small => Some(Self::Small),
        }
    }

    /// The kind for a `CrashDumpEnabled` registry value; `None` for 0 (no dump) and unknown
    /// values.
    pub fn from_crash_dump_enabled(value: u32) -> Option<Self> {
        win_vocab::DumpKind::from_registry_value(value).and_then(Self::written_for)
    }

    /// Where Windows puts this kind of dump, relative to `%SystemRoot%` (`C:\Windows`):
    /// `MEMORY.DMP` or `Minidump\<MMDDYY>-<seq>-01.dmp`, `seq` counting from 1.
    pub fn relative_path(self, crash_time: DateTime<Utc>, seq: u32) -> String {
        match self {
            Self::Complete | Self::Kernel => "MEMORY.DMP".to_owned(),
            Self::Small => format!("Minidump\\{}-{seq:02}-01.dmp", crash_time.format("%m%d%y")),
        }
    }
}

/// How physical pages are laid out after the header of a complete or kernel dump.
///
/// Windows 8 and later write bitmap dumps; the others are what older systems and
/// `.dump /f` / `.dump /k` produce. All are accepted by kdmp-parser and by triage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PageEncoding {
    /// DumpType 5 with an "FDMP" (complete) or "SDMP" (kernel) bitmap header.
    #[default]
    Bitmap,
    /// DumpType 1: runs of pages in the header's physical memory descriptor.
    Runs,
    /// DumpType 0xA (complete) or 8 (kernel) with an RDMP header and PFN ranges.
    Rdmp,
}

/// A loaded kernel module as it appears in `PsLoadedModuleList`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    /// Base name, e.g. `sample_ebpf_ext.sys`.
    pub name: String,
    pub base: u64,
    pub size: u32,
    /// Full path (`FullDllName`); defaults to `\SystemRoot\system32\drivers\<name>`
    /// (`\SystemRoot\system32\<name>` for the kernel and HAL).
    pub path: Option<String>,
    /// Functions the image exports, written as a PE export directory at `base` (complete
    /// and kernel dumps) so triage can name the function an address lies in.
    #[serde(default)]
    pub exports: Vec<Export>,
}

/// One exported function of a module image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub name: String,
    /// Address relative to the image base.
    pub rva: u32,
}

/// A driver unloaded earlier in this boot, as `MmUnloadedDrivers` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnloadedModule {
    pub name: String,
    pub base: u64,
    pub size: u32,
    /// When it was unloaded (`CurrentTime`).
    pub time: DateTime<Utc>,
}

impl Module {
    pub fn new(name: impl Into<String>, base: u64, size: u32) -> Self {
        Self {
            name: name.into(),
            base,
            size,
            path: None,
            exports: Vec::new(),
        }
    }

    /// The `FullDllName` written for this module.
    pub fn full_path(&self) -> String {
        if let Some(path) = &self.path {
            return path.clone();
        }
        let lower = self.name.to_ascii_lowercase();
        if lower.starts_with("ntoskrnl") || lower.starts_with("ntkrnl") || lower == "hal.dll" {
            format!("\\SystemRoot\\system32\\{}", self.name)
        } else {
            format!("\\SystemRoot\\system32\\drivers\\{}", self.name)
        }
    }

    /// Whether `addr` lies in `[base, base + size)`.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < u64::from(self.size)
    }
}

/// `DUMP_HEADER64.ProductType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProductType {
    Workstation,
    DomainController,
    Server,
}

impl ProductType {
    pub fn code(self) -> u32 {
        match self {
            Self::Workstation => 1,
            Self::DomainController => 2,
            Self::Server => 3,
        }
    }

    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::Workstation),
            2 => Some(Self::DomainController),
            3 => Some(Self::Server),
            _ => None,
        }
    }
}

/// The Windows build the dump claims to come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OsVersion {
    /// `MajorVersion`: 0xF for a free (retail) build, 0xC for a checked one.
    pub major: u32,
    /// `MinorVersion`: the build number, e.g. 20348 (Server 2022), 26100 (24H2).
    pub build: u32,
    pub product_type: ProductType,
}

impl Default for OsVersion {
    fn default() -> Self {
        Self {
            major: 0xF,
            build: 20348,
            product_type: ProductType::Server,
        }
    }
}

/// Everything [`crate::write_dump`] needs to write one dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpSpec {
    pub kind: DumpKind,
    pub bugcheck_code: u32,
    pub params: [u64; 4],
    /// RIP of the bugchecking thread's context; put it inside the faulting module.
    pub rip: u64,
    pub rsp: u64,
    /// Loaded modules, in load order (the kernel first, as on Windows).
    pub modules: Vec<Module>,
    /// Drivers unloaded in this boot, oldest first (`MmUnloadedDrivers`).
    #[serde(default)]
    pub unloaded: Vec<UnloadedModule>,
    /// Return addresses on the bugchecking thread's stack above `rsp`, innermost first
    /// (the caller of the function RIP is in comes first).
    #[serde(default)]
    pub stack: Vec<u64>,
    pub system_time: DateTime<Utc>,
    pub uptime: Duration,
    pub os: OsVersion,
    pub processors: u32,
    /// Physical memory of the guest in bytes, for complete dumps (rounded up to pages and
    /// grown to hold what the dump needs). Pages nobody wrote are left as holes in the file.
    pub physical_memory: u64,
    pub encoding: PageEncoding,
    /// `DUMP_HEADER64.Comment` (at most 127 ASCII bytes are kept).
    pub comment: Option<String>,
}

impl DumpSpec {
    /// A spec with plausible defaults for everything but the fault itself.
    pub fn new(
        kind: DumpKind,
        bugcheck_code: u32,
        params: [u64; 4],
        rip: u64,
        modules: Vec<Module>,
    ) -> Self {
        Self {
            kind,
            bugcheck_code,
            params,
            rip,
            rsp: 0xFFFF_A581_2D6F_7478,
            modules,
            unloaded: Vec::new(),
            stack: Vec::new(),
            system_time: Utc
                .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            uptime: Duration::from_secs(60),
            os: OsVersion::default(),
            processors: 4,
            physical_memory: 256 * 1024,
            encoding: PageEncoding::default(),
            comment: None,
        }
    }

    /// The module RIP lies in, if any.
    pub fn faulting_module(&self) -> Option<&Module> {
        self.modules.iter().find(|m| m.contains(self.rip))
    }
}

/// Convert a FILETIME (100 ns ticks since 1601) to UTC; `None` when out of range or zero.
pub fn filetime_to_utc(filetime: i64) -> Option<DateTime<Utc>> {
    if filetime <= 0 {
        return None;
    }
    let since_unix = filetime.checked_sub(crate::format::FILETIME_UNIX_EPOCH)?;
    let secs = since_unix.div_euclid(10_000_000);
    let nanos = u32::try_from(since_unix.rem_euclid(10_000_000) * 100).ok()?;
    DateTime::from_timestamp(secs, nanos)
}

/// Convert UTC to a FILETIME (100 ns ticks since 1601).
pub fn utc_to_filetime(t: DateTime<Utc>) -> i64 {
    let ticks = t.timestamp() * 10_000_000 + i64::from(t.timestamp_subsec_nanos() / 100);
    ticks + crate::format::FILETIME_UNIX_EPOCH
}
