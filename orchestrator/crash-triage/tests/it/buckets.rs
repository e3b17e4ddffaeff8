//! Signatures put one bug from two runs in one bucket and keep distinct faults apart; the
//! bucket index persists across runs.

use std::path::Path;

use chrono::{TimeZone, Utc};
use crash_triage::bucket::{BucketIndex, CrashRecord};
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
fn the_index_counts_runs_and_keeps_the_first_dumps() {
    let root = tempfile::tempdir().unwrap();
    let sig = sign(&common::page_fault(DumpKind::Kernel));
    let other = sign(&fault(
        DumpKind::Kernel,
        0xD1,
        [0, 2, 0, 0],
        SAMPLE_EXT_BASE + 0x10,
    ));
    let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let mut results = Vec::new();
    for i in 0..4u32 {
        let run = format!("run-{}", i / 2 + 1);
        let dump = root
            .path()
            .join(&run)
            .join(format!("vm{i}"))
            .join("MEMORY.DMP");
        let crash = CrashRecord {
            signature: &sig,
            run_id: &run,
            dump: Some(&dump),
            seen_at: t0 + chrono::Duration::hours(i.into()),
        };
        results.push(BucketIndex::record(root.path(), &crash, 2).unwrap());
    }
    assert!(results[0].is_new);
    assert!(
        results[1..]
            .iter()
            .all(|r| !r.is_new && r.bucket_id == sig.id)
    );
    assert_eq!(
        results.iter().map(|r| r.keep_dump).collect::<Vec<_>>(),
        [true, true, false, false]
    );

    let crash = CrashRecord {
        signature: &other,
        run_id: "run-3",
        dump: None,
        seen_at: t0,
    };
    assert!(BucketIndex::record(root.path(), &crash, 2).unwrap().is_new);

    let index = BucketIndex::load(root.path()).unwrap();
    assert_eq!(index.buckets.len(), 2);
    let b = &index.buckets[&sig.id];
    assert_eq!(b.count, 4);
    assert_eq!(b.runs, ["run-1", "run-2"]);
    assert_eq!(b.dumps, ["run-1/vm0/MEMORY.DMP", "run-1/vm1/MEMORY.DMP"]);
    assert_eq!(b.dumps_not_kept, 2);
    assert_eq!(b.first_seen, t0);
    assert_eq!(b.last_seen, t0 + chrono::Duration::hours(3));
    assert_eq!(index.sorted()[0].id, sig.id);
    // No lock or temp file is mistaken for the index.
    assert!(root.path().join("buckets.json").is_file());
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
                    BucketIndex::record(root, &crash, 5).unwrap();
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
