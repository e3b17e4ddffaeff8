//! `repro.json`: the repro run in one document (settings, jitter plan, rates per bucket
//! with their replay commands, every iteration's seed and timeline). Its summary part also
//! goes into `summary.json` as the `repro` section. `--replay RUN/ITERATION` reads it back.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::jitter::JitterPlan;
use super::search::Learned;
use super::state::{IterationRecord, Mode, State, Until};
use super::stats::Rate;

/// Bumped when a field changes meaning or goes away (additions keep it).
pub const REPRO_SCHEMA_VERSION: u32 = 1;
/// File name in the run directory.
pub const REPRO_FILE: &str = "repro.json";

/// Rates and evidence of one bucket.
#[derive(Debug, Clone, Serialize)]
pub struct BucketReport {
    pub id: String,
    pub title: String,
    /// The issue `known-issues.yaml` names for the bucket, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_issue: Option<String>,
    pub failures: usize,
    /// Over every completed iteration.
    pub rate: Rate,
    /// Over the iterations whose timing was spread evenly (not aimed at earlier failures).
    pub explore_rate: Rate,
    pub first_iteration: u32,
    pub first_seed: u64,
    /// The failing iteration whose moment is the median of the bucket's: the one the
    /// replay command names (a central moment replays more surely than an edge one).
    pub replay_iteration: u32,
    /// Iterations kept in full, and how many more were only counted.
    pub kept: Vec<u32>,
    pub counted: usize,
    /// Delays (ms) of the failing iterations: where in the race window it fails.
    pub moments_ms: Vec<f64>,
    pub replay: String,
}

/// The summary part (also `summary.json`'s `repro` section).
#[derive(Debug, Clone, Serialize)]
pub struct ReproSection {
    pub schema_version: u32,
    pub scenario: String,
    pub scenario_file: PathBuf,
    pub run_seed: u64,
    /// `search` or `replay`.
    pub mode: &'static str,
    pub replay_seed: Option<u64>,
    pub until: Until,
    pub max_iterations: u32,
    pub max_time_secs: Option<f64>,
    pub keep: usize,
    pub vms: usize,
    pub jitter: Option<JitterPlan>,
    pub learned: Learned,
    pub started: u32,
    pub completed: usize,
    pub passed: usize,
    pub failed: usize,
    pub errored: usize,
    pub cancelled: usize,
    pub elapsed_secs: f64,
    pub iterations_per_minute: f64,
    pub time_to_first_failure_secs: Option<f64>,
    pub first_failure_iteration: Option<u32>,
    /// Any failure, over completed iterations.
    pub failure_rate: Rate,
    pub buckets: Vec<BucketReport>,
    /// Why no more iterations started (absent while running or when interrupted first).
    pub stopped: Option<String>,
}

/// The whole `repro.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ReproFile {
    #[serde(flatten)]
    pub section: ReproSection,
    pub iterations: Vec<IterationRecord>,
}

/// The summary of the state as it is now.
pub fn section(s: &State) -> ReproSection {
    let count = |w: &str| s.iterations.values().filter(|r| r.outcome == w).count();
    let buckets = s
        .buckets
        .iter()
        .map(|(id, t)| {
            let (rate, explore_rate) = s.rates(id);
            let first = t.iterations[0];
            let replay_iteration = representative(s, &t.iterations);
            let kept: Vec<u32> = t.iterations.iter().copied().take(s.cfg.keep).collect();
            BucketReport {
                id: id.clone(),
                title: t.title.clone(),
                known_issue: t.known_issue.clone(),
                failures: t.iterations.len(),
                rate,
                explore_rate,
                first_iteration: first,
                first_seed: s.iterations.get(&first).map_or(0, |r| r.seed),
                counted: t.iterations.len() - kept.len(),
                kept,
                moments_ms: t
                    .iterations
                    .iter()
                    .filter_map(|i| s.iterations.get(i)?.delay_ms)
                    .collect(),
                replay: s.replay_command(replay_iteration),
                replay_iteration,
            }
        })
        .collect();
    let (mode, replay_seed) = match &s.cfg.mode {
        Mode::Search => ("search", None),
        Mode::Replay { seed, .. } => ("replay", Some(*seed)),
    };
    ReproSection {
        schema_version: REPRO_SCHEMA_VERSION,
        scenario: s.cfg.scenario.name.clone(),
        scenario_file: s.cfg.scenario.file.to_path_buf(),
        run_seed: s.cfg.run_seed,
        mode,
        replay_seed,
        until: s.cfg.until,
        max_iterations: s.cfg.max_iterations,
        max_time_secs: s.cfg.max_time.map(|d| d.as_secs_f64()),
        keep: s.cfg.keep,
        vms: s.vms,
        jitter: s.plan.clone(),
        learned: s.learned(),
        started: s.iterations.len() as u32,
        completed: s.completed().count(),
        passed: count("passed"),
        failed: count("failed"),
        errored: count("errored"),
        cancelled: count("cancelled"),
        elapsed_secs: s.started.elapsed().as_secs_f64(),
        iterations_per_minute: s.per_minute(),
        time_to_first_failure_secs: s.first_failure.map(|(_, d)| d.as_secs_f64()),
        first_failure_iteration: s.first_failure.map(|(i, _)| i),
        failure_rate: s.failure_rate(),
        buckets,
        stopped: s.stop.as_ref().map(ToString::to_string),
    }
}

/// The failing iteration of a bucket with the median delay (the first without delays).
fn representative(s: &State, iterations: &[u32]) -> u32 {
    let mut timed: Vec<(f64, u32)> = iterations
        .iter()
        .filter_map(|i| Some((s.iterations.get(i)?.delay_ms?, *i)))
        .collect();
    if timed.is_empty() {
        return iterations[0];
    }
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    timed[(timed.len() - 1) / 2].1
}

/// The whole file.
pub fn file(s: &State) -> ReproFile {
    ReproFile {
        section: section(s),
        iterations: s.iterations.values().cloned().collect(),
    }
}

/// What `--replay` needs from a recorded run.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedRun {
    pub scenario: String,
    pub scenario_file: PathBuf,
    pub run_seed: u64,
    pub iterations: Vec<IterationRecord>,
}

/// Why a recorded iteration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "parse the replay reference `{0}`: expected <run>/<iteration>, e.g. 20250304-050607-1a2b/7"
    )]
    Reference(String),
    #[error("read {} (is `{run}` a repro run? only `hvlab repro` writes {REPRO_FILE})", path.display())]
    Read {
        run: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("find iteration {iteration} in {}: the run recorded iterations {range}", path.display())]
    NoIteration {
        iteration: u32,
        path: PathBuf,
        range: String,
    },
}

/// Splits `RUN/ITERATION` (`ITERATION` may be written `iter-7`); `RUN` is a run directory,
/// or a run id under `results_root`.
pub fn locate(reference: &str, results_root: &Path) -> Result<(PathBuf, u32), RecordError> {
    let bad = || RecordError::Reference(reference.to_owned());
    let (run, it) = reference
        .trim_end_matches('/')
        .rsplit_once('/')
        .ok_or_else(bad)?;
    let it = it.strip_prefix("iter-").unwrap_or(it);
    let iteration: u32 = it.parse().map_err(|_| bad())?;
    if run.is_empty() || iteration == 0 {
        return Err(bad());
    }
    let as_path = PathBuf::from(run);
    let dir = if as_path.is_dir() {
        as_path
    } else {
        results_root.join(run)
    };
    Ok((dir, iteration))
}

/// Reads the record of `iteration` from the run directory `dir`.
pub fn load(dir: &Path, iteration: u32) -> Result<(RecordedRun, IterationRecord), RecordError> {
    let path = dir.join(REPRO_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| RecordError::Read {
        run: dir.display().to_string(),
        path: path.clone(),
        source,
    })?;
    let rec: RecordedRun = serde_json::from_str(&text).map_err(|source| RecordError::Parse {
        path: path.clone(),
        source,
    })?;
    let found = rec
        .iterations
        .iter()
        .find(|r| r.iteration == iteration)
        .cloned();
    match found {
        Some(r) => Ok((rec, r)),
        None => {
            let range = match (rec.iterations.first(), rec.iterations.last()) {
                (Some(a), Some(b)) => format!("{}..={}", a.iteration, b.iteration),
                _ => "none".into(),
            };
            Err(RecordError::NoIteration {
                iteration,
                path,
                range,
            })
        }
    }
}
