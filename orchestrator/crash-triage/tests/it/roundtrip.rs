//! write_dump -> triage_file for every dump kind, encoding and the common bugcheck codes.

use crash_triage::{DumpFormat, DumpKind, PageEncoding, triage_file, write_dump};

use crate::common::{self, SAMPLE_EXT_BASE};

#[test]
fn page_fault_round_trips_through_every_kind_and_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            DumpKind::Complete,
            PageEncoding::Bitmap,
            DumpFormat::CompleteBitmap,
        ),
        (
            DumpKind::Kernel,
            PageEncoding::Bitmap,
            DumpFormat::KernelBitmap,
        ),
        (DumpKind::Complete, PageEncoding::Runs, DumpFormat::Full),
        (DumpKind::Kernel, PageEncoding::Runs, DumpFormat::Full),
        (
            DumpKind::Complete,
            PageEncoding::Rdmp,
            DumpFormat::CompleteMemory,
        ),
        (
            DumpKind::Kernel,
            PageEncoding::Rdmp,
            DumpFormat::KernelMemory,
        ),
        (DumpKind::Small, PageEncoding::Bitmap, DumpFormat::Small),
    ];
    for (kind, encoding, format) in cases {
        let mut spec = common::page_fault(kind);
        spec.encoding = encoding;
        let path = dir.path().join(format!("{kind:?}-{encoding:?}.dmp"));
        write_dump(&path, &spec).unwrap();
        let t = triage_file(&path).unwrap_or_else(|e| panic!("{kind:?}/{encoding:?}: {e}"));
        assert_eq!(t.format, format, "{kind:?}/{encoding:?}");
        assert_eq!(t.bugcheck.code, 0x50);
        assert_eq!(t.bugcheck.params, spec.params);
        assert_eq!(t.rip, spec.rip);
        assert_eq!(
            t.modules.len(),
            5,
            "{kind:?}/{encoding:?}: {:?}",
            t.warnings
        );
        let fm = t.faulting_module.expect("faulting module");
        assert_eq!(fm.name, "sample_ebpf_ext.sys");
        assert_eq!(fm.base, SAMPLE_EXT_BASE);
        assert_eq!(fm.offset, 0x1A3C);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 512 * 1024, "{kind:?}/{encoding:?} is {size} bytes");
    }
}

/// kdmp-parser on its own (no triage in front) accepts what the writer produces and finds
/// the drivers through PsLoadedModuleList and the page tables.
#[test]
fn kdmp_parser_reads_written_dumps_directly() {
    use kdmp_parser::gxa::Gxa;
    let dir = tempfile::tempdir().unwrap();
    for kind in [DumpKind::Complete, DumpKind::Kernel] {
        let spec = common::page_fault(kind);
        let path = dir.path().join("MEMORY.DMP");
        write_dump(&path, &spec).unwrap();
        let parser = kdmp_parser::parse::KernelDumpParser::new(&path).unwrap();
        assert_eq!(parser.headers().bug_check_code, 0x50);
        assert_eq!(parser.context_record().rip, spec.rip);
        let mut modules: Vec<_> = parser
            .kernel_modules()
            .map(|(r, n)| (r.start.u64(), r.end.u64(), n.to_owned()))
            .collect();
        modules.sort();
        assert_eq!(modules.len(), 5);
        assert!(modules.contains(&(
            SAMPLE_EXT_BASE,
            SAMPLE_EXT_BASE + 0x12000,
            r"\SystemRoot\system32\drivers\sample_ebpf_ext.sys".to_owned()
        )));
    }
}
