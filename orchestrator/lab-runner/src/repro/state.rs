//! The state of one repro run, shared by the unit source (workers ask it for the next
//! iteration and tell it outcomes) and the repro reporter (which feeds it step timelines
//! and renders it): iteration records, bucket tallies, the search and the stop decision.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab_config::Scenario;
use serde::{Deserialize, Serialize};

use super::jitter::JitterPlan;
use super::search::{Learned, Observation, Phase, Search, ms};
use super::stats::Rate;
use crate::events::{CrashKind, UnitId, UnitOutcome};
use crate::results::RunDir;
use crate::seed;
use crate::unit::UnitPlan;

/// When to stop looking (besides the iteration and time budgets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Until {
    /// At the first failed iteration.
    First,
    /// After this many failed iterations.
    Failures(u32),
    /// Only when a budget ends.
    Budget,
}

/// A `--until` value that is not a stop rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected `first`, `N-failures` (e.g. `5-failures`) or `budget`, got `{0}`")]
pub struct BadUntil(pub String);

impl std::str::FromStr for Until {
    type Err = BadUntil;

    /// `first`, `N-failures` (or just `N`), `budget`.
    fn from_str(s: &str) -> Result<Self, BadUntil> {
        let bad = || BadUntil(s.to_owned());
        match s {
            "first" => Ok(Until::First),
            "budget" => Ok(Until::Budget),
            _ => {
                let n = s.strip_suffix("-failures").unwrap_or(s);
                match n.parse::<u32>() {
                    Ok(0) | Err(_) => Err(bad()),
                    Ok(n) => Ok(Until::Failures(n)),
                }
            }
        }
    }
}

impl std::fmt::Display for Until {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Until::First => f.write_str("first"),
            Until::Failures(n) => write!(f, "{n}-failures"),
            Until::Budget => f.write_str("budget"),
        }
    }
}

/// Search for failures, or re-run one recorded seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Search,
    Replay {
        seed: u64,
        template: String,
        times: u32,
    },
}

/// The fixed settings of a repro run.
#[derive(Debug, Clone)]
pub struct Config {
    pub scenario: Scenario,
    pub run_seed: u64,
    pub max_iterations: u32,
    pub max_time: Option<Duration>,
    pub until: Until,
    /// Failed iterations kept in full per bucket; later ones lose their dumps.
    pub keep: usize,
    pub mode: Mode,
    /// Prefix of replay commands, e.g. `hvlab repro --replay`.
    pub replay_prefix: String,
}

/// Why no more iterations were started.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Stop {
    Failures { failures: u32 },
    MaxIterations { iterations: u32 },
    MaxTime { secs: f64 },
    ReplaysDone { times: u32 },
    LabErrors { in_a_row: u32 },
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Failures { failures: 1 } => f.write_str("the first failure (--until first)"),
            Stop::Failures { failures } => write!(f, "{failures} failures (--until)"),
            Stop::MaxIterations { iterations } => {
                write!(f, "the iteration budget ({iterations}, --max-iterations)")
            }
            Stop::MaxTime { secs } => write!(f, "the time budget ({secs:.0}s, --max-time)"),
            Stop::ReplaysDone { times } => write!(f, "{times} replays done"),
            Stop::LabErrors { in_a_row } => {
                write!(f, "the lab failed {in_a_row} iterations in a row")
            }
        }
    }
}

/// Lab errors in a row after which repro stops (a broken lab is not a race).
const MAX_ERRORS_IN_A_ROW: u32 = 3;

/// What happened to the evidence of an iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Evidence {
    /// Nothing to keep (passed, running, cancelled).
    None,
    /// Seed, timeline, logs, dumps and bucket kept.
    Full,
    /// Beyond `--keep` for its bucket: dumps removed; seed, timeline, logs, bucket kept.
    Counted,
}

/// One iteration as `repro.json` records it (everything `--replay` needs, and why it ran
/// at the moment it did).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IterationRecord {
    pub iteration: u32,
    pub template: String,
    pub seed: u64,
    pub phase: Phase,
    /// The delay the search aimed at and the one the seed gives (ms after the parallel).
    pub target_ms: Option<f64>,
    pub delay_ms: Option<f64>,
    /// `running`, `passed`, `failed`, `errored` or `cancelled`.
    pub outcome: String,
    pub bucket: Option<String>,
    pub bucket_title: Option<String>,
    pub message: Option<String>,
    /// Timeline: when the disruptive step started and when workload tools ran (ms after
    /// the racing parallel started).
    pub stop_at_ms: Option<f64>,
    pub workload_ms: Vec<(f64, f64)>,
    pub duration_secs: Option<f64>,
    /// Seconds from the start of the repro to the end of this iteration.
    pub finished_after_secs: Option<f64>,
    pub evidence: Evidence,
    /// Results folder of the iteration, relative to the run directory.
    pub dir: PathBuf,
}

/// Failures of one bucket.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub title: String,
    /// The issue `known-issues.yaml` names for the bucket.
    pub known_issue: Option<String>,
    pub iterations: Vec<u32>,
}

/// The shared state.
#[derive(Debug)]
pub struct State {
    pub cfg: Config,
    pub plan: Option<JitterPlan>,
    search: Search,
    pub started: Instant,
    pub iterations: BTreeMap<u32, IterationRecord>,
    issued: u32,
    pub first_failure: Option<(u32, Duration)>,
    pub stop: Option<Stop>,
    errors_in_row: u32,
    pub buckets: BTreeMap<String, Tally>,
    /// The run id, once known (replay commands name it).
    pub run_id: String,
    pub vms: usize,
    /// Marks known buckets (`known-issues.yaml`).
    pub known: crate::known::KnownSettings,
}

impl State {
    pub fn new(cfg: Config, run_id: String, vms: usize) -> Self {
        let plan = JitterPlan::analyze(&cfg.scenario);
        State {
            search: Search::new(cfg.run_seed),
            cfg,
            plan,
            started: Instant::now(),
            iterations: BTreeMap::new(),
            issued: 0,
            first_failure: None,
            stop: None,
            errors_in_row: 0,
            buckets: BTreeMap::new(),
            run_id,
            vms,
            known: crate::known::KnownSettings::default(),
        }
    }

    /// What the search has measured so far.
    pub fn learned(&self) -> Learned {
        let Some(plan) = &self.plan else {
            return Learned::default();
        };
        let obs: Vec<Observation> = self
            .iterations
            .values()
            .filter(|r| r.outcome != "running")
            .map(observation)
            .collect();
        Learned::from(plan, &obs.iter().collect::<Vec<_>>())
    }

    /// The next iteration, or `None` once a stop condition holds.
    pub fn next(&mut self, template: Option<&str>) -> Option<UnitPlan> {
        if self.stop.is_some() {
            return None;
        }
        if let Mode::Replay { times, .. } = self.cfg.mode
            && self.issued >= times
        {
            self.stop = Some(Stop::ReplaysDone { times });
            return None;
        }
        if self.issued >= self.cfg.max_iterations {
            self.stop = Some(Stop::MaxIterations {
                iterations: self.cfg.max_iterations,
            });
            return None;
        }
        if let Some(limit) = self.cfg.max_time
            && self.started.elapsed() >= limit
        {
            self.stop = Some(Stop::MaxTime {
                secs: limit.as_secs_f64(),
            });
            return None;
        }
        self.issued += 1;
        let iteration = self.issued;
        let templates = &self.cfg.scenario.vms;
        let template = match (&self.cfg.mode, template) {
            (Mode::Replay { template, .. }, _) => template.clone(),
            (_, Some(t)) if templates.iter().any(|x| x == t) => t.to_owned(),
            _ => templates[(iteration as usize - 1) % templates.len()].clone(),
        };
        let id = UnitId {
            scenario: self.cfg.scenario.name.clone(),
            template: template.clone(),
            iteration,
        };
        let (phase, target, unit_seed) = match (&self.cfg.mode, &self.plan) {
            (Mode::Replay { seed, .. }, _) => (Phase::Replay, None, *seed),
            (Mode::Search, Some(plan)) => {
                let learned = self.learned();
                let failures: Vec<(String, f64)> = self
                    .iterations
                    .values()
                    .filter_map(|r| Some((r.bucket.clone()?, r.delay_ms?)))
                    .collect();
                let (phase, target) = self.search.next(plan, &learned, &failures);
                let tolerance = ((plan.max - plan.min) / 1000).max(Duration::from_micros(20));
                let target_d = Duration::from_secs_f64(target.max(0.0) / 1000.0);
                let s = plan.pick_seed(self.cfg.run_seed, &id, target_d, tolerance);
                (phase, Some(target), s)
            }
            (Mode::Search, None) => (Phase::Random, None, seed::unit_seed(self.cfg.run_seed, &id)),
        };
        self.iterations.insert(
            iteration,
            IterationRecord {
                iteration,
                template,
                seed: unit_seed,
                phase,
                target_ms: target,
                delay_ms: self.plan.as_ref().map(|p| ms(p.delay(unit_seed))),
                outcome: "running".into(),
                bucket: None,
                bucket_title: None,
                message: None,
                stop_at_ms: None,
                workload_ms: Vec::new(),
                duration_secs: None,
                finished_after_secs: None,
                evidence: Evidence::None,
                dir: RunDir::unit_rel(&id),
            },
        );
        Some(UnitPlan {
            id,
            scenario: 0,
            seed: unit_seed,
        })
    }

    /// Records an outcome and decides whether to stop.
    pub fn finished(&mut self, unit: &UnitPlan, outcome: &UnitOutcome) {
        let elapsed = self.started.elapsed();
        let Some(r) = self.iterations.get_mut(&unit.id.iteration) else {
            return;
        };
        r.finished_after_secs = Some(elapsed.as_secs_f64());
        let (word, message) = match outcome {
            UnitOutcome::Passed => ("passed", None),
            UnitOutcome::Failed { message, .. } => ("failed", Some(message.clone())),
            UnitOutcome::Errored { message, causes } => {
                ("errored", Some(UnitOutcome::error_text(message, causes)))
            }
            UnitOutcome::Cancelled => ("cancelled", None),
        };
        r.outcome = word.into();
        r.message = message;
        if matches!(outcome, UnitOutcome::Errored { .. }) {
            self.errors_in_row += 1;
            if self.errors_in_row >= MAX_ERRORS_IN_A_ROW && self.stop.is_none() {
                self.stop = Some(Stop::LabErrors {
                    in_a_row: self.errors_in_row,
                });
            }
        } else if !matches!(outcome, UnitOutcome::Cancelled) {
            self.errors_in_row = 0;
        }
        let Some((key, title)) = failure_key(outcome) else {
            return;
        };
        r.bucket = Some(key.clone());
        r.bucket_title = Some(title.clone());
        let known_issue = self.known.issues.as_ref().and_then(|k| {
            k.find(&key, &title, self.known.today)
                .map(|e| e.issue.clone())
        });
        let tally = self.buckets.entry(key).or_default();
        tally.title = title;
        tally.known_issue = known_issue;
        tally.iterations.push(unit.id.iteration);
        if self.first_failure.is_none() {
            self.first_failure = Some((unit.id.iteration, elapsed));
        }
        let failures: u32 = self
            .buckets
            .values()
            .map(|t| t.iterations.len() as u32)
            .sum();
        let enough = match self.cfg.until {
            Until::First => failures >= 1,
            Until::Failures(n) => failures >= n,
            Until::Budget => false,
        };
        if enough && self.stop.is_none() && !matches!(self.cfg.mode, Mode::Replay { .. }) {
            self.stop = Some(Stop::Failures { failures });
        }
    }

    /// Iterations that ran to a verdict (passed or failed): the denominator of rates.
    pub fn completed(&self) -> impl Iterator<Item = &IterationRecord> {
        self.iterations
            .values()
            .filter(|r| r.outcome == "passed" || r.outcome == "failed")
    }

    /// Failure rate of `bucket` over all completed iterations, and over the ones whose
    /// timing was spread evenly (explore / random / replay), which the aimed ones bias.
    pub fn rates(&self, bucket: &str) -> (Rate, Rate) {
        let hit = |r: &&&IterationRecord| r.bucket.as_deref() == Some(bucket);
        let all: Vec<&IterationRecord> = self.completed().collect();
        let even: Vec<&IterationRecord> = all
            .iter()
            .copied()
            .filter(|r| r.phase != Phase::Exploit)
            .collect();
        (
            Rate::new(all.iter().filter(hit).count() as u64, all.len() as u64),
            Rate::new(even.iter().filter(hit).count() as u64, even.len() as u64),
        )
    }

    /// Any failure at all, over completed iterations.
    pub fn failure_rate(&self) -> Rate {
        let all: Vec<&IterationRecord> = self.completed().collect();
        let failed = all.iter().filter(|r| r.outcome == "failed").count();
        Rate::new(failed as u64, all.len() as u64)
    }

    /// Completed iterations per minute since the repro started.
    pub fn per_minute(&self) -> f64 {
        let mins = self.started.elapsed().as_secs_f64() / 60.0;
        if mins <= 0.0 {
            0.0
        } else {
            self.completed().count() as f64 / mins
        }
    }

    /// The command that replays `iteration` of this run.
    pub fn replay_command(&self, iteration: u32) -> String {
        format!("{} {}/{iteration}", self.cfg.replay_prefix, self.run_id)
    }
}

/// What a finished record tells the search.
fn observation(r: &IterationRecord) -> Observation {
    Observation {
        delay_ms: r.delay_ms,
        stop_at_ms: r.stop_at_ms,
        workload_ms: r.workload_ms.clone(),
        bucket: r.bucket.clone(),
    }
}

/// The bucket of a failed iteration: the crash bucket from triage, else the bugcheck code
/// or crash kind, else the failure message with numbers masked (so "ops = 17" and
/// "ops = 18" are one failure).
pub fn failure_key(outcome: &UnitOutcome) -> Option<(String, String)> {
    let UnitOutcome::Failed { message, crash } = outcome else {
        return None;
    };
    Some(match crash {
        Some(c) => match (&c.bucket, &c.bugcheck) {
            (Some(b), _) => (b.id.clone(), b.title.clone()),
            (None, Some(bc)) => (
                format!("bugcheck-{:#x}", bc.code),
                bc.name
                    .clone()
                    .unwrap_or_else(|| format!("bugcheck {:#x}", bc.code)),
            ),
            (None, None) => {
                let kind = match c.kind {
                    CrashKind::Bugcheck => "bugcheck",
                    CrashKind::Hang => "hang",
                    CrashKind::ConnectionLost => "connection-lost",
                    CrashKind::HeartbeatLost => "heartbeat-lost",
                };
                (kind.to_owned(), format!("{kind} without a dump"))
            }
        },
        None => {
            let first = message.lines().next().unwrap_or_default();
            let masked: String = first
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .take(120)
                .collect();
            let h = masked.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
            (format!("failure-{:08x}", h as u32), masked)
        }
    })
}
