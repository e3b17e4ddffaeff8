//! One unit from start to verdict: restore the `deployed` checkpoint, run setup and steps,
//! check for a reboot after every top-level step, turn hangs into dumps, and judge.
//!
//! A crash fails the unit unless a later top-level `expect_bugcheck` step expects it: then
//! the steps in between are skipped and that step judges the crash's code. An
//! `expect_bugcheck` inside a block (beside the crashing step in a `parallel`) judges a
//! crash of that block as soon as the block ends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lab_backends::{AnyGuest, AnyHypervisor, Guest};
use lab_config::{Payload, Scenario, Step, StepKind};
use tokio_util::sync::CancellationToken;

use crate::crash;
use crate::deploy::LocalFile;
use crate::error::{self, RunnerError};
use crate::events::{Crash, CrashKind, Event, StepOutcome, UnitId, UnitOutcome};
use crate::exec::{EventTx, StepError, UnitCtx};

/// One unit as scheduled.
#[derive(Debug, Clone)]
pub struct UnitPlan {
    pub id: UnitId,
    /// Index into the plan's scenarios.
    pub scenario: usize,
    pub seed: u64,
}

/// What a unit needs from its VM worker.
#[derive(Debug)]
pub struct UnitEnv<'a> {
    pub hv: &'a AnyHypervisor,
    pub vm: &'a str,
    pub guest: AnyGuest,
    pub scenario: &'a Scenario,
    pub payload: &'a Payload,
    pub files: &'a [LocalFile],
    pub events: &'a EventTx,
    pub cancel: &'a CancellationToken,
    pub unit_dir: PathBuf,
    pub unit_rel: PathBuf,
    pub boot_timeout: Duration,
    pub results_root: PathBuf,
    pub run_id: String,
    pub keep_dumps: crash_triage::KeepDumps,
    /// The lab's `debugger:`, whose `!analyze -v` refines crash triage.
    pub debugger: Option<&'a lab_config::Debugger>,
}

/// Runs a unit on a VM that is at its `deployed` state; returns the verdict and the guest
/// JUnit files its tools wrote (relative to the run dir).
pub async fn run_unit(env: UnitEnv<'_>, plan: &UnitPlan) -> (UnitOutcome, Vec<PathBuf>) {
    // The readiness check after the restore (or the deploy's last script) reported it.
    let seen = env.guest.take_seen_boot_id();
    let read = match seen {
        Some(id) => Ok(id),
        None => env.guest.boot_id().await,
    };
    let boot_id = match read {
        Ok(id) => id,
        Err(e) => {
            let e = RunnerError::lab(format!("read the boot id of {}", env.vm))(e);
            return (UnitOutcome::errored(&e), vec![]);
        }
    };
    let mark = match env.guest.events(0).await {
        Ok(r) => r.iter().map(|r| r.record_id).max().unwrap_or(0),
        Err(e) => {
            let e = RunnerError::lab(format!("read the event log of {}", env.vm))(e);
            return (UnitOutcome::errored(&e), vec![]);
        }
    };
    let ctx = UnitCtx {
        hv: env.hv,
        vm: env.vm,
        guest: env.guest,
        scenario: env.scenario,
        payload: env.payload,
        unit: &plan.id,
        seed: plan.seed,
        events: env.events,
        cancel: env.cancel,
        unit_dir: env.unit_dir,
        unit_rel: env.unit_rel,
        baselines: Mutex::new(HashMap::new()),
        guest_junit: Mutex::new(Vec::new()),
        boot_id: Mutex::new(boot_id),
        boot_timeout: env.boot_timeout,
        event_mark: Mutex::new(mark),
        files: env.files,
        results_root: env.results_root,
        run_id: env.run_id,
        keep_dumps: env.keep_dumps,
        debugger: env.debugger,
    };
    let limit = env.scenario.timeout;
    let outcome = match tokio::time::timeout(limit, judge(&ctx)).await {
        Ok(o) => o,
        Err(_) => {
            let what = format!("the scenario (limit {})", humantime::format_duration(limit));
            match crash::hang(&ctx, &what).await {
                Ok(c) => failed_by_crash(c),
                // The scenario overran: that is the hang; what the NMI left is secondary.
                Err(e) => UnitOutcome::Failed {
                    message: format!("hang: {}", error::text(&e)),
                    crash: None,
                },
            }
        }
    };
    let junit = ctx.guest_junit.lock().expect("junit lock").clone();
    (outcome, junit)
}

async fn judge(ctx: &UnitCtx<'_>) -> UnitOutcome {
    let steps: Vec<(String, &Step)> = ctx
        .scenario
        .setup
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("setup[{i}]"), s))
        .chain(
            ctx.scenario
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("steps[{i}]"), s)),
        )
        .collect();
    let mut crash: Option<Crash> = None;
    for (idx, (path, step)) in steps.iter().enumerate() {
        if ctx.cancel.is_cancelled() {
            return UnitOutcome::Cancelled;
        }
        match &step.kind {
            StepKind::ExpectBugcheck { code, within } => {
                if crash.is_none() {
                    crash = match wait_for_crash(ctx, path, *within).await {
                        Ok(c) => c,
                        // A restart without a record must not satisfy (or fail) the
                        // expectation: it says nothing about the code under test.
                        Err(e) => return UnitOutcome::errored(&e),
                    };
                }
                let verdict = expectation_verdict(crash.as_ref(), *code, *within);
                instant_step(ctx, path, step, verdict.clone());
                if let Err(m) = verdict {
                    return UnitOutcome::Failed {
                        message: m.to_string(),
                        crash,
                    };
                }
                // The crash was expected; later crashes are judged afresh.
                crash = None;
                continue;
            }
            StepKind::ExpectNoBugcheck => {
                let verdict = match &crash {
                    Some(c) => Err(Unexpected::Crash(describe_crash(c))),
                    None => Ok(()),
                };
                instant_step(ctx, path, step, verdict);
                if let Some(c) = crash {
                    return failed_by_crash(c);
                }
                continue;
            }
            _ => {}
        }
        if crash.is_some() {
            // Skipping ahead to the expect_bugcheck step found below.
            instant_step_skipped(ctx, path, step);
            continue;
        }
        // Only a boot id reported during this step may answer the check after it.
        let _ = ctx.guest.take_seen_boot_id();
        let result = ctx.run_step(step, path.clone()).await;
        let label = step.display_name();
        let errored = |e: crate::verdict::NotACrash| {
            UnitOutcome::errored_msg(format!("{} (during {label})", error::text(&e)))
        };
        let new_crash = match result {
            Ok(()) => match crash::rebooted_after_step(ctx).await {
                Ok(true) => {
                    match crash::collect(ctx, CrashKind::Bugcheck, Some(label.clone())).await {
                        Ok(c) => Some(c),
                        Err(e) => return errored(e),
                    }
                }
                Ok(false) => None,
                Err(e) => {
                    return UnitOutcome::Errored {
                        message: format!("check the guest after {label}"),
                        causes: lab_error::chain(&e),
                    };
                }
            },
            Err(StepError::Hang(_)) => match crash::hang(ctx, &label).await {
                Ok(c) => Some(c),
                Err(e) => {
                    return UnitOutcome::Failed {
                        message: format!("hang in {label}: {}", error::text(&e)),
                        crash: None,
                    };
                }
            },
            Err(StepError::Lost(m)) => match crash::rebooted(ctx).await {
                Ok(true) => {
                    match crash::collect(ctx, CrashKind::Bugcheck, Some(label.clone())).await {
                        Ok(c) => Some(c),
                        Err(e) => return errored(e),
                    }
                }
                Ok(false) => {
                    let boot_id = ctx.boot_id.lock().expect("boot id lock").clone();
                    return UnitOutcome::errored_msg(format!(
                        "{m}: the agent connection was lost but the guest did not restart \
                         (boot id still {boot_id}), so the lab failed, not the code under test"
                    ));
                }
                // Nothing came back to read a bugcheck record or dump from: a lab error.
                Err(e) => {
                    return UnitOutcome::errored_msg(format!("{m}; {}", error::text(&e)));
                }
            },
            Err(StepError::Failed(m)) => {
                // A failure can be the first sign of a crash (a tool that lost its maps).
                match crash::rebooted(ctx).await {
                    Ok(true) => {
                        let c = match crash::collect(ctx, CrashKind::Bugcheck, Some(label.clone()))
                            .await
                        {
                            Ok(c) => c,
                            // The VM died under the step: its failure is the lab's doing.
                            Err(e) => {
                                return UnitOutcome::errored_msg(format!(
                                    "{} (during {label}, which failed: {m})",
                                    error::text(&e)
                                ));
                            }
                        };
                        if !expects_crash_after(&steps, idx) {
                            return failed_by_crash(c);
                        }
                        Some(c)
                    }
                    Ok(false) => {
                        return UnitOutcome::Failed {
                            message: m,
                            crash: None,
                        };
                    }
                    Err(e) => {
                        return UnitOutcome::errored_msg(format!(
                            "{} (during {label}, which failed: {m})",
                            error::text(&e)
                        ));
                    }
                }
            }
            Err(StepError::Infra(m)) => return UnitOutcome::errored_msg(m),
            Err(StepError::Cancelled) => return UnitOutcome::Cancelled,
        };
        // An `expect_bugcheck` inside this step (beside the crashing step in a `parallel`)
        // judges the crash right here: the crash is what the block was written to cause.
        if let Some((code, within)) = nested_expectation(step) {
            let c = match new_crash {
                Some(c) => Some(c),
                None => match wait_for_crash(ctx, path, within).await {
                    Ok(c) => c,
                    Err(e) => return UnitOutcome::errored(&e),
                },
            };
            match expectation_verdict(c.as_ref(), code, within) {
                Ok(()) => continue,
                Err(m) => {
                    return UnitOutcome::Failed {
                        message: m.to_string(),
                        crash: c,
                    };
                }
            }
        }
        if let Some(c) = new_crash {
            if !expects_crash_after(&steps, idx) {
                return failed_by_crash(c);
            }
            crash = Some(c);
        }
    }
    match crash {
        Some(c) => failed_by_crash(c),
        None => UnitOutcome::Passed,
    }
}

/// Whether a crash during top-level step `idx` is expected: by a later top-level
/// `expect_bugcheck`, or by one inside that step itself (e.g. in the same `parallel`).
fn expects_crash_after(steps: &[(String, &Step)], idx: usize) -> bool {
    nested_expectation(steps[idx].1).is_some()
        || steps[idx + 1..]
            .iter()
            .any(|(_, s)| matches!(s.kind, StepKind::ExpectBugcheck { .. }))
}

/// The first `expect_bugcheck` nested in a block step (`parallel`, `sequence`, `repeat`):
/// its code and `within`.
fn nested_expectation(step: &Step) -> Option<(Option<u32>, Duration)> {
    let children = match &step.kind {
        StepKind::Parallel(c) | StepKind::Sequence(c) => c,
        StepKind::Repeat { steps, .. } => steps,
        _ => return None,
    };
    children.iter().find_map(|c| match &c.kind {
        StepKind::ExpectBugcheck { code, within } => Some((*code, *within)),
        _ => nested_expectation(c),
    })
}

/// How an `expect_bugcheck` / `expect_no_bugcheck` step failed: the code under test did
/// not crash the way the scenario says (a failure, not a lab error).
#[derive(Debug, Clone, thiserror::Error)]
enum Unexpected {
    #[error(
        "expected a bugcheck{} within {}, the guest did not crash",
        code.map(|c| format!(" {c:#x}")).unwrap_or_default(),
        humantime::format_duration(*within)
    )]
    NoCrash { code: Option<u32>, within: Duration },
    /// `got` is [`describe_crash`] of the crash seen.
    #[error("expected bugcheck {want:#x}, got {got}")]
    OtherCode { want: u32, got: String },
    #[error("expected no bugcheck, got {0}")]
    Crash(String),
}

/// Whether `crash` is the one an `expect_bugcheck` with `code` asked for.
fn expectation_verdict(
    crash: Option<&Crash>,
    code: Option<u32>,
    within: Duration,
) -> Result<(), Unexpected> {
    match (crash, code) {
        (None, _) => Err(Unexpected::NoCrash { code, within }),
        (Some(c), Some(want)) if c.bugcheck.as_ref().map(|b| b.code) != Some(want) => {
            Err(Unexpected::OtherCode {
                want,
                got: describe_crash(c),
            })
        }
        (Some(_), _) => Ok(()),
    }
}

/// Waits up to `within` for the guest to crash (for `expect_bugcheck` after a workload);
/// `Err` is a restart that left no evidence (a lab error).
async fn wait_for_crash(
    ctx: &UnitCtx<'_>,
    step: &str,
    within: Duration,
) -> Result<Option<Crash>, crate::verdict::NotACrash> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(true) = crash::rebooted(ctx).await {
            return crash::collect(ctx, CrashKind::Bugcheck, Some(step.to_owned()))
                .await
                .map(Some);
        }
        if Instant::now() >= deadline || ctx.cancel.is_cancelled() {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn instant_step(ctx: &UnitCtx<'_>, path: &str, step: &Step, verdict: Result<(), Unexpected>) {
    let outcome = match verdict {
        Ok(()) => StepOutcome::Passed,
        Err(e) => StepOutcome::Failed {
            message: e.to_string(),
        },
    };
    emit_step(ctx, path, step, outcome);
}

fn instant_step_skipped(ctx: &UnitCtx<'_>, path: &str, step: &Step) {
    emit_step(ctx, path, step, StepOutcome::Skipped);
}

fn emit_step(ctx: &UnitCtx<'_>, path: &str, step: &Step, outcome: StepOutcome) {
    let label = step.display_name();
    let _ = ctx.events.send(Event::StepStarted {
        unit: ctx.unit.clone(),
        path: path.to_owned(),
        label: label.clone(),
        timeout: Duration::ZERO,
    });
    let _ = ctx.events.send(Event::StepFinished {
        unit: ctx.unit.clone(),
        path: path.to_owned(),
        label,
        outcome,
        duration: Duration::ZERO,
        output: None,
    });
}

/// `bugcheck 0x50 PAGE_FAULT_IN_NONPAGED_AREA in sample_ebpf_ext.sys` or what is known.
pub fn describe_crash(c: &Crash) -> String {
    let what = match &c.bugcheck {
        Some(b) => {
            let mut s = format!("bugcheck {:#x}", b.code);
            if let Some(n) = &b.name {
                s.push_str(&format!(" {n}"));
            }
            if let Some(m) = &b.module {
                s.push_str(&format!(" in {m}"));
            }
            s
        }
        None => "a crash without a bugcheck record".to_owned(),
    };
    let kind = match c.kind {
        CrashKind::Hang => "hang: ",
        CrashKind::ConnectionLost => "connection lost: ",
        CrashKind::HeartbeatLost => "heartbeat lost: ",
        CrashKind::Bugcheck => "",
    };
    let during = c
        .step
        .as_ref()
        .map(|s| format!(" during {s}"))
        .unwrap_or_default();
    let bucket = c
        .bucket
        .as_ref()
        .map(|b| format!(" [bucket {}]", b.id))
        .unwrap_or_default();
    // Evidence that could not be kept is named in the verdict itself, never dropped.
    let lost: String = c
        .dumps_lost
        .iter()
        .map(|l| format!("; dump {} not kept: {}", l.dump, l.reason))
        .collect();
    format!("{kind}{what}{during}{bucket}{lost}")
}

fn failed_by_crash(c: Crash) -> UnitOutcome {
    UnitOutcome::Failed {
        message: describe_crash(&c),
        crash: Some(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::BugcheckInfo;

    fn crash(code: u32) -> Crash {
        Crash {
            kind: CrashKind::Bugcheck,
            step: Some("steps[1]".into()),
            bugcheck: Some(BugcheckInfo {
                code,
                name: None,
                params: [0; 4],
                module: None,
                symbol: None,
            }),
            dumps: vec![],
            bucket: None,
            triage_error: None,
            dumps_lost: vec![],
        }
    }

    #[test]
    fn an_expectation_names_what_was_wanted_and_what_happened() {
        let within = Duration::from_secs(30);
        assert!(expectation_verdict(Some(&crash(0x50)), Some(0x50), within).is_ok());
        assert!(expectation_verdict(Some(&crash(0x50)), None, within).is_ok());
        let none = expectation_verdict(None, Some(0x50), within).unwrap_err();
        assert_eq!(
            none.to_string(),
            "expected a bugcheck 0x50 within 30s, the guest did not crash"
        );
        let any = expectation_verdict(None, None, within).unwrap_err();
        assert_eq!(
            any.to_string(),
            "expected a bugcheck within 30s, the guest did not crash"
        );
        let other = expectation_verdict(Some(&crash(0x3b)), Some(0x50), within).unwrap_err();
        assert_eq!(
            other.to_string(),
            "expected bugcheck 0x50, got bugcheck 0x3b during steps[1]"
        );
    }
}
