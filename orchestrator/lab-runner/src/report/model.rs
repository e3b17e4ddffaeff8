//! The run as the file reporters see it: the event stream folded into per-unit records.
//!
//! junit.xml, summary.json, index.html and the terminal summary all render the same facts;
//! folding once here keeps them agreeing (same outcome, same crash, same bucket counts).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::events::{
    ArtifactKind, Bucket, Crash, Envelope, Event, RunStats, StepOutcome, StepOutput, UnitId,
    UnitOutcome,
};

/// Facts from `RunStarted`.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    pub run_id: String,
    pub lab: String,
    pub lab_kind: String,
    pub results_dir: PathBuf,
    pub seed: u64,
    pub max_vms: usize,
    pub started_at: Option<DateTime<Utc>>,
}

/// Facts from `RunFinished`.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd {
    pub elapsed: Duration,
    pub stats: RunStats,
    pub exit_code: i32,
    pub interrupted: bool,
}

/// One step of a unit, in start order.
#[derive(Debug, Clone)]
pub struct StepRecord {
    pub path: String,
    pub label: String,
    pub started_at: DateTime<Utc>,
    /// `None` while the step runs (or if the run ended under it).
    pub outcome: Option<StepOutcome>,
    pub duration: Option<Duration>,
    pub output: Option<StepOutput>,
}

/// An attempt of a unit that errored and was retried on a fresh VM.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// 1-based attempt number.
    pub attempt: u32,
    pub vm: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub steps: Vec<StepRecord>,
    pub outcome: UnitOutcome,
    pub duration: Duration,
}

/// Everything known about one unit.
#[derive(Debug, Clone)]
pub struct UnitRecord {
    pub id: UnitId,
    pub vm: Option<String>,
    pub seed: Option<u64>,
    pub started_at: Option<DateTime<Utc>>,
    pub steps: Vec<StepRecord>,
    /// Crashes in detection order (from `CrashDetected`, plus the outcome's crash if it was
    /// not announced separately).
    pub crashes: Vec<Crash>,
    pub artifacts: Vec<(ArtifactKind, PathBuf)>,
    /// `None` until `UnitFinished`.
    pub outcome: Option<UnitOutcome>,
    pub duration: Option<Duration>,
    pub guest_junit: Vec<PathBuf>,
    /// Earlier attempts that errored (the lab failed) before the one above, oldest first.
    pub retries: Vec<Attempt>,
}

impl UnitRecord {
    fn new(id: UnitId) -> Self {
        UnitRecord {
            id,
            vm: None,
            seed: None,
            started_at: None,
            steps: Vec::new(),
            crashes: Vec::new(),
            artifacts: Vec::new(),
            outcome: None,
            duration: None,
            guest_junit: Vec::new(),
            retries: Vec::new(),
        }
    }

    /// Failed, then passed on a retry.
    pub fn is_flaky(&self) -> bool {
        self.outcome.as_ref().is_some_and(UnitOutcome::is_pass)
            && self
                .retries
                .iter()
                .any(|a| matches!(a.outcome, UnitOutcome::Failed { .. }))
    }

    /// Run again after an infrastructure error (an errored attempt).
    pub fn retried_after_error(&self) -> bool {
        self.retries
            .iter()
            .any(|a| matches!(a.outcome, UnitOutcome::Errored { .. }))
    }

    /// The crash that decided the unit: the outcome's, else the last one detected.
    pub fn crash(&self) -> Option<&Crash> {
        match &self.outcome {
            Some(UnitOutcome::Failed {
                crash: Some(crash), ..
            }) => Some(crash),
            _ => self.crashes.last(),
        }
    }

    /// Every file attached to the unit (artifacts and dump files), deduplicated, relative
    /// to the results directory.
    pub fn attachments(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        let dumps = self.crashes.iter().flat_map(|c| c.dumps.iter());
        for p in self.artifacts.iter().map(|(_, p)| p).chain(dumps) {
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }
}

/// A crash bucket with the units it was seen in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSeen {
    pub bucket: Bucket,
    pub count: usize,
    pub units: Vec<UnitId>,
}

/// The folded run.
#[derive(Debug, Clone, Default)]
pub struct RunModel {
    pub run: RunInfo,
    /// Units in plan order, then any unplanned unit in order of appearance.
    pub units: Vec<UnitRecord>,
    index: HashMap<UnitId, usize>,
    /// A Ctrl-C arrived (even if `RunFinished` has not come yet).
    pub interrupt_requested: bool,
    pub infra_errors: Vec<(Option<String>, String)>,
    pub leftovers: Vec<(String, String)>,
    /// `HostDrained` events: host and why, in order.
    pub hosts_drained: Vec<(String, String)>,
    /// `Warning` events, in order.
    pub warnings: Vec<String>,
    /// `DumpsRemoved` events: bucket, `--keep-dumps` N, paths relative to the results root.
    pub dumps_removed: Vec<(String, usize, Vec<PathBuf>)>,
    /// Artifacts that belong to no unit (e.g. a VM's boot log).
    pub run_artifacts: Vec<(ArtifactKind, PathBuf)>,
    pub end: Option<RunEnd>,
}

impl RunModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event in.
    pub fn apply(&mut self, env: &Envelope) {
        let at = env.at;
        match &env.event {
            Event::RunStarted {
                run_id,
                lab,
                lab_kind,
                results_dir,
                units,
                seed,
                max_vms,
            } => {
                self.run = RunInfo {
                    run_id: run_id.clone(),
                    lab: lab.clone(),
                    lab_kind: lab_kind.clone(),
                    results_dir: results_dir.clone(),
                    seed: *seed,
                    max_vms: *max_vms,
                    started_at: Some(at),
                };
                for u in units {
                    self.unit_mut(u);
                }
            }
            Event::UnitStarted { unit, vm, seed } => {
                let r = self.unit_mut(unit);
                r.vm = Some(vm.clone());
                r.seed = Some(*seed);
                r.started_at = Some(at);
            }
            Event::StepStarted {
                unit, path, label, ..
            } => self.unit_mut(unit).steps.push(StepRecord {
                path: path.clone(),
                label: label.clone(),
                started_at: at,
                outcome: None,
                duration: None,
                output: None,
            }),
            Event::StepFinished {
                unit,
                path,
                label,
                outcome,
                duration,
                output,
            } => {
                let r = self.unit_mut(unit);
                // The latest unfinished step with this path (a step may repeat in a loop).
                let step = r
                    .steps
                    .iter_mut()
                    .rev()
                    .find(|s| s.path == *path && s.outcome.is_none());
                let step = match step {
                    Some(s) => s,
                    None => {
                        let started_at =
                            at - chrono::Duration::from_std(*duration).unwrap_or_default();
                        r.steps.push(StepRecord {
                            path: path.clone(),
                            label: label.clone(),
                            started_at,
                            outcome: None,
                            duration: None,
                            output: None,
                        });
                        r.steps.last_mut().expect("just pushed")
                    }
                };
                step.outcome = Some(outcome.clone());
                step.duration = Some(*duration);
                step.output = output.clone();
            }
            Event::CrashDetected { unit, vm, crash } => {
                let r = self.unit_mut(unit);
                r.vm.get_or_insert_with(|| vm.clone());
                r.crashes.push(crash.clone());
            }
            Event::ArtifactCollected {
                unit, kind, path, ..
            } => match unit {
                Some(u) => self.unit_mut(u).artifacts.push((*kind, path.clone())),
                None => self.run_artifacts.push((*kind, path.clone())),
            },
            Event::UnitFinished {
                unit,
                vm,
                seed,
                outcome,
                duration,
                guest_junit,
            } => {
                let r = self.unit_mut(unit);
                r.vm = Some(vm.clone());
                r.seed = Some(*seed);
                if let UnitOutcome::Failed {
                    crash: Some(crash), ..
                } = outcome
                    && !r.crashes.contains(crash)
                {
                    r.crashes.push(crash.clone());
                }
                r.outcome = Some(outcome.clone());
                r.duration = Some(*duration);
                r.guest_junit = guest_junit.clone();
            }
            Event::UnitRetried {
                unit,
                vm,
                attempt,
                outcome,
                duration,
            } => {
                let r = self.unit_mut(unit);
                // The next attempt starts a fresh timeline; artifacts stay with the unit so
                // the errored attempt's files remain attached.
                let steps = std::mem::take(&mut r.steps);
                let started_at = r.started_at.take();
                r.retries.push(Attempt {
                    attempt: *attempt,
                    vm: Some(vm.clone()),
                    started_at,
                    steps,
                    outcome: outcome.clone(),
                    duration: *duration,
                });
            }
            Event::InfraError {
                vm,
                message,
                causes,
            } => {
                let text = UnitOutcome::error_text(message, causes);
                self.infra_errors.push((vm.clone(), text));
                // Only a results file failing at the very end comes after `RunFinished`;
                // the runner then exits 3: the results on disk are incomplete.
                if let Some(end) = &mut self.end
                    && matches!(end.exit_code, 0 | 1)
                {
                    end.exit_code = i32::from(crate::exit::INFRA_ERROR);
                }
            }
            Event::Warning { message } => self.warnings.push(message.clone()),
            Event::DumpsRemoved {
                bucket,
                keep,
                removed,
            } => self
                .dumps_removed
                .push((bucket.clone(), *keep, removed.clone())),
            Event::Interrupted { .. } => self.interrupt_requested = true,
            Event::Leftover {
                what,
                how_to_remove,
            } => self.leftovers.push((what.clone(), how_to_remove.clone())),
            Event::HostDrained { host, reason } => {
                self.hosts_drained.push((host.clone(), reason.clone()))
            }
            Event::RunFinished {
                elapsed,
                stats,
                exit_code,
                interrupted,
            } => {
                self.end = Some(RunEnd {
                    elapsed: *elapsed,
                    stats: *stats,
                    exit_code: *exit_code,
                    interrupted: *interrupted,
                });
            }
            Event::VmProvisioning { .. }
            | Event::VmReady { .. }
            | Event::VmDeployed { .. }
            | Event::VmRemoved { .. } => {}
        }
    }

    fn unit_mut(&mut self, id: &UnitId) -> &mut UnitRecord {
        let i = match self.index.get(id) {
            Some(&i) => i,
            None => {
                self.units.push(UnitRecord::new(id.clone()));
                self.index.insert(id.clone(), self.units.len() - 1);
                self.units.len() - 1
            }
        };
        &mut self.units[i]
    }

    pub fn unit(&self, id: &UnitId) -> Option<&UnitRecord> {
        self.index.get(id).map(|&i| &self.units[i])
    }

    /// True when the run was interrupted, or has not finished (a file written now and
    /// left behind by a killed run must not claim the run was complete).
    pub fn interrupted(&self) -> bool {
        match self.end {
            Some(end) => end.interrupted,
            None => true,
        }
    }

    /// The run's stats: `RunFinished`'s when there, else counted from the units so far.
    pub fn stats(&self) -> RunStats {
        if let Some(end) = self.end {
            return end.stats;
        }
        let mut s = RunStats {
            units: self.units.len(),
            ..RunStats::default()
        };
        for u in &self.units {
            match &u.outcome {
                Some(UnitOutcome::Passed) => s.passed += 1,
                Some(UnitOutcome::Failed { .. }) => s.failed += 1,
                Some(UnitOutcome::Errored { .. }) => s.errored += 1,
                Some(UnitOutcome::Cancelled) => s.cancelled += 1,
                None => {}
            }
            s.crashes += u.crashes.len();
            s.retried += usize::from(u.retried_after_error());
            s.flaky += usize::from(u.is_flaky());
        }
        s
    }

    /// Units that never finished (not started, or the run stopped under them).
    pub fn unfinished(&self) -> impl Iterator<Item = &UnitRecord> {
        self.units.iter().filter(|u| u.outcome.is_none())
    }

    /// Units that failed or errored, in unit order.
    pub fn failed(&self) -> impl Iterator<Item = &UnitRecord> {
        self.units.iter().filter(|u| {
            matches!(
                u.outcome,
                Some(UnitOutcome::Failed { .. } | UnitOutcome::Errored { .. })
            )
        })
    }

    /// Crash buckets in order of first appearance; crashes without a bucket are left out.
    pub fn buckets(&self) -> Vec<BucketSeen> {
        let mut out: Vec<BucketSeen> = Vec::new();
        for u in &self.units {
            for b in u.crashes.iter().filter_map(|c| c.bucket.as_ref()) {
                let seen = match out.iter_mut().position(|s| s.bucket.id == b.id) {
                    Some(i) => &mut out[i],
                    None => {
                        out.push(BucketSeen {
                            bucket: b.clone(),
                            count: 0,
                            units: Vec::new(),
                        });
                        out.last_mut().expect("just pushed")
                    }
                };
                seen.count += 1;
                if !seen.units.contains(&u.id) {
                    seen.units.push(u.id.clone());
                }
            }
        }
        out
    }
}
