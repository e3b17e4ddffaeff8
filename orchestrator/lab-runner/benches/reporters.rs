//! Reporting cost per unit: the file reporters (junit.xml, summary.json, index.html,
//! events.jsonl, crash indexes) fed the recorded events of a run of N units, for N = 100
//! and N = 10,000. Whole-run files used to be rebuilt after every unit, so the cost per
//! unit grew with N; the ratio printed (per-unit cost at 10,000 / at 100) must stay ≤ 1.5.
//!
//! Run: `cargo bench -p lab-runner --bench reporters`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use lab_runner::events::{
    Bucket, BugcheckInfo, Crash, CrashKind, Envelope, Event, RunStats, StepOutcome, StepOutput,
    UnitId, UnitOutcome,
};
use lab_runner::report::{Fanout, OutputFormat, Reporter, TerminalOptions, TerminalReporter};
use lab_runner::results::RunDir;

/// The events of a run of `n` units: three steps each (with output), every tenth unit
/// failing with a crash in one of three buckets, every fiftieth retried once first.
fn events(n: usize, results_dir: PathBuf) -> Vec<Envelope> {
    let at = Utc::now();
    let env = |event| Envelope { at, event };
    let ids: Vec<UnitId> = (0..n)
        .map(|i| UnitId {
            scenario: format!("scenario-{}", i % 20),
            template: "ws2022".into(),
            iteration: u32::try_from(i / 20 + 1).unwrap(),
        })
        .collect();
    let mut out = vec![env(Event::RunStarted {
        run_id: "bench".into(),
        lab: "local-sim.yaml".into(),
        lab_kind: "sim".into(),
        results_dir,
        units: ids.clone(),
        seed: 1,
        max_vms: 4,
    })];
    for (i, unit) in ids.into_iter().enumerate() {
        let vm = format!("vm-{}", i % 4);
        if i % 50 == 7 {
            out.push(env(Event::UnitRetried {
                unit: unit.clone(),
                vm: vm.clone(),
                attempt: 1,
                outcome: UnitOutcome::errored_msg("the VM went away"),
                duration: Duration::from_millis(30),
            }));
        }
        out.push(env(Event::UnitStarted {
            unit: unit.clone(),
            vm: vm.clone(),
            seed: i as u64,
        }));
        for s in 0..3 {
            let path = format!("steps[{s}]");
            let label = format!("run map_stress {s}");
            out.push(env(Event::StepStarted {
                unit: unit.clone(),
                path: path.clone(),
                label: label.clone(),
                timeout: Duration::from_secs(10),
            }));
            out.push(env(Event::StepFinished {
                unit: unit.clone(),
                path,
                label,
                outcome: StepOutcome::Passed,
                duration: Duration::from_millis(120),
                output: Some(StepOutput {
                    exit_code: Some(0),
                    stdout: "ops=1000 errors=0\n".repeat(4),
                    stderr: String::new(),
                    counters: None,
                }),
            }));
        }
        let outcome = if i % 10 == 3 {
            let b = i % 3;
            let crash = Crash {
                kind: CrashKind::Bugcheck,
                step: Some("steps[2]".into()),
                bugcheck: Some(BugcheckInfo {
                    code: 0x50,
                    name: Some("PAGE_FAULT_IN_NONPAGED_AREA".into()),
                    params: [0; 4],
                    module: Some("sample_ebpf_ext.sys".into()),
                    symbol: None,
                }),
                dumps: vec![PathBuf::from(format!("u{i}/dumps/MEMORY.DMP"))],
                bucket: Some(Bucket {
                    id: format!("{b:016x}"),
                    title: format!("bucket {b}"),
                    new: false,
                    known_issue: None,
                }),
                triage_error: None,
                dumps_lost: vec![],
            };
            out.push(env(Event::CrashDetected {
                unit: unit.clone(),
                vm: vm.clone(),
                crash: crash.clone(),
            }));
            UnitOutcome::Failed {
                message: "bugcheck 0x50".into(),
                crash: Some(crash),
            }
        } else {
            UnitOutcome::Passed
        };
        out.push(env(Event::UnitFinished {
            unit,
            vm,
            seed: i as u64,
            outcome,
            duration: Duration::from_millis(400),
            guest_junit: vec![],
        }));
    }
    out.push(env(Event::RunFinished {
        elapsed: Duration::from_secs(60),
        stats: RunStats {
            units: n,
            ..RunStats::default()
        },
        exit_code: 1,
        interrupted: false,
    }));
    out
}

/// Seconds per unit to feed a run of `n` units to the standard file reporters (the
/// terminal writes to a sink), best of `rounds`.
fn per_unit(n: usize, rounds: usize) -> f64 {
    (0..rounds)
        .map(|_| {
            let root = tempfile::tempdir().unwrap();
            let run_dir = RunDir::create(root.path(), Utc::now()).unwrap();
            let evs = events(n, run_dir.path().to_owned());
            let terminal = TerminalReporter::with_writer(
                TerminalOptions {
                    format: OutputFormat::Human,
                    color: false,
                    progress: false,
                },
                Box::new(std::io::sink()),
            );
            let mut fanout = Fanout::standard_with(&run_dir, terminal).unwrap();
            let t = Instant::now();
            for ev in &evs {
                fanout.event(ev).unwrap();
            }
            t.elapsed().as_secs_f64() / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let small = per_unit(100, 5);
    let large = per_unit(10_000, 2);
    let ratio = large / small;
    println!(
        "reporters: {:.1} µs/unit at 100 units, {:.1} µs/unit at 10,000 units; \
         ratio {ratio:.2} (target <= 1.5)",
        small * 1e6,
        large * 1e6
    );
}
