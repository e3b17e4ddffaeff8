//! The scenario executor: runs one unit's steps against a guest, with timeouts, seeded
//! randomness and cancellation, and reports every step as events.
//!
//! Leaf steps are in their own modules ([`driver`], [`tool`], [`metric`]); this module
//! owns the context, the error type and the composite steps (parallel, sequence, repeat).

mod driver;
mod metric;
mod tool;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use lab_backends::{AnyGuest, AnyHypervisor, BackendError, Guest, Hypervisor};
use lab_config::{Payload, RepeatMode, Scenario, SleepSpec, Step, StepKind};
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, StepOutcome, StepOutput, UnitId};
use crate::seed;

/// Sends events to the dispatcher, stamped with the time they happened (not the time the
/// dispatcher got round to them, which lags while reporters write files).
#[derive(Debug, Clone)]
pub struct EventTx(tokio::sync::mpsc::UnboundedSender<crate::events::Envelope>);

impl EventTx {
    /// A sender and the dispatcher's receiving end.
    pub fn channel() -> (
        Self,
        tokio::sync::mpsc::UnboundedReceiver<crate::events::Envelope>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (EventTx(tx), rx)
    }

    /// Stamps and sends; fails only when the run is over (the dispatcher is gone).
    pub fn send(&self, event: Event) -> Result<(), RunOver> {
        let env = crate::events::Envelope {
            at: chrono::Utc::now(),
            // Capped before it queues: a huge label or message never sits in the channel.
            event: event.bounded(),
        };
        self.0.send(env).map_err(|_| RunOver)
    }
}

/// The dispatcher has stopped listening: the run is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOver;

/// Everything a step needs while one unit runs.
#[derive(Debug)]
pub struct UnitCtx<'a> {
    pub hv: &'a AnyHypervisor,
    pub vm: &'a str,
    pub guest: AnyGuest,
    pub scenario: &'a Scenario,
    pub payload: &'a Payload,
    pub unit: &'a UnitId,
    pub seed: u64,
    pub events: &'a EventTx,
    pub cancel: &'a CancellationToken,
    /// Where the unit's artifacts go (absolute) and the same relative to the run dir.
    pub unit_dir: PathBuf,
    pub unit_rel: PathBuf,
    /// Values remembered by `record_metric`.
    pub baselines: Mutex<HashMap<String, i64>>,
    /// Guest JUnit files collected so far (relative to the run dir).
    pub guest_junit: Mutex<Vec<PathBuf>>,
    /// Boot id the unit expects; a different one means the guest rebooted.
    pub boot_id: Mutex<String>,
    /// How long a (re)boot may take.
    pub boot_timeout: Duration,
    /// The last System event record seen; later ones belong to this unit.
    pub event_mark: Mutex<u64>,
    /// Results root (holds the cross-run bucket index) and this run's id.
    pub results_root: PathBuf,
    pub run_id: String,
    /// `--keep-dumps`: how many dumps a crash bucket keeps across runs.
    pub keep_dumps: crash_triage::KeepDumps,
    /// The lab's `debugger:`, whose `!analyze -v` refines crash triage.
    pub debugger: Option<&'a lab_config::Debugger>,
    /// The payload's files, resolved by the preflight.
    pub files: &'a [crate::deploy::LocalFile],
}

/// Why a step did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// An expectation did not hold.
    Failed(String),
    /// The step exceeded its time limit: the guest is treated as hung.
    Hang(String),
    /// The guest went away under the step (connection lost): maybe a crash.
    Lost(String),
    /// The lab failed (not the code under test).
    Infra(String),
    Cancelled,
}

impl StepError {
    fn outcome(&self) -> StepOutcome {
        match self {
            StepError::Failed(m) => StepOutcome::Failed { message: m.clone() },
            StepError::Hang(_) => StepOutcome::TimedOut,
            StepError::Lost(_) => StepOutcome::Crashed,
            StepError::Infra(m) => StepOutcome::Errored { message: m.clone() },
            StepError::Cancelled => StepOutcome::Cancelled,
        }
    }

    pub fn message(&self) -> String {
        match self {
            StepError::Failed(m)
            | StepError::Hang(m)
            | StepError::Lost(m)
            | StepError::Infra(m) => m.clone(),
            StepError::Cancelled => "cancelled".into(),
        }
    }
}

/// Maps a backend error of a step to the step's verdict: a guest that vanished is a possible
/// crash, an error the guest reported is a failure of the step, the rest is the lab's fault.
pub(crate) fn from_backend(what: &str, e: BackendError) -> StepError {
    match e {
        BackendError::Connection { .. } | BackendError::Timeout { .. } => {
            StepError::Lost(format!("{what}: {}", lab_error::Chain(&e)))
        }
        BackendError::Guest { .. } | BackendError::HashMismatch { .. } => {
            StepError::Failed(format!("{what}: {}", lab_error::Chain(&e)))
        }
        BackendError::Cancelled { .. } => StepError::Cancelled,
        other => StepError::Infra(format!("{what}: {}", lab_error::Chain(&other))),
    }
}

/// What a leaf step hands back for the report.
pub(crate) type LeafResult = Result<Option<StepOutput>, (StepError, Option<StepOutput>)>;

impl UnitCtx<'_> {
    fn emit(&self, event: Event) {
        // The dispatcher outlives every unit; a closed channel means the run is over.
        let _ = self.events.send(event);
    }

    /// The time a composite step may take: bounded by the scenario's own limit.
    fn composite_timeout(&self) -> Duration {
        self.scenario.timeout
    }

    /// Runs `steps` in order under `prefix` (`steps`, `setup`), stopping at the first
    /// failure. Returns the index of the failing step with its error.
    pub async fn run_list(&self, prefix: &str, steps: &[Step]) -> Result<(), (usize, StepError)> {
        for (i, step) in steps.iter().enumerate() {
            let path = format!("{prefix}[{i}]");
            self.run_step(step, path).await.map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// Runs one step (and its children), emitting StepStarted / StepFinished.
    pub fn run_step<'s>(
        &'s self,
        step: &'s Step,
        path: String,
    ) -> BoxFuture<'s, Result<(), StepError>> {
        Box::pin(async move {
            let label = step.display_name();
            let timeout = step_timeout(self, step);
            self.emit(Event::StepStarted {
                unit: self.unit.clone(),
                path: path.clone(),
                label: label.clone(),
                timeout,
            });
            let started = Instant::now();
            let body = self.step_body(step, &path);
            let result: LeafResult = tokio::select! {
                r = tokio::time::timeout(timeout, body) => match r {
                    Ok(r) => r,
                    Err(_) => Err((StepError::Hang(format!(
                        "{label}: no result after {}", humantime::format_duration(timeout)
                    )), None)),
                },
                _ = self.cancel.cancelled() => Err((StepError::Cancelled, None)),
            };
            let (outcome, output, ret) = match result {
                Ok(out) => (StepOutcome::Passed, out, Ok(())),
                Err((e, out)) => (e.outcome(), out, Err(e)),
            };
            self.emit(Event::StepFinished {
                unit: self.unit.clone(),
                path,
                label,
                outcome,
                duration: started.elapsed(),
                output,
            });
            ret
        })
    }

    async fn step_body(&self, step: &Step, path: &str) -> LeafResult {
        match &step.kind {
            StepKind::Deploy => crate::deploy::deploy(&self.guest, self.payload, self.files)
                .await
                .map(|_| None)
                .map_err(|e| (StepError::Failed(crate::error::text(&e)), None)),
            StepKind::DriverStart(op) => driver::start(self, op).await,
            StepKind::DriverStop(op) => driver::stop(self, op).await,
            StepKind::DriverRestart(op) => driver::restart(self, op).await,
            StepKind::DriverWait(op) => driver::wait(self, op).await,
            StepKind::Run(run) => tool::run(self, run).await,
            StepKind::Exec(exec) => tool::exec(self, exec).await,
            StepKind::Parallel(children) => self
                .parallel(path, children)
                .await
                .map(|_| None)
                .map_err(|e| (e, None)),
            StepKind::Sequence(children) => self
                .run_list(&format!("{path}.sequence"), children)
                .await
                .map(|_| None)
                .map_err(|(_, e)| (e, None)),
            StepKind::Repeat { mode, steps } => self
                .repeat(path, *mode, steps)
                .await
                .map(|_| None)
                .map_err(|e| (e, None)),
            StepKind::Sleep(spec) => {
                let d = sleep_duration(self.seed, path, spec);
                tokio::time::sleep(d).await;
                Ok(None)
            }
            StepKind::Checkpoint { name } => self
                .hv
                .checkpoint(self.vm, name)
                .await
                .map(|_| None)
                .map_err(|e| (from_backend("checkpoint", e), None)),
            StepKind::Restore { name } => self
                .restore(name)
                .await
                .map(|_| None)
                .map_err(|e| (e, None)),
            StepKind::Reboot { timeout } => self
                .reboot(*timeout)
                .await
                .map(|_| None)
                .map_err(|e| (e, None)),
            StepKind::RecordMetric { metric, as_name } => {
                metric::record(self, metric, as_name).await
            }
            StepKind::AssertMetric(a) => metric::assert(self, a).await,
            // Evaluated by the unit driver, which knows whether a crash happened.
            StepKind::ExpectBugcheck { .. } | StepKind::ExpectNoBugcheck => Ok(None),
        }
    }

    /// Runs children concurrently; the first failure cancels the others.
    async fn parallel(&self, path: &str, children: &[Step]) -> Result<(), StepError> {
        let futs = children
            .iter()
            .enumerate()
            .map(|(i, s)| self.run_step(s, format!("{path}.parallel[{i}]")));
        let results = futures::future::join_all(futs).await;
        // Report the most telling error: a hang or a lost guest beats a plain failure.
        let mut worst: Option<StepError> = None;
        for r in results {
            if let Err(e) = r {
                let rank = |e: &StepError| match e {
                    StepError::Lost(_) => 4,
                    StepError::Hang(_) => 3,
                    StepError::Infra(_) => 2,
                    StepError::Failed(_) => 1,
                    StepError::Cancelled => 0,
                };
                if worst.as_ref().is_none_or(|w| rank(&e) > rank(w)) {
                    worst = Some(e);
                }
            }
        }
        worst.map_or(Ok(()), Err)
    }

    async fn repeat(&self, path: &str, mode: RepeatMode, steps: &[Step]) -> Result<(), StepError> {
        let started = Instant::now();
        let mut round = 0u32;
        loop {
            match mode {
                RepeatMode::Count(n) if round >= n => return Ok(()),
                RepeatMode::Duration(d) if started.elapsed() >= d => return Ok(()),
                _ => {}
            }
            self.run_list(&format!("{path}.repeat[{round}]"), steps)
                .await
                .map_err(|(_, e)| e)?;
            round += 1;
        }
    }

    async fn restore(&self, name: &str) -> Result<(), StepError> {
        self.hv
            .restore(self.vm, name)
            .await
            .map_err(|e| from_backend("restore checkpoint", e))?;
        // A restore is a planned change of boot: not a crash.
        let id = self
            .guest
            .boot_id()
            .await
            .map_err(|e| from_backend("read boot id after restore", e))?;
        *self.boot_id.lock().expect("boot id lock") = id;
        Ok(())
    }

    async fn reboot(&self, timeout: Duration) -> Result<(), StepError> {
        let before = self.boot_id.lock().expect("boot id lock").clone();
        self.guest
            .reboot()
            .await
            .map_err(|e| from_backend("reboot", e))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(id) = self.guest.boot_id().await
                && id != before
            {
                *self.boot_id.lock().expect("boot id lock") = id;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StepError::Failed(format!(
                    "reboot: the guest did not come back within {}",
                    humantime::format_duration(timeout)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The time limit of a step: its own where it has one, else the scenario's step default
/// (leaves) or the scenario's limit (composites).
fn step_timeout(ctx: &UnitCtx<'_>, step: &Step) -> Duration {
    let grace = Duration::from_secs(5);
    match &step.kind {
        StepKind::DriverStart(op)
        | StepKind::DriverStop(op)
        | StepKind::DriverRestart(op)
        | StepKind::DriverWait(op) => {
            // Restart waits twice (stop, then start).
            let n = if matches!(step.kind, StepKind::DriverRestart(_)) {
                2
            } else {
                1
            };
            op.timeout * n + grace
        }
        StepKind::Run(r) => r.timeout + grace,
        StepKind::Exec(e) => e.timeout + grace,
        StepKind::Sleep(SleepSpec::Fixed(d)) => *d + grace,
        StepKind::Sleep(SleepSpec::Random { max, .. }) => *max + grace,
        StepKind::Reboot { timeout } => *timeout + grace,
        StepKind::AssertMetric(a) => a.within.unwrap_or(ctx.scenario.step_timeout) + grace,
        StepKind::Parallel(_) | StepKind::Sequence(_) | StepKind::Repeat { .. } => {
            ctx.composite_timeout()
        }
        _ => ctx.scenario.step_timeout,
    }
}

/// The duration of a sleep step: random ones come from the step's seeded generator.
pub fn sleep_duration(unit_seed: u64, path: &str, spec: &SleepSpec) -> Duration {
    match spec {
        SleepSpec::Fixed(d) => *d,
        SleepSpec::Random { min, max } => {
            let (lo, hi) = (min.as_micros() as u64, max.as_micros() as u64);
            let us = if hi > lo {
                seed::step_rng(unit_seed, path).random_range(lo..=hi)
            } else {
                lo
            };
            Duration::from_micros(us)
        }
    }
}
