//! `hvlab.log`'s story of a run: one `tracing` line per event (run start, VM lifecycle, each
//! step, crashes, lab errors, teardown) at `info` (`warn` for what went wrong), written from
//! the event stream so the runner needs no log calls of its own.

use lab_config::{MESSAGE_MAX, cap_text};

use super::{ReportError, Reporter, text};
use crate::events::{Envelope, Event, StepOutcome, UnitOutcome};

/// Writes each event as a `tracing` line (the CLI routes tracing to `hvlab.log`).
#[derive(Debug, Default)]
pub struct LogReporter;

impl Reporter for LogReporter {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        log_event(&ev.event);
        Ok(())
    }
}

fn log_event(ev: &Event) {
    match ev {
        Event::RunStarted {
            run_id,
            lab,
            lab_kind,
            units,
            seed,
            max_vms,
            ..
        } => {
            let names: Vec<String> = units.iter().map(ToString::to_string).collect();
            let names = names.join(", ");
            tracing::info!(
                run_id = %run_id,
                lab = %lab,
                lab_kind = %lab_kind,
                units = units.len(),
                seed = %format!("{seed:#018x}"),
                max_vms,
                "run started: {}",
                cap_text(&names, MESSAGE_MAX)
            );
        }
        Event::VmProvisioning { vm, template } => {
            tracing::info!(vm = %vm, template = %template, "provisioning VM");
        }
        Event::VmReady {
            vm,
            boot_id,
            elapsed,
        } => tracing::info!(
            vm = %vm,
            boot_id = %boot_id,
            "VM ready after {}",
            text::duration(*elapsed)
        ),
        Event::VmDeployed { vm, elapsed } => tracing::info!(
            vm = %vm,
            "payload deployed and checkpointed after {}",
            text::duration(*elapsed)
        ),
        Event::VmRemoved { vm } => tracing::info!(vm = %vm, "VM removed"),
        Event::UnitStarted { unit, vm, seed } => tracing::info!(
            unit = %unit,
            vm = %vm,
            seed = %format!("{seed:#018x}"),
            "unit started"
        ),
        Event::StepStarted {
            unit, path, label, ..
        } => tracing::info!(unit = %unit, step = %path, "step started: {label}"),
        Event::StepFinished {
            unit,
            path,
            label,
            outcome,
            duration,
            ..
        } => {
            let quiet = matches!(outcome, StepOutcome::Passed | StepOutcome::Skipped);
            let outcome = text::step_outcome(outcome);
            let took = text::duration(*duration);
            if quiet {
                tracing::info!(unit = %unit, step = %path, "step finished: {label}: {outcome} in {took}");
            } else {
                tracing::warn!(unit = %unit, step = %path, "step finished: {label}: {outcome} in {took}");
            }
        }
        Event::CrashDetected { unit, vm, crash } => {
            let bucket = crash
                .bucket
                .as_ref()
                .map_or_else(|| "no bucket".to_owned(), text::bucket);
            let dumps: Vec<String> = crash
                .dumps
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            let triage = crash
                .triage_error
                .as_deref()
                .map(|e| format!("; triage failed: {e}"))
                .unwrap_or_default();
            tracing::warn!(
                unit = %unit,
                vm = %vm,
                "{}; {bucket}; dumps: [{}]{triage}",
                text::crash(crash),
                dumps.join(", ")
            );
        }
        Event::ArtifactCollected { vm, kind, path, .. } => {
            tracing::debug!(vm = %vm, kind = ?kind, path = %path.display(), "artifact collected")
        }
        Event::UnitFinished {
            unit,
            vm,
            outcome,
            duration,
            ..
        } => {
            let word = text::outcome_word(Some(outcome));
            let reason = text::outcome_reason(outcome);
            let took = text::duration(*duration);
            if outcome.is_pass() {
                tracing::info!(unit = %unit, vm = %vm, "unit finished: {word} in {took}");
            } else if matches!(outcome, UnitOutcome::Cancelled) {
                tracing::info!(unit = %unit, vm = %vm, "unit finished: {word} ({reason})");
            } else {
                tracing::warn!(unit = %unit, vm = %vm, "unit finished: {word} in {took}: {reason}");
            }
        }
        Event::UnitRetried {
            unit,
            vm,
            attempt,
            outcome,
            duration,
        } => tracing::warn!(
            unit = %unit,
            vm = %vm,
            attempt,
            "attempt {attempt} errored after {}: {}; retrying on a fresh VM",
            text::duration(*duration),
            text::outcome_reason(outcome)
        ),
        Event::InfraError {
            vm,
            message,
            causes,
        } => tracing::error!(
            vm = %vm.as_deref().unwrap_or("-"),
            "lab error: {}",
            UnitOutcome::error_text(message, causes)
        ),
        Event::Warning { message } => tracing::warn!("{message}"),
        Event::DumpsRemoved {
            bucket,
            keep,
            removed,
        } => tracing::info!("{}", text::dumps_removed(bucket, *keep, removed)),
        Event::Interrupted { count } => {
            tracing::warn!(count, "interrupted: stopping units and tearing down VMs")
        }
        Event::HostDrained { host, reason } => {
            tracing::warn!(host = %host, "host drained: {reason}")
        }
        Event::Leftover {
            what,
            how_to_remove,
        } => tracing::error!("left behind: {what}; remove it with: {how_to_remove}"),
        Event::RunFinished {
            elapsed,
            stats,
            exit_code,
            interrupted,
        } => tracing::info!(
            exit_code,
            interrupted,
            passed = stats.passed,
            failed = stats.failed,
            errored = stats.errored,
            cancelled = stats.cancelled,
            crashes = stats.crashes,
            "run finished after {} ({})",
            text::duration(*elapsed),
            text::exit_code_meaning(*exit_code)
        ),
    }
}
