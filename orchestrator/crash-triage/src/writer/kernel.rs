//! Lays out the kernel structures a dump reader walks: `PsLoadedModuleList` with one
//! `KLDR_DATA_TABLE_ENTRY` per module, `MmUnloadedDrivers`, the `KDDEBUGGER_DATA64` block,
//! each module's PE headers with its export directory, and the bugchecking thread's stack.

use super::memory::Memory;
use crate::format::{kdbg, ldr, pe, put_u16, put_u32, put_u64, unloaded};
use crate::spec::{DumpSpec, Module, UnloadedModule, utc_to_filetime};

/// Where loader entries and their name strings live (non-paged pool).
const POOL_VA: u64 = 0xFFFF_B00A_1C00_0000;
/// Kernel data used when the module list has no kernel image to hold it.
const FALLBACK_DATA_VA: u64 = 0xFFFF_F800_0F00_0000;
/// `KDDEBUGGER_DATA64` size on Windows 10/11 x64.
const KDBG_SIZE: u32 = 0x368;
/// The PFN database pointer written to the header (not backed by pages in the dump).
pub const PFN_DATABASE_VA: u64 = 0xFFFF_C100_0000_0000;

/// The addresses the header points at.
#[derive(Debug)]
pub struct KernelLayout {
    pub memory: Memory,
    pub ps_loaded_module_list: u64,
    pub ps_active_process_head: u64,
    pub kd_debugger_data_block: u64,
}

/// The page in the kernel image's data where `PsLoadedModuleList` and friends sit.
fn kernel_data_va(modules: &[Module]) -> u64 {
    modules
        .iter()
        .find(|m| {
            let n = m.name.to_ascii_lowercase();
            (n.starts_with("ntoskrnl") || n.starts_with("ntkrnl")) && m.size >= 0x10000
        })
        .map(|nt| (nt.base + u64::from(nt.size) / 2) & !0xFFF)
        .unwrap_or(FALLBACK_DATA_VA)
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Length of a name as a `UNICODE_STRING` (bytes, capped so it fits the u16 field).
fn unicode_len(bytes: &[u8]) -> u16 {
    u16::try_from(bytes.len().min(0xFFFC)).unwrap_or(0xFFFC)
}

pub fn build(spec: &DumpSpec) -> KernelLayout {
    let mut memory = Memory::new(0x10);
    let data_va = kernel_data_va(&spec.modules);
    let head = data_va + 0x2B0;
    let active_process_head = data_va + 0x2C0;
    let kdbg = data_va + 0x400;

    // Loader entries and their strings, packed one after another in pool.
    let mut cursor = POOL_VA;
    let mut entries = Vec::with_capacity(spec.modules.len());
    let mut names = Vec::with_capacity(spec.modules.len());
    for module in &spec.modules {
        let entry = cursor;
        let full = utf16(&module.full_path());
        let base = utf16(&module.name);
        let full_va = entry + ldr::SIZE as u64;
        let base_va = full_va + full.len() as u64 + 2;
        cursor = (base_va + base.len() as u64 + 2 + 15) & !15;
        entries.push(entry);
        names.push((full, full_va, base, base_va));
    }

    let n = entries.len();
    for (i, (module, (full, full_va, base, base_va))) in spec.modules.iter().zip(names).enumerate()
    {
        let flink = if i + 1 < n { entries[i + 1] } else { head };
        let blink = if i == 0 { head } else { entries[i - 1] };
        let mut e = vec![0u8; ldr::SIZE];
        put_u64(&mut e, ldr::IN_LOAD_ORDER_LINKS, flink);
        put_u64(&mut e, ldr::IN_LOAD_ORDER_LINKS + 8, blink);
        put_u64(&mut e, ldr::DLL_BASE, module.base);
        put_u64(&mut e, ldr::ENTRY_POINT, module.base + 0x1000);
        put_u32(&mut e, ldr::SIZE_OF_IMAGE, module.size);
        put_unicode(&mut e, ldr::FULL_DLL_NAME, &full, full_va);
        put_unicode(&mut e, ldr::BASE_DLL_NAME, &base, base_va);
        put_u32(&mut e, ldr::FLAGS, 0x4900_4000);
        put_u16(&mut e, ldr::LOAD_COUNT, 1);
        memory.write(entries[i], &e);
        // NUL-terminated, as the loader stores them.
        memory.write(full_va, &[full.as_slice(), &[0, 0]].concat());
        memory.write(base_va, &[base.as_slice(), &[0, 0]].concat());
    }

    // The list head: an empty list points at itself.
    let first = entries.first().copied().unwrap_or(head);
    let last = entries.last().copied().unwrap_or(head);
    memory.write_u64(head, first);
    memory.write_u64(head + 8, last);
    memory.write_u64(active_process_head, active_process_head);
    memory.write_u64(active_process_head + 8, active_process_head);

    // MmUnloadedDrivers (a pointer to the array) and MmLastUnloadedDriver (entries used).
    let unloaded_var = data_va + 0x2D0;
    let last_unloaded_var = data_va + 0x2D8;
    let kept = &spec.unloaded[spec.unloaded.len().saturating_sub(unloaded::MAX)..];
    let array = (cursor + 15) & !15;
    cursor = array + (unloaded::SIZE * unloaded::MAX) as u64;
    for (i, u) in kept.iter().enumerate() {
        let name = utf16(&u.name);
        let name_va = cursor;
        cursor = (cursor + name.len() as u64 + 2 + 15) & !15;
        memory.write(name_va, &[name.as_slice(), &[0, 0]].concat());
        memory.write(
            array + (i * unloaded::SIZE) as u64,
            &unloaded_entry(u, &name, name_va),
        );
    }
    memory.write_u64(unloaded_var, array);
    memory.write(last_unloaded_var, &(kept.len() as u32).to_le_bytes());

    for module in &spec.modules {
        if let Some(image) = pe_headers(module) {
            memory.write(module.base, &image);
        }
    }
    write_stack(&mut memory, spec);

    let kern_base = spec.modules.first().map_or(0, |m| m.base);
    let mut data = kd_debugger_data(kdbg, kern_base, head, active_process_head);
    put_u64(&mut data, kdbg::MM_UNLOADED_DRIVERS, unloaded_var);
    put_u64(&mut data, kdbg::MM_LAST_UNLOADED_DRIVER, last_unloaded_var);
    memory.write(kdbg, &data);

    KernelLayout {
        memory,
        ps_loaded_module_list: head,
        ps_active_process_head: active_process_head,
        kd_debugger_data_block: kdbg,
    }
}

fn unloaded_entry(u: &UnloadedModule, name: &[u8], name_va: u64) -> Vec<u8> {
    let mut e = vec![0u8; unloaded::SIZE];
    put_unicode(&mut e, unloaded::NAME, name, name_va);
    put_u64(&mut e, unloaded::START, u.base);
    put_u64(&mut e, unloaded::END, u.base + u64::from(u.size));
    put_u64(&mut e, unloaded::TIME, utc_to_filetime(u.time) as u64);
    e
}

/// The first bytes of the module's image: DOS header, `PE\0\0`, a PE32+ optional header
/// whose export directory lists `exports` (names sorted, as the loader's binary search
/// needs). `None` when there is nothing to export or the image is too small to hold it.
fn pe_headers(module: &Module) -> Option<Vec<u8>> {
    if module.exports.is_empty() {
        return None;
    }
    const NT: usize = 0x80;
    const EXPORTS: usize = 0x200;
    let mut exports: Vec<_> = module.exports.iter().collect();
    exports.sort_by(|a, b| a.name.cmp(&b.name));
    let n = exports.len();
    let functions = EXPORTS + pe::EXP_SIZE;
    let names = functions + 4 * n;
    let ordinals = names + 4 * n;
    let mut strings = ordinals + 2 * n;
    let image_name = strings;
    strings += module.name.len() + 1;
    let len = strings + exports.iter().map(|e| e.name.len() + 1).sum::<usize>();
    if len as u64 > u64::from(module.size) {
        return None;
    }
    let mut b = vec![0u8; len];
    b[0..2].copy_from_slice(b"MZ");
    put_u32(&mut b, pe::E_LFANEW, NT as u32);
    b[NT..NT + 4].copy_from_slice(b"PE\0\0");
    put_u16(&mut b, NT + 4, 0x8664);
    put_u16(&mut b, NT + 0x14, 0xF0);
    put_u16(&mut b, NT + 0x16, 0x22);
    let opt = NT + pe::OPTIONAL_HEADER;
    put_u16(&mut b, opt, pe::PE32_PLUS);
    put_u32(&mut b, opt + 0x38, module.size);
    put_u32(&mut b, opt + 0x6C, 16);
    put_u32(&mut b, opt + pe::EXPORT_DIRECTORY, EXPORTS as u32);
    put_u32(
        &mut b,
        opt + pe::EXPORT_DIRECTORY + 4,
        (len - EXPORTS) as u32,
    );
    put_u32(&mut b, EXPORTS + 0xC, image_name as u32);
    put_u32(&mut b, EXPORTS + 0x10, 1);
    put_u32(&mut b, EXPORTS + pe::EXP_NUMBER_OF_FUNCTIONS, n as u32);
    put_u32(&mut b, EXPORTS + pe::EXP_NUMBER_OF_NAMES, n as u32);
    put_u32(
        &mut b,
        EXPORTS + pe::EXP_ADDRESS_OF_FUNCTIONS,
        functions as u32,
    );
    put_u32(&mut b, EXPORTS + pe::EXP_ADDRESS_OF_NAMES, names as u32);
    put_u32(
        &mut b,
        EXPORTS + pe::EXP_ADDRESS_OF_NAME_ORDINALS,
        ordinals as u32,
    );
    b[image_name..image_name + module.name.len()].copy_from_slice(module.name.as_bytes());
    let mut at = image_name + module.name.len() + 1;
    for (i, e) in exports.iter().enumerate() {
        put_u32(&mut b, functions + 4 * i, e.rva);
        put_u32(&mut b, names + 4 * i, at as u32);
        put_u16(&mut b, ordinals + 2 * i, i as u16);
        b[at..at + e.name.len()].copy_from_slice(e.name.as_bytes());
        at += e.name.len() + 1;
    }
    Some(b)
}

/// The bugchecking thread's stack from RSP up: per frame a return address and two slots of
/// locals that point at no code (a pool address, a small count), as compiled frames hold
/// them; zeros past the outermost frame.
fn write_stack(memory: &mut Memory, spec: &DumpSpec) {
    if spec.stack.is_empty() {
        return;
    }
    let mut b = Vec::with_capacity(spec.stack.len() * 24 + 64);
    for (i, ret) in spec.stack.iter().enumerate() {
        b.extend_from_slice(&(POOL_VA + 0x2E_3000 + i as u64 * 0x40).to_le_bytes());
        b.extend_from_slice(&(i as u64 + 1).to_le_bytes());
        b.extend_from_slice(&ret.to_le_bytes());
    }
    b.extend_from_slice(&[0u8; 64]);
    memory.write(spec.rsp, &b);
}

fn put_unicode(entry: &mut [u8], at: usize, s: &[u8], va: u64) {
    let len = unicode_len(s);
    put_u16(entry, at, len);
    put_u16(entry, at + 2, len + 2);
    put_u64(entry, at + 8, va);
}

/// `KDDEBUGGER_DATA64` with the fields a debugger needs first (offsets per `wdbgexts.h`).
fn kd_debugger_data(at: u64, kern_base: u64, module_list: u64, process_head: u64) -> Vec<u8> {
    let mut b = vec![0u8; KDBG_SIZE as usize];
    // DBGKD_DEBUG_DATA_HEADER64: a list entry, the owner tag and the size.
    put_u64(&mut b, 0x00, at);
    put_u64(&mut b, 0x08, at);
    b[0x10..0x14].copy_from_slice(b"KDBG");
    put_u32(&mut b, 0x14, KDBG_SIZE);
    put_u64(&mut b, 0x18, kern_base);
    put_u64(&mut b, 0x48, module_list);
    put_u64(&mut b, 0x50, process_head);
    put_u64(&mut b, 0xC0, PFN_DATABASE_VA);
    b
}
