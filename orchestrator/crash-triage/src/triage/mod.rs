//! Triage of 64-bit Windows kernel dumps: which bugcheck, in which module, when, on which
//! build — without reading the whole file.
//!
//! ```text
//! header (0x2000, by hand) ─ DumpType 4 ──────────────► small.rs (TRIAGE_DUMP64 driver list)
//!        └─ 1/5/6/8/9/0xA ─► physmem.rs: check page description against the file
//!                          ─► walk.rs: bounded PsLoadedModuleList walk (guard)
//!                          ─► kdmp.rs: kdmp-parser on its own thread, header patched
//! ```
//! Only the header, the page description (a bitmap is 32 KiB per GiB) and the few pages
//! the module list lives on are read.

mod error;
mod header;
mod kdmp;
mod kernel_data;
mod physmem;
mod small;
mod source;
mod walk;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use error::{TriageError, TriageErrorKind};
pub use kernel_data::{StackFrame, UnloadedDriver};

use self::error::TriageErrorKind as K;
use self::source::Source;
use crate::codes;
use crate::format::{self, bmp, dump_type};
use crate::spec::{ProductType, filetime_to_utc};

/// Above this many pages (64 MiB of memory) kdmp-parser gets an in-memory view of the pages
/// triage needs instead of the file: its per-page map would cost more than the rest of
/// triage (about 35 ms per GiB).
const VIEW_THRESHOLD_PAGES: u64 = 16 * 1024;

/// An error before the file name is attached.
#[derive(Debug)]
pub(crate) struct Fail {
    offset: Option<u64>,
    kind: TriageErrorKind,
}

impl Fail {
    pub(crate) fn new(offset: Option<u64>, kind: TriageErrorKind) -> Self {
        Self { offset, kind }
    }
}

/// Bytes as text for messages: printable ASCII kept, the rest as `\xNN`.
pub(crate) fn printable(bytes: &[u8]) -> String {
    let mut s = String::from("\"");
    for &b in bytes {
        if b.is_ascii_graphic() || b == b' ' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s.push('"');
    s
}

/// The dump's format, from `DumpType` (and the bitmap signature for type 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DumpFormat {
    /// 1: legacy full dump with memory runs.
    Full,
    /// 4: small (triage) dump.
    Small,
    /// 5 "SDMP": kernel memory dump (Windows 8+).
    KernelBitmap,
    /// 5 "FDMP": complete memory dump (Windows 8+).
    CompleteBitmap,
    /// 6: live kernel dump.
    LiveKernel,
    /// 8: `.dump /k`.
    KernelMemory,
    /// 9: `.dump /ka`.
    KernelAndUserMemory,
    /// 0xA: `.dump /f`.
    CompleteMemory,
}

impl DumpFormat {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Full => "full dump (DumpType 1)",
            Self::Small => "small dump (DumpType 4)",
            Self::KernelBitmap => "kernel bitmap dump (DumpType 5)",
            Self::CompleteBitmap => "complete bitmap dump (DumpType 5)",
            Self::LiveKernel => "live kernel dump (DumpType 6)",
            Self::KernelMemory => "kernel memory dump (DumpType 8)",
            Self::KernelAndUserMemory => "kernel and user memory dump (DumpType 9)",
            Self::CompleteMemory => "complete memory dump (DumpType 0xA)",
        }
    }
}

/// The bugcheck recorded in the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BugCheck {
    pub code: u32,
    /// e.g. `PAGE_FAULT_IN_NONPAGED_AREA`; `None` for codes the table does not know.
    pub name: Option<String>,
    pub params: [u64; 4],
    /// Parameter 1 when it names the kind of violation (0x139, 0xC4, 0xC2, ...).
    pub subcode: Option<u64>,
    /// What that subcode means, when known.
    pub subcode_meaning: Option<String>,
}

impl BugCheck {
    pub fn new(code: u32, params: [u64; 4]) -> Self {
        let sub = codes::subcode(code, &params);
        Self {
            code,
            name: codes::bugcheck_name(code).map(str::to_owned),
            params,
            subcode: sub.as_ref().map(|s| s.value),
            subcode_meaning: sub.and_then(|s| s.meaning),
        }
    }

    /// The code and parameters alone, the record the event log and the runner share.
    pub fn record(&self) -> win_vocab::Bugcheck {
        win_vocab::Bugcheck {
            code: self.code,
            params: self.params,
        }
    }

    /// Whether the code says the system hung rather than faulted: 0x80 (the NMI the host
    /// injects into a hung guest), 0x133 and 0x101 (watchdogs), 0x9F (a power IRP stuck).
    pub fn is_hang(&self) -> bool {
        matches!(self.code, 0x80 | 0x133 | 0x101 | 0x9F)
    }

    /// `NAME (0x50)`, or `BUGCHECK_0x1234 (0x1234)` for unknown codes.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({:#x})", self.code),
            None => format!("BUGCHECK_{:#X} ({:#x})", self.code, self.code),
        }
    }
}

/// A module from the dump's module list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedModule {
    /// Base name, e.g. `sample_ebpf_ext.sys`.
    pub name: String,
    /// The path as recorded (`\SystemRoot\system32\drivers\...`).
    pub path: String,
    pub base: u64,
    pub size: u64,
}

impl LoadedModule {
    pub(crate) fn new(name: String, path: String, base: u64, size: u64) -> Self {
        Self {
            name,
            path,
            base,
            size,
        }
    }

    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }
}

/// The module RIP lies in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultingModule {
    pub name: String,
    pub base: u64,
    pub size: u64,
    /// RIP - base.
    pub offset: u64,
    /// The image was unloaded (found in `MmUnloadedDrivers`, not the module list).
    #[serde(default)]
    pub unloaded: bool,
}

impl FaultingModule {
    /// The image at `base` of `size` bytes, which holds `rip`.
    fn at(rip: u64, name: &str, base: u64, size: u64, unloaded: bool) -> Self {
        FaultingModule {
            name: name.to_owned(),
            base,
            size,
            offset: rip - base,
            unloaded,
        }
    }
}

/// Build and machine facts from the header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// 0xF free build, 0xC checked build.
    pub major_version: u32,
    pub build: u32,
    pub product_type: Option<ProductType>,
    /// 0x8664 for x64.
    pub machine: u32,
    pub processors: u32,
}

/// Everything triage learned from one dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Triage {
    pub path: PathBuf,
    pub file_size: u64,
    pub format: DumpFormat,
    pub bugcheck: BugCheck,
    pub rip: u64,
    pub faulting_module: Option<FaultingModule>,
    /// Sorted by base address.
    pub modules: Vec<LoadedModule>,
    /// Drivers unloaded earlier in the boot, oldest first (`MmUnloadedDrivers`).
    #[serde(default)]
    pub unloaded_modules: Vec<UnloadedDriver>,
    /// The faulting thread: RIP's frame first, then the return addresses found on its
    /// stack (see `kernel_data`). Only RIP's frame for small dumps.
    #[serde(default)]
    pub stack: Vec<StackFrame>,
    pub system_time: Option<DateTime<Utc>>,
    pub uptime: Option<Duration>,
    pub system: SystemInfo,
    pub comment: Option<String>,
    /// Things that did not stop triage but limit what it could say.
    pub warnings: Vec<String>,
}

/// Triage the dump at `path`. Blocking (it may run kdmp-parser on a helper thread); from
/// async code call it on a blocking thread.
pub fn triage_file(path: &Path) -> Result<Triage, TriageError> {
    let file = File::open(path).map_err(|e| TriageError::new(path, None, K::Io(e)))?;
    triage_source(path, Source::File(file))
}

/// Triage a dump held in memory; `name` stands in for the path in results and errors.
pub fn triage_bytes(name: &Path, bytes: impl Into<Arc<[u8]>>) -> Result<Triage, TriageError> {
    triage_source(name, Source::Bytes(bytes.into()))
}

fn triage_source(path: &Path, src: Source) -> Result<Triage, TriageError> {
    run(path, &src).map_err(|f| TriageError::new(path, f.offset, f.kind))
}

fn run(path: &Path, src: &Source) -> Result<Triage, Fail> {
    let len = src.len().map_err(|e| Fail::new(None, K::Io(e)))?;
    if len < format::HEADER_SIZE as u64 {
        let mut head = vec![0u8; len as usize];
        src.read_at(0, &mut head)
            .map_err(|e| Fail::new(None, K::Io(e)))?;
        // A short file that is not a dump at all says so before saying it is short.
        if head.len() >= 8 {
            header::Header::parse(
                [
                    head.as_slice(),
                    &vec![0u8; format::HEADER_SIZE - head.len()],
                ]
                .concat(),
            )?;
        }
        return Err(Fail::new(None, K::TooShort { len }));
    }
    let mut raw = vec![0u8; format::HEADER_SIZE];
    src.read_at(0, &mut raw)
        .map_err(|e| Fail::new(Some(0), K::Io(e)))?;
    let header = header::Header::parse(raw)?;

    let mut warnings = Vec::new();
    let mut unloaded_modules = Vec::new();
    let mut stack_words: Option<Vec<StackFrame>> = None;
    let (format, modules, bugcheck, rip) = match header.dump_type() {
        dump_type::TRIAGE => {
            let small = small::read_small(src, len)?;
            warnings.extend(small.warnings);
            unloaded_modules = small.unloaded;
            let bugcheck = BugCheck::new(header.bugcheck_code(), header.bugcheck_params());
            (DumpFormat::Small, small.modules, bugcheck, header.rip())
        }
        _ => {
            let phys = physmem::map(&header, src, len)?;
            let format = full_format(&header, src)?;
            let reader = walk::VirtReader::new(src, &phys, header.directory_table_base());
            let hide = match walk::check_module_list(&reader, header.ps_loaded_module_list()) {
                walk::ListCheck::Safe { .. } => None,
                walk::ListCheck::Unsafe(why) => {
                    warnings.push(format!("module list not used: {why}"));
                    Some(phys.pfn_limit())
                }
            };
            // Large dumps: show kdmp-parser only the pages the module walk needs.
            let input = if phys.pages() > VIEW_THRESHOLD_PAGES {
                reader.touched_pages().and_then(kdmp::view)
            } else {
                None
            };
            let parsed = kdmp::parse(&header, src, len, input.unwrap_or(kdmp::Input::File), hide)?;
            let modules: Vec<LoadedModule> = parsed
                .modules
                .into_iter()
                .map(|(base, end, path)| {
                    let name = base_name(&path);
                    LoadedModule::new(name, path, base, end - base)
                })
                .collect();
            if hide.is_none() {
                unloaded_modules =
                    kernel_data::unloaded_drivers(&reader, header.kd_debugger_data_block());
                stack_words = Some(kernel_data::stack(
                    &reader,
                    &modules,
                    &unloaded_modules,
                    parsed.rip,
                    header.rsp(),
                ));
            }
            (
                format,
                modules,
                BugCheck::new(parsed.bugcheck_code, parsed.params),
                parsed.rip,
            )
        }
    };

    let mut modules: Vec<LoadedModule> = modules;
    modules.sort_by_key(|m| m.base);
    if modules.is_empty() {
        warnings.push("the dump lists no loaded modules".to_owned());
    }
    let faulting_module = modules
        .iter()
        .find(|m| m.contains(rip))
        .map(|m| FaultingModule::at(rip, &m.name, m.base, m.size, false))
        .or_else(|| {
            unloaded_modules
                .iter()
                .rev()
                .find(|u| u.contains(rip))
                .map(|u| FaultingModule::at(rip, &u.name, u.base, u.size, true))
        });
    let stack = stack_words.unwrap_or_else(|| {
        kernel_data::frame(None, &modules, &unloaded_modules, rip)
            .into_iter()
            .collect()
    });
    let up = header.system_up_time();
    Ok(Triage {
        path: path.to_path_buf(),
        file_size: len,
        format,
        bugcheck,
        rip,
        faulting_module,
        modules,
        unloaded_modules,
        stack,
        system_time: filetime_to_utc(header.system_time()),
        uptime: (up != 0 && up < u64::MAX / 100).then(|| Duration::from_nanos(up * 100)),
        system: SystemInfo {
            major_version: header.major_version(),
            build: header.build(),
            product_type: ProductType::from_code(header.product_type()),
            machine: header.machine(),
            processors: header.processors(),
        },
        comment: header.comment(),
        warnings,
    })
}

/// `sample_ebpf_ext.sys` from `\SystemRoot\system32\drivers\sample_ebpf_ext.sys`.
fn base_name(path: &str) -> String {
    path.rsplit(['\\', '/']).next().unwrap_or(path).to_owned()
}

fn full_format(header: &header::Header, src: &Source) -> Result<DumpFormat, Fail> {
    Ok(match header.dump_type() {
        dump_type::FULL => DumpFormat::Full,
        dump_type::BITMAP => {
            let mut sig = [0u8; 4];
            src.read_at(format::HEADER_SIZE as u64, &mut sig)
                .map_err(|e| Fail::new(Some(format::HEADER_SIZE as u64), K::Io(e)))?;
            if &sig == bmp::SIG_COMPLETE {
                DumpFormat::CompleteBitmap
            } else {
                DumpFormat::KernelBitmap
            }
        }
        dump_type::LIVE_KERNEL => DumpFormat::LiveKernel,
        dump_type::KERNEL_MEMORY => DumpFormat::KernelMemory,
        dump_type::KERNEL_AND_USER => DumpFormat::KernelAndUserMemory,
        _ => DumpFormat::CompleteMemory,
    })
}
