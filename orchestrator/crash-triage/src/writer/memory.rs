//! A tiny model of guest physical memory with x64 4-level page tables, enough to hold the
//! kernel structures a dump reader walks (module list, debugger data block).

use std::collections::BTreeMap;

use crate::format::PAGE_SIZE;

/// Present | writable | accessed | dirty.
const PTE_TABLE: u64 = 0x63;
/// Leaf data pages are also no-execute, as kernel data is on Windows.
const PTE_DATA: u64 = 0x63 | (1 << 63);
const PFN_MASK: u64 = 0x0000_FFFF_FFFF_F000;

/// Physical pages by PFN, and the page tables mapping kernel virtual addresses to them.
#[derive(Debug)]
pub struct Memory {
    pages: BTreeMap<u64, Box<[u8]>>,
    next_pfn: u64,
    pml4: u64,
}

impl Memory {
    /// Pages are allocated from `first_pfn` upwards; PFN 0 is never used because a zero
    /// PFN terminates the range list of RDMP dumps.
    pub fn new(first_pfn: u64) -> Self {
        let mut memory = Self {
            pages: BTreeMap::new(),
            next_pfn: first_pfn.max(1),
            pml4: 0,
        };
        memory.pml4 = memory.alloc();
        memory
    }

    /// The directory table base (CR3) for the header.
    pub fn directory_table_base(&self) -> u64 {
        self.pml4 * PAGE_SIZE
    }

    /// Every allocated page, by PFN.
    pub fn pages(&self) -> &BTreeMap<u64, Box<[u8]>> {
        &self.pages
    }

    /// One past the highest allocated PFN.
    pub fn pfn_limit(&self) -> u64 {
        self.next_pfn
    }

    fn alloc(&mut self) -> u64 {
        let pfn = self.next_pfn;
        self.next_pfn += 1;
        self.pages
            .insert(pfn, vec![0u8; PAGE_SIZE as usize].into_boxed_slice());
        pfn
    }

    fn page_mut(&mut self, pfn: u64) -> &mut [u8] {
        self.pages.get_mut(&pfn).expect("allocated page")
    }

    /// The entry `index` of table page `table`, allocating the next level when absent.
    fn next_level(&mut self, table: u64, index: u64, leaf_flags: u64) -> u64 {
        let at = usize::try_from(index * 8).expect("index < 512");
        let entry = crate::format::get_u64(self.page_mut(table), at);
        if entry & 1 == 1 {
            return (entry & PFN_MASK) >> 12;
        }
        let pfn = self.alloc();
        crate::format::put_u64(self.page_mut(table), at, (pfn << 12) | leaf_flags);
        pfn
    }

    /// The physical page backing the virtual page of `va`, mapping a new one when needed.
    fn map(&mut self, va: u64) -> u64 {
        let pml4e = (va >> 39) & 0x1FF;
        let pdpte = (va >> 30) & 0x1FF;
        let pde = (va >> 21) & 0x1FF;
        let pte = (va >> 12) & 0x1FF;
        let pdpt = self.next_level(self.pml4, pml4e, PTE_TABLE);
        let pd = self.next_level(pdpt, pdpte, PTE_TABLE);
        let pt = self.next_level(pd, pde, PTE_TABLE);
        self.next_level(pt, pte, PTE_DATA)
    }

    /// Write `bytes` at virtual address `va`, mapping pages as needed.
    pub fn write(&mut self, va: u64, bytes: &[u8]) {
        let mut done = 0;
        while done < bytes.len() {
            let addr = va + done as u64;
            let in_page = usize::try_from(addr % PAGE_SIZE).expect("page offset");
            let n = (PAGE_SIZE as usize - in_page).min(bytes.len() - done);
            let pfn = self.map(addr);
            self.page_mut(pfn)[in_page..in_page + n].copy_from_slice(&bytes[done..done + n]);
            done += n;
        }
    }

    pub fn write_u64(&mut self, va: u64, value: u64) {
        self.write(va, &value.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_across_a_page_boundary_land_in_two_mapped_pages() {
        let mut m = Memory::new(0x10);
        let va = 0xFFFF_F800_0000_0FFC;
        m.write(va, &[1, 2, 3, 4, 5, 6, 7, 8]);
        // pml4 + pdpt + pd + pt + 2 data pages
        assert_eq!(m.pages().len(), 6);
        let data: Vec<_> = m.pages().values().rev().take(2).collect();
        assert_eq!(&data[1][0xFFC..], &[1, 2, 3, 4]);
        assert_eq!(&data[0][..4], &[5, 6, 7, 8]);
    }

    #[test]
    fn the_same_page_is_mapped_once() {
        let mut m = Memory::new(1);
        m.write_u64(0xFFFF_C000_0000_0000, 1);
        let n = m.pages().len();
        m.write_u64(0xFFFF_C000_0000_0100, 2);
        assert_eq!(m.pages().len(), n);
    }
}
