//! kdmp-parser, contained: it runs on its own thread (its parser is not `Send`, and a panic
//! there ends that thread, not the caller), over a header copy that hides what it must not
//! walk.

use std::thread;

use kdmp_parser::gxa::Gxa;
use kdmp_parser::parse::KernelDumpParser;

use super::Fail;
use super::error::TriageErrorKind as K;
use super::header::Header;
use super::source::{Overlay, Source};
use crate::format::{PAGE_SIZE, hdr};

/// What triage takes from kdmp-parser.
#[derive(Debug)]
pub struct Parsed {
    pub bugcheck_code: u32,
    pub params: [u64; 4],
    pub rip: u64,
    /// `(base, end, full path)` from `PsLoadedModuleList`.
    pub modules: Vec<(u64, u64, String)>,
}

/// Parse with kdmp-parser. `hide_module_list` points its directory table base at a page
/// that is not in the dump, so every virtual read fails cleanly and no list is walked.
pub fn parse(
    header: &Header,
    src: &Source,
    len: u64,
    hide_module_list: Option<u64>,
) -> Result<Parsed, Fail> {
    // Zero processors: kdmp-parser then never walks KPRCBs or user-mode module lists, which
    // triage does not need and whose walks are unbounded on hostile dumps.
    let mut patches = vec![(hdr::NUMBER_PROCESSORS, 0, 4)];
    if let Some(absent_pfn) = hide_module_list {
        patches.push((hdr::DIRECTORY_TABLE_BASE, absent_pfn * PAGE_SIZE, 8));
    }
    let patched = header.patched(&patches);
    let inner = src.reader().map_err(|e| Fail::new(None, K::Io(e)))?;
    let reader = Overlay::new(patched, inner, len);

    let worker = thread::Builder::new()
        .name("kdmp-parser".to_owned())
        .spawn(move || -> Result<Parsed, String> {
            let parser = KernelDumpParser::with_reader(reader).map_err(|e| e.to_string())?;
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
        Ok(Err(message)) => Err(Fail::new(None, K::Parser(message))),
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
