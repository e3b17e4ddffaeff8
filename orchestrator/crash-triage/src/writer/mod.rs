//! Writes genuine 64-bit Windows kernel dumps (`PAGEDU64`) for the simulated lab.
//!
//! ```text
//! DumpSpec ─► kernel::build (page tables, PsLoadedModuleList, KDBG) ─► header ─► encoding
//!   Complete/Kernel: bitmap (DumpType 5) | runs (1) | RDMP (0xA / 8), pages after the header
//!   Small:           DumpType 4 header + TRIAGE_DUMP64 with a driver list (small.rs)
//! ─► temp file in the target directory ─► rename over the target path
//! ```
//!
//! Complete dumps cover all of `physical_memory`; pages nobody wrote stay holes in the file,
//! so a 1 GiB complete dump costs a few pages of disk.

mod kernel;
mod memory;
mod small;

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::format::{self, PAGE_SIZE, bmp, ctx, dump_type, exc, hdr, put_u16, put_u32, put_u64};
use crate::spec::{DumpKind, DumpSpec, PageEncoding, utc_to_filetime};

/// Why a dump could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("create a temporary dump file in {dir}")]
    CreateTemp {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write dump file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("move the finished dump into place at {path}")]
    Persist {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("write a dump with {count} physical memory runs: a full dump header holds at most 42")]
    TooManyRuns { count: usize },
}

/// A dump laid out in memory: chunks at file offsets, and the final file length (the gaps
/// between chunks are holes).
#[derive(Debug)]
pub(crate) struct Image {
    pub chunks: Vec<(u64, Vec<u8>)>,
    pub len: u64,
}

/// Write the dump described by `spec` to `path` atomically: the data goes to a temporary
/// file in the same directory, which is renamed over `path` once complete, so a reader
/// never sees half a dump. The parent directory must exist.
pub fn write_dump(path: &Path, spec: &DumpSpec) -> Result<(), WriteError> {
    let image = build_image(spec)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".hvlab-dump-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|source| WriteError::CreateTemp {
            dir: dir.clone(),
            source,
        })?;
    let write_err = |source| WriteError::Write {
        path: path.to_path_buf(),
        source,
    };
    write_image(tmp.as_file_mut(), &image).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| WriteError::Persist {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// The bytes of the dump, for callers that keep dumps in memory (tests, fuzzing).
/// Holes are zero-filled; prefer [`write_dump`] for large complete dumps.
pub fn dump_bytes(spec: &DumpSpec) -> Result<Vec<u8>, WriteError> {
    let image = build_image(spec)?;
    let len = usize::try_from(image.len).map_err(|_| WriteError::Write {
        path: PathBuf::from("<memory>"),
        source: io::Error::other("dump too large for memory"),
    })?;
    let mut out = vec![0u8; len];
    for (at, bytes) in &image.chunks {
        let at = *at as usize;
        out[at..at + bytes.len()].copy_from_slice(bytes);
    }
    Ok(out)
}

fn write_image(file: &mut File, image: &Image) -> io::Result<()> {
    for (at, bytes) in &image.chunks {
        file.seek(SeekFrom::Start(*at))?;
        file.write_all(bytes)?;
    }
    // Extends with a hole (or trims nothing): unwritten pages read as zeros.
    file.set_len(image.len)?;
    file.flush()
}

pub(crate) fn build_image(spec: &DumpSpec) -> Result<Image, WriteError> {
    let layout = kernel::build(spec);
    let mut header = base_header(spec, &layout);
    if spec.kind == DumpKind::Small {
        return Ok(small::build(spec, header));
    }

    let memory = &layout.memory;
    let ram_pages = spec
        .physical_memory
        .div_ceil(PAGE_SIZE)
        .max(memory.pfn_limit());
    // RAM is PFN 1.. (PFN 0 never appears: it ends an RDMP range list).
    let ram_runs = vec![(1u64, ram_pages - 1)];
    let complete = spec.kind == DumpKind::Complete;
    let present_runs = if complete {
        ram_runs.clone()
    } else {
        runs_of(memory.pages().keys().copied())
    };
    put_descriptor(&mut header, &ram_runs);

    let mut chunks = Vec::new();
    let first_page = match spec.encoding {
        PageEncoding::Bitmap => {
            put_u32(&mut header, hdr::DUMP_TYPE, dump_type::BITMAP);
            let (bmp_header, first_page) = bitmap_header(complete, ram_pages, &present_runs);
            chunks.push((format::HEADER_SIZE as u64, bmp_header));
            first_page
        }
        PageEncoding::Runs => {
            if present_runs.len() > 42 {
                return Err(WriteError::TooManyRuns {
                    count: present_runs.len(),
                });
            }
            put_u32(&mut header, hdr::DUMP_TYPE, dump_type::FULL);
            put_descriptor(&mut header, &present_runs);
            format::HEADER_SIZE as u64
        }
        PageEncoding::Rdmp => {
            let kind = if complete {
                dump_type::COMPLETE_MEMORY
            } else {
                dump_type::KERNEL_MEMORY
            };
            put_u32(&mut header, hdr::DUMP_TYPE, kind);
            let (rdmp, first_page) = rdmp_header(complete, &present_runs);
            chunks.push((format::HEADER_SIZE as u64, rdmp));
            first_page
        }
    };

    // Pages are stored in PFN order across the present runs.
    let mut offset = first_page;
    for &(start, count) in &present_runs {
        for pfn in start..start + count {
            if let Some(page) = memory.pages().get(&pfn) {
                chunks.push((offset, page.to_vec()));
            }
            offset += PAGE_SIZE;
        }
    }
    put_u64(&mut header, hdr::REQUIRED_DUMP_SPACE, offset);
    chunks.insert(0, (0, header));
    Ok(Image {
        chunks,
        len: offset,
    })
}

/// Consecutive PFNs collapsed into `(start, count)` runs.
fn runs_of(pfns: impl Iterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for pfn in pfns {
        match runs.last_mut() {
            Some((start, count)) if *start + *count == pfn => *count += 1,
            _ => runs.push((pfn, 1)),
        }
    }
    runs
}

/// `PHYSICAL_MEMORY_DESCRIPTOR64` in the header.
fn put_descriptor(header: &mut [u8], runs: &[(u64, u64)]) {
    let at = hdr::PHYSICAL_MEMORY_BLOCK;
    let room = (hdr::PHYSICAL_MEMORY_BLOCK_SIZE - 16) / 16;
    let runs = &runs[..runs.len().min(room)];
    header[at..at + hdr::PHYSICAL_MEMORY_BLOCK_SIZE].fill(0);
    put_u32(header, at, runs.len() as u32);
    put_u64(header, at + 8, runs.iter().map(|r| r.1).sum());
    for (i, (start, count)) in runs.iter().enumerate() {
        put_u64(header, at + 16 + i * 16, *start);
        put_u64(header, at + 24 + i * 16, *count);
    }
}

fn bitmap_header(complete: bool, ram_pages: u64, present: &[(u64, u64)]) -> (Vec<u8>, u64) {
    let bitmap_len = ram_pages.div_ceil(8) as usize;
    let mut b = vec![0u8; bmp::BITMAP + bitmap_len];
    let sig = if complete {
        bmp::SIG_COMPLETE
    } else {
        bmp::SIG_KERNEL
    };
    b[0..4].copy_from_slice(sig);
    b[4..8].copy_from_slice(bmp::VALID_DUMP);
    let first_page = (format::HEADER_SIZE as u64 + b.len() as u64).next_multiple_of(PAGE_SIZE);
    put_u64(&mut b, bmp::FIRST_PAGE, first_page);
    put_u64(
        &mut b,
        bmp::TOTAL_PRESENT_PAGES,
        present.iter().map(|r| r.1).sum(),
    );
    put_u64(&mut b, bmp::PAGES, ram_pages);
    for &(start, count) in present {
        for pfn in start..start + count {
            b[bmp::BITMAP + (pfn / 8) as usize] |= 1 << (pfn % 8);
        }
    }
    (b, first_page)
}

fn rdmp_header(complete: bool, present: &[(u64, u64)]) -> (Vec<u8>, u64) {
    use crate::format::rdmp;
    // Ranges, then a zero range that ends the list; pages start on the next page boundary.
    let ranges_end =
        format::HEADER_SIZE as u64 + rdmp::RANGES as u64 + 16 * (present.len() as u64 + 1);
    let first_page = ranges_end.next_multiple_of(PAGE_SIZE);
    let metadata_size = first_page - rdmp::METADATA_START;
    let mut b = vec![0u8; (ranges_end - format::HEADER_SIZE as u64) as usize];
    put_u32(&mut b, 0, rdmp::MARKER);
    b[4..8].copy_from_slice(rdmp::SIGNATURE);
    b[8..12].copy_from_slice(rdmp::VALID_DUMP);
    put_u64(&mut b, rdmp::METADATA_SIZE, metadata_size);
    put_u64(&mut b, rdmp::FIRST_PAGE_OFFSET, first_page);
    if complete {
        put_u32(&mut b, 0x20, present.len() as u32);
        put_u64(
            &mut b,
            rdmp::TOTAL_NUMBER_OF_PAGES,
            present.iter().map(|r| r.1).sum(),
        );
    }
    for (i, (start, count)) in present.iter().enumerate() {
        put_u64(&mut b, rdmp::RANGES + i * 16, *start);
        put_u64(&mut b, rdmp::RANGES + i * 16 + 8, *count);
    }
    (b, first_page)
}

/// `DUMP_HEADER64` with everything but the dump type and page description.
fn base_header(spec: &DumpSpec, layout: &kernel::KernelLayout) -> Vec<u8> {
    // Windows fills the header with "PAGE" before writing fields.
    let mut h: Vec<u8> = format::SIGNATURE
        .iter()
        .copied()
        .cycle()
        .take(format::HEADER_SIZE)
        .collect();
    h[hdr::VALID_DUMP..hdr::VALID_DUMP + 4].copy_from_slice(format::VALID_DUMP64);
    put_u32(&mut h, hdr::MAJOR_VERSION, spec.os.major);
    put_u32(&mut h, hdr::MINOR_VERSION, spec.os.build);
    put_u64(
        &mut h,
        hdr::DIRECTORY_TABLE_BASE,
        layout.memory.directory_table_base(),
    );
    put_u64(&mut h, hdr::PFN_DATABASE, kernel::PFN_DATABASE_VA);
    put_u64(
        &mut h,
        hdr::PS_LOADED_MODULE_LIST,
        layout.ps_loaded_module_list,
    );
    put_u64(
        &mut h,
        hdr::PS_ACTIVE_PROCESS_HEAD,
        layout.ps_active_process_head,
    );
    put_u32(&mut h, hdr::MACHINE_IMAGE_TYPE, 0x8664);
    put_u32(&mut h, hdr::NUMBER_PROCESSORS, spec.processors);
    put_u32(&mut h, hdr::BUGCHECK_CODE, spec.bugcheck_code);
    put_u32(&mut h, hdr::BUGCHECK_CODE + 4, 0);
    for (i, p) in spec.params.iter().enumerate() {
        put_u64(&mut h, hdr::BUGCHECK_PARAMS + i * 8, *p);
    }
    h[0x60..0x80].fill(0);
    put_u64(
        &mut h,
        hdr::KD_DEBUGGER_DATA_BLOCK,
        layout.kd_debugger_data_block,
    );
    put_u32(
        &mut h,
        hdr::PHYSICAL_MEMORY_BLOCK + hdr::PHYSICAL_MEMORY_BLOCK_SIZE,
        0,
    );

    let c = hdr::CONTEXT_RECORD;
    h[c..c + ctx::SIZE].copy_from_slice(&context_record(spec));
    let e = hdr::EXCEPTION_RECORD;
    h[e..e + 0x98].fill(0);
    // The bugcheck path records a breakpoint exception at the faulting instruction.
    put_u32(&mut h, e + exc::CODE, 0x8000_0003);
    put_u64(&mut h, e + exc::ADDRESS, spec.rip);
    put_u32(&mut h, e + exc::NUMBER_PARAMETERS, 0);

    h[hdr::DUMP_TYPE..0x1058].fill(0);
    put_u64(
        &mut h,
        hdr::SYSTEM_TIME,
        utc_to_filetime(spec.system_time) as u64,
    );
    if let Some(comment) = &spec.comment {
        let bytes: Vec<u8> = comment
            .bytes()
            .filter(u8::is_ascii)
            .take(hdr::COMMENT_SIZE - 1)
            .collect();
        h[hdr::COMMENT..hdr::COMMENT + bytes.len()].copy_from_slice(&bytes);
    }
    let uptime = u64::try_from(spec.uptime.as_nanos() / 100).unwrap_or(u64::MAX);
    put_u64(&mut h, hdr::SYSTEM_UP_TIME, uptime);
    put_u32(&mut h, hdr::PRODUCT_TYPE, spec.os.product_type.code());
    put_u32(&mut h, hdr::SUITE_MASK, 0x110);
    h
}

/// An x64 `CONTEXT` for the bugchecking thread.
pub(crate) fn context_record(spec: &DumpSpec) -> Vec<u8> {
    let mut c = vec![0u8; ctx::SIZE];
    // CONTEXT_AMD64 | CONTROL | INTEGER | SEGMENTS | FLOATING_POINT
    put_u32(&mut c, ctx::CONTEXT_FLAGS, 0x0010_001F);
    // The default MXCSR, in both places a CONTEXT holds it: independent readers (the C++
    // kdmp-parser) reject a record whose two copies differ.
    put_u32(&mut c, ctx::MXCSR, 0x1F80);
    put_u16(&mut c, ctx::FLT_SAVE_CONTROL_WORD, 0x027F);
    put_u32(&mut c, ctx::FLT_SAVE_MXCSR, 0x1F80);
    put_u32(&mut c, ctx::FLT_SAVE_MXCSR_MASK, 0xFFFF);
    put_u16(&mut c, ctx::SEG_CS, 0x10);
    for seg in [ctx::SEG_DS, ctx::SEG_ES] {
        put_u16(&mut c, seg, 0x2B);
    }
    put_u16(&mut c, ctx::SEG_FS, 0x53);
    put_u16(&mut c, ctx::SEG_GS, 0x2B);
    put_u16(&mut c, ctx::SEG_SS, 0x18);
    put_u32(&mut c, ctx::EFLAGS, 0x0004_0282);
    put_u64(&mut c, ctx::RSP, spec.rsp);
    put_u64(&mut c, ctx::RIP, spec.rip);
    c
}
