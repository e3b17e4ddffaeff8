//! Where a scenario's timing can be varied: the random sleeps that decide when its
//! disruptive step (driver stop / restart, reboot) fires against the workload running in
//! the other branches of the same `parallel`, and how a seed is chosen that makes those
//! sleeps add up to a wanted moment.
//!
//! The seed stays the only input of an iteration: repro never overrides a sleep, it picks
//! (from candidates derived from the run seed) a unit seed whose own seeded draws land the
//! disruptive step where the search wants it. So `--replay` of that seed replays the same
//! timing through the normal executor, and `hvlab run` is untouched.

use std::time::Duration;

use lab_config::{Scenario, SleepSpec, Step, StepKind};
use rand::RngCore;
use serde::Serialize;

use crate::events::UnitId;
use crate::exec::sleep_duration;
use crate::seed;

/// How many candidate seeds [`JitterPlan::pick_seed`] tries before taking the closest.
pub const MAX_CANDIDATES: usize = 4096;

/// The timing knob of a scenario, found by [`JitterPlan::analyze`].
#[derive(Debug, Clone, Serialize)]
pub struct JitterPlan {
    /// The `parallel` step whose branches race (`steps[0]`).
    pub parallel: String,
    /// The branch holding the disruptive step (`steps[0].parallel[1]`).
    pub branch: String,
    /// The first disruptive step of that branch and its label.
    pub disruptive: String,
    pub disruptive_label: String,
    /// The sleeps before it on its branch (at least one random), by executor path.
    #[serde(skip)]
    pub sleeps: Vec<(String, SleepSpec)>,
    /// Range of the summed sleeps: the moment (after the parallel starts) the disruptive
    /// step can fire, give or take the step latency.
    #[serde(with = "humantime_serde")]
    pub min: Duration,
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Where the scenario itself says workload tools start (ms after the parallel starts:
    /// the fixed sleeps before them on their branches), for aiming before anything is
    /// measured.
    pub predicted_ms: Vec<f64>,
}

/// A leaf of one branch in execution order (first round of repeats), with its path.
fn linearize<'s>(step: &'s Step, path: String, out: &mut Vec<(String, &'s Step)>) {
    match &step.kind {
        StepKind::Sequence(children) => {
            for (i, c) in children.iter().enumerate() {
                linearize(c, format!("{path}.sequence[{i}]"), out);
            }
        }
        StepKind::Repeat { steps, .. } => {
            for (i, c) in steps.iter().enumerate() {
                linearize(c, format!("{path}.repeat[0][{i}]"), out);
            }
        }
        _ => out.push((path, step)),
    }
}

fn is_disruptive(step: &Step) -> bool {
    matches!(
        step.kind,
        StepKind::DriverStop(_) | StepKind::DriverRestart(_) | StepKind::Reboot { .. }
    )
}

impl JitterPlan {
    /// Finds the first `parallel` (in setup or steps, nested ones too) with a branch whose
    /// first disruptive step is preceded by at least one random sleep. `None` when the
    /// scenario has no such race: repro then just varies the seed.
    pub fn analyze(scenario: &Scenario) -> Option<JitterPlan> {
        let tops = scenario
            .setup
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("setup[{i}]"), s))
            .chain(
                scenario
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("steps[{i}]"), s)),
            );
        for (path, step) in tops {
            if let Some(p) = Self::find(step, &path) {
                return Some(p);
            }
        }
        None
    }

    fn find(step: &Step, path: &str) -> Option<JitterPlan> {
        match &step.kind {
            StepKind::Parallel(branches) => {
                for (i, b) in branches.iter().enumerate() {
                    let branch = format!("{path}.parallel[{i}]");
                    let mut leaves = Vec::new();
                    linearize(b, branch.clone(), &mut leaves);
                    let Some(d) = leaves.iter().position(|(_, s)| is_disruptive(s)) else {
                        continue;
                    };
                    let sleeps: Vec<(String, SleepSpec)> = leaves[..d]
                        .iter()
                        .filter_map(|(p, s)| match &s.kind {
                            StepKind::Sleep(spec) => Some((p.clone(), *spec)),
                            _ => None,
                        })
                        .collect();
                    if !sleeps
                        .iter()
                        .any(|(_, s)| matches!(s, SleepSpec::Random { min, max } if max > min))
                    {
                        continue;
                    }
                    let (min, max) =
                        sleeps
                            .iter()
                            .fold(
                                (Duration::ZERO, Duration::ZERO),
                                |(lo, hi), (_, s)| match s {
                                    SleepSpec::Fixed(d) => (lo + *d, hi + *d),
                                    SleepSpec::Random { min, max } => (lo + *min, hi + *max),
                                },
                            );
                    let mut predicted_ms = Vec::new();
                    for (j, other) in branches.iter().enumerate().filter(|(j, _)| *j != i) {
                        let mut leaves = Vec::new();
                        linearize(other, format!("{path}.parallel[{j}]"), &mut leaves);
                        let mut at = Duration::ZERO;
                        for (_, s) in leaves {
                            match &s.kind {
                                StepKind::Sleep(SleepSpec::Fixed(d)) => at += *d,
                                StepKind::Run(_) | StepKind::Exec(_) => {
                                    predicted_ms.push(at.as_secs_f64() * 1000.0);
                                    break;
                                }
                                _ => break,
                            }
                        }
                    }
                    predicted_ms.sort_by(f64::total_cmp);
                    predicted_ms.dedup();
                    return Some(JitterPlan {
                        predicted_ms,
                        parallel: path.to_owned(),
                        branch,
                        disruptive: leaves[d].0.clone(),
                        disruptive_label: leaves[d].1.display_name(),
                        sleeps,
                        min,
                        max,
                    });
                }
                // A race may also sit in a nested parallel.
                branches
                    .iter()
                    .enumerate()
                    .find_map(|(i, b)| Self::find(b, &format!("{path}.parallel[{i}]")))
            }
            StepKind::Sequence(children) => children
                .iter()
                .enumerate()
                .find_map(|(i, c)| Self::find(c, &format!("{path}.sequence[{i}]"))),
            StepKind::Repeat { steps, .. } => steps
                .iter()
                .enumerate()
                .find_map(|(i, c)| Self::find(c, &format!("{path}.repeat[0][{i}]"))),
            _ => None,
        }
    }

    /// The summed sleep before the disruptive step that `unit_seed` produces, exactly as the
    /// executor draws it.
    pub fn delay(&self, unit_seed: u64) -> Duration {
        self.sleeps
            .iter()
            .map(|(path, spec)| sleep_duration(unit_seed, path, spec))
            .sum()
    }

    /// A seed whose [`delay`](Self::delay) is within `tolerance` of `target` (else the
    /// closest of [`MAX_CANDIDATES`]), drawn deterministically from the run seed and the
    /// unit, so the same decisions give the same seeds.
    pub fn pick_seed(
        &self,
        run_seed: u64,
        unit: &UnitId,
        target: Duration,
        tolerance: Duration,
    ) -> u64 {
        let base = seed::unit_seed(run_seed, unit);
        let mut candidates = seed::step_rng(base, "repro/candidates");
        let mut best = (base, Duration::MAX);
        for _ in 0..MAX_CANDIDATES {
            let c = candidates.next_u64();
            let off = self.delay(c).abs_diff(target);
            if off <= tolerance {
                return c;
            }
            if off < best.1 {
                best = (c, off);
            }
        }
        best.0
    }

    /// What a finished step is to the race: `None` unless it is a leaf directly on one
    /// of the parallel's branches (steps inside a nested parallel are not: the nested
    /// parallel itself counts as one leaf), else its branch prefix and role.
    pub fn classify(&self, scenario: &Scenario, path: &str) -> Option<(String, Role)> {
        let rest = path
            .strip_prefix(&self.parallel)?
            .strip_prefix(".parallel[")?;
        let (idx, inner) = rest.split_once(']')?;
        let branch = format!("{}.parallel[{idx}]", self.parallel);
        if inner.contains(".parallel[") {
            return None;
        }
        let step = resolve(scenario, path)?;
        let role = match &step.kind {
            StepKind::Sequence(_) | StepKind::Repeat { .. } => return None,
            _ if path == self.disruptive => Role::Disruptive,
            StepKind::Run(_) | StepKind::Exec(_) if branch != self.branch => Role::Workload,
            _ => Role::Other,
        };
        Some((branch, role))
    }
}

/// What a leaf on a racing branch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The disruptive step the search times.
    Disruptive,
    /// A tool or command of another branch: the workload being raced.
    Workload,
    /// Anything else (sleeps, waits): only advances its branch's clock.
    Other,
}

/// The step at an executor path (`steps[0].parallel[1].repeat[3][0]`), if it exists.
pub fn resolve<'s>(scenario: &'s Scenario, path: &str) -> Option<&'s Step> {
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut step = if let Some(i) = index_of(first, "setup") {
        scenario.setup.get(i)?
    } else {
        scenario.steps.get(index_of(first, "steps")?)?
    };
    for part in parts {
        step = match &step.kind {
            StepKind::Parallel(c) => c.get(index_of(part, "parallel")?)?,
            StepKind::Sequence(c) => c.get(index_of(part, "sequence")?)?,
            StepKind::Repeat { steps, .. } => {
                // `repeat[<round>][<i>]`: any round has the same steps.
                let rest = part.strip_prefix("repeat[")?;
                let (_, i) = rest.split_once("][")?;
                steps.get(i.strip_suffix(']')?.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(step)
}

fn index_of(part: &str, name: &str) -> Option<usize> {
    part.strip_prefix(name)?
        .strip_prefix('[')?
        .strip_suffix(']')?
        .parse()
        .ok()
}
