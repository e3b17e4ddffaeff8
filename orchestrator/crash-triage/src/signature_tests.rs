//! The bucketing rules, table by table: what normalisation keeps and drops, which crashes
//! must share a bucket and which must stay apart.

use std::path::PathBuf;

use super::*;
use crate::triage::{
    BugCheck, DumpFormat, FaultingModule, LoadedModule, StackFrame, SystemInfo, Triage,
};

#[test]
fn normalize_name_table() {
    let cases = [
        // Offsets after the last '+': hex with or without 0x, or offset/size.
        ("sample_find_element+0x1a3", "sample_find_element"),
        ("sample_find_element+1a3", "sample_find_element"),
        ("f+0x1a3/0x2b0", "f"),
        ("f+", "f+"),
        ("c++", "c++"),
        ("x+y", "x+y"),
        ("f+0xzz", "f+0xzz"),
        ("f+1g", "f+1g"),
        ("  padded  ", "padded"),
        // Addresses: 0x + 5 or more hex digits, or 8 or more bare hex digits with a digit
        // among them, as a whole word; backticks (WinDbg's fffff807`4a000000) do not count.
        ("pool_0xffffb00a1c2e3000", "pool_ADDR"),
        ("at 0xffffb00a1c2e3000", "at ADDR"),
        ("at fffff807`4a001a3c", "at ADDR"),
        ("0x12345", "ADDR"),
        ("0X12345", "ADDR"),
        ("0x1234", "0x"),
        ("0xabcde", "0xabcde"),
        ("12345678", "ADDR"),
        ("deadbeef1", "ADDR"),
        ("abcdefab", "abcdefab"),
        ("1234`5678", "ADDR"),
        ("123`4567", "`"),
        ("x12345678", "x"),
        // Only `0x` prefixes an address: an `x` after another character, or a `0` before
        // another letter, starts no address.
        ("ax12345678", "ax"),
        ("0g12345", "0g"),
        ("12345678y", "y"),
        ("a 12345678 b", "a ADDR b"),
        ("a-0x12345-b", "a-ADDR-b"),
        // Runs of 3+ decimal digits are counters; 1-2 digits are part of the name.
        ("tmp4711.sys", "tmp.sys"),
        ("syz-executor123", "syz-executor"),
        ("ext2.sys", "ext2.sys"),
        ("ab12c", "ab12c"),
        ("a123", "a"),
        ("v10x", "v10x"),
        ("1234567", ""),
        ("sample_ebpf_ext.sys", "sample_ebpf_ext.sys"),
        (
            "sample_ext_detach_without_rundown.sys",
            "sample_ext_detach_without_rundown.sys",
        ),
        (
            "_sample_ext_helper_map_get_value",
            "_sample_ext_helper_map_get_value",
        ),
        ("KeBugCheckEx", "KeBugCheckEx"),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(normalize_name(input), want, "normalize_name({input:?})");
    }
}

#[test]
fn strip_offset_table() {
    let cases = [
        ("f+0x1a3", "f"),
        ("f+1a3", "f"),
        ("f+0x1a3/0x2b0", "f"),
        ("f+x", "f"),
        ("f+", "f+"),
        ("f+0xq", "f+0xq"),
        ("f+/", "f"),
        ("a+b+0x10", "a+b"),
        ("no_offset", "no_offset"),
    ];
    for (input, want) in cases {
        assert_eq!(strip_offset(input), want, "strip_offset({input:?})");
    }
}

#[test]
fn symbol_function_table() {
    let cases = [
        (
            "sample_ebpf_ext!sample_find_element+3c",
            Some("sample_find_element"),
        ),
        (
            "sample_ebpf_ext!sample_find_element+0x3c",
            Some("sample_find_element"),
        ),
        ("nt!KeBugCheckEx", Some("KeBugCheckEx")),
        ("a!b!c+0x1", Some("c")),
        ("m!  f  ", Some("f")),
        ("module+0x3f10", None),
        ("module!unknown_function", None),
        ("module!unknown_function+0x10", None),
        ("module!", None),
        ("module!+0x10", None),
        // WinDbg's names for a frame in an unloaded driver carry no function.
        ("sample_ext_detach_without_rundown!unloaded", None),
        ("sample_ext_detach_without_rundown!unloaded+0x19c40", None),
        (
            "<Unloaded_sample_ext_detach_without_rundown.sys>+0x19c40",
            None,
        ),
        // Only the exact word: a function that merely contains it is a function.
        ("m!unloaded_callback+0x10", Some("unloaded_callback")),
        ("m!Unknown_Function", Some("Unknown_Function")),
    ];
    for (input, want) in cases {
        assert_eq!(
            symbol_function(input).as_deref(),
            want,
            "symbol_function({input:?})"
        );
    }
}

#[test]
fn ids_are_short_lower_hex_and_follow_the_title() {
    let id = signature_id("PAGE_FAULT_IN_NONPAGED_AREA (0x50) in x.sys");
    assert_eq!(id.len(), 16);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(
        id,
        signature_id("PAGE_FAULT_IN_NONPAGED_AREA (0x50) in x.sys")
    );
    assert_ne!(
        id,
        signature_id("PAGE_FAULT_IN_NONPAGED_AREA (0x50) in y.sys")
    );
}

#[test]
fn common_modules_are_the_kernel_hal_and_ebpfcore() {
    for m in [
        "ntoskrnl.exe",
        "NTOSKRNL.EXE",
        "ntkrnlmp.exe",
        "hal.dll",
        "ebpfcore.sys",
        "EbpfCore.sys",
    ] {
        assert!(is_common_module(m), "{m}");
    }
    for m in [
        "sample_ebpf_ext.sys",
        "netebpfext.sys",
        "hal.dll.bak",
        "nt.sys",
        "",
    ] {
        assert!(!is_common_module(m), "{m}");
    }
}

const DRIVER: &str = "sample_ext_detach_without_rundown.sys";

fn frame(module: Option<&str>, unloaded: bool, function: Option<&str>, offset: u64) -> StackFrame {
    StackFrame {
        address: 0xFFFF_F806_1010_0000 + offset,
        module: module.map(str::to_owned),
        unloaded,
        function: function.map(str::to_owned),
        offset,
    }
}

fn triage(code: u32, params: [u64; 4], stack: Vec<StackFrame>) -> Triage {
    let rip_frame = stack.first();
    Triage {
        path: PathBuf::from("MEMORY.DMP"),
        file_size: 0,
        format: DumpFormat::KernelBitmap,
        bugcheck: BugCheck::new(code, params),
        rip: rip_frame.map_or(0, |f| f.address),
        faulting_module: rip_frame.and_then(|f| {
            Some(FaultingModule {
                name: f.module.clone()?,
                base: f.address - f.offset,
                size: 0x2_4000,
                offset: f.offset,
                unloaded: f.unloaded,
            })
        }),
        modules: vec![LoadedModule::new(
            "ntoskrnl.exe".into(),
            "\\SystemRoot\\system32\\ntoskrnl.exe".into(),
            0xFFFF_F806_0000_0000,
            0x0104_6000,
        )],
        unloaded_modules: Vec::new(),
        stack,
        system_time: None,
        uptime: None,
        system: SystemInfo {
            major_version: 0xF,
            build: 20348,
            product_type: None,
            machine: 0x8664,
            processors: 4,
        },
        comment: None,
        warnings: Vec::new(),
    }
}

fn title(t: &Triage) -> String {
    signature(t, None).title
}

fn unloaded_race(code: u32, driver_offset: u64, caller: &str) -> Triage {
    triage(
        code,
        [0xFFFF_F806_1011_9C40, 0x10, 0xFFFF_F806_1011_9C40, 0],
        vec![
            frame(Some(DRIVER), true, None, driver_offset),
            frame(Some("ebpfcore.sys"), false, Some(caller), 0x3b),
        ],
    )
}

#[test]
fn one_unloaded_driver_race_is_one_bucket_whether_seen_as_0x50_or_0xce() {
    let seen = [
        unloaded_race(0xCE, 0x1_9C40, "ebpf_map_update_entry"),
        unloaded_race(0xCE, 0x1_00F0, "ebpf_program_invoke"),
        unloaded_race(0x50, 0x1_00F0, "ebpf_program_invoke"),
        unloaded_race(0x50, 0x0_D0F0, "ebpf_map_find_entry"),
    ];
    let sigs: Vec<Signature> = seen.iter().map(|t| signature(t, None)).collect();
    for s in &sigs {
        assert_eq!(s, &sigs[0]);
    }
    assert_eq!(
        sigs[0].title,
        format!(
            "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS (0xce) in {DRIVER} (unloaded)"
        )
    );
    assert_eq!(sigs[0].bugcheck_code, 0xCE);
    assert_eq!(
        sigs[0].module.as_deref(),
        Some(&*format!("{DRIVER} (unloaded)"))
    );
    assert_eq!(sigs[0].symbol, None);
}

#[test]
fn crashes_that_must_stay_apart() {
    let loaded_0x50 = triage(
        0x50,
        [0xFFFF_B00A_1C2E_3000, 0, 0, 2],
        vec![frame(
            Some(DRIVER),
            false,
            Some("_sample_map_find_entry"),
            0x10,
        )],
    );
    let other_driver = triage(
        0xCE,
        [0, 0x10, 0, 0],
        vec![frame(Some("other_ext.sys"), true, None, 0x100)],
    );
    let unloaded_pool = triage(
        0xC2,
        [7, 0, 0x6c706d53, 0xFFFF_B00A_1C2E_3000],
        vec![frame(Some(DRIVER), true, None, 0x100)],
    );
    let other_function = triage(
        0x50,
        [0xFFFF_B00A_1C2E_3000, 0, 0, 2],
        vec![frame(
            Some("other_ext.sys"),
            false,
            Some("_sample_map_update_entry"),
            0x10,
        )],
    );
    let titles = [
        title(&unloaded_race(0x50, 0x10, "ebpf_program_invoke")),
        title(&loaded_0x50),
        title(&other_driver),
        title(&unloaded_pool),
        title(&other_function),
    ];
    for (i, a) in titles.iter().enumerate() {
        for b in &titles[i + 1..] {
            assert_ne!(a, b);
        }
    }
    assert_eq!(
        titles[1],
        format!("PAGE_FAULT_IN_NONPAGED_AREA (0x50) in {DRIVER}")
    );
    assert_eq!(
        titles[3],
        format!("BAD_POOL_CALLER (0xc2/0x7) in {DRIVER} (unloaded)")
    );
    let s = signature(&unloaded_pool, None);
    assert_eq!((s.bugcheck_code, s.subcode), (0xC2, Some(7)));
}

#[test]
fn the_first_frame_outside_common_images_is_blamed_and_offsets_do_not_split() {
    let through_core = |offset: u64| {
        triage(
            0x50,
            [0xFFFF_B00A_1C2E_3000, 0, 0, 2],
            vec![
                frame(Some("ntoskrnl.exe"), false, Some("MmAccessFault"), 0x20),
                frame(None, false, None, 0),
                frame(
                    Some("ebpfcore.sys"),
                    false,
                    Some("ebpf_map_find_entry"),
                    0x3b,
                ),
                frame(
                    Some("sample_ebpf_ext.sys"),
                    false,
                    Some("_sample_map_find_entry"),
                    offset,
                ),
                frame(Some("netebpfext.sys"), false, Some("outer"), 0x3b),
            ],
        )
    };
    assert_eq!(
        title(&through_core(0x3b)),
        "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys"
    );
    assert_eq!(title(&through_core(0x3b)), title(&through_core(0x1a3)));

    // Only common frames: the first of them is blamed.
    let all_common = triage(
        0xC2,
        [7, 0, 0, 0],
        vec![
            frame(None, false, None, 0),
            frame(
                Some("ebpfcore.sys"),
                false,
                Some("_ebpf_epoch_release_free_list"),
                0,
            ),
            frame(Some("ntoskrnl.exe"), false, Some("KiTimerExpiration"), 0x3b),
        ],
    );
    assert_eq!(
        title(&all_common),
        "BAD_POOL_CALLER (0xc2/0x7) in ebpfcore.sys"
    );
}

#[test]
fn without_stack_frames_rip_s_module_is_blamed_and_without_it_nothing() {
    let mut t = unloaded_race(0x50, 0x10, "ebpf_program_invoke");
    t.stack.clear();
    assert_eq!(
        title(&t),
        format!(
            "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS (0xce) in {DRIVER} (unloaded)"
        )
    );
    t.faulting_module = None;
    assert_eq!(title(&t), "PAGE_FAULT_IN_NONPAGED_AREA (0x50)");
    t.stack = vec![frame(None, false, None, 0)];
    assert_eq!(title(&t), "PAGE_FAULT_IN_NONPAGED_AREA (0x50)");
    let unknown = triage(0x1234, [0; 4], Vec::new());
    assert_eq!(title(&unknown), "BUGCHECK_1234 (0x1234)");
}

#[test]
fn names_are_normalised_in_titles() {
    let t = triage(
        0x50,
        [0; 4],
        vec![frame(
            Some("tmp4711.sys"),
            false,
            Some("f_0xffffb00a1c2e3000"),
            0x10,
        )],
    );
    let s = signature(&t, None);
    assert_eq!(s.module.as_deref(), Some("tmp.sys"));
    assert_eq!(s.symbol, None);
    let empty = triage(
        0x50,
        [0; 4],
        vec![frame(Some("123"), false, Some("456"), 0)],
    );
    let s = signature(&empty, None);
    assert_eq!((s.module, s.symbol), (None, None));
}

#[test]
fn the_debugger_s_image_and_symbol_win_over_the_stack() {
    let t = unloaded_race(0x50, 0x10, "ebpf_program_invoke");
    let a = Analyze {
        image_name: Some("sample_ebpf_ext.sys".into()),
        symbol_name: Some("sample_ebpf_ext!sample_find_element+0x1a3".into()),
        ..Analyze::default()
    };
    let s = signature(&t, Some(&a));
    assert_eq!(
        s.title,
        "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys!sample_find_element"
    );
    let no_image = Analyze {
        image_name: Some(String::new()),
        ..Analyze::default()
    };
    assert_eq!(signature(&t, Some(&no_image)), signature(&t, None));
    let no_symbol = Analyze {
        image_name: Some("x.sys".into()),
        symbol_name: Some("x+0x10".into()),
        ..Analyze::default()
    };
    assert_eq!(
        signature(&t, Some(&no_symbol)).title,
        "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in x.sys"
    );
}

/// The faulting function: the blamed frame's, when the dump or a symbol path named it; it
/// is reported with the crash but never splits a bucket (one race faults in several
/// callbacks: measured on `fault-hot-unload-race`, replays of one seed hit the update,
/// find, delete and helper callbacks).
#[test]
fn the_blamed_frame_s_function_is_reported_but_not_bucketed() {
    let named = |code, offset, function: Option<&str>, caller| {
        let mut t = unloaded_race(code, offset, caller);
        t.stack[0].function = function.map(str::to_owned);
        t
    };
    let cases = [
        (
            named(
                0xCE,
                0x1_9C40,
                Some("_sample_map_update_entry"),
                "ebpf_map_update_entry",
            ),
            Some("_sample_map_update_entry"),
        ),
        (
            named(
                0x50,
                0x1_00F0,
                Some("_sample_ext_helper_map_get_value"),
                "ebpf_program_invoke",
            ),
            Some("_sample_ext_helper_map_get_value"),
        ),
        (
            named(
                0x50,
                0x0_D0F0,
                Some("_sample_map_find_entry"),
                "ebpf_map_find_entry",
            ),
            Some("_sample_map_find_entry"),
        ),
        // Not named (no symbol path): same bucket, no function.
        (named(0xCE, 0x1_9C40, None, "ebpf_map_update_entry"), None),
    ];
    let first = signature(&cases[0].0, None);
    for (t, want) in &cases {
        let s = signature(t, None);
        assert_eq!(s.function.as_deref(), *want, "{}", s.title);
        assert_eq!((&s.id, &s.title), (&first.id, &first.title));
        assert_eq!(s.symbol, None, "the function must stay out of the title");
    }
    // A common frame's function is not the faulting function: the blamed (driver) frame is.
    let loaded = triage(
        0x50,
        [0xFFFF_B00A_1C2E_3000, 0, 0, 2],
        vec![
            frame(
                Some("ebpfcore.sys"),
                false,
                Some("ebpf_map_find_entry"),
                0x10,
            ),
            frame(
                Some("sample_ebpf_ext.sys"),
                false,
                Some("_sample_map_find_entry"),
                0x3b,
            ),
        ],
    );
    assert_eq!(
        signature(&loaded, None).function.as_deref(),
        Some("_sample_map_find_entry")
    );
    // Nothing blamed, nothing named.
    let nowhere = triage(0x50, [0; 4], vec![frame(None, false, None, 0)]);
    assert_eq!(signature(&nowhere, None).function, None);
}

/// A debugger that blames an unloaded driver (`<driver>!unloaded`, in SYMBOL_NAME or only in
/// FAILURE_BUCKET_ID) files the crash into the same bucket as hvlab's own unloaded-driver
/// rule, whether the dump says 0x50 or 0xCE; a debugger blaming a loaded image does not.
#[test]
fn the_debugger_s_unloaded_blame_joins_the_unloaded_bucket() {
    let own = signature(
        &unloaded_race(0xCE, 0x1_9C40, "ebpf_map_update_entry"),
        None,
    );
    let by_symbol = Analyze {
        image_name: Some(DRIVER.into()),
        symbol_name: Some("sample_ext_detach_without_rundown!unloaded".into()),
        ..Analyze::default()
    };
    let by_bucket = Analyze {
        image_name: Some(DRIVER.into()),
        failure_bucket_id: Some("0xCE_sample_ext_detach_without_rundown!unloaded".into()),
        ..Analyze::default()
    };
    for code in [0x50, 0xCE] {
        let t = unloaded_race(code, 0x1_00F0, "ebpf_program_invoke");
        for a in [&by_symbol, &by_bucket] {
            let s = signature(&t, Some(a));
            assert_eq!((&s.title, &s.id), (&own.title, &own.id), "{code:#x} {a:?}");
            assert_eq!(s.symbol, None);
        }
    }
    // The debugger names a loaded image: no `(unloaded)`, no grouping into 0xCE.
    let loaded = Analyze {
        image_name: Some("sample_ebpf_ext.sys".into()),
        symbol_name: Some("sample_ebpf_ext+0x10f0".into()),
        failure_bucket_id: Some("AV_R_(null)_sample_ebpf_ext!unknown_function".into()),
        ..Analyze::default()
    };
    let s = signature(
        &unloaded_race(0x50, 0x10, "ebpf_program_invoke"),
        Some(&loaded),
    );
    assert_eq!(
        s.title,
        "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys"
    );
    assert_eq!(s.bugcheck_code, 0x50);
    // Only 0x50 and 0xCE are symptoms of the unloaded driver: a 0xC2 blamed there keeps its
    // code and subcode, with the `(unloaded)` suffix.
    let pool = triage(
        0xC2,
        [7, 0, 0, 0],
        vec![frame(Some(DRIVER), false, None, 0x100)],
    );
    let s = signature(&pool, Some(&by_symbol));
    assert_eq!(
        s.title,
        format!("BAD_POOL_CALLER (0xc2/0x7) in {DRIVER} (unloaded)")
    );
}

/// Names are compared as written, after normalisation: case is kept (Windows reports a
/// module's name as its loader entry has it, the same in every run), an offset or a
/// counter never splits, and an address inside a name is one token.
#[test]
fn what_merges_and_what_stays_apart_by_name() {
    let by_module = |module: &str| {
        title(&triage(
            0x50,
            [0; 4],
            vec![frame(Some(module), false, None, 0x10)],
        ))
    };
    let merge = [
        ("tmp4711.sys", "tmp815.sys"),
        ("syz-executor123", "syz-executor9981"),
        ("drv_0xffffb00a1c2e3000.sys", "drv_0xffffb00a1c2f0000.sys"),
        ("drv_fffff807`4a001a3c.sys", "drv_fffff806`10100000.sys"),
        ("sample_ebpf_ext.sys+0x1a3", "sample_ebpf_ext.sys+0x3b"),
        ("  sample_ebpf_ext.sys", "sample_ebpf_ext.sys"),
    ];
    for (a, b) in merge {
        assert_eq!(by_module(a), by_module(b), "{a} / {b} must share a bucket");
    }
    let apart = [
        ("sample_ebpf_ext.sys", "Sample_Ebpf_Ext.sys"),
        ("ext1.sys", "ext2.sys"),
        ("drv_0x12.sys", "drv_0x13.sys"),
        ("netebpfext.sys", "sample_ebpf_ext.sys"),
    ];
    for (a, b) in apart {
        assert_ne!(by_module(a), by_module(b), "{a} / {b} must stay apart");
    }
}
