//! Synthetic event streams for the reporter tests: a run built event by event, with a
//! clock that advances by a fixed step so every rendering is deterministic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::events::{
    ArtifactKind, Bucket, BugcheckInfo, Crash, CrashKind, Envelope, Event, RunStats, StepOutcome,
    StepOutput, UnitId, UnitOutcome,
};

pub const RUN_ID: &str = "20250304-050607-beef";

pub fn unit(scenario: &str, template: &str, iteration: u32) -> UnitId {
    UnitId {
        scenario: scenario.into(),
        template: template.into(),
        iteration,
    }
}

/// A bugcheck 0x50 in the sample extension, bucketed.
pub fn page_fault_crash(dump: &str) -> Crash {
    Crash {
        kind: CrashKind::Bugcheck,
        step: Some("steps[1]".into()),
        bugcheck: Some(BugcheckInfo {
            code: 0x50,
            name: Some("PAGE_FAULT_IN_NONPAGED_AREA".into()),
            params: [0xffff_8000_dead_0000, 0, 0xffff_f801_1234_5678, 2],
            module: Some("sample_ebpf_ext.sys".into()),
            symbol: Some("map_find_entry".into()),
        }),
        dumps: vec![dump.into()],
        bucket: Some(Bucket {
            id: "0x50-sample_ebpf_ext.sys-map_find_entry".into(),
            title: "PAGE_FAULT_IN_NONPAGED_AREA in sample_ebpf_ext.sys!map_find_entry".into(),
            new: true,
            known_issue: None,
        }),
        triage_error: None,
        dumps_lost: vec![],
    }
}

/// Builds an event stream.
#[derive(Debug)]
pub struct Stream {
    now: DateTime<Utc>,
    pub events: Vec<Envelope>,
    pub results_dir: PathBuf,
    /// Forces every unit's seed (repro mode replays one seed).
    pub fixed_seed: Option<u64>,
}

impl Stream {
    pub fn new(results_dir: &Path) -> Self {
        Stream {
            now: Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap(),
            events: Vec::new(),
            results_dir: results_dir.to_owned(),
            fixed_seed: None,
        }
    }

    pub fn push(&mut self, event: Event) -> &mut Self {
        self.events.push(Envelope {
            at: self.now,
            event,
        });
        self.now += chrono::Duration::milliseconds(1500);
        self
    }

    pub fn start(&mut self, units: &[UnitId]) -> &mut Self {
        let results_dir = self.results_dir.clone();
        self.push(Event::RunStarted {
            run_id: RUN_ID.into(),
            lab: "vm-configs/local-sim.yaml".into(),
            lab_kind: "sim".into(),
            results_dir,
            units: units.to_vec(),
            seed: 42,
            max_vms: 2,
        })
    }

    /// UnitStarted plus one step per `(label, outcome)`.
    pub fn steps(&mut self, u: &UnitId, vm: &str, steps: &[(&str, StepOutcome)]) -> &mut Self {
        self.push(Event::UnitStarted {
            unit: u.clone(),
            vm: vm.into(),
            seed: self.fixed_seed.unwrap_or_else(|| seed_of(u)),
        });
        for (i, (label, outcome)) in steps.iter().enumerate() {
            let path = format!("steps[{i}]");
            self.push(Event::StepStarted {
                unit: u.clone(),
                path: path.clone(),
                label: (*label).into(),
                timeout: Duration::from_secs(90),
            });
            let output = (*outcome != StepOutcome::Passed).then(|| StepOutput {
                exit_code: Some(3),
                stdout: "inserted 1000 entries\nlookup failed".into(),
                stderr: "error: key 7 missing".into(),
                counters: None,
            });
            self.push(Event::StepFinished {
                unit: u.clone(),
                path,
                label: (*label).into(),
                outcome: outcome.clone(),
                duration: Duration::from_millis(1500),
                output,
            });
        }
        self
    }

    pub fn finish(
        &mut self,
        u: &UnitId,
        vm: &str,
        outcome: UnitOutcome,
        guest: &[&str],
    ) -> &mut Self {
        self.push(Event::UnitFinished {
            unit: u.clone(),
            vm: vm.into(),
            seed: self.fixed_seed.unwrap_or_else(|| seed_of(u)),
            outcome,
            duration: Duration::from_millis(4321),
            guest_junit: guest.iter().map(PathBuf::from).collect(),
        })
    }

    pub fn pass(&mut self, u: &UnitId, vm: &str) -> &mut Self {
        self.steps(
            u,
            vm,
            &[
                ("install driver", StepOutcome::Passed),
                ("stress maps", StepOutcome::Passed),
            ],
        )
        .finish(u, vm, UnitOutcome::Passed, &[])
    }

    /// A unit whose second step bugchecks, with the dump collected.
    pub fn crash(&mut self, u: &UnitId, vm: &str) -> &mut Self {
        let dump = format!(
            "{}/MEMORY.DMP",
            crate::results::RunDir::unit_rel(u).display()
        );
        let crash = page_fault_crash(&dump);
        self.steps(
            u,
            vm,
            &[
                ("install driver", StepOutcome::Passed),
                ("stress maps", StepOutcome::Crashed),
            ],
        )
        .push(Event::CrashDetected {
            unit: u.clone(),
            vm: vm.into(),
            crash: crash.clone(),
        })
        .push(Event::ArtifactCollected {
            unit: Some(u.clone()),
            vm: vm.into(),
            kind: ArtifactKind::Dump,
            path: dump.into(),
        })
        .finish(
            u,
            vm,
            UnitOutcome::Failed {
                message: "guest bugchecked during step steps[1] (stress maps)".into(),
                crash: Some(crash),
            },
            &[],
        )
    }

    pub fn end(&mut self, stats: RunStats, exit_code: i32, interrupted: bool) -> &mut Self {
        self.push(Event::RunFinished {
            elapsed: Duration::from_millis(65_432),
            stats,
            exit_code,
            interrupted,
        })
    }
}

/// Unit seeds derive from the run seed and the unit, as the runner's do.
pub fn seed_of(u: &UnitId) -> u64 {
    1000 + u64::from(u.iteration)
}

pub fn stats(
    units: usize,
    passed: usize,
    failed: usize,
    errored: usize,
    cancelled: usize,
    crashes: usize,
) -> RunStats {
    RunStats {
        units,
        passed,
        failed,
        errored,
        cancelled,
        crashes,
        retried: 0,
        flaky: 0,
        known: 0,
    }
}
