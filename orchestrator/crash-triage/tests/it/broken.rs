//! A corpus of broken dumps, generated here: each gives a typed error (or, for a corrupt
//! module list, a warning) with a message that says what and where — never a panic or hang.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crash_triage::{DumpKind, PageEncoding, dump_bytes, triage_file};

use crate::common;

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn kernel(encoding: PageEncoding) -> Vec<u8> {
    let mut spec = common::page_fault(DumpKind::Kernel);
    spec.encoding = encoding;
    dump_bytes(&spec).unwrap()
}

/// Every case: a name and the bytes of the file.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let bitmap = kernel(PageEncoding::Bitmap);
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    let mut case = |name: &str, bytes: Vec<u8>| cases.push((name.to_owned(), bytes));

    case("empty", Vec::new());
    let mut b = bitmap.clone();
    b[0..4].copy_from_slice(b"JUNK");
    case("bad-signature", b);
    let mut b = bitmap.clone();
    b[4..8].copy_from_slice(b"DUMP");
    case("32-bit", b);
    let mut b = bitmap.clone();
    b[0..4].copy_from_slice(b"MDMP");
    case("user-mode-minidump", b);
    let mut b = bitmap.clone();
    put_u32(&mut b, 0xF98, 2);
    case("unsupported-type-2", b);
    let mut b = bitmap.clone();
    put_u32(&mut b, 0xF98, 0x40);
    case("unsupported-type-0x40", b);
    for at in [
        5usize,
        0x100,
        0x1FFF,
        0x2000,
        0x2010,
        0x203C,
        0x3000,
        bitmap.len() - 1,
    ] {
        case(&format!("truncated-at-{at:#x}"), bitmap[..at].to_vec());
    }
    let mut b = bitmap.clone();
    b[0x2000..0x2004].copy_from_slice(b"XDMP");
    case("bitmap-bad-signature", b);
    let mut b = bitmap.clone();
    put_u64(&mut b, 0x2020, 0x2010);
    case("bitmap-first-page-inside-bitmap", b);

    let runs = kernel(PageEncoding::Runs);
    let mut b = runs.clone();
    put_u64(&mut b, 0xA0, 0x10_0000);
    case("page-runs-past-end", b);
    let mut b = runs.clone();
    put_u32(&mut b, 0x88, 100);
    case("too-many-runs", b);
    let mut b = runs.clone();
    put_u64(&mut b, 0x98, u64::MAX - 2);
    case("run-pfn-overflow", b);

    let rdmp = kernel(PageEncoding::Rdmp);
    let mut b = rdmp.clone();
    put_u64(&mut b, 0x2010, 0x10);
    case("rdmp-metadata-size-below-0x20", b);
    let mut b = rdmp.clone();
    put_u64(&mut b, 0x2018, 0x1000);
    case("rdmp-first-page-below-0x2040", b);
    let mut b = rdmp.clone();
    b[0x2004..0x2008].copy_from_slice(b"XDMP");
    case("rdmp-bad-signature", b);
    let mut b = rdmp.clone();
    // Two ranges over the same pages.
    let (pfn, count) = (u64::from_le_bytes(b[0x2030..0x2038].try_into().unwrap()), 2);
    put_u64(&mut b, 0x2038, count);
    put_u64(&mut b, 0x2040, pfn + 1);
    put_u64(&mut b, 0x2048, 1);
    case("rdmp-overlapping-ranges", b);
    let mut b = rdmp.clone();
    put_u64(&mut b, 0x2038, 0x10_0000);
    case("rdmp-range-past-end", b);
    cases
}

#[test]
fn every_broken_dump_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = String::new();
    for (name, bytes) in corpus() {
        let path = dir.path().join(format!("{name}.dmp"));
        std::fs::write(&path, &bytes).unwrap();
        let err = triage_file(&path).expect_err(&name);
        assert_eq!(err.path, path);
        let message = err
            .to_string()
            .replace(&dir.path().display().to_string(), "<dir>");
        assert!(
            message.starts_with(&format!("triage <dir>/{name}.dmp: ")),
            "{message}"
        );
        writeln!(report, "{name} [{}]\n  {message}", err.kind.code()).unwrap();
    }
    insta::assert_snapshot!(report);
}

#[test]
fn a_missing_file_is_an_io_error_naming_it() {
    let err = triage_file(Path::new("/nonexistent/MEMORY.DMP")).unwrap_err();
    assert_eq!(err.kind.code(), "io");
    let chain = lab_error::Chain(&err).to_string();
    assert!(
        chain.starts_with("triage /nonexistent/MEMORY.DMP: cannot read the file: "),
        "{chain}"
    );
}

/// Byte offset of the loader entry of `sample_ebpf_ext.sys` in the dump file.
fn sample_ext_entry(b: &[u8]) -> usize {
    let name: Vec<u8> = r"\SystemRoot\system32\drivers\sample_ebpf_ext.sys"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let at = b
        .windows(name.len())
        .position(|w| w == name)
        .expect("name in dump");
    // The full name follows the 0xA0-byte entry.
    at - 0xA0
}

#[test]
fn a_looping_module_list_is_not_walked_forever() {
    for encoding in [PageEncoding::Bitmap, PageEncoding::Runs, PageEncoding::Rdmp] {
        let mut b = kernel(encoding);
        let entry = sample_ext_entry(&b);
        // Flink := Blink: the previous entry and this one now point at each other.
        let blink = u64::from_le_bytes(b[entry + 8..entry + 16].try_into().unwrap());
        put_u64(&mut b, entry, blink);
        let started = Instant::now();
        let t = crash_triage::triage_bytes(Path::new("loop.dmp"), b).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(t.bugcheck.code, 0x50);
        assert!(t.modules.is_empty());
        assert!(
            t.warnings[0].starts_with("module list not used: the module list visits the range"),
            "{:?}",
            t.warnings
        );
    }
}

#[test]
fn an_odd_module_name_length_costs_the_module_list_not_the_triage() {
    let mut b = kernel(PageEncoding::Bitmap);
    let entry = sample_ext_entry(&b);
    b[entry + 0x48] |= 1;
    let t = crash_triage::triage_bytes(Path::new("odd.dmp"), b).unwrap();
    assert_eq!(t.bugcheck.code, 0x50);
    assert_eq!(t.faulting_module, None);
    assert_eq!(
        t.warnings[0],
        "module list not used: a module name has an odd length (97 bytes)"
    );
}
