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
