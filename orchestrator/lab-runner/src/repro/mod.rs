//! Repro mode: loop one scenario until it fails (or a budget ends), varying the timing of
//! its racing steps with a searching jitter; measure the failure rate per crash bucket
//! with a Wilson interval; keep the evidence of the first failures; record every
//! iteration's seed so `--replay` re-runs it exactly.
//!
//! ```text
//! repro::run ── run::run_with_source(ReproSource) ── VM workers (restore `deployed` per
//!    │                  │                                        iteration, as hvlab run)
//!    │                  └─ worker asks ReproSource::next ─> State: stop? search target
//!    │                        ─> JitterPlan::pick_seed (a seed whose sleeps hit it)
//!    └─ reporters: ReproObserver (timelines -> State, evidence, repro.json), terminal
//!       progress + summary, events.jsonl, junit.xml, summary.json (+ repro), index.html
//! ```
//! The jitter strategy is documented in [`search`]; seeds and replay in [`jitter`].

pub mod jitter;
pub mod record;
pub mod report;
pub mod search;
pub mod state;
pub mod stats;

use std::io;
use std::sync::{Arc, Mutex};

use lab_backends::{AnyHypervisor, BackendFacts};
use lab_config::Plan;

use crate::events::{UnitId, UnitOutcome};
use crate::report::{
    Fanout, HtmlReporter, JunitReporter, OutputFormat, ReportError, TerminalOptions, events_log,
};
use crate::results::RunDir;
use crate::run::{RunError, RunOutcome, RunSettings, run_with_source};
use crate::signals::SignalSource;
use crate::unit::UnitPlan;
use crate::worker::UnitSource;

pub use record::{ReproSection, load as load_record, locate as locate_record};
pub use state::{Config, Mode, Stop, Until};

/// What a repro run needs.
#[derive(Debug)]
pub struct ReproSettings {
    /// A validated plan narrowed to exactly the scenario to reproduce.
    pub plan: Plan,
    pub hypervisor: AnyHypervisor,
    /// VM workers (default: the lab's capacity), at most one per iteration of the budget.
    pub max_vms: Option<usize>,
    /// Budgets, stop condition, mode. `config.scenario` is taken from `plan`.
    pub until: Until,
    pub max_iterations: u32,
    pub max_time: Option<std::time::Duration>,
    pub keep: usize,
    /// `--keep-dumps`: dumps a crash bucket keeps across runs.
    pub keep_dumps: crash_triage::KeepDumps,
    pub seed: u64,
    pub mode: Mode,
    pub replay_prefix: String,
    /// `known-issues.yaml`: known buckets are marked in rates and output, and the
    /// `--known-issues` policy decides the exit code as in `hvlab run`.
    pub known: crate::known::KnownSettings,
}

/// How a repro ended: the run's outcome (exit code 1 when a failure was found) and the
/// repro summary.
#[derive(Debug, Clone)]
pub struct ReproOutcome {
    pub run: RunOutcome,
    pub section: ReproSection,
}

/// Errors that stop a repro before it runs.
#[derive(Debug, thiserror::Error)]
pub enum ReproError {
    #[error("pick the scenario: repro runs exactly one scenario, the selection has {0}")]
    Scenarios(usize),
    #[error("start the reporters")]
    Report(#[source] ReportError),
    #[error(transparent)]
    Run(#[from] RunError),
}

impl ReproError {
    pub fn exit_code(&self) -> i32 {
        match self {
            ReproError::Scenarios(_) => i32::from(crate::exit::CONFIG_ERROR),
            ReproError::Report(_) => i32::from(crate::exit::INFRA_ERROR),
            ReproError::Run(e) => e.exit_code(),
        }
    }
}

/// Hands iterations to the VM workers from the shared repro state.
#[derive(Debug)]
struct ReproSource(report::Shared);

impl UnitSource for ReproSource {
    fn next(&mut self, template: Option<&str>) -> Option<UnitPlan> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .next(template)
    }

    fn finished(&mut self, unit: &UnitPlan, outcome: &UnitOutcome) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finished(unit, outcome);
    }

    fn planned(&self) -> Vec<UnitId> {
        Vec::new()
    }
}

/// Runs a repro into `run_dir` (which must exist and be empty).
pub async fn run(
    settings: ReproSettings,
    run_dir: RunDir,
    terminal: TerminalOptions,
    signals: SignalSource,
) -> Result<ReproOutcome, ReproError> {
    if settings.plan.scenarios.len() != 1 {
        return Err(ReproError::Scenarios(settings.plan.scenarios.len()));
    }
    let budget = match &settings.mode {
        Mode::Replay { times, .. } => *times,
        Mode::Search => settings.max_iterations,
    };
    let vms = settings
        .max_vms
        .unwrap_or_else(|| settings.plan.lab.backend.capacity())
        .clamp(1, budget.max(1) as usize);
    let config = Config {
        scenario: settings.plan.scenarios[0].clone(),
        run_seed: settings.seed,
        max_iterations: budget,
        max_time: settings.max_time,
        until: settings.until,
        keep: settings.keep,
        mode: settings.mode,
        replay_prefix: settings.replay_prefix,
    };
    let mut state = state::State::new(config, run_dir.id().as_str().to_owned(), vms);
    state.known = settings.known.clone();
    let shared: report::Shared = Arc::new(Mutex::new(state));
    let reporters = fanout(&run_dir, &shared, terminal).map_err(ReproError::Report)?;
    let run_settings = RunSettings {
        known: settings.known,
        plan: settings.plan,
        hypervisor: settings.hypervisor,
        iterations: None,
        seed: settings.seed,
        max_vms: Some(vms),
        only: None,
        keep_dumps: settings.keep_dumps,
        policy: Default::default(),
    };
    let source = Box::new(ReproSource(shared.clone()));
    let outcome = run_with_source(run_settings, source, run_dir, reporters, signals).await?;
    let section = record::section(&shared.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(ReproOutcome {
        run: outcome,
        section,
    })
}

/// The reporters of a repro: the observer first, so every later reporter renders state
/// that already includes the event's timeline and evidence decisions.
fn fanout(
    run_dir: &RunDir,
    shared: &report::Shared,
    terminal: TerminalOptions,
) -> Result<Fanout, ReportError> {
    let term = match terminal.format {
        // The shared terminal options: human lines on stderr, JSON lines on stdout.
        OutputFormat::Human => {
            report::ReproTerminal::human(shared.clone(), Box::new(io::stderr()), terminal.color)
        }
        OutputFormat::Json => report::ReproTerminal::json(shared.clone(), Box::new(io::stdout())),
    };
    let mut f = Fanout::new();
    f.hold_reserve(run_dir.path())?
        .push(
            "repro.json",
            report::ReproObserver::new(shared.clone(), run_dir.path()),
        )
        .push("terminal", term)
        .push("events.jsonl", events_log(run_dir)?)
        .push("junit.xml", JunitReporter::new(run_dir.path()))
        .push(
            "summary.json",
            report::ReproSummaryReporter::new(shared.clone(), run_dir.path()),
        )
        .push("index.html", {
            let state = shared.clone();
            HtmlReporter::with_repro(run_dir.path(), Box::new(move || report::html_view(&state)))
        })
        .push("hvlab.log", crate::report::LogReporter);
    Ok(f)
}

#[cfg(test)]
mod tests;
