//! Small (DumpType 4) dumps: header fields read by hand, the driver list from TRIAGE_DUMP64.

use std::path::Path;

use chrono::TimeZone;
use crash_triage::{DumpFormat, DumpKind, dump_bytes, triage_bytes};

use crate::common::{self, SAMPLE_EXT_BASE};

#[test]
fn header_fields_sit_at_the_documented_offsets() {
    let spec = common::page_fault(DumpKind::Small);
    let b = dump_bytes(&spec).unwrap();
    assert_eq!(&b[0..8], b"PAGEDU64");
    assert_eq!(u32::from_le_bytes(b[0x38..0x3C].try_into().unwrap()), 0x50);
    assert_eq!(
        u64::from_le_bytes(b[0x40..0x48].try_into().unwrap()),
        spec.params[0]
    );
    assert_eq!(u32::from_le_bytes(b[0xF98..0xF9C].try_into().unwrap()), 4);
    // Small: a header and a few KiB of triage data, no memory pages.
    assert!(b.len() < 16 * 1024, "{} bytes", b.len());
}

#[test]
fn small_dump_triage_reads_code_params_modules_time_and_build() {
    let mut spec = common::page_fault(DumpKind::Small);
    spec.system_time = chrono::Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap();
    spec.os.build = 26100;
    let t = triage_bytes(
        Path::new("Minidump/030425-01-01.dmp"),
        dump_bytes(&spec).unwrap(),
    )
    .unwrap();
    assert_eq!(t.format, DumpFormat::Small);
    assert_eq!(t.bugcheck.code, 0x50);
    assert_eq!(t.bugcheck.params, spec.params);
    assert_eq!(t.modules.len(), 5);
    let fm = t.faulting_module.unwrap();
    assert_eq!(
        (fm.name.as_str(), fm.base),
        ("sample_ebpf_ext.sys", SAMPLE_EXT_BASE)
    );
    assert_eq!(t.system_time, Some(spec.system_time));
    assert_eq!(t.system.build, 26100);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

#[test]
fn small_dump_without_its_valid_marker_triages_with_a_warning() {
    let spec = common::page_fault(DumpKind::Small);
    let mut b = dump_bytes(&spec).unwrap();
    let n = b.len();
    b[n - 4..].copy_from_slice(b"\0\0\0\0");
    let t = triage_bytes(Path::new("x.dmp"), b).unwrap();
    assert_eq!(t.bugcheck.code, 0x50);
    assert!(
        t.warnings[0].contains("no \"DGRT\" marker"),
        "{:?}",
        t.warnings
    );
}

#[test]
fn small_dumps_go_to_the_minidump_folder() {
    let when = chrono::Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap();
    assert_eq!(
        DumpKind::Small.relative_path(when, 1),
        r"Minidump\030425-01-01.dmp"
    );
    assert_eq!(DumpKind::Kernel.relative_path(when, 1), "MEMORY.DMP");
    assert_eq!(DumpKind::from_crash_dump_enabled(7), Some(DumpKind::Kernel));
    assert_eq!(DumpKind::from_crash_dump_enabled(3), Some(DumpKind::Small));
    assert_eq!(DumpKind::from_crash_dump_enabled(0), None);
}
