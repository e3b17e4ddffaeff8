//! The hot-unload race's dumps: triage reads `MmUnloadedDrivers`, names stack frames from
//! export directories, and files 0x50 and 0xCE of one driver in one bucket.

use crash_triage::report::{self, ReportOptions};
use crash_triage::{DumpKind, PageEncoding, dump_bytes, signature, triage_bytes, write_dump};
use std::path::Path;

use crate::common::{self, EBPFCORE_BASE, UNLOADED_BASE, UNLOADED_DRIVER};

fn triage(spec: &crash_triage::DumpSpec) -> crash_triage::Triage {
    triage_bytes(Path::new("MEMORY.DMP"), dump_bytes(spec).unwrap()).unwrap()
}

#[test]
fn triage_reads_the_unloaded_list_and_blames_the_unloaded_driver() {
    for kind in [DumpKind::Kernel, DumpKind::Complete] {
        for encoding in [PageEncoding::Bitmap, PageEncoding::Runs, PageEncoding::Rdmp] {
            let mut spec = common::unloaded_race(kind, 0xCE, 0x1_9C40, "ebpf_map_update_entry");
            spec.encoding = encoding;
            let t = triage(&spec);
            let what = format!("{kind:?}/{encoding:?}");
            assert_eq!(t.unloaded_modules.len(), 1, "{what}");
            let u = &t.unloaded_modules[0];
            assert_eq!(
                (u.name.as_str(), u.base, u.size),
                (UNLOADED_DRIVER, UNLOADED_BASE, 0x2_4000),
                "{what}"
            );
            assert_eq!(u.time, Some(spec.unloaded[0].time), "{what}");
            let fm = t.faulting_module.as_ref().unwrap();
            assert!(fm.unloaded, "{what}");
            assert_eq!((fm.name.as_str(), fm.offset), (UNLOADED_DRIVER, 0x1_9C40));
            let frames: Vec<String> = t.stack.iter().map(|f| f.display()).collect();
            assert_eq!(
                frames,
                [
                    format!("{UNLOADED_DRIVER} (unloaded)+0x19c40"),
                    "ebpfcore.sys!ebpf_map_update_entry+0x3b".to_owned(),
                    "ntoskrnl.exe!IopLoadDriver+0x3b".to_owned(),
                ],
                "{what}"
            );
        }
    }
}

#[test]
fn the_race_seen_as_0x50_or_0xce_lands_in_one_bucket_naming_the_unloaded_driver() {
    let seen = [
        common::unloaded_race(DumpKind::Kernel, 0xCE, 0x1_9C40, "ebpf_map_update_entry"),
        common::unloaded_race(DumpKind::Kernel, 0x50, 0x1_00F0, "ebpf_program_invoke"),
        common::unloaded_race(DumpKind::Complete, 0xCE, 0xD0F0, "ebpf_map_find_entry"),
    ];
    let sigs: Vec<_> = seen.iter().map(|s| signature(&triage(s), None)).collect();
    assert!(sigs.iter().all(|s| s == &sigs[0]), "{sigs:#?}");
    assert_eq!(
        sigs[0].title,
        format!(
            "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS (0xce) in {UNLOADED_DRIVER} (unloaded)"
        )
    );
}

#[test]
fn a_loaded_driver_s_frame_is_named_from_its_exports_and_blamed() {
    let mut spec = common::unloaded_race(DumpKind::Kernel, 0x50, 0x10, "ebpf_program_invoke");
    // RIP inside ebpfcore, called from the (loaded) sample extension.
    spec.modules[3].exports = vec![crash_triage::Export {
        name: "_sample_map_find_entry".into(),
        rva: 0x1A00,
    }];
    spec.rip = EBPFCORE_BASE + 0x1_1010;
    spec.stack = vec![common::SAMPLE_EXT_BASE + 0x1A3B];
    let t = triage(&spec);
    assert!(!t.faulting_module.as_ref().unwrap().unloaded);
    assert_eq!(
        signature(&t, None).title,
        "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys"
    );
    let caller = &t.stack[1];
    assert_eq!(
        caller.display(),
        "sample_ebpf_ext.sys!_sample_map_find_entry+0x3b"
    );
}

/// Small dumps carry the unloaded-driver list as Windows writes it (names cut to 12
/// characters, no unload time) but no stack: RIP's unloaded driver is blamed under the
/// name the dump has, and 0x50 and 0xCE still share its bucket.
#[test]
fn small_dumps_blame_rip_s_unloaded_driver_by_its_cut_name() {
    let mut titles = Vec::new();
    for code in [0x50, 0xCE] {
        let spec = common::unloaded_race(DumpKind::Small, code, 0x1_9C40, "ebpf_map_update_entry");
        let t = triage(&spec);
        let u: Vec<_> = t
            .unloaded_modules
            .iter()
            .map(|u| (u.name.as_str(), u.base, u.size, u.time))
            .collect();
        assert_eq!(u, [("sample_ext_d", UNLOADED_BASE, 0x2_4000, None)]);
        assert_eq!(t.stack.len(), 1, "RIP only: {:?}", t.stack);
        let fm = t.faulting_module.as_ref().unwrap();
        assert_eq!(
            (fm.name.as_str(), fm.unloaded, fm.offset),
            ("sample_ext_d", true, 0x1_9C40)
        );
        titles.push(signature(&t, None).title);
    }
    assert_eq!(
        titles,
        ["DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS (0xce) in sample_ext_d (unloaded)";
            2]
    );
    assert!(UNLOADED_DRIVER.starts_with("sample_ext_d"));
}

#[test]
fn hvlab_triage_text_for_the_race_shows_the_unloaded_driver_and_the_stack() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("MEMORY.DMP");
    let spec = common::unloaded_race(DumpKind::Kernel, 0x50, 0x1_00F0, "ebpf_program_invoke");
    write_dump(&path, &spec).unwrap();
    let rep = report::triage_paths(&[path], &ReportOptions::default()).unwrap();
    let text = report::render_text(&rep).replace(&dir.path().display().to_string(), "<tmp>");
    insta::assert_snapshot!(text);
}

/// A small dump's unloaded-driver list that cannot be right (too many entries, an odd or
/// overlong name, a range that ends before it starts, an offset past the file) is a
/// malformed dump whose message says what is wrong, never a panic or a made-up driver.
#[test]
fn a_broken_small_dump_unloaded_list_is_a_clear_error() {
    // TRIAGE_DUMP64 follows the 0x2000-byte header; UnloadedDriversOffset is at +0x18; the
    // list is a count, padding to 8, then 0x38-byte entries (name length +0, start +0x28,
    // end +0x30).
    let spec = common::unloaded_race(DumpKind::Small, 0xCE, 0x1_9C40, "ebpf_map_update_entry");
    let good = dump_bytes(&spec).unwrap();
    let at_field = 0x2000 + 0x18;
    let at = u32::from_le_bytes(good[at_field..at_field + 4].try_into().unwrap()) as usize;
    assert_ne!(at, 0, "the sim writes the list");
    let entry = at + 8;
    let put = |b: &mut Vec<u8>, off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    let mut b = good.clone();
    put(&mut b, at, &51u32.to_le_bytes());
    cases.push(("count", b, "51 entries (at most 50)"));
    let mut b = good.clone();
    put(&mut b, entry, &25u16.to_le_bytes());
    cases.push(("odd name", b, "unloaded driver 0: name length 25"));
    let mut b = good.clone();
    put(&mut b, entry, &26u16.to_le_bytes());
    cases.push(("long name", b, "unloaded driver 0: name length 26"));
    let mut b = good.clone();
    put(&mut b, entry + 0x30, &1u64.to_le_bytes());
    cases.push(("range", b, "range"));
    let mut b = good.clone();
    let past = u32::try_from(good.len() + 16).unwrap();
    put(&mut b, at_field, &past.to_le_bytes());
    cases.push(("offset", b, "unloaded-driver list of the small dump"));
    for (what, bytes, want) in cases {
        let e = triage_bytes(Path::new("Minidump/x.dmp"), bytes)
            .expect_err(what)
            .to_string();
        assert!(e.contains(want), "{what}: {e}");
    }
}
