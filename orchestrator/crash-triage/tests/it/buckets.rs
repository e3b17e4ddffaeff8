//! Signatures put one bug from two runs in one bucket and keep distinct faults apart; the
//! bucket index persists across runs.

use std::path::Path;

use chrono::{TimeZone, Utc};
use crash_triage::bucket::{BucketIndex, CrashRecord, KeepDumps};
use crash_triage::{DumpKind, Signature, dump_bytes, signature, triage_bytes};

use crate::common::{self, EBPFCORE_BASE, SAMPLE_EXT_BASE, fault};

fn sign(spec: &crash_triage::DumpSpec) -> Signature {
    let t = triage_bytes(Path::new("MEMORY.DMP"), dump_bytes(spec).unwrap()).unwrap();
    signature(&t, None)
}

#[test]
fn the_same_fault_in_two_runs_has_one_signature() {
    // Run 1 and run 2: the same bug, different pool addresses, RIP offsets, modules loaded
    // at other bases, other times, other dump kinds.
    let run1 = common::page_fault(DumpKind::Kernel);
    let mut run2 = fault(
        DumpKind::Complete,
        0x50,
        [0xFFFF_C08F_0000_1000, 0, SAMPLE_EXT_BASE + 0x1B00, 0],
        SAMPLE_EXT_BASE + 0x1B00,
    );
    run2.system_time = Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap();
    let (a, b) = (sign(&run1), sign(&run2));
    assert_eq!(a, b);
    assert_eq!(
        a.title,
        "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys"
    );
}

#[test]
fn distinct_faults_have_distinct_signatures() {
    let sigs = [
        sign(&common::page_fault(DumpKind::Kernel)),
        // Same code, other driver.
        sign(&fault(
            DumpKind::Kernel,
            0x50,
            [0, 0, 0, 0],
            EBPFCORE_BASE + 0x10,
        )),
        // Same driver, other code.
        sign(&fault(
            DumpKind::Kernel,
            0xD1,
            [0, 2, 0, 0],
            SAMPLE_EXT_BASE + 0x10,
        )),
        // Same code and driver, other violation kind.
        sign(&fault(
            DumpKind::Kernel,
            0xC4,
            [0x62, 0, 0, 0],
            SAMPLE_EXT_BASE + 0x10,
        )),
        sign(&fault(
            DumpKind::Kernel,
            0xC4,
            [0xF6, 0, 0, 0],
            SAMPLE_EXT_BASE + 0x10,
        )),
        sign(&fault(
            DumpKind::Kernel,
            0x139,
            [3, 0, 0, 0],
            EBPFCORE_BASE + 0x10,
        )),
        sign(&fault(
            DumpKind::Kernel,
            0x80,
            [0x4F4454, 0, 0, 0],
            SAMPLE_EXT_BASE + 0x3F10,
        )),
    ];
    let titles: Vec<&str> = sigs.iter().map(|s| s.title.as_str()).collect();
    insta::assert_yaml_snapshot!(titles);
    let mut ids: Vec<&str> = sigs.iter().map(|s| s.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), sigs.len());
}

#[test]
fn the_index_counts_runs_and_trims_only_earlier_runs_dumps() {
    let root = tempfile::tempdir().unwrap();
    let sig = sign(&common::page_fault(DumpKind::Kernel));
    let other = sign(&fault(
        DumpKind::Kernel,
        0xD1,
        [0, 2, 0, 0],
        SAMPLE_EXT_BASE + 0x10,
    ));
    let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let run_ids = ["20250101-000000-aaaa", "20250101-010000-bbbb"];
    let mut results = Vec::new();
    // Two dumps in run 1, then three in run 2 with --keep-dumps 2: run 2's own dumps all
    // stay (even past 2), run 1's go oldest first, and their files with them.
    for i in 0..5u32 {
        let run = run_ids[usize::from(i >= 2)];
        let dump = root
            .path()
            .join(run)
            .join(format!("vm{i}"))
            .join("MEMORY.DMP");
        std::fs::create_dir_all(dump.parent().unwrap()).unwrap();
        std::fs::write(&dump, b"dump").unwrap();
        let crash = CrashRecord {
            signature: &sig,
            run_id: run,
            dump: Some(&dump),
            seen_at: t0 + chrono::Duration::hours(i.into()),
        };
        results.push(BucketIndex::record(root.path(), &crash, KeepDumps::Last(2)).unwrap());
    }
    assert!(results[0].is_new);
    assert!(
        results[1..]
            .iter()
            .all(|r| !r.is_new && r.bucket_id == sig.id)
    );
    let removed: Vec<Vec<String>> = results.iter().map(|r| r.removed.clone()).collect();
    let run1 = |vm: &str| format!("{}/{vm}/MEMORY.DMP", run_ids[0]);
    assert_eq!(
        removed,
        [vec![], vec![], vec![run1("vm0")], vec![run1("vm1")], vec![]]
    );
    assert!(!root.path().join(run1("vm0")).exists());
    assert!(!root.path().join(run1("vm1")).exists());

    let crash = CrashRecord {
        signature: &other,
        run_id: "20250101-020000-cccc",
        dump: None,
        seen_at: t0,
    };
    assert!(
        BucketIndex::record(root.path(), &crash, KeepDumps::All)
            .unwrap()
            .is_new
    );

    let index = BucketIndex::load(root.path()).unwrap();
    assert_eq!(index.buckets.len(), 2);
    let b = &index.buckets[&sig.id];
    assert_eq!(b.count, 5);
    assert_eq!(b.runs, run_ids);
    let run2 = |vm: &str| format!("{}/{vm}/MEMORY.DMP", run_ids[1]);
    assert_eq!(b.dumps, [run2("vm2"), run2("vm3"), run2("vm4")]);
    for d in &b.dumps {
        assert!(root.path().join(d).is_file(), "{d} resolves from the root");
    }
    assert_eq!(b.dumps_not_kept, 2);
    assert_eq!(b.first_seen, t0);
    assert_eq!(b.last_seen, t0 + chrono::Duration::hours(4));
    assert_eq!(index.sorted()[0].id, sig.id);
    // No lock or temp file is mistaken for the index.
    assert!(root.path().join("buckets.json").is_file());
}

#[test]
fn a_corrupt_index_is_moved_aside_and_the_crash_still_recorded() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("buckets.json"), "{ not json").unwrap();
    let sig = sign(&common::page_fault(DumpKind::Kernel));
    let crash = CrashRecord {
        signature: &sig,
        run_id: "20250101-000000-aaaa",
        dump: None,
        seen_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
    };
    let rec = BucketIndex::record(root.path(), &crash, KeepDumps::All).unwrap();
    assert!(rec.is_new);
    let aside = rec.moved_aside.expect("moved aside");
    assert_eq!(
        aside,
        root.path().join("buckets.json.corrupt-20250101T000000Z")
    );
    assert_eq!(std::fs::read_to_string(&aside).unwrap(), "{ not json");
    let index = BucketIndex::load(root.path()).unwrap();
    assert_eq!(index.buckets[&sig.id].count, 1);
    // A second corrupt file in the same second gets its own name.
    std::fs::write(root.path().join("buckets.json"), "[]").unwrap();
    let rec = BucketIndex::record(root.path(), &crash, KeepDumps::All).unwrap();
    let aside2 = rec.moved_aside.expect("moved aside again");
    assert_ne!(aside, aside2);
    assert!(
        aside2.to_string_lossy().ends_with("-2"),
        "{}",
        aside2.display()
    );
}

#[test]
fn run_relative_dump_paths_of_old_indexes_are_migrated() {
    let root = tempfile::tempdir().unwrap();
    let run = "20250101-000000-aaaa";
    let rel = "stress/win11/iter-1/dumps/MEMORY.DMP";
    std::fs::create_dir_all(root.path().join(run).join(rel).parent().unwrap()).unwrap();
    std::fs::write(root.path().join(run).join(rel), b"dump").unwrap();
    let sig = sign(&common::page_fault(DumpKind::Kernel));
    let old = serde_json::json!({"version": 1, "buckets": {sig.id.clone(): {
        "id": sig.id, "title": sig.title, "bugcheck_code": sig.bugcheck_code,
        "module": null, "symbol": null,
        "first_seen": "2025-01-01T00:00:00Z", "last_seen": "2025-01-01T00:00:00Z",
        "count": 2, "runs": [run, "20240101-000000-0000"],
        "dumps": [rel, "gone/win11/iter-1/dumps/MEMORY.DMP"], "dumps_not_kept": 0}}});
    std::fs::write(root.path().join("buckets.json"), old.to_string()).unwrap();
    let crash = CrashRecord {
        signature: &sig,
        run_id: "20250102-000000-bbbb",
        dump: None,
        seen_at: Utc::now(),
    };
    BucketIndex::record(root.path(), &crash, KeepDumps::Last(0)).unwrap();
    let index = BucketIndex::load(root.path()).unwrap();
    // The found one is rewritten and trimmed like any earlier run's dump; the one found
    // nowhere is left as it was (never deleted by a guess).
    assert_eq!(
        index.buckets[&sig.id].dumps,
        ["gone/win11/iter-1/dumps/MEMORY.DMP"]
    );
    assert!(!root.path().join(run).join(rel).exists());
}

#[test]
fn concurrent_recorders_lose_no_update() {
    let root = tempfile::tempdir().unwrap();
    let sig = sign(&common::page_fault(DumpKind::Kernel));
    std::thread::scope(|s| {
        for t in 0..4 {
            let (root, sig) = (root.path(), &sig);
            s.spawn(move || {
                for i in 0..10 {
                    let run = format!("run-{t}-{i}");
                    let crash = CrashRecord {
                        signature: sig,
                        run_id: &run,
                        dump: None,
                        seen_at: Utc::now(),
                    };
                    BucketIndex::record(root, &crash, KeepDumps::All).unwrap();
                }
            });
        }
    });
    let index = BucketIndex::load(root.path()).unwrap();
    assert_eq!(index.buckets[&sig.id].count, 40);
    assert_eq!(index.buckets[&sig.id].runs.len(), 40);
}

#[test]
fn a_corrupt_index_is_an_error_naming_the_file() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("buckets.json"), "{ not json").unwrap();
    let err = BucketIndex::load(root.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "parse bucket index {}",
            root.path().join("buckets.json").display()
        )
    );
}
