//! known-issues.yaml end to end: a crash it names is reported as known (junit.xml property
//! and message, events, summary, terminal) and `--known-issues warn` lets a run whose only
//! failures are known crashes exit 0; a bucket first seen is NEW, and not in the next run;
//! a bad file is a config error with its place.

use quick_junit::{NonSuccessKind, TestCaseStatus};

use crate::support::{Sandbox, events, junit, text, timing_sensitive};

const KNOWN: &str = "\
known_issues:
  - signature: 'PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ext_free_without_epoch.sys*'
    issue: https://github.com/microsoft/ebpf-for-windows/issues/9999
  - bucket: 0123456789abcdef
    issue: https://github.com/microsoft/ebpf-for-windows/issues/1
    expires: 2020-01-31
";

#[test]
fn a_known_crash_is_marked_and_warn_exits_0_and_a_new_bucket_is_new_once() {
    let _race = timing_sensitive();
    let sb = Sandbox::new();
    let file = sb.dir.path().join("known-issues.yaml");
    std::fs::write(&file, KNOWN).unwrap();
    let out = sb
        .run(&[
            "fault-free-without-epoch",
            "--seed",
            "2",
            "--known-issues",
            "warn",
        ])
        .arg("--known-issues-file")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expired on 2020-01-31"), "{stderr}");
    assert!(stderr.contains(" NEW"), "{stderr}");
    assert!(
        stderr.contains("known issue https://github.com/microsoft/ebpf-for-windows/issues/9999"),
        "{stderr}"
    );
    let run = sb.run_dirs().pop().unwrap();
    let evs = events(&run);
    let crashes: Vec<_> = evs
        .iter()
        .filter(|e| e["event"] == "crash_detected")
        .collect();
    assert!(!crashes.is_empty(), "{}", text(&out));
    for c in &crashes {
        assert_eq!(
            c["crash"]["bucket"]["known_issue"],
            "https://github.com/microsoft/ebpf-for-windows/issues/9999",
            "{c}"
        );
    }
    assert!(crashes.iter().any(|c| c["crash"]["bucket"]["new"] == true));
    let mut failures = 0;
    for case in junit(&run).test_suites.iter().flat_map(|s| &s.test_cases) {
        if let TestCaseStatus::NonSuccess {
            kind: NonSuccessKind::Failure,
            message,
            ..
        } = &case.status
        {
            failures += 1;
            assert!(
                message
                    .as_deref()
                    .unwrap_or_default()
                    .contains("known issue https://"),
                "{message:?}"
            );
            assert!(
                case.properties
                    .iter()
                    .any(|p| p.name.as_str() == "known_issue"),
                "{:?}",
                case.properties
            );
        }
    }
    assert!(
        failures > 0,
        "the known crash must stay a failure in junit.xml"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert!(summary.to_string().contains("issues/9999"), "{summary}");
    let html = std::fs::read_to_string(run.join("index.html")).unwrap();
    assert!(
        html.contains("known: <a href"),
        "html marks the known bucket"
    );

    // Same results root, default policy: the crash fails the run and is no longer new.
    // Run ids have a one-second resolution and a random tail, so two runs in one second
    // do not sort by start: the second run is the folder that was not there before.
    let before = sb.run_dirs();
    let out = sb
        .run(&["fault-free-without-epoch", "--seed", "2"])
        .arg("--known-issues-file")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let mut added: Vec<_> = sb
        .run_dirs()
        .into_iter()
        .filter(|d| !before.contains(d))
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
    let run = added.pop().unwrap();
    for c in events(&run)
        .iter()
        .filter(|e| e["event"] == "crash_detected")
    {
        assert_eq!(c["crash"]["bucket"]["new"], false, "{c}");
    }
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(" NEW"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_bad_known_issues_file_is_a_config_error_with_its_place() {
    let sb = Sandbox::new();
    let file = sb.dir.path().join("known-issues.yaml");
    std::fs::write(
        &file,
        "known_issues:\n  - bucket: nope\n    issue: https://x.invalid/1\n",
    )
    .unwrap();
    let out = sb
        .run(&["smoke"])
        .arg("--known-issues-file")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr)
        .replace(&sb.dir.path().display().to_string(), "[sandbox]");
    insta::assert_snapshot!(err);
    assert!(sb.leftover_vms().is_empty());
}

#[test]
fn repro_marks_a_known_bucket_in_its_rates_and_warn_exits_0() {
    let _race = timing_sensitive();
    let sb = Sandbox::new();
    let file = sb.dir.path().join("known-issues.yaml");
    std::fs::write(
        &file,
        "known_issues:\n  - signature: '* in sample_ext_free_without_epoch.sys*'\n    issue: https://x.invalid/9\n",
    )
    .unwrap();
    let out = sb
        .hvlab()
        .args(["repro", "fault-free-without-epoch", "--seed", "2"])
        .args([
            "--max-iterations",
            "4",
            "--vms",
            "1",
            "--known-issues",
            "warn",
        ])
        .arg("--known-issues-file")
        .arg(&file)
        .arg("--results")
        .arg(sb.results())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("known issue https://x.invalid/9"),
        "{stderr}"
    );
    let run = sb.run_dirs().pop().unwrap();
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("repro.json")).unwrap()).unwrap();
    let buckets = rec["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty(), "{rec}");
    for b in buckets {
        assert_eq!(b["known_issue"], "https://x.invalid/9", "{b}");
    }
    // The page's repro section marks it as the run's bucket table does.
    let html = std::fs::read_to_string(run.join("index.html")).unwrap();
    let repro = html
        .split("<h2>Repro</h2>")
        .nth(1)
        .and_then(|s| s.split("<h2>").next())
        .expect("a repro section");
    assert!(
        repro.contains("known: <a href=\"https://x.invalid/9\">"),
        "{repro}"
    );
}

/// A 0x50 dump blamed on `sample_ebpf_ext.sys`, written without a lab.
fn page_fault_dump(dir: &std::path::Path) -> std::path::PathBuf {
    use crash_triage::{DumpKind, DumpSpec, Module};
    let rip = 0xFFFF_F807_5020_1A3C;
    let spec = DumpSpec::new(
        DumpKind::Kernel,
        0x50,
        [0xFFFF_B00A_1C2E_3000, 0, rip, 2],
        rip,
        vec![
            Module::new("ntoskrnl.exe", 0xFFFF_F807_4A00_0000, 0x0104_6000),
            Module::new("sample_ebpf_ext.sys", 0xFFFF_F807_5020_0000, 0x0001_0000),
        ],
    );
    let path = dir.join("MEMORY.DMP");
    std::fs::write(&path, crash_triage::dump_bytes(&spec).unwrap()).unwrap();
    path
}

#[test]
fn triage_names_the_known_issue_of_a_matching_bucket() {
    let sb = Sandbox::new();
    let dump = page_fault_dump(sb.dir.path());
    let file = sb.dir.path().join("known-issues.yaml");
    std::fs::write(
        &file,
        "known_issues:\n  - signature: 'PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys'\n    issue: https://github.com/microsoft/ebpf-for-windows/issues/42\n",
    )
    .unwrap();
    let out = sb
        .hvlab()
        .arg("triage")
        .arg(&dump)
        .arg("--known-issues-file")
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout)
        .replace(&sb.dir.path().display().to_string(), "[sandbox]");
    insta::assert_snapshot!(stdout);

    let json = sb
        .hvlab()
        .args(["triage", "--format", "json"])
        .arg(&dump)
        .arg("--known-issues-file")
        .arg(&file)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        v["buckets"][0]["known_issue"],
        "https://github.com/microsoft/ebpf-for-windows/issues/42"
    );

    // Without the file, nothing is marked.
    let plain = sb.hvlab().arg("triage").arg(&dump).output().unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("known issue"));
}

/// `hvlab triage --debugger`: a shell script standing in for kd.exe prints a recorded
/// `!analyze -v`; its bucket id, stack and symbol reach the report. A debugger that fails
/// is reported and the dump keeps hvlab's own bucket.
#[cfg(unix)]
#[test]
fn triage_with_a_debugger_merges_its_analysis_and_survives_its_failure() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let dump = page_fault_dump(sb.dir.path());
    let recorded = crate::support::repo_root()
        .join("orchestrator/crash-triage/tests/it/fixtures/analyze/page_fault_sample_ext.txt");
    let kd = sb.dir.path().join("kd");
    std::fs::write(&kd, format!("#!/bin/sh\ncat '{}'\n", recorded.display())).unwrap();
    std::fs::set_permissions(&kd, std::fs::Permissions::from_mode(0o755)).unwrap();
    // `hvlab triage DUMP --debugger kd ARGS`: it succeeds either way; its stdout.
    let triage = |args: &[&str]| {
        let out = sb
            .hvlab()
            .arg("triage")
            .arg(&dump)
            .arg("--debugger")
            .arg(&kd)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let stdout = triage(&["--symbols", "srv*C:\\symbols"]);
    assert!(
        stdout.contains("FAILURE_BUCKET_ID AV_R_(null)_sample_ebpf_ext!sample_find_element"),
        "{stdout}"
    );
    assert!(
        stdout.contains("STACK_TEXT nt!KeBugCheckEx")
            && stdout.contains("sample_ebpf_ext!sample_find_element+0x3c"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys!sample_find_element"
        ),
        "{stdout}"
    );

    std::fs::write(&kd, "#!/bin/sh\necho 'symbol server unreachable'\nexit 1\n").unwrap();
    let stdout = triage(&[]);
    assert!(
        stdout.contains("analyze:   failed: run debugger"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bucket:    ae2413671e6b5e39 PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys\n"),
        "{stdout}"
    );
}

/// A lab file's `debugger:` on the sim lab: each collected dump goes through it (with the
/// payload's driver folder first on its symbol path) and its analysis refines the bucket;
/// a debugger that fails is a warning and the crash keeps hvlab's own bucket, with the
/// faulting function named from the payload's driver files.
#[cfg(unix)]
#[test]
fn a_lab_debugger_refines_run_buckets_and_its_failure_is_only_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let _timing = timing_sensitive();
    let sb = Sandbox::new();
    let root = crate::support::repo_root();
    let recorded =
        root.join("orchestrator/crash-triage/tests/it/fixtures/analyze/page_fault_sample_ext.txt");
    let kd = sb.dir.path().join("kd");
    let args_file = sb.dir.path().join("kd-args");
    std::fs::write(
        &kd,
        format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\ncat '{}'\n",
            args_file.display(),
            recorded.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&kd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let lab_text = std::fs::read_to_string(root.join("vm-configs/local-sim.yaml")).unwrap();
    let lab = sb.dir.path().join("lab.yaml");
    std::fs::write(
        &lab,
        format!(
            "{lab_text}\ndebugger:\n  path: {}\n  symbol_path: srv*C:\\symbols\n",
            kd.display()
        ),
    )
    .unwrap();
    let run = |name: &str| {
        let out = sb
            .hvlab()
            .args([
                "run",
                "fault-free-without-epoch",
                "--template",
                "ws2022",
                "--seed",
                "2",
            ])
            .arg("--lab")
            .arg(&lab)
            .arg("--results")
            .arg(sb.dir.path().join(name))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        out
    };
    let out = run("with-debugger");
    let all = text(&out);
    assert!(
        all.contains(
            "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys!sample_find_element"
        ),
        "the debugger's image and symbol make the bucket: {all}"
    );
    let args = std::fs::read_to_string(&args_file).unwrap();
    assert!(
        args.contains("-z ") && args.contains("MEMORY.DMP"),
        "{args}"
    );
    assert!(
        args.contains("driver-payloads/sim-build;srv*C:\\symbols"),
        "payload folder first on the symbol path: {args}"
    );

    std::fs::write(&kd, "#!/bin/sh\necho 'symbol server unreachable'\nexit 1\n").unwrap();
    let out = run("failing-debugger");
    let all = text(&out);
    assert!(all.contains("gave no analysis of"), "{all}");
    assert!(
        all.contains("crash bucket a3381255b5547c00 \"PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ext_free_without_epoch.sys\""),
        "{all}"
    );
    assert!(
        all.contains("in sample_ext_free_without_epoch.sys!_sample"),
        "the faulting function is named: {all}"
    );
}
