//! The `hvlab triage` report: a results directory with dumps from two runs and a broken
//! dump, rendered as text (snapshot) and JSON.

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use crash_triage::bucket::{BucketIndex, CrashRecord, KeepDumps};
use crash_triage::report::{self, Outcome, ReportOptions};
use crash_triage::{DumpKind, signature, triage_file, write_dump};

use crate::common::{self, EBPFCORE_BASE, fault};

/// results/{run-1,run-2}/... with two dumps of one bug, one of another, one broken file.
fn results_tree(root: &Path) {
    let dump = |rel: &str, spec: &crash_triage::DumpSpec| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_dump(&path, spec).unwrap();
        path
    };
    let mut uaf = common::page_fault(DumpKind::Kernel);
    uaf.system_time = Utc.with_ymd_and_hms(2025, 1, 1, 10, 0, 0).unwrap();
    let a = dump("run-1/vm1/MEMORY.DMP", &uaf);
    uaf.params[0] = 0xFFFF_C08F_0000_1000;
    let b = dump("run-2/vm1/Minidump/010125-01-01.dmp", &{
        let mut s = uaf.clone();
        s.kind = DumpKind::Small;
        s
    });
    let list = fault(
        DumpKind::Kernel,
        0x139,
        [3, 0, 0, 0],
        EBPFCORE_BASE + 0x2E7D,
    );
    dump("run-2/vm2/MEMORY.DMP", &list);
    std::fs::write(root.join("run-2/vm3.dmp"), b"PAGEDU64 but nothing more").unwrap();
    std::fs::write(root.join("run-2/notes.txt"), b"not a dump").unwrap();

    // The runner recorded the first two in the index.
    for (path, run) in [(a, "run-1"), (b, "run-2")] {
        let t = triage_file(&path).unwrap();
        let sig = signature(&t, None);
        let crash = CrashRecord {
            signature: &sig,
            run_id: run,
            dump: Some(&path),
            seen_at: t.system_time.unwrap(),
        };
        BucketIndex::record(root, &crash, KeepDumps::All).unwrap();
    }
}

#[test]
fn a_results_directory_reports_one_block_per_dump_and_a_bucket_table() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("results");
    results_tree(&root);

    let rep = report::triage_paths(std::slice::from_ref(&root), &ReportOptions::default()).unwrap();
    assert_eq!(rep.entries.len(), 4);
    assert_eq!(rep.buckets.len(), 2);
    assert_eq!(rep.buckets[0].dumps.len(), 2);
    assert_eq!(rep.buckets[0].history.as_ref().unwrap().count, 2);
    assert_eq!(rep.exit_code(), 2);

    let text = report::render_text(&rep).replace(&dir.path().display().to_string(), "<tmp>");
    insta::assert_snapshot!(text);

    let json: serde_json::Value = serde_json::from_str(&report::render_json(&rep)).unwrap();
    let entries = json["entries"].as_array().unwrap();
    assert_eq!(entries[0]["status"], "triaged");
    assert_eq!(entries[0]["triage"]["bugcheck"]["code"], 0x50);
    let failed = entries.iter().find(|e| e["status"] == "failed").unwrap();
    assert_eq!(failed["code"], "too-short");
    assert_eq!(json["buckets"].as_array().unwrap().len(), 2);
}

#[test]
fn only_good_dumps_exit_zero_and_a_missing_path_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("MEMORY.DMP");
    write_dump(&path, &common::page_fault(DumpKind::Kernel)).unwrap();
    let rep = report::triage_paths(&[path], &ReportOptions::default()).unwrap();
    assert_eq!(rep.exit_code(), 0);
    assert!(matches!(rep.entries[0].outcome, Outcome::Triaged { .. }));

    let missing = PathBuf::from("/nonexistent/results");
    let err = report::triage_paths(&[missing], &ReportOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "read /nonexistent/results");
}
