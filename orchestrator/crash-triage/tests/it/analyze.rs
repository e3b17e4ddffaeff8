//! Recorded `!analyze -v` outputs parsed (snapshots), signatures refined by them, and the
//! debugger run through a stand-in `cdb`.

use std::path::Path;

use crash_triage::{DumpKind, parse_analyze, signature, triage_bytes};

use crate::common;

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/fixtures/analyze")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn recorded_outputs_parse() {
    for name in [
        "page_fault_sample_ext.txt",
        "verifier_pool_leak.txt",
        "list_entry_corruption.txt",
        "nmi_hang_no_symbols.txt",
        "unloaded_driver_0xce.txt",
    ] {
        let parsed = parse_analyze(&fixture(name)).expect("analysis found");
        // Numbers in hex, as WinDbg shows them.
        let shown = serde_json::json!({
            "bugcheck": format!(
                "{} ({:#x})",
                parsed.bugcheck_name.as_deref().unwrap_or("?"),
                parsed.bugcheck_code.unwrap_or(0)
            ),
            "args": parsed.bugcheck_args.iter().map(|a| format!("{a:#x}")).collect::<Vec<_>>(),
            "FAILURE_BUCKET_ID": parsed.failure_bucket_id,
            "MODULE_NAME": parsed.module_name,
            "IMAGE_NAME": parsed.image_name,
            "SYMBOL_NAME": parsed.symbol_name,
            "PROCESS_NAME": parsed.process_name,
            "FAILURE_ID_HASH": parsed.failure_id_hash,
            "OS_VERSION": parsed.os_version,
            "STACK_TEXT": parsed.stack,
        });
        insta::assert_yaml_snapshot!(name.trim_end_matches(".txt"), shown);
    }
}

#[test]
fn analyze_fields_refine_the_signature() {
    let dump = crash_triage::dump_bytes(&common::page_fault(DumpKind::Kernel)).unwrap();
    let t = triage_bytes(Path::new("MEMORY.DMP"), dump).unwrap();
    let a = parse_analyze(&fixture("page_fault_sample_ext.txt")).unwrap();
    assert_eq!(
        signature(&t, Some(&a)).title,
        "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys!sample_find_element"
    );
    assert_eq!(
        signature(&t, None).title,
        "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys"
    );
    // Without symbols the debugger's "module+offset" names no function.
    let hang = parse_analyze(&fixture("nmi_hang_no_symbols.txt")).unwrap();
    assert_eq!(hang.symbol_name.as_deref(), Some("sample_ebpf_ext+3f10"));
    assert_eq!(
        signature(&t, Some(&hang)).title,
        "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys"
    );
}

/// A shell script standing in for cdb.exe: prints a recorded analysis, as cdb would.
#[cfg(unix)]
#[test]
fn run_analyze_runs_the_configured_debugger() {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let sample = dir.path().join("sample.txt");
    std::fs::write(&sample, fixture("list_entry_corruption.txt")).unwrap();
    let cdb = dir.path().join("cdb");
    let args_log = dir.path().join("args.txt");
    std::fs::write(
        &cdb,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\ncat '{}'\n",
            args_log.display(),
            sample.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cdb, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = crash_triage::DebuggerConfig {
        path: cdb.clone(),
        symbol_path: None,
    };
    let a = crash_triage::run_analyze(
        &cfg,
        Path::new("/dumps/MEMORY.DMP"),
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(a.image_name.as_deref(), Some("ebpfcore.sys"));
    let args = std::fs::read_to_string(&args_log).unwrap();
    assert_eq!(args, "-z\n/dumps/MEMORY.DMP\n-c\n!analyze -v; q\n");

    // A debugger that never finishes is killed at the timeout.
    std::fs::write(&cdb, "#!/bin/sh\nexec sleep 30\n").unwrap();
    let err = crash_triage::run_analyze(&cfg, Path::new("x.dmp"), Duration::from_millis(200))
        .unwrap_err();
    assert!(
        err.to_string().contains("no result after 200ms, killed"),
        "{err}"
    );
}

/// The hot-unload race through a host debugger: `!analyze` names the unloaded driver as
/// `x!unloaded`, its stack comes along, and the merged signature is hvlab's own 0xCE
/// bucket for both the 0xCE and the 0x50 dump (one mechanism, one bucket).
#[test]
fn an_unloaded_driver_s_analysis_merges_into_the_same_0xce_bucket() {
    let a = parse_analyze(&fixture("unloaded_driver_0xce.txt")).unwrap();
    assert_eq!(a.bugcheck_code, Some(0xCE));
    assert_eq!(
        a.failure_bucket_id.as_deref(),
        Some("0xCE_sample_ext_free_without_epoch!unloaded")
    );
    assert!(a.blames_unloaded());
    assert_eq!(a.stack.len(), 7, "{:?}", a.stack);
    assert_eq!(a.stack[0], "nt!KeBugCheckEx");
    assert_eq!(
        a.stack[4],
        "<Unloaded_sample_ext_free_without_epoch.sys>+0x11a40"
    );
    let page_fault = parse_analyze(&fixture("page_fault_sample_ext.txt")).unwrap();
    assert!(!page_fault.blames_unloaded());
    assert_eq!(
        page_fault.stack[4],
        "sample_ebpf_ext!sample_find_element+0x3c"
    );

    for code in [0xCE, 0x50] {
        let spec = common::unloaded_race(
            DumpKind::Kernel,
            code,
            0x1_1A40,
            "ebpf_epoch_work_item_callback",
        );
        let t = triage_bytes(
            Path::new("MEMORY.DMP"),
            crash_triage::dump_bytes(&spec).unwrap(),
        )
        .unwrap();
        let mut a = a.clone();
        // The fixture's driver name, as the dump's unloaded list has it.
        a.image_name = Some(common::UNLOADED_DRIVER.to_owned());
        let merged = signature(&t, Some(&a));
        assert_eq!(merged, signature(&t, None), "{code:#x}");
        assert_eq!(
            merged.title,
            format!(
                "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS (0xce) in {} (unloaded)",
                common::UNLOADED_DRIVER
            )
        );
    }
}
