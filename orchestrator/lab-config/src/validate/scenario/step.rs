//! Walks a scenario's steps in order: one kind per step, the kinds that change the whole VM
//! kept out of `parallel`, and one function per kind (the ones that resolve references live
//! in the sibling modules).

use std::time::Duration;

use super::{BUILTIN_CHECKPOINTS, STEP_KINDS, Walk, driver, metric, program};
use crate::model::{RepeatMode, SleepSpec, Step, StepKind};
use crate::validate::{Cx, list};
use crate::values::{Loc, Sp};
use crate::wire::scenario::{
    CheckpointWire, ExpectBugcheckWire, RebootWire, RepeatWire, SleepWire, StepWire,
};

pub(super) fn steps(
    cx: &mut Cx<'_>,
    walk: &mut Walk<'_>,
    ws: &[StepWire],
    path: &str,
) -> Vec<Step> {
    ws.iter()
        .enumerate()
        .filter_map(|(i, s)| step(cx, walk, s, &format!("{path}[{i}]")))
        .collect()
}

/// The kind keys present in a step, with their positions.
fn kinds_present(s: &StepWire) -> Vec<(&'static str, Loc)> {
    let mut v = Vec::new();
    macro_rules! k {
        ($($f:ident),*) => { $( if let Some(x) = &s.$f { v.push((stringify!($f), x.loc)); } )* };
    }
    k!(
        deploy,
        driver_start,
        driver_stop,
        driver_restart,
        driver_wait,
        run,
        exec,
        parallel,
        sequence,
        repeat,
        sleep,
        checkpoint,
        restore,
        reboot,
        record_metric,
        assert_metric,
        expect_bugcheck,
        expect_no_bugcheck
    );
    // File order, so "more than one kind" points at the second key the user wrote.
    v.sort_by_key(|(_, loc)| (loc.line, loc.column));
    v
}

fn step(cx: &mut Cx<'_>, walk: &mut Walk<'_>, s: &StepWire, p: &str) -> Option<Step> {
    let name = s.name.as_ref().map(|n| n.value.clone());
    let (kind_name, loc) = single_kind(cx, s, p)?;
    let kp = format!("{p}.{kind_name}");
    if walk.in_parallel && matches!(kind_name, "deploy" | "checkpoint" | "restore" | "reboot") {
        cx.error(
            "not-allowed",
            loc,
            &kp,
            format!("`{kind_name}` cannot run inside `parallel` (it changes the whole VM)"),
        );
        return None;
    }
    let kind = kind(cx, walk, s, kind_name, &kp)?;
    Some(Step {
        name,
        kind,
        origin: cx.origin(loc),
    })
}

/// The step's one kind key and where it stands; none or two are an error.
fn single_kind(cx: &mut Cx<'_>, s: &StepWire, p: &str) -> Option<(&'static str, Loc)> {
    let present = kinds_present(s);
    match present.as_slice() {
        [] => {
            let loc = s.name.as_ref().map_or_else(|| Loc::at(1, 1), |n| n.loc);
            cx.error("step-kind", loc, p, "step has no kind").help =
                Some(format!("add exactly one of {}", list(STEP_KINDS)));
            None
        }
        [one] => Some(*one),
        [first, second, ..] => {
            cx.error(
                "step-kind",
                second.1,
                format!("{p}.{}", second.0),
                format!(
                    "step has more than one kind (`{}` and `{}`): split it into separate steps",
                    first.0, second.0
                ),
            );
            None
        }
    }
}

/// Validates the step's kind `kind_name` (at YAML path `kp`).
fn kind(
    cx: &mut Cx<'_>,
    walk: &mut Walk<'_>,
    s: &StepWire,
    kind_name: &str,
    kp: &str,
) -> Option<StepKind> {
    match kind_name {
        "deploy" => Some(StepKind::Deploy),
        "driver_start" => driver::op(cx, walk, s.driver_start.as_ref()?, kp, &driver::RUNNING)
            .map(StepKind::DriverStart),
        "driver_stop" => driver::op(cx, walk, s.driver_stop.as_ref()?, kp, &driver::STOPPED)
            .map(StepKind::DriverStop),
        "driver_restart" => driver::op(cx, walk, s.driver_restart.as_ref()?, kp, &driver::RUNNING)
            .map(StepKind::DriverRestart),
        "driver_wait" => driver::wait(cx, walk, s.driver_wait.as_ref()?, kp),
        "run" => program::run(cx, walk, s.run.as_ref()?, kp).map(StepKind::Run),
        "exec" => program::exec(cx, walk, s.exec.as_ref()?, kp).map(StepKind::Exec),
        "parallel" => Some(parallel(cx, walk, s.parallel.as_ref()?, kp)),
        "sequence" => Some(sequence(cx, walk, s.sequence.as_ref()?, kp)),
        "repeat" => repeat(cx, walk, s.repeat.as_ref()?, kp),
        "sleep" => Some(sleep(cx, s.sleep.as_ref()?, kp)),
        "checkpoint" => Some(checkpoint(cx, walk, s.checkpoint.as_ref()?, kp)),
        "restore" => Some(restore(cx, walk, s.restore.as_ref()?, kp)),
        "reboot" => Some(reboot(cx, s.reboot.as_ref()?, kp)),
        "record_metric" => metric::record(cx, walk, s.record_metric.as_ref()?, kp),
        "assert_metric" => {
            metric::assert(cx, walk, s.assert_metric.as_ref()?, kp).map(StepKind::AssertMetric)
        }
        "expect_bugcheck" => Some(expect_bugcheck(cx, walk, s.expect_bugcheck.as_ref()?, kp)),
        "expect_no_bugcheck" => Some(StepKind::ExpectNoBugcheck),
        _ => None,
    }
}

fn parallel(cx: &mut Cx<'_>, walk: &mut Walk<'_>, list: &Sp<Vec<StepWire>>, kp: &str) -> StepKind {
    if list.len() < 2 {
        cx.error("range", list.loc, kp, "`parallel` needs at least two steps");
    }
    let outer = std::mem::replace(&mut walk.in_parallel, true);
    let inner = steps(cx, walk, list, kp);
    walk.in_parallel = outer;
    StepKind::Parallel(inner)
}

fn sequence(cx: &mut Cx<'_>, walk: &mut Walk<'_>, list: &Sp<Vec<StepWire>>, kp: &str) -> StepKind {
    if list.is_empty() {
        cx.error("empty", list.loc, kp, "`sequence` needs at least one step");
    }
    StepKind::Sequence(steps(cx, walk, list, kp))
}

fn repeat(cx: &mut Cx<'_>, walk: &mut Walk<'_>, r: &Sp<RepeatWire>, kp: &str) -> Option<StepKind> {
    let mode = match (&r.count, &r.duration) {
        (Some(c), None) => Some(RepeatMode::Count(cx.count_u32(
            c,
            &format!("{kp}.count"),
            "repeat count",
            1_000_000,
        ))),
        (None, Some(d)) => Some(RepeatMode::Duration(cx.positive_duration(
            Some(d),
            &format!("{kp}.duration"),
            "repeat duration",
            Duration::from_secs(1),
        ))),
        (Some(_), Some(d)) => {
            cx.error(
                "conflict",
                d.loc,
                format!("{kp}.duration"),
                "`repeat` takes `count` or `duration`, not both",
            );
            None
        }
        (None, None) => {
            cx.error("missing", r.loc, kp, "`repeat` needs `count` or `duration`");
            None
        }
    };
    if r.steps.is_empty() {
        cx.error(
            "empty",
            r.steps.loc,
            format!("{kp}.steps"),
            "`repeat` needs at least one step",
        );
    }
    let inner = steps(cx, walk, &r.steps, &format!("{kp}.steps"));
    mode.map(|mode| StepKind::Repeat { mode, steps: inner })
}

fn sleep(cx: &mut Cx<'_>, sl: &Sp<SleepWire>, kp: &str) -> StepKind {
    match &sl.value {
        SleepWire::Fixed(d) => StepKind::Sleep(SleepSpec::Fixed(d.0)),
        SleepWire::Random { min, max } => {
            if min.value > max.value {
                cx.error(
                    "range",
                    min.loc,
                    format!("{kp}.min"),
                    "sleep `min` is longer than `max`",
                );
            }
            StepKind::Sleep(SleepSpec::Random {
                min: min.value.0,
                max: max.value.0,
            })
        }
    }
}

fn checkpoint(cx: &mut Cx<'_>, walk: &mut Walk<'_>, c: &CheckpointWire, kp: &str) -> StepKind {
    if cx.name(&c.name, &format!("{kp}.name"), "checkpoint") {
        if BUILTIN_CHECKPOINTS.contains(&c.name.as_str()) {
            cx.error(
                "conflict",
                c.name.loc,
                format!("{kp}.name"),
                format!(
                    "checkpoint name `{}` is reserved (the runner takes it after deploy)",
                    c.name.value
                ),
            );
        } else {
            walk.checkpoints.insert(c.name.value.clone());
        }
    }
    StepKind::Checkpoint {
        name: c.name.value.clone(),
    }
}

fn restore(cx: &mut Cx<'_>, walk: &Walk<'_>, c: &CheckpointWire, kp: &str) -> StepKind {
    if !walk.checkpoints.contains(&c.name.value) {
        let mut known: Vec<&str> = walk.checkpoints.iter().map(String::as_str).collect();
        known.sort_unstable();
        cx.error(
            "unknown-reference",
            c.name.loc,
            format!("{kp}.name"),
            format!(
                "unknown checkpoint `{}`: no earlier step takes it",
                c.name.value
            ),
        )
        .help = Some(format!("checkpoints available here: {}", list(&known)));
    }
    StepKind::Restore {
        name: c.name.value.clone(),
    }
}

fn reboot(cx: &mut Cx<'_>, r: &RebootWire, kp: &str) -> StepKind {
    StepKind::Reboot {
        timeout: cx.positive_duration(
            r.timeout.as_ref(),
            &format!("{kp}.timeout"),
            "timeout",
            Duration::from_secs(300),
        ),
    }
}

fn expect_bugcheck(cx: &mut Cx<'_>, walk: &Walk<'_>, e: &ExpectBugcheckWire, kp: &str) -> StepKind {
    StepKind::ExpectBugcheck {
        code: e.code.as_ref().map(|c| c.value.0),
        within: cx.positive_duration(
            e.within.as_ref(),
            &format!("{kp}.within"),
            "within",
            walk.step_timeout,
        ),
    }
}
