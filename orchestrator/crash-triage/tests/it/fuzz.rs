//! Property tests: arbitrary bytes and mutations of valid dumps into triage never panic
//! (kdmp-parser's debug assertions are live in test builds, so the guards are exercised).

use std::path::Path;
use std::sync::LazyLock;

use crash_triage::{DumpKind, PageEncoding, dump_bytes, triage_bytes};
use proptest::prelude::*;

use crate::common;

static VALID: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for (kind, encoding) in [
        (DumpKind::Kernel, PageEncoding::Bitmap),
        (DumpKind::Kernel, PageEncoding::Runs),
        (DumpKind::Kernel, PageEncoding::Rdmp),
        (DumpKind::Complete, PageEncoding::Rdmp),
        (DumpKind::Small, PageEncoding::Bitmap),
    ] {
        let mut spec = common::page_fault(kind);
        spec.encoding = encoding;
        out.push(dump_bytes(&spec).unwrap());
    }
    out
});

fn triage(bytes: Vec<u8>) {
    // Ok or a typed error: both fine; a panic fails the test.
    match triage_bytes(Path::new("fuzz.dmp"), bytes) {
        Ok(t) => assert!(t.modules.len() <= 4096),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// A header that passes the signature check, so the bytes after it get exercised.
fn with_header(mut bytes: Vec<u8>, dump_type: u32) -> Vec<u8> {
    bytes.resize(bytes.len().max(0x2000), 0);
    bytes[0..8].copy_from_slice(b"PAGEDU64");
    bytes[0xF98..0xF9C].copy_from_slice(&dump_type.to_le_bytes());
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..0x3000)) {
        triage(bytes);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_signature_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..0x4000),
        dump_type in prop::sample::select(vec![1u32, 4, 5, 6, 8, 9, 10]),
    ) {
        triage(with_header(bytes, dump_type));
    }

    #[test]
    fn mutated_dumps_never_panic(
        which in 0usize..5,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u64>()), 1..16),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let mut b = VALID[which].clone();
        for (at, value) in edits {
            // Eight bytes at a time, so pointers and sizes get replaced whole.
            let i = at.index(b.len() - 8) & !7;
            b[i..i + 8].copy_from_slice(&value.to_le_bytes());
        }
        if let Some(cut) = cut {
            b.truncate(cut.index(b.len()));
        }
        triage(b);
    }

    /// Pointers in the page tables and loader entries replaced: hostile module lists.
    #[test]
    fn mutated_memory_pages_never_panic(
        which in 0usize..3,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u64>(), any::<bool>()), 1..8),
    ) {
        let mut b = VALID[which].clone();
        let pages_at = 0x3000;
        let words = (b.len() - pages_at) / 8;
        for (at, value, small) in edits {
            let i = pages_at + at.index(words) * 8;
            // Small values hit lengths and flags; large ones hit pointers.
            let value = if small { value % 0x200 } else { value };
            b[i..i + 8].copy_from_slice(&value.to_le_bytes());
        }
        triage(b);
    }

    #[test]
    fn mutations_in_the_structures_never_panic(
        which in 0usize..5,
        edits in proptest::collection::vec((0usize..0x200, any::<u8>()), 1..8),
        region in prop::sample::select(vec![0x0usize, 0x88, 0x348, 0xF98, 0x2000]),
    ) {
        let mut b = VALID[which].clone();
        for (off, value) in edits {
            let i = (region + off).min(b.len() - 1);
            b[i] = value;
        }
        triage(b);
    }
}

/// Mutations inside the memory pages (page tables, loader entries) hit the guard walk.
#[test]
fn every_byte_of_the_module_list_pages_flipped_never_panics() {
    let b = &VALID[0];
    // The pages: from the first page offset to the end (a kernel dump is small).
    let first_page = u64::from_le_bytes(b[0x2020..0x2028].try_into().unwrap()) as usize;
    for i in (first_page..b.len()).step_by(13) {
        let mut m = b.clone();
        m[i] ^= 0xFF;
        triage(m);
    }
}
