//! kdmp-parser, contained: it runs on its own thread (its parser is not `Send`, and a panic
//! there ends that thread, not the caller), over a header copy that hides what it must not
//! walk.

use std::io::Cursor;
use std::thread;

use kdmp_parser::gxa::Gxa;
use kdmp_parser::parse::KernelDumpParser;

use super::Fail;
use super::error::TriageErrorKind as K;
use super::header::Header;
use super::source::{Overlay, ReadSeek, Source};
use crate::format::{PAGE_SIZE, dump_type, get_u64, hdr, put_u32, put_u64};

/// What triage takes from kdmp-parser.
#[derive(Debug)]
pub struct Parsed {
    pub bugcheck_code: u32,
    pub params: [u64; 4],
    pub rip: u64,
    /// `(base, end, full path)` from `PsLoadedModuleList`.
    pub modules: Vec<(u64, u64, String)>,
}

/// What kdmp-parser is shown.
#[derive(Debug)]
pub enum Input {
    /// The dump file itself (header patched).
    File,
    /// A legacy full dump (DumpType 1) assembled in memory from the header and the given
    /// physical pages (address, contents), sorted by address. kdmp-parser builds a map entry
    /// per page of the dump it reads, which for a dump of a few GiB costs more than the
    /// whole rest of triage; the pages the module walk needs are all it has to see.
    View(Vec<(u64, Box<[u8]>)>),
}

/// Most runs a DumpType 1 header can describe.
const MAX_RUNS: usize = 42;

/// The in-memory view for `pages`, or `None` if they need more runs than a header holds.
pub fn view(pages: Vec<(u64, Box<[u8]>)>) -> Option<Input> {
    let mut runs = 0;
    let mut prev: Option<u64> = None;
    for (gpa, _) in &pages {
        if prev != Some(gpa.wrapping_sub(PAGE_SIZE)) {
            runs += 1;
        }
        prev = Some(*gpa);
    }
    (runs <= MAX_RUNS).then_some(Input::View(pages))
}

/// Parse with kdmp-parser. `hide_module_list` points its directory table base at a page
/// that is not in the dump, so every virtual read fails cleanly and no list is walked.
pub fn parse(
    header: &Header,
    src: &Source,
    len: u64,
    input: Input,
    hide_module_list: Option<u64>,
) -> Result<Parsed, Fail> {
    // Zero processors: kdmp-parser then never walks KPRCBs or user-mode module lists, which
    // triage does not need and whose walks are unbounded on hostile dumps.
    let mut patches = vec![(hdr::NUMBER_PROCESSORS, 0, 4)];
    if let Some(absent_pfn) = hide_module_list {
        patches.push((hdr::DIRECTORY_TABLE_BASE, absent_pfn * PAGE_SIZE, 8));
    }
    let reader: Box<dyn ReadSeek> = match input {
        Input::File => {
            let inner = src.reader().map_err(|e| Fail::new(None, K::Io(e)))?;
            Box::new(Overlay::new(header.patched(&patches), inner, len))
        }
        Input::View(pages) => Box::new(Cursor::new(full_view(header, &patches, &pages))),
    };

    let worker = thread::Builder::new()
        .name("kdmp-parser".to_owned())
        .spawn(move || -> Result<Parsed, kdmp_parser::error::Error> {
            let parser = KernelDumpParser::with_reader(reader)?;
            let headers = parser.headers();
            let mut modules: Vec<(u64, u64, String)> = parser
                .kernel_modules()
                .map(|(range, name)| (range.start.u64(), range.end.u64(), name.to_owned()))
                .collect();
            modules.sort();
            Ok(Parsed {
                bugcheck_code: headers.bug_check_code,
                params: headers.bug_check_code_parameters,
                rip: parser.context_record().rip,
                modules,
            })
        })
        .map_err(|e| Fail::new(None, K::Io(e)))?;
    match worker.join() {
        Ok(Ok(parsed)) => Ok(parsed),
        // The parser's own words are the leaf of the message (`TriageError` shows its kind
        // inline), so they are kept as text here, after crossing the thread typed.
        Ok(Err(e)) => Err(Fail::new(None, K::Parser(e.to_string()))),
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic payload".to_owned());
            Err(Fail::new(None, K::ParserPanicked(message)))
        }
    }
}

/// A DumpType 1 dump holding only `pages`: the header with runs for them, then the pages.
fn full_view(
    header: &Header,
    patches: &[(usize, u64, usize)],
    pages: &[(u64, Box<[u8]>)],
) -> Vec<u8> {
    let mut out = header.patched(patches);
    put_u32(&mut out, hdr::DUMP_TYPE, dump_type::FULL);
    let at = hdr::PHYSICAL_MEMORY_BLOCK;
    out[at..at + hdr::PHYSICAL_MEMORY_BLOCK_SIZE].fill(0);
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (gpa, page) in pages {
        let pfn = gpa / PAGE_SIZE;
        match runs.last_mut() {
            Some((start, count)) if *start + *count == pfn => *count += 1,
            _ => runs.push((pfn, 1)),
        }
        out.extend_from_slice(page);
    }
    put_u32(&mut out, at, runs.len() as u32);
    put_u64(&mut out, at + 8, pages.len() as u64);
    for (i, (start, count)) in runs.iter().enumerate() {
        put_u64(&mut out, at + 16 + i * 16, *start);
        put_u64(&mut out, at + 24 + i * 16, *count);
    }
    debug_assert_eq!(get_u64(&out, at + 8), pages.len() as u64);
    out
}
