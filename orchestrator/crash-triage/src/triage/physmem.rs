//! Checks the physical memory description of a dump before kdmp-parser sees it, and builds
//! a compact PFN → file offset map (runs, not pages) for triage's own bounded reads.
//!
//! Each check mirrors what kdmp-parser 0.8 will do with the same bytes, so every input that
//! would make it panic, loop for a long time or allocate without bound is refused here
//! with a message that says what and where.

use super::Fail;
use super::error::TriageErrorKind as K;
use super::header::Header;
use super::source::Source;
use crate::format::{self, PAGE_SIZE, bmp, dump_type, get_u32, get_u64, hdr, rdmp};

/// Bitmaps and RDMP metadata larger than this are refused (64 MiB of bitmap is 2 TiB of RAM).
const MAX_METADATA: u64 = 64 << 20;

/// `count` pages from `pfn` stored contiguously at `file_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub pfn: u64,
    pub count: u64,
    pub file_offset: u64,
}

/// Where each physical page lives in the file.
#[derive(Debug, Default)]
pub struct PhysMap {
    /// Sorted by PFN, non-overlapping.
    pub runs: Vec<Run>,
}

impl PhysMap {
    /// File offset of physical address `gpa`, if its page is in the dump.
    pub fn file_offset(&self, gpa: u64) -> Option<u64> {
        let pfn = gpa / PAGE_SIZE;
        let i = self.runs.partition_point(|r| r.pfn <= pfn).checked_sub(1)?;
        let run = self.runs[i];
        (pfn - run.pfn < run.count)
            .then(|| run.file_offset + (pfn - run.pfn) * PAGE_SIZE + gpa % PAGE_SIZE)
    }

    /// Pages in the dump.
    pub fn pages(&self) -> u64 {
        self.runs.iter().map(|r| r.count).sum()
    }

    /// One past the highest PFN in the dump.
    pub fn pfn_limit(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.pfn + r.count)
    }

    fn from_runs(mut runs: Vec<Run>, len: u64) -> Result<Self, Fail> {
        let pages = runs
            .iter()
            .try_fold(0u64, |acc, r| acc.checked_add(r.count));
        let pages = pages.ok_or_else(|| {
            Fail::new(None, K::Malformed("page runs: page count overflows".into()))
        })?;
        // Pages are stored in order, so the last stored page ends the page data.
        let end = runs
            .iter()
            .map(|r| r.file_offset.checked_add(r.count.checked_mul(PAGE_SIZE)?))
            .try_fold(0u64, |acc, e| e.map(|e| acc.max(e)));
        match end {
            Some(end) if end <= len => {}
            Some(end) => return Err(Fail::new(None, K::PagesPastEnd { pages, end, len })),
            None => {
                return Err(Fail::new(
                    None,
                    K::PagesPastEnd {
                        pages,
                        end: u64::MAX,
                        len,
                    },
                ));
            }
        }
        runs.retain(|r| r.count > 0);
        runs.sort_by_key(|r| r.pfn);
        for pair in runs.windows(2) {
            if pair[0].pfn + pair[0].count > pair[1].pfn {
                return Err(Fail::new(
                    None,
                    K::Malformed(format!(
                        "page runs: PFN {:#x} appears in two runs",
                        pair[1].pfn
                    )),
                ));
            }
        }
        Ok(Self { runs })
    }
}

/// Validate the page description of a complete/kernel dump and map it.
pub fn map(header: &Header, src: &Source, len: u64) -> Result<PhysMap, Fail> {
    match header.dump_type() {
        dump_type::FULL => full(header, len),
        dump_type::BITMAP | dump_type::LIVE_KERNEL => bitmap(src, len),
        dump_type::KERNEL_MEMORY | dump_type::KERNEL_AND_USER | dump_type::COMPLETE_MEMORY => {
            rdmp(header.dump_type(), src, len)
        }
        other => Err(Fail::new(
            Some(hdr::DUMP_TYPE as u64),
            K::UnsupportedDumpType { dump_type: other },
        )),
    }
}

/// DumpType 1: runs in the header's physical memory descriptor, pages packed from 0x2000.
fn full(header: &Header, len: u64) -> Result<PhysMap, Fail> {
    let at = hdr::PHYSICAL_MEMORY_BLOCK;
    let raw = header.bytes();
    let count = get_u32(raw, at);
    let room = (hdr::PHYSICAL_MEMORY_BLOCK_SIZE - 16) / 16;
    if count as usize > room {
        return Err(Fail::new(
            Some(at as u64),
            K::Malformed(format!(
                "physical memory descriptor: it lists {count} runs, the header has room for {room}"
            )),
        ));
    }
    let mut offset = format::HEADER_SIZE as u64;
    let mut runs = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let pfn = get_u64(raw, at + 16 + i * 16);
        let pages = get_u64(raw, at + 24 + i * 16);
        let bad = || {
            Fail::new(
                Some((at + 16 + i * 16) as u64),
                K::Malformed(format!(
                    "physical memory run {i}: PFN {pfn:#x} + {pages:#x} pages overflows"
                )),
            )
        };
        pfn.checked_add(pages)
            .and_then(|end| end.checked_mul(PAGE_SIZE))
            .ok_or_else(bad)?;
        runs.push(Run {
            pfn,
            count: pages,
            file_offset: offset,
        });
        offset = pages
            .checked_mul(PAGE_SIZE)
            .and_then(|b| offset.checked_add(b))
            .ok_or_else(bad)?;
    }
    PhysMap::from_runs(runs, len)
}

/// DumpType 5/6: a bitmap of present pages, pages packed from `FirstPage`.
fn bitmap(src: &Source, len: u64) -> Result<PhysMap, Fail> {
    let base = format::HEADER_SIZE as u64;
    let mut h = [0u8; bmp::BITMAP];
    read(src, base, &mut h, len, "bitmap dump header")?;
    if (&h[0..4] != bmp::SIG_KERNEL && &h[0..4] != bmp::SIG_COMPLETE) || &h[4..8] != bmp::VALID_DUMP
    {
        return Err(Fail::new(
            Some(base),
            K::Malformed(format!(
                "bitmap dump header: signature {} is neither \"SDMPDUMP\" nor \"FDMPDUMP\"",
                super::printable(&h[0..8])
            )),
        ));
    }
    let first_page = get_u64(&h, bmp::FIRST_PAGE);
    let pages = get_u64(&h, bmp::PAGES);
    let bitmap_len = pages.div_ceil(8);
    let bitmap_at = base + bmp::BITMAP as u64;
    if bitmap_len > MAX_METADATA {
        return Err(Fail::new(
            Some(base + bmp::PAGES as u64),
            K::Malformed(format!(
                "bitmap dump header: a bitmap of {pages:#x} pages is larger than supported"
            )),
        ));
    }
    let bitmap_end = bitmap_at + bitmap_len;
    let mut bits = vec![0u8; bitmap_len as usize];
    read(src, bitmap_at, &mut bits, len, "page bitmap")?;
    if first_page < bitmap_end {
        return Err(Fail::new(
            Some(base + bmp::FIRST_PAGE as u64),
            K::Malformed(format!(
                "bitmap dump header: first page offset {first_page:#x} lies inside the header or bitmap (which ends at {bitmap_end:#x})"
            )),
        ));
    }
    if !pages.is_multiple_of(8)
        && let Some(last) = bits.last_mut()
    {
        *last &= (1u8 << (pages % 8)) - 1;
    }
    let mut runs: Vec<Run> = Vec::new();
    let mut offset = first_page;
    for (byte_idx, &byte) in bits.iter().enumerate() {
        if byte == 0 {
            continue;
        }
        // Complete dumps are all ones: extend the run a byte at a time.
        let pfn = byte_idx as u64 * 8;
        if byte == 0xFF
            && let Some(r) = runs.last_mut()
            && r.pfn + r.count == pfn
        {
            r.count += 8;
            offset = offset.saturating_add(8 * PAGE_SIZE);
            continue;
        }
        for bit in 0..8 {
            if byte & (1 << bit) == 0 {
                continue;
            }
            let pfn = byte_idx as u64 * 8 + bit;
            match runs.last_mut() {
                Some(r) if r.pfn + r.count == pfn => r.count += 1,
                _ => runs.push(Run {
                    pfn,
                    count: 1,
                    file_offset: offset,
                }),
            }
            offset = offset.saturating_add(PAGE_SIZE);
        }
    }
    PhysMap::from_runs(runs, len)
}

/// DumpType 8/9/0xA: an RDMP header and a list of PFN ranges, pages from `FirstPageOffset`.
fn rdmp(kind: u32, src: &Source, len: u64) -> Result<PhysMap, Fail> {
    let base = format::HEADER_SIZE as u64;
    let mut h = [0u8; rdmp::RANGES];
    read(src, base, &mut h, len, "RDMP header")?;
    let malformed = |at: usize, what: String| {
        Fail::new(
            Some(base + at as u64),
            K::Malformed(format!("RDMP header: {what}")),
        )
    };
    if get_u32(&h, 0) != rdmp::MARKER
        || &h[4..8] != rdmp::SIGNATURE
        || &h[8..12] != rdmp::VALID_DUMP
    {
        return Err(malformed(
            0,
            format!(
                "marker/signature {:#x} {} is not 0x40 \"RDMPDUMP\"",
                get_u32(&h, 0),
                super::printable(&h[4..12])
            ),
        ));
    }
    let metadata_size = get_u64(&h, rdmp::METADATA_SIZE);
    let first_page = get_u64(&h, rdmp::FIRST_PAGE_OFFSET);
    // kdmp-parser computes `metadata_size - 0x20` and `first_page - 0x2040` unchecked: it
    // panics (debug builds) or wraps on smaller values.
    if metadata_size < 0x20 {
        return Err(malformed(
            rdmp::METADATA_SIZE,
            format!("metadata size {metadata_size:#x} is smaller than 0x20"),
        ));
    }
    if first_page < 0x2040 {
        return Err(malformed(
            rdmp::FIRST_PAGE_OFFSET,
            format!("first page offset {first_page:#x} is smaller than 0x2040"),
        ));
    }
    if metadata_size - 0x20 != first_page - 0x2040 {
        return Err(malformed(
            rdmp::METADATA_SIZE,
            format!(
                "metadata size {metadata_size:#x} does not match first page offset {first_page:#x}"
            ),
        ));
    }
    if !metadata_size.is_multiple_of(16) {
        return Err(malformed(
            rdmp::METADATA_SIZE,
            format!("metadata size {metadata_size:#x} is not a multiple of 16"),
        ));
    }
    if metadata_size > MAX_METADATA {
        return Err(malformed(
            rdmp::METADATA_SIZE,
            format!("metadata size {metadata_size:#x} is larger than supported"),
        ));
    }
    let total = get_u64(&h, rdmp::TOTAL_NUMBER_OF_PAGES);
    let ranges_at = base + rdmp::RANGES as u64;
    // The ranges kdmp-parser may read, clipped to the file; reads past it fail below.
    let want = (metadata_size).min(len.saturating_sub(ranges_at));
    let mut ranges = vec![0u8; want as usize];
    read(src, ranges_at, &mut ranges, len, "RDMP PFN range list")?;

    let mut runs = Vec::new();
    let mut offset = first_page;
    let mut page_count = 0u64;
    for i in 0..metadata_size / 16 {
        if kind == dump_type::COMPLETE_MEMORY {
            // Complete dumps end at TotalNumberOfPages, not at a zero range.
            if page_count == total {
                break;
            }
            if page_count > total {
                return Err(malformed(
                    rdmp::TOTAL_NUMBER_OF_PAGES,
                    format!("PFN ranges hold more than the {total:#x} pages the header announces"),
                ));
            }
        }
        let at = i as usize * 16;
        let Some(range) = ranges.get(at..at + 16) else {
            return Err(Fail::new(
                Some(ranges_at + at as u64),
                K::Truncated {
                    what: "RDMP PFN range list".into(),
                    end: ranges_at + at as u64 + 16,
                    len,
                },
            ));
        };
        let pfn = get_u64(range, 0);
        let count = get_u64(range, 8);
        if pfn == 0 {
            break;
        }
        let bad = || {
            Fail::new(
                Some(ranges_at + at as u64),
                K::Malformed(format!(
                    "RDMP PFN range {i}: PFN {pfn:#x} + {count:#x} pages overflows"
                )),
            )
        };
        pfn.checked_add(count)
            .and_then(|e| e.checked_mul(PAGE_SIZE))
            .ok_or_else(bad)?;
        runs.push(Run {
            pfn,
            count,
            file_offset: offset,
        });
        offset = count
            .checked_mul(PAGE_SIZE)
            .and_then(|b| offset.checked_add(b))
            .ok_or_else(bad)?;
        page_count = page_count.checked_add(count).ok_or_else(bad)?;
    }
    PhysMap::from_runs(runs, len)
}

/// Read `buf.len()` bytes at `offset`, reporting a read past the end as truncation of `what`.
pub fn read(src: &Source, offset: u64, buf: &mut [u8], len: u64, what: &str) -> Result<(), Fail> {
    let end = offset.saturating_add(buf.len() as u64);
    if end > len {
        return Err(Fail::new(
            Some(offset),
            K::Truncated {
                what: what.into(),
                end,
                len,
            },
        ));
    }
    src.read_at(offset, buf)
        .map_err(|e| Fail::new(Some(offset), K::Io(e)))
}
