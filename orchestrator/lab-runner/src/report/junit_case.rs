//! One unit (a scenario iteration on a template) as a JUnit `<testcase>`: status, failure
//! text naming the bugcheck and bucket, properties, the step timeline and attachments.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, FixedOffset, Utc};
use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestRerun};

use super::model::{Attempt, RunModel, StepRecord, UnitRecord};
use super::text;
use crate::events::{CrashKind, UnitOutcome};

/// The testcase name of a unit; matches its results folder `iter-<n>`.
pub fn case_name(u: &UnitRecord) -> String {
    format!("iter-{}", u.id.iteration)
}

/// Builds the testcase of one unit. `results_dir` makes attachment paths absolute, which
/// is what the `[[ATTACHMENT|path]]` convention (Jenkins, GitLab) resolves best.
pub fn unit_case(model: &RunModel, u: &UnitRecord, results_dir: &Path) -> TestCase {
    let mut status = status(model, u, results_dir);
    // Errored attempts retried on a fresh VM: `flakyError` under a pass, `rerunError` under
    // an error or failure (quick-junit picks the element from the status).
    status.add_reruns(u.retries.iter().map(attempt_rerun));
    let mut case = TestCase::new(case_name(u), status);
    case.set_classname(format!("{}@{}", u.id.scenario, u.id.template));
    if let Some(d) = u.duration {
        case.set_time(d);
    }
    if let Some(t) = u.started_at {
        case.set_timestamp(fixed(t));
    }
    if let Some(vm) = &u.vm {
        case.add_property(Property::new("vm", vm.as_str()));
    }
    if let Some(seed) = u.seed {
        case.add_property(Property::new("seed", seed.to_string()));
    }
    case.add_property(Property::new("iteration", u.id.iteration.to_string()));
    if !u.retries.is_empty() {
        case.add_property(Property::new("attempts", (u.retries.len() + 1).to_string()));
    }
    if let Some(c) = u.crash() {
        if let Some(b) = &c.bugcheck {
            case.add_property(Property::new("bugcheck", text::bugcheck_code(b.code)));
        }
        if let Some(b) = &c.bucket {
            case.add_property(Property::new("bucket", b.id.as_str()));
            if let Some(i) = &b.known_issue {
                case.add_property(Property::new("known_issue", i.as_str()));
            }
        }
    }
    let attachments: Vec<String> = u
        .attachments()
        .iter()
        .map(|p| results_dir.join(p).display().to_string())
        .collect();
    for a in &attachments {
        case.add_property(Property::new("attachment", a.as_str()));
    }
    let (out, err) = timeline(u, &attachments);
    if !out.is_empty() {
        case.set_system_out(out);
    }
    if !err.is_empty() {
        case.set_system_err(err);
    }
    case
}

fn status(model: &RunModel, u: &UnitRecord, results_dir: &Path) -> TestCaseStatus {
    match &u.outcome {
        Some(UnitOutcome::Passed) => TestCaseStatus::success(),
        Some(UnitOutcome::Failed { message, crash }) => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            let mut description = message.clone();
            match crash.as_ref().or(u.crashes.last()) {
                Some(c) => {
                    let mut msg = text::crash(c);
                    if let Some(b) = &c.bucket {
                        let _ = write!(msg, "; crash {}", text::bucket(b));
                    }
                    s.set_message(msg).set_type(match c.kind {
                        CrashKind::Bugcheck => "bugcheck",
                        CrashKind::Hang => "hang",
                        CrashKind::ConnectionLost => "connection-lost",
                        CrashKind::HeartbeatLost => "heartbeat-lost",
                    });
                    if let Some(b) = &c.bugcheck {
                        let p = b.params.map(|p| format!("0x{p:016X}")).join(", ");
                        let _ = write!(description, "\nbugcheck parameters: {p}");
                    }
                    if let Some(e) = &c.triage_error {
                        let _ = write!(description, "\ntriage error: {e}");
                    }
                    let _ = write!(
                        description,
                        "\ncrash folder: {}",
                        results_dir.join(super::crash_folder(c)).display()
                    );
                }
                None => {
                    s.set_message(text::first_line(message))
                        .set_type("expectation");
                }
            }
            s.set_description(description);
            s
        }
        Some(UnitOutcome::Errored { message, causes }) => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(UnitOutcome::error_text(text::first_line(message), causes))
                .set_type("lab-error")
                .set_description(UnitOutcome::error_text(message, causes));
            s
        }
        Some(UnitOutcome::Cancelled) => skipped("run interrupted"),
        None if model.interrupted() => skipped("run interrupted: the unit did not finish"),
        None => skipped("not run: the run ended before this unit finished"),
    }
}

fn skipped(message: &str) -> TestCaseStatus {
    let mut s = TestCaseStatus::skipped();
    s.set_message(message);
    s
}

/// The step timeline (offsets from the unit's start), crash lines, failing steps' output
/// and attachment lines; stderr of failing steps goes to system-err.
fn timeline(u: &UnitRecord, attachments: &[String]) -> (String, String) {
    let mut out = String::new();
    let mut err = String::new();
    let t0 = u.started_at.or(u.steps.first().map(|s| s.started_at));
    for s in &u.steps {
        step_line(&mut out, s, t0);
        let failed = !matches!(s.outcome, Some(crate::events::StepOutcome::Passed));
        if let (true, Some(o)) = (failed, &s.output) {
            if let Some(code) = o.exit_code {
                let _ = writeln!(out, "  exit code {code}");
            }
            for line in o.stdout.lines() {
                let _ = writeln!(out, "  | {line}");
            }
            if !o.stderr.is_empty() {
                let _ = writeln!(err, "{} {}:\n{}", s.path, s.label, o.stderr);
            }
        }
    }
    for c in &u.crashes {
        let _ = writeln!(out, "{}", text::crash(c));
        if let Some(b) = &c.bucket {
            let _ = writeln!(out, "  crash {}", text::bucket(b));
        }
    }
    for a in attachments {
        let _ = writeln!(out, "[[ATTACHMENT|{a}]]");
    }
    (out, err)
}

/// One timeline line: `[+offset] path label: outcome in duration`, offset from `t0`.
fn step_line(out: &mut String, s: &StepRecord, t0: Option<DateTime<Utc>>) {
    let offset = t0
        .and_then(|t0| (s.started_at - t0).to_std().ok())
        .unwrap_or_default();
    let result = match (&s.outcome, s.duration) {
        (Some(o), Some(d)) => format!("{} in {}", text::step_outcome(o), text::duration(d)),
        _ => "did not finish".to_owned(),
    };
    let _ = writeln!(
        out,
        "[+{}] {} {}: {result}",
        text::duration(offset),
        s.path,
        s.label
    );
}

/// An errored attempt as a rerun entry: its message, VM and step timeline.
fn attempt_rerun(a: &Attempt) -> TestRerun {
    let (kind, ty) = match &a.outcome {
        UnitOutcome::Failed { .. } => (NonSuccessKind::Failure, "expectation"),
        _ => (NonSuccessKind::Error, "lab-error"),
    };
    let message = text::outcome_reason(&a.outcome);
    let mut r = TestRerun::new(kind);
    r.set_message(format!("attempt {}: {message}", a.attempt))
        .set_type(ty)
        .set_time(a.duration);
    let full = match &a.outcome {
        UnitOutcome::Errored { message, causes } => UnitOutcome::error_text(message, causes),
        UnitOutcome::Failed { message, .. } => message.clone(),
        other => text::outcome_reason(other),
    };
    let vm = a.vm.as_deref().unwrap_or("no VM");
    r.description = Some(format!("attempt {} on {vm}: {full}", a.attempt).into());
    if let Some(t) = a.started_at {
        r.set_timestamp(fixed(t));
    }
    let mut out = String::new();
    for s in &a.steps {
        step_line(&mut out, s, a.started_at);
    }
    if !out.is_empty() {
        r.set_system_out(out);
    }
    r
}

/// Turns a unit's testcase into a rerun entry (for flaky / rerun grouping).
pub fn as_rerun(case: &TestCase) -> Option<TestRerun> {
    let TestCaseStatus::NonSuccess {
        kind,
        message,
        ty,
        description,
        ..
    } = &case.status
    else {
        return None;
    };
    let mut r = TestRerun::new(*kind);
    r.message = message.clone();
    r.ty = ty.clone();
    r.description = description.clone();
    r.time = case.time;
    r.timestamp = case.timestamp;
    r.system_out = case.system_out.clone();
    r.system_err = case.system_err.clone();
    Some(r)
}

pub fn fixed(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.fixed_offset()
}
