//! `summary.json`: the run in one machine-readable document (ids, counts, exit code, each
//! unit's outcome and crash, the crash buckets seen). Rewritten atomically after every
//! finished unit and at the end; `finished: false` marks a file left by a killed run.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::RunModel;
use super::{ReportError, Reporter, text};
use crate::events::{Crash, Envelope, RunStats, UnitId, UnitOutcome};
use crate::results::{RunDir, atomic_write};

/// Bumped when a field changes meaning or goes away (additions keep it).
pub const SUMMARY_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    pub run_id: String,
    pub lab: String,
    pub lab_kind: String,
    pub seed: u64,
    pub started_at: Option<DateTime<Utc>>,
    /// Seconds, when the run finished.
    pub elapsed_secs: Option<f64>,
    /// False in a file left behind by a run that was killed.
    pub finished: bool,
    pub interrupted: bool,
    /// The CLI's exit code (0, 1, 2, 3, 130), once known, and what it means.
    pub exit_code: Option<i32>,
    pub exit_meaning: Option<&'static str>,
    pub stats: RunStats,
    pub units: Vec<UnitSummary>,
    pub crash_buckets: Vec<BucketSummary>,
    pub infra_errors: Vec<String>,
    pub leftovers: Vec<Leftover>,
    /// Hyper-V hosts that took no more VMs (failed health check, or lost mid-run).
    pub hosts_drained: Vec<HostDrained>,
    /// Warnings that change no verdict (e.g. a corrupt bucket index moved aside).
    pub warnings: Vec<String>,
    /// Dumps of earlier runs removed by `--keep-dumps N`.
    pub dumps_removed: Vec<DumpsRemoved>,
}

#[derive(Debug, Serialize)]
pub struct HostDrained {
    pub host: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct DumpsRemoved {
    pub bucket: String,
    pub keep: usize,
    /// Relative to the results root.
    pub removed: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct UnitSummary {
    pub unit: UnitId,
    /// `passed`, `failed`, `errored`, `cancelled` or `not_run`.
    pub outcome: &'static str,
    pub message: Option<String>,
    pub vm: Option<String>,
    pub seed: Option<u64>,
    pub duration_secs: Option<f64>,
    pub crash: Option<Crash>,
    pub bucket: Option<String>,
    /// The deciding crash's folder (`crashes/<bucket>` or `crashes/untriaged`), relative
    /// to the run directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crash_dir: Option<PathBuf>,
    /// Per-unit results folder, relative to the run directory.
    pub dir: PathBuf,
    /// Earlier attempts that errored (the lab failed) and were run again on a fresh VM, or
    /// failed and were run again per `--retries` / `retries:`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<RetrySummary>,
    /// Failed, then passed on a retry (`outcome` is `passed`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub flaky: bool,
    /// A command that re-runs this unit with its seed (failed and errored units).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
}

/// An errored or failed attempt of a unit that was retried.
#[derive(Debug, Serialize)]
pub struct RetrySummary {
    pub attempt: u32,
    /// `errored` or `failed`.
    pub outcome: &'static str,
    pub vm: Option<String>,
    pub message: String,
    pub duration_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct BucketSummary {
    pub id: String,
    pub title: String,
    pub new: bool,
    /// The upstream issue tracking this crash (`known-issues.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_issue: Option<String>,
    pub count: usize,
    pub units: Vec<UnitId>,
    /// `crashes/<bucket>`, relative to the run directory.
    pub dir: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Leftover {
    pub what: String,
    pub how_to_remove: String,
}

/// Builds the summary document from the folded run.
pub fn build_summary(model: &RunModel) -> Summary {
    let units = model
        .units
        .iter()
        .map(|u| {
            let (outcome, message) = match &u.outcome {
                Some(UnitOutcome::Passed) => ("passed", None),
                Some(UnitOutcome::Failed { message, .. }) => ("failed", Some(message.clone())),
                Some(UnitOutcome::Errored { message, causes }) => {
                    ("errored", Some(UnitOutcome::error_text(message, causes)))
                }
                Some(UnitOutcome::Cancelled) => ("cancelled", None),
                None => ("not_run", None),
            };
            let crash = u.crash().cloned();
            UnitSummary {
                unit: u.id.clone(),
                outcome,
                message,
                vm: u.vm.clone(),
                seed: u.seed,
                duration_secs: u.duration.map(|d| d.as_secs_f64()),
                bucket: crash
                    .as_ref()
                    .and_then(|c| c.bucket.as_ref().map(|b| b.id.clone())),
                crash_dir: crash.as_ref().map(super::crash_folder),
                crash,
                dir: RunDir::unit_rel(&u.id),
                retries: u
                    .retries
                    .iter()
                    .map(|a| RetrySummary {
                        attempt: a.attempt,
                        outcome: if matches!(a.outcome, UnitOutcome::Failed { .. }) {
                            "failed"
                        } else {
                            "errored"
                        },
                        vm: a.vm.clone(),
                        message: match &a.outcome {
                            UnitOutcome::Errored { message, .. }
                            | UnitOutcome::Failed { message, .. } => message.clone(),
                            other => text::outcome_reason(other),
                        },
                        duration_secs: a.duration.as_secs_f64(),
                    })
                    .collect(),
                flaky: u.is_flaky(),
                replay: text::replay_command(model, u),
            }
        })
        .collect();
    let crash_buckets = model
        .buckets()
        .into_iter()
        .map(|b| BucketSummary {
            dir: RunDir::crash_rel(&b.bucket.id),
            id: b.bucket.id,
            title: b.bucket.title,
            new: b.bucket.new,
            known_issue: b.bucket.known_issue,
            count: b.count,
            units: b.units,
        })
        .collect();
    Summary {
        schema_version: SUMMARY_SCHEMA_VERSION,
        run_id: model.run.run_id.clone(),
        lab: model.run.lab.clone(),
        lab_kind: model.run.lab_kind.clone(),
        seed: model.run.seed,
        started_at: model.run.started_at,
        elapsed_secs: model.end.map(|e| e.elapsed.as_secs_f64()),
        finished: model.end.is_some(),
        interrupted: model.interrupted(),
        exit_code: model.end.map(|e| e.exit_code),
        exit_meaning: model.end.map(|e| text::exit_code_meaning(e.exit_code)),
        stats: model.stats(),
        units,
        crash_buckets,
        infra_errors: model
            .infra_errors
            .iter()
            .map(|(vm, m)| match vm {
                Some(vm) => format!("{vm}: {m}"),
                None => m.clone(),
            })
            .collect(),
        leftovers: model
            .leftovers
            .iter()
            .map(|(what, how)| Leftover {
                what: what.clone(),
                how_to_remove: how.clone(),
            })
            .collect(),
        hosts_drained: model
            .hosts_drained
            .iter()
            .map(|(host, reason)| HostDrained {
                host: host.clone(),
                reason: reason.clone(),
            })
            .collect(),
        warnings: model.warnings.clone(),
        dumps_removed: model
            .dumps_removed
            .iter()
            .map(|(bucket, keep, removed)| DumpsRemoved {
                bucket: bucket.clone(),
                keep: *keep,
                removed: removed.clone(),
            })
            .collect(),
    }
}

/// Writes `<results_dir>/summary.json`.
#[derive(Debug)]
pub struct SummaryReporter {
    path: PathBuf,
    model: RunModel,
    rewrites: super::Rewrites,
}

impl SummaryReporter {
    pub fn new(results_dir: &Path) -> Self {
        SummaryReporter {
            path: results_dir.join(RunDir::SUMMARY),
            model: RunModel::new(),
            rewrites: super::Rewrites::new(),
        }
    }
}

impl Reporter for SummaryReporter {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        self.model.apply(ev);
        if self.rewrites.due(&ev.event) {
            let mut json =
                serde_json::to_vec_pretty(&build_summary(&self.model)).map_err(|source| {
                    ReportError::Json {
                        what: "summary.json",
                        source,
                    }
                })?;
            json.push(b'\n');
            atomic_write(&self.path, &json)?;
        }
        Ok(())
    }
}
