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

#[test]
fn common_codes_round_trip_with_names_subcodes_and_blame() {
    use crate::common::{EBPFCORE_BASE, NETEBPFEXT_BASE, NT_BASE, fault};
    let cases = [
        (
            0xC4,
            [0x62, 0xFFFF_B00A_1D4F_0E30, 0, 3],
            SAMPLE_EXT_BASE + 0x10,
            "DRIVER_VERIFIER_DETECTED_VIOLATION",
            Some(0x62),
            "sample_ebpf_ext.sys",
        ),
        (
            0x139,
            [3, 0xFFFF_A581_2E1F_6F10, 0, 0],
            EBPFCORE_BASE + 0x2E7D,
            "KERNEL_SECURITY_CHECK_FAILURE",
            Some(3),
            "ebpfcore.sys",
        ),
        (
            0xC2,
            [7, 0x1234, 0, 0],
            NETEBPFEXT_BASE + 0x99,
            "BAD_POOL_CALLER",
            Some(7),
            "netebpfext.sys",
        ),
        (
            0x80,
            [0x004F_4454, 0, 0, 0],
            SAMPLE_EXT_BASE + 0x3F10,
            "NMI_HARDWARE_FAILURE",
            None,
            "sample_ebpf_ext.sys",
        ),
        (
            0xD1,
            [0x28, 2, 0, SAMPLE_EXT_BASE + 0x44],
            SAMPLE_EXT_BASE + 0x44,
            "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
            None,
            "sample_ebpf_ext.sys",
        ),
        (
            0xCE,
            [SAMPLE_EXT_BASE + 0x10, 8, 0, 0],
            NT_BASE + 0x41_6EA0,
            "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS",
            None,
            "ntoskrnl.exe",
        ),
        (
            0x7E,
            [0xC000_0005, SAMPLE_EXT_BASE + 1, 0, 0],
            SAMPLE_EXT_BASE + 1,
            "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED",
            None,
            "sample_ebpf_ext.sys",
        ),
    ];
    for (code, params, rip, name, sub, module) in cases {
        let bytes = crash_triage::dump_bytes(&fault(DumpKind::Kernel, code, params, rip)).unwrap();
        let t = crash_triage::triage_bytes(std::path::Path::new("MEMORY.DMP"), bytes).unwrap();
        assert_eq!(t.bugcheck.code, code);
        assert_eq!(t.bugcheck.name.as_deref(), Some(name));
        assert_eq!(t.bugcheck.subcode, sub, "{name}");
        assert_eq!(t.faulting_module.unwrap().name, module, "{name}");
    }
}

#[test]
fn unknown_code_and_rip_outside_every_module() {
    let spec = crate::common::fault(
        DumpKind::Kernel,
        0x1234_5678,
        [1, 2, 3, 4],
        0xFFFF_F000_0000_1000,
    );
    let t = crash_triage::triage_bytes(
        std::path::Path::new("x.dmp"),
        crash_triage::dump_bytes(&spec).unwrap(),
    )
    .unwrap();
    assert_eq!(t.bugcheck.name, None);
    assert_eq!(
        t.bugcheck.display_name(),
        "BUGCHECK_0x12345678 (0x12345678)"
    );
    assert_eq!(t.faulting_module, None);
    assert_eq!(
        crash_triage::signature(&t, None).title,
        "BUGCHECK_12345678 (0x12345678)"
    );
}

/// Dumps above the view threshold show kdmp-parser only the pages triage needs; the
/// answer must be the same as for a small dump.
#[test]
fn large_sparse_dump_gives_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    for encoding in [PageEncoding::Bitmap, PageEncoding::Runs, PageEncoding::Rdmp] {
        let mut spec = common::page_fault(DumpKind::Complete);
        spec.physical_memory = 256 << 20;
        spec.encoding = encoding;
        spec.system_time = chrono::DateTime::from_timestamp(1_736_000_000, 0).unwrap();
        let path = dir.path().join("MEMORY.DMP");
        write_dump(&path, &spec).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 256 << 20);
        let t = triage_file(&path).unwrap();
        assert_eq!(t.modules.len(), 5, "{encoding:?}");
        assert_eq!(t.faulting_module.unwrap().name, "sample_ebpf_ext.sys");
        assert_eq!(t.system_time, Some(spec.system_time));
        assert_eq!(t.system.build, 20348);
        assert_eq!(t.system.processors, 4);
    }
}

#[test]
fn writing_replaces_the_target_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("MEMORY.DMP");
    std::fs::write(&path, b"old").unwrap();
    write_dump(&path, &common::page_fault(DumpKind::Kernel)).unwrap();
    assert_eq!(triage_file(&path).unwrap().bugcheck.code, 0x50);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("MEMORY.DMP")]);
}
