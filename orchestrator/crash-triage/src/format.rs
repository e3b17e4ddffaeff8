//! On-disk layout of 64-bit Windows kernel dumps: offsets shared by the writer and triage.
//!
//! The header is `DUMP_HEADER64` (0x2000 bytes, the same layout kdmp-parser's `Header64`
//! uses); what follows it depends on `DumpType`. Offsets are in bytes from the start of
//! the file unless a comment says otherwise.

/// Size of `DUMP_HEADER64`.
pub const HEADER_SIZE: usize = 0x2000;
/// Size of one physical page.
pub const PAGE_SIZE: u64 = 0x1000;

/// "PAGE": `Signature`. Windows also fills unused header bytes with it.
pub const SIGNATURE: &[u8; 4] = b"PAGE";
/// "DU64": `ValidDump` of a 64-bit dump ("DUMP" marks a 32-bit one).
pub const VALID_DUMP64: &[u8; 4] = b"DU64";

pub mod hdr {
    //! Field offsets inside `DUMP_HEADER64`.
    pub const VALID_DUMP: usize = 0x004;
    pub const MAJOR_VERSION: usize = 0x008;
    pub const MINOR_VERSION: usize = 0x00C;
    pub const DIRECTORY_TABLE_BASE: usize = 0x010;
    pub const PFN_DATABASE: usize = 0x018;
    pub const PS_LOADED_MODULE_LIST: usize = 0x020;
    pub const PS_ACTIVE_PROCESS_HEAD: usize = 0x028;
    pub const MACHINE_IMAGE_TYPE: usize = 0x030;
    pub const NUMBER_PROCESSORS: usize = 0x034;
    pub const BUGCHECK_CODE: usize = 0x038;
    pub const BUGCHECK_PARAMS: usize = 0x040;
    pub const KD_DEBUGGER_DATA_BLOCK: usize = 0x080;
    /// `PHYSICAL_MEMORY_DESCRIPTOR64`: runs count (u32), pad, page count (u64), runs.
    pub const PHYSICAL_MEMORY_BLOCK: usize = 0x088;
    pub const PHYSICAL_MEMORY_BLOCK_SIZE: usize = 700;
    pub const CONTEXT_RECORD: usize = 0x348;
    pub const EXCEPTION_RECORD: usize = 0xF00;
    pub const DUMP_TYPE: usize = 0xF98;
    pub const REQUIRED_DUMP_SPACE: usize = 0xFA0;
    pub const SYSTEM_TIME: usize = 0xFA8;
    pub const COMMENT: usize = 0xFB0;
    pub const COMMENT_SIZE: usize = 128;
    pub const SYSTEM_UP_TIME: usize = 0x1030;
    pub const PRODUCT_TYPE: usize = 0x1040;
    pub const SUITE_MASK: usize = 0x1044;
}

pub mod ctx {
    //! Field offsets inside the x64 `CONTEXT` record (0x4d0 bytes).
    pub const SIZE: usize = 0x4D0;
    pub const CONTEXT_FLAGS: usize = 0x30;
    pub const MXCSR: usize = 0x34;
    /// `FltSave` (`XMM_SAVE_AREA32`): `ControlWord` at +0, `MxCsr` at +0x18,
    /// `MxCsr_Mask` at +0x1C. Readers check that `FltSave.MxCsr` equals `MxCsr`.
    pub const FLT_SAVE_CONTROL_WORD: usize = 0x100;
    pub const FLT_SAVE_MXCSR: usize = 0x118;
    pub const FLT_SAVE_MXCSR_MASK: usize = 0x11C;
    pub const SEG_CS: usize = 0x38;
    pub const SEG_DS: usize = 0x3A;
    pub const SEG_ES: usize = 0x3C;
    pub const SEG_FS: usize = 0x3E;
    pub const SEG_GS: usize = 0x40;
    pub const SEG_SS: usize = 0x42;
    pub const EFLAGS: usize = 0x44;
    pub const RSP: usize = 0x98;
    pub const RIP: usize = 0xF8;
}

pub mod exc {
    //! Field offsets inside `EXCEPTION_RECORD64` (0x98 bytes).
    pub const CODE: usize = 0x00;
    pub const ADDRESS: usize = 0x10;
    pub const NUMBER_PARAMETERS: usize = 0x18;
}

/// Dump types (`DUMP_HEADER64.DumpType`).
pub mod dump_type {
    /// Legacy full dump: physical memory runs in the header, pages packed from 0x2000.
    pub const FULL: u32 = 0x1;
    /// Small ("triage", `Minidump\*.dmp`) dump: a `TRIAGE_DUMP64` follows the header.
    pub const TRIAGE: u32 = 0x4;
    /// Bitmap dump (Windows 8+ kernel "SDMP" and complete "FDMP" dumps).
    pub const BITMAP: u32 = 0x5;
    /// Live kernel dump (Task Manager, 22H2+), bitmap format.
    pub const LIVE_KERNEL: u32 = 0x6;
    /// `.dump /k`, RDMP format.
    pub const KERNEL_MEMORY: u32 = 0x8;
    /// `.dump /ka`, RDMP format.
    pub const KERNEL_AND_USER: u32 = 0x9;
    /// `.dump /f`, RDMP format.
    pub const COMPLETE_MEMORY: u32 = 0xA;
}

pub mod bmp {
    //! The bitmap dump header that follows `DUMP_HEADER64` for DumpType 5 and 6.
    /// "SDMP": summary (kernel) dump.
    pub const SIG_KERNEL: &[u8; 4] = b"SDMP";
    /// "FDMP": full (complete) dump.
    pub const SIG_COMPLETE: &[u8; 4] = b"FDMP";
    pub const VALID_DUMP: &[u8; 4] = b"DUMP";
    pub const FIRST_PAGE: usize = 0x20;
    pub const TOTAL_PRESENT_PAGES: usize = 0x28;
    pub const PAGES: usize = 0x30;
    /// The bitmap starts here (relative to the bitmap header).
    pub const BITMAP: usize = 0x38;
}

pub mod rdmp {
    //! The RDMP header that follows `DUMP_HEADER64` for DumpType 8, 9 and 0xA.
    pub const MARKER: u32 = 0x40;
    pub const SIGNATURE: &[u8; 4] = b"RDMP";
    pub const VALID_DUMP: &[u8; 4] = b"DUMP";
    pub const METADATA_SIZE: usize = 0x10;
    pub const FIRST_PAGE_OFFSET: usize = 0x18;
    /// Complete (0xA) only: total page count bounding the PFN range list.
    pub const TOTAL_NUMBER_OF_PAGES: usize = 0x28;
    /// PFN ranges (`{ pfn: u64, count: u64 }`) start here (relative to the RDMP header).
    pub const RANGES: usize = 0x30;
    /// `metadata_size - 0x20 == first_page_offset - 0x2040`, i.e. the metadata starts
    /// 0x20 bytes into the RDMP header.
    pub const METADATA_START: u64 = 0x2020;
}

pub mod triage {
    //! `TRIAGE_DUMP64`, which follows `DUMP_HEADER64` in a small dump (offsets relative to it;
    //! the offsets stored in its fields are file offsets).
    pub const SIZE: usize = 0x80;
    pub const SERVICE_PACK_BUILD: usize = 0x00;
    pub const SIZE_OF_DUMP: usize = 0x04;
    pub const VALID_OFFSET: usize = 0x08;
    pub const CONTEXT_OFFSET: usize = 0x0C;
    pub const EXCEPTION_OFFSET: usize = 0x10;
    /// Where `MmWriteUnloadedDriverInformation` put the unloaded-driver list (0: none).
    pub const UNLOADED_DRIVERS_OFFSET: usize = 0x18;
    pub const DRIVER_LIST_OFFSET: usize = 0x30;
    pub const DRIVER_COUNT: usize = 0x34;
    pub const STRING_POOL_OFFSET: usize = 0x38;
    pub const STRING_POOL_SIZE: usize = 0x3C;
    pub const BROKEN_DRIVER_OFFSET: usize = 0x40;
    pub const TRIAGE_OPTIONS: usize = 0x44;
    /// 'DGRT' as a little-endian ULONG: written last, marks a complete triage dump.
    pub const VALID_MARKER: &[u8; 4] = b"TRGD";
    /// `TRIAGE_DUMP_CONTEXT | _EXCEPTION | _DRIVER_LIST` in `TriageOptions`.
    pub const OPTIONS: u32 = 0x1 | 0x2 | 0x40;
    /// `DUMP_DRIVER_ENTRY64`: `DriverNameOffset` (u32), pad, `KLDR_DATA_TABLE_ENTRY`.
    pub const DRIVER_ENTRY_SIZE: usize = 8 + super::ldr::SIZE;
    pub const DRIVER_ENTRY_LDR: usize = 8;
}

pub mod triage_unloaded {
    //! The unloaded-driver list of a small dump, as `MmWriteUnloadedDriverInformation`
    //! writes it at `UnloadedDriversOffset`: a ULONG count, padding to 8, then up to 50
    //! `DUMP_UNLOADED_DRIVERS64` entries, newest first. Each is a `UNICODE_STRING64` whose
    //! `Buffer` pointed into the dump buffer at crash time (meaningless in the file), the
    //! name itself truncated to 12 UTF-16 units (`dump_storpor`, as WinDbg lists them from
    //! minidumps), and the start and end address. No unload time.
    pub const ENTRIES: usize = 8;
    pub const SIZE: usize = 0x38;
    pub const NAME_LENGTH: usize = 0x00;
    pub const NAME_BUFFER: usize = 0x08;
    pub const NAME: usize = 0x10;
    /// Bytes of name kept: 12 UTF-16 units.
    pub const NAME_BYTES: usize = 24;
    pub const START: usize = 0x28;
    pub const END: usize = 0x30;
    /// `MmUnloadedDrivers` is a ring of 50.
    pub const MAX: usize = 50;
}

pub mod kdbg {
    //! `KDDEBUGGER_DATA64` (offsets per `wdbgexts.h`, x64).
    /// Address of the kernel variable `MmUnloadedDrivers` (a pointer to the array).
    pub const MM_UNLOADED_DRIVERS: usize = 0x220;
    /// Address of the kernel variable `MmLastUnloadedDriver` (a ULONG: entries in use).
    pub const MM_LAST_UNLOADED_DRIVER: usize = 0x228;
}

pub mod unloaded {
    //! `UNLOADED_DRIVERS` (x64): `Name` (UNICODE_STRING), `StartAddress`, `EndAddress`,
    //! `CurrentTime` (FILETIME). Windows keeps the last 50 in a ring.
    pub const SIZE: usize = 0x28;
    pub const NAME: usize = 0x00;
    pub const START: usize = 0x10;
    pub const END: usize = 0x18;
    pub const TIME: usize = 0x20;
    pub const MAX: usize = 50;
}

pub mod pe {
    //! The PE headers a module image starts with, as far as export lookup needs them.
    /// `IMAGE_DOS_HEADER.e_lfanew`.
    pub const E_LFANEW: usize = 0x3C;
    /// From the `PE\0\0` signature to `IMAGE_OPTIONAL_HEADER64`.
    pub const OPTIONAL_HEADER: usize = 0x18;
    pub const PE32_PLUS: u16 = 0x20B;
    /// `DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT]` inside the optional header.
    pub const EXPORT_DIRECTORY: usize = 0x70;
    /// `IMAGE_EXPORT_DIRECTORY` fields.
    pub const EXP_NUMBER_OF_FUNCTIONS: usize = 0x14;
    pub const EXP_NUMBER_OF_NAMES: usize = 0x18;
    pub const EXP_ADDRESS_OF_FUNCTIONS: usize = 0x1C;
    pub const EXP_ADDRESS_OF_NAMES: usize = 0x20;
    pub const EXP_ADDRESS_OF_NAME_ORDINALS: usize = 0x24;
    pub const EXP_SIZE: usize = 0x28;
}

pub mod ldr {
    //! Field offsets inside `KLDR_DATA_TABLE_ENTRY` (x64).
    pub const SIZE: usize = 0xA0;
    pub const IN_LOAD_ORDER_LINKS: usize = 0x00;
    pub const DLL_BASE: usize = 0x30;
    pub const ENTRY_POINT: usize = 0x38;
    pub const SIZE_OF_IMAGE: usize = 0x40;
    pub const FULL_DLL_NAME: usize = 0x48;
    pub const BASE_DLL_NAME: usize = 0x58;
    pub const FLAGS: usize = 0x68;
    pub const LOAD_COUNT: usize = 0x6C;
}

/// FILETIME of 1970-01-01 (100 ns ticks since 1601-01-01).
pub const FILETIME_UNIX_EPOCH: i64 = 116_444_736_000_000_000;

pub fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4-byte slice"))
}

pub fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8-byte slice"))
}

pub fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
