//! Small (DumpType 4) dumps: kdmp-parser refuses them, so the `TRIAGE_DUMP64` after the
//! header is read here, every offset checked against the file.

use super::error::TriageErrorKind as K;
use super::kernel_data::UnloadedDriver;
use super::physmem::read;
use super::source::Source;
use super::{Fail, LoadedModule};
use crate::format::{self, get_u16, get_u32, get_u64, ldr, triage, triage_unloaded as tu};

/// Drivers listed in a small dump, and a warning when the dump is incomplete.
#[derive(Debug, Default)]
pub struct SmallDump {
    pub modules: Vec<LoadedModule>,
    /// Oldest first, names as the dump has them (cut to 12 UTF-16 units by Windows).
    pub unloaded: Vec<UnloadedDriver>,
    pub warnings: Vec<String>,
}

/// Longest driver name accepted (bytes of UTF-16).
const MAX_NAME: u32 = 1024;
/// More drivers than this is corruption.
const MAX_DRIVERS: u32 = 4096;

pub fn read_small(src: &Source, len: u64) -> Result<SmallDump, Fail> {
    let base = format::HEADER_SIZE as u64;
    let mut t = [0u8; triage::SIZE];
    read(
        src,
        base,
        &mut t,
        len,
        "TRIAGE_DUMP64 header of the small dump",
    )?;
    let mut out = SmallDump::default();

    let valid_at = u64::from(get_u32(&t, triage::VALID_OFFSET));
    let mut marker = [0u8; 4];
    let valid = valid_at.checked_add(4).is_some_and(|e| e <= len)
        && src.read_at(valid_at, &mut marker).is_ok()
        && &marker == triage::VALID_MARKER;
    if !valid {
        out.warnings.push(format!(
            "the small dump has no \"DGRT\" marker at its ValidOffset {valid_at:#x}: it may be incomplete"
        ));
    }

    out.unloaded = read_unloaded(src, &t, len)?;

    let options = get_u32(&t, triage::TRIAGE_OPTIONS);
    let count = get_u32(&t, triage::DRIVER_COUNT);
    let list_at = u64::from(get_u32(&t, triage::DRIVER_LIST_OFFSET));
    if options & 0x40 == 0 || count == 0 {
        out.warnings
            .push("the small dump carries no driver list".to_owned());
        return Ok(out);
    }
    if count > MAX_DRIVERS {
        return Err(Fail::new(
            Some(base + triage::DRIVER_COUNT as u64),
            K::Malformed(format!(
                "small dump driver list: {count} drivers (at most {MAX_DRIVERS})"
            )),
        ));
    }
    let mut list = vec![0u8; count as usize * triage::DRIVER_ENTRY_SIZE];
    read(
        src,
        list_at,
        &mut list,
        len,
        "driver list of the small dump",
    )?;
    for (i, entry) in list.chunks_exact(triage::DRIVER_ENTRY_SIZE).enumerate() {
        let name_at = u64::from(get_u32(entry, 0));
        let e = triage::DRIVER_ENTRY_LDR;
        let base_va = get_u64(entry, e + ldr::DLL_BASE);
        let size = u64::from(get_u32(entry, e + ldr::SIZE_OF_IMAGE));
        let name = read_dump_string(src, name_at, len).map_err(|f| {
            let what = format!("small dump driver {i}: {}", f.kind);
            Fail::new(f.offset, K::Malformed(what))
        })?;
        out.modules
            .push(LoadedModule::new(name.clone(), name, base_va, size));
    }
    Ok(out)
}

/// The `DUMP_UNLOADED_DRIVERS64` list at `UnloadedDriversOffset` (none when 0), returned
/// oldest first like `MmUnloadedDrivers`.
fn read_unloaded(src: &Source, t: &[u8], len: u64) -> Result<Vec<UnloadedDriver>, Fail> {
    let at = u64::from(get_u32(t, triage::UNLOADED_DRIVERS_OFFSET));
    if at == 0 {
        return Ok(Vec::new());
    }
    let mut n = [0u8; 4];
    read(
        src,
        at,
        &mut n,
        len,
        "unloaded-driver list of the small dump",
    )?;
    let count = u32::from_le_bytes(n);
    if count as usize > tu::MAX {
        return Err(Fail::new(
            Some(at),
            K::Malformed(format!(
                "small dump unloaded-driver list: {count} entries (at most {})",
                tu::MAX
            )),
        ));
    }
    let mut list = vec![0u8; count as usize * tu::SIZE];
    let entries = at + tu::ENTRIES as u64;
    read(
        src,
        entries,
        &mut list,
        len,
        "unloaded-driver list of the small dump",
    )?;
    let mut out = Vec::with_capacity(count as usize);
    for (i, e) in list.chunks_exact(tu::SIZE).enumerate() {
        let bytes = usize::from(get_u16(e, tu::NAME_LENGTH));
        let (start, end) = (get_u64(e, tu::START), get_u64(e, tu::END));
        if bytes > tu::NAME_BYTES || bytes % 2 != 0 || end < start {
            let offset = entries + (i * tu::SIZE) as u64;
            return Err(Fail::new(
                Some(offset),
                K::Malformed(format!(
                    "small dump unloaded driver {i}: name length {bytes} or range \
                     {start:#x}..{end:#x} is invalid"
                )),
            ));
        }
        let units: Vec<u16> = e[tu::NAME..tu::NAME + bytes]
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        out.push(UnloadedDriver {
            name: String::from_utf16_lossy(&units),
            base: start,
            size: end - start,
            time: None,
        });
    }
    out.reverse();
    Ok(out)
}

/// `DUMP_STRING`: a byte length, then UTF-16.
fn read_dump_string(src: &Source, at: u64, len: u64) -> Result<String, Fail> {
    let mut n = [0u8; 4];
    read(src, at, &mut n, len, "driver name")?;
    let bytes = u32::from_le_bytes(n);
    if bytes > MAX_NAME || !bytes.is_multiple_of(2) {
        return Err(Fail::new(
            Some(at),
            K::Malformed(format!(
                "name length {bytes} is odd or longer than {MAX_NAME}"
            )),
        ));
    }
    let mut raw = vec![0u8; bytes as usize];
    read(src, at + 4, &mut raw, len, "driver name")?;
    let units: Vec<u16> = raw
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Ok(String::from_utf16_lossy(&units))
}
