//! The dispatcher: one loop owns the run. It starts the VM workers, feeds every event to
//! the reporters, and acts on Ctrl-C: the first stops scheduling and cancels steps (workers
//! still collect and tear down), the second powers off and removes every VM at once.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use lab_backends::{AnyHypervisor, BackendFacts, Hypervisor};
use lab_config::Plan;
use tokio_util::sync::CancellationToken;

use crate::deploy::{DeployError, preflight};
use crate::events::{Envelope, Event, RunStats, UnitId, UnitOutcome};
use crate::report::{Fanout, Reporter};
use crate::results::RunDir;
use crate::signals::SignalSource;
use crate::unit::UnitPlan;
use crate::worker::{Shared, UnitSource, delete_vm, worker};
use crate::{exit, seed};

/// Everything a run needs, resolved from CLI, environment and files before any work starts.
#[derive(Debug)]
pub struct RunSettings {
    /// The validated plan, already narrowed to the selected scenarios.
    pub plan: Plan,
    /// The lab backend to run on.
    pub hypervisor: AnyHypervisor,
    /// Overrides each scenario's iteration count.
    pub iterations: Option<u32>,
    /// The run seed (every unit seed derives from it).
    pub seed: u64,
    /// At most this many VMs at once (the lab's capacity when `None`).
    pub max_vms: Option<usize>,
    /// Only these units (repro/replay); `None` = the whole matrix.
    pub only: Option<Vec<UnitId>>,
    /// How many dumps a crash bucket keeps across runs (`--keep-dumps`).
    pub keep_dumps: crash_triage::KeepDumps,
    /// Test retries, fail-fast and seed replay (CI settings; the default changes nothing).
    pub policy: RunPolicy,
    /// Crashes already tracked upstream, and what they do to the exit code.
    pub known: crate::known::KnownSettings,
}

/// How a run treats failures, and which seed its units get.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunPolicy {
    /// `--retries N`: re-runs of a failed unit, overriding each scenario's `retries:`. Given
    /// on the command line it also retries crashes (a bugcheck or hang); a scenario's own
    /// `retries:` never retries a crash away.
    pub retries: Option<u32>,
    /// `--fail-fast`: start no unit after the first that failed or errored.
    pub fail_fast: bool,
    /// `--replay-seed S`: every unit runs with this unit seed instead of the derived one.
    pub replay_seed: Option<u64>,
}

impl RunPolicy {
    /// Retries a failed unit of `scenario` gets.
    pub fn retries_for(&self, scenario: &lab_config::Scenario) -> u32 {
        self.retries.unwrap_or(scenario.retries)
    }

    /// Whether a failure with a crash may be retried (only when `--retries` asked).
    pub fn retries_crashes(&self) -> bool {
        self.retries.is_some()
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub exit_code: i32,
    pub stats: RunStats,
    pub run_dir: PathBuf,
    pub interrupted: bool,
}

/// Errors that stop a run before it starts.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("prepare the payload: {0}")]
    Preflight(#[from] DeployError),
    #[error("nothing to run: no scenario matches the selection")]
    Empty,
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Preflight(DeployError::Guest { .. }) => i32::from(exit::INFRA_ERROR),
            RunError::Preflight(_) | RunError::Empty => i32::from(exit::CONFIG_ERROR),
        }
    }
}

/// The units of a plan in schedule order.
pub fn expand(plan: &Plan, iterations: Option<u32>, seed_: u64) -> Vec<UnitPlan> {
    let mut units = Vec::new();
    for (si, s) in plan.scenarios.iter().enumerate() {
        for template in &s.vms {
            for it in 1..=iterations.unwrap_or(s.iterations) {
                let id = UnitId {
                    scenario: s.name.clone(),
                    template: template.clone(),
                    iteration: it,
                };
                let unit_seed = seed::unit_seed(seed_, &id);
                units.push(UnitPlan {
                    id,
                    scenario: si,
                    seed: unit_seed,
                });
            }
        }
    }
    units
}

/// Runs the plan. The run directory must exist already (the CLI creates it first so its
/// log file can live there); `reporters` receive every event.
pub async fn run(
    mut settings: RunSettings,
    run_dir: RunDir,
    reporters: Fanout,
    signals: SignalSource,
) -> Result<RunOutcome, RunError> {
    let mut units = expand(&settings.plan, settings.iterations, settings.seed);
    if let Some(only) = &settings.only {
        let only: BTreeSet<&UnitId> = only.iter().collect();
        units.retain(|u| only.contains(&u.id));
    }
    if let Some(s) = settings.policy.replay_seed {
        for u in &mut units {
            u.seed = s;
        }
    }
    if units.is_empty() {
        return Err(RunError::Empty);
    }
    let max_vms = settings
        .max_vms
        .unwrap_or_else(|| settings.plan.lab.backend.capacity())
        .clamp(1, units.len());
    settings.max_vms = Some(max_vms);
    let source: Box<dyn UnitSource> = Box::new(VecDeque::from(units));
    run_with_source(settings, source, run_dir, reporters, signals).await
}

/// [`run`] with the units coming from `source` instead of the expanded plan (repro mode:
/// the source picks each iteration from the results so far and decides when to stop).
/// `settings.iterations` and `settings.only` are not used; `settings.max_vms` (else the
/// lab's capacity) is how many VM workers ask the source for units.
pub async fn run_with_source(
    settings: RunSettings,
    source: Box<dyn UnitSource>,
    run_dir: RunDir,
    mut reporters: Fanout,
    mut signals: SignalSource,
) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let mut files = HashMap::new();
    for p in &settings.plan.payloads {
        files.insert(p.name.clone(), preflight(p)?);
    }
    let mut max_vms = settings
        .max_vms
        .unwrap_or_else(|| settings.plan.lab.backend.capacity())
        .max(1);
    // Hosts failing their health check take no work; the run uses the slots of the rest.
    let health = crate::hosts::check(&settings.hypervisor, &settings.plan).await;
    let no_host = health
        .as_ref()
        .filter(|r| crate::hosts::healthy_capacity(r) == 0)
        .map(|r| crate::hosts::none_healthy(r));
    if let Some(r) = &health {
        max_vms = max_vms.min(crate::hosts::healthy_capacity(r)).max(1);
    }
    let (tx, mut rx) = crate::exec::EventTx::channel();
    let cancel = CancellationToken::new();
    let all_units: Vec<UnitId> = source.planned();
    // The dispatcher's own events; the units' are capped by `EventTx::send`.
    let emit = |reporters: &mut Fanout, event: Event| {
        forward(
            reporters,
            Envelope {
                at: Utc::now(),
                event: event.bounded(),
            },
        )
    };
    emit(
        &mut reporters,
        Event::RunStarted {
            run_id: run_dir.id().as_str().to_owned(),
            lab: settings.plan.lab.file.display().to_string(),
            lab_kind: settings.hypervisor.kind().into(),
            results_dir: run_dir.path().to_owned(),
            units: all_units.clone(),
            seed: settings.seed,
            max_vms,
        },
    );
    for message in settings.known.expiry_warnings() {
        emit(&mut reporters, Event::Warning { message });
    }
    let known = settings.known.clone();
    let mut drained = BTreeSet::new();
    for ev in crate::hosts::new_drains(&settings.hypervisor, &mut drained) {
        emit(&mut reporters, ev);
    }
    let mut errored_early = BTreeSet::new();
    if let Some(message) = &no_host {
        emit(
            &mut reporters,
            Event::InfraError {
                vm: None,
                message: message.clone(),
                causes: vec![],
            },
        );
        for unit in &all_units {
            errored_early.insert(unit.clone());
            emit(
                &mut reporters,
                Event::UnitFinished {
                    unit: unit.clone(),
                    vm: String::new(),
                    seed: seed::unit_seed(settings.seed, unit),
                    outcome: UnitOutcome::errored_msg(message.clone()),
                    duration: Duration::ZERO,
                    guest_junit: vec![],
                },
            );
        }
    }
    let gc_hint = crate::hosts::gc_hint(&settings.plan);
    let vms = Arc::new(Mutex::new(BTreeSet::new()));
    let hv_for_force = settings.hypervisor.clone();
    let shared = Arc::new(Shared {
        plan: Arc::new(settings.plan),
        hv: settings.hypervisor,
        run_dir: run_dir.clone(),
        events: tx,
        cancel: cancel.clone(),
        queue: Mutex::new(source),
        files,
        vms: vms.clone(),
        vm_counter: Default::default(),
        keep_dumps: settings.keep_dumps,
        policy: settings.policy,
        stop: Default::default(),
    });
    let mut workers = tokio::task::JoinSet::new();
    let workers_wanted = if no_host.is_some() { 0 } else { max_vms };
    for _ in 0..workers_wanted {
        workers.spawn(worker(shared.clone()));
    }
    // Only the workers hold senders now: the channel closes when they are all done.
    drop(shared);

    let mut stats = RunStats {
        units: all_units.len(),
        errored: errored_early.len(),
        ..RunStats::default()
    };
    let mut finished: BTreeSet<UnitId> = errored_early;
    let mut errored_infra = no_host.is_some();
    let mut retried: BTreeSet<UnitId> = BTreeSet::new();
    // Units with a failed attempt that was retried (flaky if they pass in the end).
    let mut failed_once: BTreeSet<UnitId> = BTreeSet::new();
    let mut interrupts = 0u32;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(mut env) => {
                    known.mark(&mut env.event);
                    match &env.event {
                        Event::UnitFinished { unit, outcome, .. } => {
                            finished.insert(unit.clone());
                            match outcome {
                                UnitOutcome::Passed => {
                                    stats.passed += 1;
                                    stats.flaky += usize::from(failed_once.contains(unit));
                                }
                                UnitOutcome::Failed { crash, .. } => {
                                    stats.failed += 1;
                                    stats.known += usize::from(crate::known::is_known(crash.as_ref()));
                                }
                                UnitOutcome::Errored { .. } => stats.errored += 1,
                                UnitOutcome::Cancelled => stats.cancelled += 1,
                            }
                        }
                        // Every crash detected, expected or not, as the bucket counts
                        // beside it count them (a passing unit that expected its crash
                        // once read "0 crashes" above "x1").
                        Event::CrashDetected { .. } => stats.crashes += 1,
                        // Units, not attempts: "2 retried" means two units.
                        Event::UnitRetried { unit, outcome, .. } => {
                            if matches!(outcome, UnitOutcome::Failed { .. }) {
                                failed_once.insert(unit.clone());
                            }
                            if retried.insert(unit.clone()) {
                                stats.retried += 1;
                            }
                        }
                        // Evidence or results not kept; hvlab.log gets the chain from
                        // the log reporter.
                        Event::InfraError { .. } => errored_infra = true,
                        _ => {}
                    }
                    let errored = matches!(
                        &env.event,
                        Event::UnitFinished { outcome: UnitOutcome::Errored { .. }, .. }
                            | Event::UnitRetried { .. }
                    );
                    forward(&mut reporters, env);
                    // A host lost under a unit: say so once, beside the unit's error.
                    if errored {
                        for ev in crate::hosts::new_drains(&hv_for_force, &mut drained) {
                            emit(&mut reporters, ev);
                        }
                    }
                }
                None => break,
            },
            _ = signals.recv() => {
                interrupts += 1;
                emit(&mut reporters, Event::Interrupted { count: interrupts });
                cancel.cancel();
                if interrupts >= 2 {
                    // Second Ctrl-C: stop waiting for workers, pull every plug.
                    workers.abort_all();
                    while let Ok(env) = rx.try_recv() {
                        forward(&mut reporters, env);
                    }
                    let names: Vec<String> = vms.lock().expect("vm set lock").iter().cloned().collect();
                    for name in names {
                        emit(&mut reporters, delete_vm(&hv_for_force, &vms, &name, &gc_hint).await);
                    }
                    break;
                }
            }
        }
    }
    while workers.join_next().await.is_some() {}
    for unit in all_units.iter().filter(|u| !finished.contains(*u)) {
        stats.cancelled += 1;
        emit(
            &mut reporters,
            Event::UnitFinished {
                unit: unit.clone(),
                vm: String::new(),
                seed: seed::unit_seed(settings.seed, unit),
                outcome: UnitOutcome::Cancelled,
                duration: Duration::ZERO,
                guest_junit: vec![],
            },
        );
    }
    let interrupted = interrupts > 0;
    // Lab errors the units report (`InfraError`: a results file, an event log or a dump that
    // could not be kept) and results files that could not be written make it an
    // infrastructure error whatever the units did: the verdict on disk is incomplete.
    // Otherwise a failure of the code under test outranks a unit's lab error (CI must see
    // "your driver is broken").
    let exit_code = if (reporters.failed() || errored_infra) && !interrupted {
        i32::from(exit::INFRA_ERROR)
    } else {
        exit::for_run(
            known.counts_as_failed(&stats),
            stats.errored > 0,
            interrupted,
        )
    };
    emit(
        &mut reporters,
        Event::RunFinished {
            elapsed: started.elapsed(),
            stats,
            exit_code,
            interrupted,
        },
    );
    // The final files themselves failed (reported on the terminal by the fanout): the run
    // still ends as an infrastructure error.
    let exit_code = if reporters.failed() && exit_code != i32::from(exit::INTERRUPTED) {
        i32::from(exit::INFRA_ERROR)
    } else {
        exit_code
    };
    Ok(RunOutcome {
        exit_code,
        stats,
        run_dir: run_dir.path().to_owned(),
        interrupted,
    })
}

/// Hands one event to every reporter; a failing reporter is logged, the run goes on.
fn forward(reporters: &mut Fanout, env: Envelope) {
    if let Err(e) = reporters.event(&env) {
        tracing::error!(error = %e, "a reporter failed");
    }
}
