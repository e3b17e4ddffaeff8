//! A bounded walk of `PsLoadedModuleList` through the dump's page tables, done before
//! kdmp-parser walks the same list.
//!
//! kdmp-parser follows `Flink` until it comes back to the head, with no bound: a list that
//! loops without passing the head hangs it, and a repeated entry trips a debug assertion.
//! Odd name lengths or bad UTF-16 make it fail the whole parse. This walk mirrors its steps
//! (same translation rules, same stop conditions) with a cap, and says whether kdmp-parser
//! can be shown the list.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use super::physmem::PhysMap;
use super::source::Source;
use crate::format::{PAGE_SIZE, get_u16, get_u64, ldr};

/// More entries than this means a loop (Windows loads a few hundred modules).
pub const MAX_MODULES: usize = 4096;
/// Pages kept in memory while walking.
const CACHE_PAGES: usize = 4096;

/// The outcome of the guard walk.
#[derive(Debug, PartialEq, Eq)]
pub enum ListCheck {
    /// kdmp-parser's walk ends and succeeds; it will find this many modules.
    Safe { modules: usize },
    /// kdmp-parser must not see the list; the string says why.
    Unsafe(String),
}

/// Virtual reads through the dump's page tables.
pub struct VirtReader<'a> {
    src: &'a Source,
    phys: &'a PhysMap,
    dtb: u64,
    cache: RefCell<HashMap<u64, Box<[u8]>>>,
    /// Set when a page could not be cached: the cache no longer holds every page read.
    overflowed: Cell<bool>,
}

impl<'a> VirtReader<'a> {
    pub fn new(src: &'a Source, phys: &'a PhysMap, dtb: u64) -> Self {
        Self {
            src,
            phys,
            dtb,
            cache: RefCell::new(HashMap::new()),
            overflowed: Cell::new(false),
        }
    }

    /// Read `buf.len()` bytes at physical address `gpa` (within one page).
    fn read_phys(&self, gpa: u64, buf: &mut [u8]) -> Option<()> {
        let page = gpa & !(PAGE_SIZE - 1);
        let off = (gpa - page) as usize;
        if let Some(p) = self.cache.borrow().get(&page) {
            buf.copy_from_slice(p.get(off..off + buf.len())?);
            return Some(());
        }
        let file_offset = self.phys.file_offset(page)?;
        let mut p = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
        self.src.read_at(file_offset, &mut p).ok()?;
        buf.copy_from_slice(p.get(off..off + buf.len())?);
        let mut cache = self.cache.borrow_mut();
        if cache.len() < CACHE_PAGES {
            cache.insert(page, p);
        } else {
            self.overflowed.set(true);
        }
        Some(())
    }

    /// Every physical page read so far (address, contents) in address order, or `None`
    /// when there were too many to keep.
    pub fn touched_pages(&self) -> Option<Vec<(u64, Box<[u8]>)>> {
        if self.overflowed.get() {
            return None;
        }
        let mut pages: Vec<_> = self
            .cache
            .borrow()
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        pages.sort_by_key(|p| p.0);
        Some(pages)
    }

    fn read_pxe(&self, gpa: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read_phys(gpa, &mut b)?;
        Some(u64::from_le_bytes(b))
    }

    /// Translate like kdmp-parser: 4 levels, 1 GiB and 2 MiB pages, transition PTEs allowed.
    pub fn translate(&self, va: u64) -> Option<u64> {
        const PFN: u64 = 0xFFFF_FFFF_F000;
        let idx = |shift: u32| ((va >> shift) & 0x1FF) * 8;
        let pml4e = self.read_pxe((self.dtb & PFN) + idx(39))?;
        if pml4e & 1 == 0 {
            return None;
        }
        let pdpte = self.read_pxe((pml4e & PFN) + idx(30))?;
        if pdpte & 1 == 0 {
            return None;
        }
        if pdpte & 0x80 != 0 {
            return (pdpte & PFN).checked_add(va & ((1 << 30) - 1));
        }
        let pde = self.read_pxe((pdpte & PFN) + idx(21))?;
        if pde & 1 == 0 {
            return None;
        }
        if pde & 0x80 != 0 {
            return (pde & PFN).checked_add(va & ((1 << 21) - 1));
        }
        let pte = self.read_pxe((pde & PFN) + idx(12))?;
        if pte & 1 == 0 && pte & (1 << 11) == 0 {
            return None;
        }
        (pte & PFN).checked_add(va & 0xFFF)
    }

    /// Read virtual memory; `None` if any byte is unmapped or missing from the dump.
    pub fn read(&self, va: u64, buf: &mut [u8]) -> Option<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let addr = va.checked_add(done as u64)?;
            let n = ((PAGE_SIZE - addr % PAGE_SIZE) as usize).min(buf.len() - done);
            let gpa = self.translate(addr)?;
            // A large-page translation can cross into the next physical page only at a
            // virtual page boundary, which the chunking above respects.
            self.read_phys(gpa, &mut buf[done..done + n])?;
            done += n;
        }
        Some(())
    }
}

/// Outcome of reading one name the way kdmp-parser does.
enum Name {
    Ok,
    /// Not readable: kdmp-parser tries the other name, or ends the walk.
    Unreadable,
    /// kdmp-parser fails the whole parse.
    Fatal(String),
}

fn check_name(reader: &VirtReader<'_>, entry: &[u8], at: usize) -> Name {
    let length = get_u16(entry, at);
    let buffer = get_u64(entry, at + 8);
    if !length.is_multiple_of(2) {
        return Name::Fatal(format!("a module name has an odd length ({length} bytes)"));
    }
    let mut bytes = vec![0u8; length as usize];
    if reader.read(buffer, &mut bytes).is_none() {
        return Name::Unreadable;
    }
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    match String::from_utf16(&units) {
        Ok(_) => Name::Ok,
        Err(_) => Name::Fatal("a module name is not valid UTF-16".to_owned()),
    }
}

/// Walk the list at `head` with kdmp-parser's rules and a cap.
pub fn check_module_list(reader: &VirtReader<'_>, head: u64) -> ListCheck {
    let mut link = [0u8; 16];
    if reader.read(head, &mut link).is_none() {
        // kdmp-parser finds no list and carries on.
        return ListCheck::Safe { modules: 0 };
    }
    let mut entry_addr = get_u64(&link, 0);
    let mut ranges = HashSet::new();
    while entry_addr != head {
        if ranges.len() >= MAX_MODULES {
            return ListCheck::Unsafe(format!(
                "the module list does not return to its head within {MAX_MODULES} entries"
            ));
        }
        // kdmp-parser reads the entry up to and including BaseDllName.
        let mut entry = [0u8; ldr::BASE_DLL_NAME + 16];
        if reader.read(entry_addr, &mut entry).is_none() {
            return ListCheck::Safe {
                modules: ranges.len(),
            };
        }
        match check_name(reader, &entry, ldr::FULL_DLL_NAME) {
            Name::Ok => {}
            Name::Fatal(why) => return ListCheck::Unsafe(why),
            Name::Unreadable => match check_name(reader, &entry, ldr::BASE_DLL_NAME) {
                Name::Ok => {}
                Name::Fatal(why) => return ListCheck::Unsafe(why),
                Name::Unreadable => {
                    return ListCheck::Safe {
                        modules: ranges.len(),
                    };
                }
            },
        }
        let base = get_u64(&entry, ldr::DLL_BASE);
        let size = u64::from(crate::format::get_u32(&entry, ldr::SIZE_OF_IMAGE));
        let Some(end) = base.checked_add(size) else {
            return ListCheck::Unsafe(format!(
                "module at {base:#x} of size {size:#x} overflows the address space"
            ));
        };
        if !ranges.insert((base, end)) {
            return ListCheck::Unsafe(format!(
                "the module list visits the range {base:#x}..{end:#x} twice (a loop or a duplicate entry)"
            ));
        }
        entry_addr = get_u64(&entry, ldr::IN_LOAD_ORDER_LINKS);
    }
    ListCheck::Safe {
        modules: ranges.len(),
    }
}
