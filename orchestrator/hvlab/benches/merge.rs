//! `hvlab results merge` of 16 shards x 1,000 units (target: under 5 s), against a
//! baseline measured in the same run: merging one shard that holds all 16,000 units (the
//! same reports from the same events, without the joining), and a plain copy of the 16
//! shard folders (the least any merge must do with the files).
//!
//! Each synthetic unit has the events a real one has (started, 4 steps, finished; every
//! 50th fails with a crash in one of 8 buckets) and a unit folder with one step log.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use lab_runner::events::{
    ArtifactKind, Bucket, BugcheckInfo, Crash, CrashKind, Envelope, Event, RunStats, StepOutcome,
    UnitId, UnitOutcome,
};
use lab_runner::results::RunDir;

const SHARDS: usize = 16;
const UNITS_PER_SHARD: usize = 1_000;

fn unit(shard: usize, i: usize) -> UnitId {
    UnitId {
        scenario: format!("scenario-{:02}", i % 40),
        template: format!("ws2022-{shard:02}"),
        iteration: (i / 40 + 1) as u32,
    }
}

/// Writes a shard's run folder holding `units` and returns it.
fn write_shard(root: &Path, name: &str, units: &[UnitId]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let at = Utc::now();
    let mut out = String::new();
    let mut push = |event: Event| {
        out.push_str(&serde_json::to_string(&Envelope { at, event }).unwrap());
        out.push('\n');
    };
    push(Event::RunStarted {
        run_id: name.into(),
        lab: "vm-configs/local-sim.yaml".into(),
        lab_kind: "sim".into(),
        results_dir: dir.clone(),
        units: units.to_vec(),
        seed: 1,
        max_vms: 2,
    });
    let mut stats = RunStats {
        units: units.len(),
        ..RunStats::default()
    };
    for (n, u) in units.iter().enumerate() {
        let rel = RunDir::unit_rel(u);
        std::fs::create_dir_all(dir.join(&rel)).unwrap();
        std::fs::write(dir.join(rel.join("step-0.log")), "ok\n").unwrap();
        push(Event::UnitStarted {
            unit: u.clone(),
            vm: "vm-0".into(),
            seed: n as u64,
        });
        for s in 0..4 {
            push(Event::StepFinished {
                unit: u.clone(),
                path: format!("steps[{s}]"),
                label: format!("run map_tool op=create name=m{s}"),
                outcome: StepOutcome::Passed,
                duration: Duration::from_millis(20),
                output: None,
            });
        }
        push(Event::ArtifactCollected {
            unit: Some(u.clone()),
            vm: "vm-0".into(),
            kind: ArtifactKind::StepLog,
            path: rel.join("step-0.log"),
        });
        let outcome = if n % 50 == 7 {
            stats.failed += 1;
            stats.crashes += 1;
            let b = (n / 50) % 8;
            UnitOutcome::Failed {
                message: "bugcheck".into(),
                crash: Some(Crash {
                    kind: CrashKind::Bugcheck,
                    step: Some("steps[2]".into()),
                    bugcheck: Some(BugcheckInfo {
                        code: 0x50,
                        name: Some("PAGE_FAULT_IN_NONPAGED_AREA".into()),
                        params: [1, 2, 3, 4],
                        module: Some("sample_ext.sys".into()),
                        symbol: None,
                    }),
                    dumps: vec![rel.join("dumps/MEMORY.DMP")],
                    bucket: Some(Bucket {
                        id: format!("0x50-sample_ext.sys-f{b}"),
                        title: format!("PAGE_FAULT_IN_NONPAGED_AREA in sample_ext.sys!f{b}"),
                        new: false,
                        known_issue: None,
                    }),
                    triage_error: None,
                    dumps_lost: vec![],
                }),
            }
        } else {
            stats.passed += 1;
            UnitOutcome::Passed
        };
        push(Event::UnitFinished {
            unit: u.clone(),
            vm: "vm-0".into(),
            seed: n as u64,
            outcome,
            duration: Duration::from_millis(100),
            guest_junit: vec![],
        });
    }
    push(Event::RunFinished {
        elapsed: Duration::from_secs(60),
        stats,
        exit_code: i32::from(stats.failed > 0),
        interrupted: false,
    });
    std::fs::write(dir.join(RunDir::EVENTS), out).unwrap();
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let shards: Vec<PathBuf> = (0..SHARDS)
        .map(|s| {
            let units: Vec<UnitId> = (0..UNITS_PER_SHARD).map(|i| unit(s, i)).collect();
            write_shard(tmp.path(), &format!("shard-{s:02}"), &units)
        })
        .collect();
    let all: Vec<UnitId> = (0..SHARDS)
        .flat_map(|s| (0..UNITS_PER_SHARD).map(move |i| unit(s, i)))
        .collect();
    let whole = write_shard(&tmp.path().join("whole"), "all", &all);

    let merge16 = timed(|| {
        let m = lab_runner::merge::merge(&shards, &tmp.path().join("merged-16")).unwrap();
        assert_eq!(m.stats.units, SHARDS * UNITS_PER_SHARD);
    });
    let merge1 = timed(|| {
        let m = lab_runner::merge::merge(&[whole], &tmp.path().join("merged-1")).unwrap();
        assert_eq!(m.stats.units, SHARDS * UNITS_PER_SHARD);
    });
    let copy = timed(|| {
        for (i, s) in shards.iter().enumerate() {
            copy_tree(s, &tmp.path().join("copied").join(i.to_string()));
        }
    });
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("merged-16/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["crash_buckets"].as_array().unwrap().len(), 8);

    let units = SHARDS * UNITS_PER_SHARD;
    println!("results merge, {SHARDS} shards x {UNITS_PER_SHARD} units ({units} units):");
    println!(
        "  merge 16 shards           {:>8.3} s   (target < 5 s: {})",
        merge16.as_secs_f64(),
        if merge16 < Duration::from_secs(5) {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  baseline: merge 1 shard   {:>8.3} s   ratio {:.2}x",
        merge1.as_secs_f64(),
        merge16.as_secs_f64() / merge1.as_secs_f64()
    );
    println!(
        "  baseline: plain copy      {:>8.3} s   ratio {:.2}x",
        copy.as_secs_f64(),
        merge16.as_secs_f64() / copy.as_secs_f64()
    );
}
