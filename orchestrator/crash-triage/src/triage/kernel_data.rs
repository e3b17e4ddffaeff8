//! What a debugger reads beyond the module list: `MmUnloadedDrivers` (through the
//! `KDDEBUGGER_DATA64` block), the export directories of loaded images, and the
//! bugchecking thread's stack.
//!
//! The stack is not unwound (no `.pdata` is read): like `dps`/`kv` without symbols, every
//! qword from RSP up that points into a loaded or unloaded image is taken as a return
//! address. Values that point nowhere (locals, pool addresses) are skipped.

use serde::{Deserialize, Serialize};

use super::walk::VirtReader;
use crate::format::{get_u16, get_u32, get_u64, kdbg, pe, unloaded};
use crate::spec::filetime_to_utc;
use chrono::{DateTime, Utc};

/// Bytes of stack read from RSP up.
const STACK_BYTES: usize = 0x800;
/// Most frames reported.
const MAX_FRAMES: usize = 32;
/// Longest export name read.
const MAX_NAME: usize = 256;
/// Most exports looked at per image.
const MAX_EXPORTS: u32 = 4096;

/// A driver unloaded earlier in the boot, from `MmUnloadedDrivers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnloadedDriver {
    pub name: String,
    pub base: u64,
    pub size: u64,
    pub time: Option<DateTime<Utc>>,
}

impl UnloadedDriver {
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.size
    }
}

/// One frame of the faulting thread: RIP first, then return addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackFrame {
    pub address: u64,
    /// The image it lies in (`None`: in no listed or unloaded image).
    pub module: Option<String>,
    /// The image is one of the unloaded drivers.
    #[serde(default)]
    pub unloaded: bool,
    /// The export it follows, when the image is in the dump.
    pub function: Option<String>,
    /// From the function when known, else from the image base.
    pub offset: u64,
}

impl StackFrame {
    /// `module!function+0x1a`, `module (unloaded)+0x1a3c`, or the bare address.
    pub fn display(&self) -> String {
        let Some(m) = &self.module else {
            return format!("{:#x}", self.address);
        };
        let m = if self.unloaded {
            format!("{m} (unloaded)")
        } else {
            m.clone()
        };
        match &self.function {
            Some(f) => format!("{m}!{f}+{:#x}", self.offset),
            None => format!("{m}+{:#x}", self.offset),
        }
    }
}

fn read_u64(r: &VirtReader<'_>, va: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    r.read(va, &mut b)?;
    Some(u64::from_le_bytes(b))
}

fn read_u32(r: &VirtReader<'_>, va: u64) -> Option<u32> {
    let mut b = [0u8; 4];
    r.read(va, &mut b)?;
    Some(u32::from_le_bytes(b))
}

/// `MmUnloadedDrivers` through the debugger data block at `kdbg_va`; empty when absent.
pub fn unloaded_drivers(r: &VirtReader<'_>, kdbg_va: u64) -> Vec<UnloadedDriver> {
    let mut head = [0u8; kdbg::MM_LAST_UNLOADED_DRIVER + 8];
    if kdbg_va == 0 || r.read(kdbg_va, &mut head).is_none() || &head[0x10..0x14] != b"KDBG" {
        return Vec::new();
    }
    if (get_u32(&head, 0x14) as usize) < head.len() {
        return Vec::new();
    }
    let Some(array) = read_u64(r, get_u64(&head, kdbg::MM_UNLOADED_DRIVERS)) else {
        return Vec::new();
    };
    let Some(count) = read_u32(r, get_u64(&head, kdbg::MM_LAST_UNLOADED_DRIVER)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in 0..(count as usize).min(unloaded::MAX) {
        let mut e = [0u8; unloaded::SIZE];
        if r.read(array + (i * unloaded::SIZE) as u64, &mut e)
            .is_none()
        {
            break;
        }
        let len = usize::from(get_u16(&e, unloaded::NAME)) & !1;
        let mut name = vec![0u8; len];
        if r.read(get_u64(&e, unloaded::NAME + 8), &mut name).is_none() {
            continue;
        }
        let units: Vec<u16> = name
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        let start = get_u64(&e, unloaded::START);
        let end = get_u64(&e, unloaded::END);
        if end <= start {
            continue;
        }
        out.push(UnloadedDriver {
            name: String::from_utf16_lossy(&units),
            base: start,
            size: end - start,
            time: filetime_to_utc(get_u64(&e, unloaded::TIME) as i64),
        });
    }
    out
}

/// The export of the image at `base` that `addr` follows (greatest RVA not above it), and
/// the offset from it; `None` without a readable export directory.
pub fn export_for(r: &VirtReader<'_>, base: u64, addr: u64) -> Option<(String, u64)> {
    let rva = addr.checked_sub(base)?;
    let mut dos = [0u8; 0x40];
    r.read(base, &mut dos)?;
    if &dos[..2] != b"MZ" {
        return None;
    }
    let nt = base + u64::from(get_u32(&dos, pe::E_LFANEW));
    let mut h = [0u8; pe::OPTIONAL_HEADER + pe::EXPORT_DIRECTORY + 8];
    r.read(nt, &mut h)?;
    if &h[..4] != b"PE\0\0" || get_u16(&h, pe::OPTIONAL_HEADER) != pe::PE32_PLUS {
        return None;
    }
    let dir = u64::from(get_u32(&h, pe::OPTIONAL_HEADER + pe::EXPORT_DIRECTORY));
    let mut d = [0u8; pe::EXP_SIZE];
    r.read(base + dir, &mut d)?;
    let n = get_u32(&d, pe::EXP_NUMBER_OF_NAMES).min(MAX_EXPORTS);
    let functions = base + u64::from(get_u32(&d, pe::EXP_ADDRESS_OF_FUNCTIONS));
    let names = base + u64::from(get_u32(&d, pe::EXP_ADDRESS_OF_NAMES));
    let ordinals = base + u64::from(get_u32(&d, pe::EXP_ADDRESS_OF_NAME_ORDINALS));
    let mut best: Option<(u64, u64)> = None;
    for i in 0..u64::from(n) {
        let mut o = [0u8; 2];
        r.read(ordinals + 2 * i, &mut o)?;
        let f = u64::from(read_u32(
            r,
            functions + 4 * u64::from(u16::from_le_bytes(o)),
        )?);
        if f <= rva && best.is_none_or(|(bf, _)| f > bf) {
            best = Some((f, i));
        }
    }
    let (f, i) = best?;
    let name_va = base + u64::from(read_u32(r, names + 4 * i)?);
    let mut name = Vec::new();
    for k in 0..MAX_NAME as u64 {
        let mut c = [0u8; 1];
        r.read(name_va + k, &mut c)?;
        if c[0] == 0 {
            break;
        }
        name.push(c[0]);
    }
    Some((String::from_utf8_lossy(&name).into_owned(), rva - f))
}

/// A frame for `addr`, named from the module lists and, for loaded images, their exports.
pub fn frame(
    r: Option<&VirtReader<'_>>,
    modules: &[super::LoadedModule],
    unloaded: &[UnloadedDriver],
    addr: u64,
) -> Option<StackFrame> {
    if let Some(m) = modules.iter().find(|m| m.contains(addr)) {
        let named = r.and_then(|r| export_for(r, m.base, addr));
        return Some(StackFrame {
            address: addr,
            module: Some(m.name.clone()),
            unloaded: false,
            offset: named.as_ref().map_or(addr - m.base, |n| n.1),
            function: named.map(|n| n.0),
        });
    }
    // The most recent unload wins when a range was reused.
    let u = unloaded.iter().rev().find(|u| u.contains(addr))?;
    Some(StackFrame {
        address: addr,
        module: Some(u.name.clone()),
        unloaded: true,
        function: None,
        offset: addr - u.base,
    })
}

/// RIP's frame, then every stack qword from RSP up that points into an image.
pub fn stack(
    r: &VirtReader<'_>,
    modules: &[super::LoadedModule],
    unloaded: &[UnloadedDriver],
    rip: u64,
    rsp: u64,
) -> Vec<StackFrame> {
    let mut out = vec![
        frame(Some(r), modules, unloaded, rip).unwrap_or(StackFrame {
            address: rip,
            module: None,
            unloaded: false,
            function: None,
            offset: 0,
        }),
    ];
    for i in 0..(STACK_BYTES / 8) as u64 {
        let Some(v) = rsp.checked_add(8 * i).and_then(|va| read_u64(r, va)) else {
            break;
        };
        if let Some(f) = frame(Some(r), modules, unloaded, v) {
            out.push(f);
            if out.len() >= MAX_FRAMES {
                break;
            }
        }
    }
    out
}
