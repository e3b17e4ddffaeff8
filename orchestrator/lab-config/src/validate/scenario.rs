//! Scenario validation against a lab and the payloads: VM templates, payload target, and
//! every step with its references (drivers, tools, arguments, counters, metrics,
//! checkpoints, baselines) resolved.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::payload::{in_range, typed_value};
use super::{Cx, list};
use crate::diag::Related;
use crate::model::invocation::InvocationContext;
use crate::model::{
    AssertMetric, CounterCheck, DriverOp, DriverRef, Exec, Lab, MetricCondition, MetricRef,
    Payload, RepeatMode, RunTool, Scenario, SleepSpec, Step, StepKind, ToolRef,
};
use crate::values::Loc;
use crate::wire::lab::LabKind;
use crate::wire::payload::PayloadTarget;
use crate::wire::scenario::{DriverOpWire, DriverState, ScenarioWire, SleepWire, StepWire};

/// Step kind keys, in the order the docs list them.
pub(crate) const STEP_KINDS: &[&str] = &[
    "deploy",
    "driver_start",
    "driver_stop",
    "driver_restart",
    "driver_wait",
    "run",
    "exec",
    "parallel",
    "sequence",
    "repeat",
    "sleep",
    "checkpoint",
    "restore",
    "reboot",
    "record_metric",
    "assert_metric",
    "expect_bugcheck",
    "expect_no_bugcheck",
];

/// Names a scenario may restore without taking them: the runner's own checkpoint.
pub const BUILTIN_CHECKPOINTS: &[&str] = &["deployed"];

/// Per-scenario state while walking steps in order.
struct Walk<'p> {
    payload: &'p Payload,
    step_timeout: Duration,
    checkpoints: HashSet<String>,
    /// Baseline name -> metric index it recorded.
    baselines: HashMap<String, usize>,
    /// Inside a `parallel` (checkpoint / restore / reboot / deploy are not allowed there).
    in_parallel: bool,
}

/// What the scenario needs from the rest of the configuration.
pub(crate) struct Env<'a> {
    pub lab: &'a Lab,
    pub payloads: &'a [Arc<Payload>],
    /// Payload names that exist but failed validation (no second error for references).
    pub broken_payloads: &'a HashSet<String>,
}

/// Validates a scenario file against a lab and the payloads.
pub(crate) fn scenario(cx: &mut Cx<'_>, w: ScenarioWire, env: &Env<'_>) -> Option<Scenario> {
    cx.name(&w.name, "name", "scenario");
    let mut tags = Vec::new();
    let mut seen = HashMap::new();
    for (i, t) in w.tags.iter().flatten().enumerate() {
        if cx.name(t, &format!("tags[{i}]"), "tag")
            && cx.unique(&mut seen, t, &format!("tags[{i}]"), "tag")
        {
            tags.push(t.value.clone());
        }
    }
    let lab = env.lab;
    let payload = env
        .payloads
        .iter()
        .find(|p| p.name == w.payload.value)
        .cloned();
    if payload.is_none() && !env.broken_payloads.contains(&w.payload.value) {
        let names: Vec<&str> = env.payloads.iter().map(|p| p.name.as_str()).collect();
        let d = cx.error(
            "unknown-reference",
            w.payload.loc,
            "payload",
            format!("unknown payload `{}`", w.payload.value),
        );
        d.help = Some(format!("payloads: {}", list(&names)));
        for p in env.payloads {
            d.related.push(Related {
                message: format!("payload `{}` is defined here", p.name),
                file: p.file.to_path_buf(),
                loc: Some(Loc::at(1, 1)),
            });
        }
    }
    if let Some(p) = &payload {
        let compatible = matches!(
            (p.target, lab.kind()),
            (PayloadTarget::Sim, LabKind::Sim) | (PayloadTarget::Windows, LabKind::Hyperv)
        );
        if !compatible {
            let (t, k) = (
                if p.target == PayloadTarget::Sim {
                    "sim"
                } else {
                    "windows"
                },
                if lab.kind() == LabKind::Sim {
                    "sim"
                } else {
                    "hyperv"
                },
            );
            let d = cx.error(
                "target-mismatch",
                w.payload.loc,
                "payload",
                format!(
                    "payload `{}` targets `{t}` guests, but lab `{}` is a `{k}` lab",
                    p.name, lab.name
                ),
            );
            d.related.push(Related {
                message: format!("lab `{}` is defined here", lab.name),
                file: lab.file.to_path_buf(),
                loc: Some(Loc::at(1, 1)),
            });
            d.help = Some(if t == "sim" {
                "run it on a sim lab (vm-configs/local-sim.yaml)".to_owned()
            } else {
                "run it with `--lab` naming a Hyper-V lab".to_owned()
            });
        }
    }
    let templates = lab.templates();
    let names: Vec<&str> = templates.iter().map(|t| t.name).collect();
    let vms = match &w.vms {
        None => names.iter().map(|s| (*s).to_owned()).collect(),
        Some(v) => {
            if v.is_empty() {
                cx.error(
                    "empty",
                    v.loc,
                    "vms",
                    "`vms` is empty: list template names or leave it out for all templates",
                );
            }
            let mut seen = HashMap::new();
            let mut out = Vec::new();
            for (i, t) in v.iter().enumerate() {
                if !names.contains(&t.as_str()) {
                    let d = cx.error(
                        "unknown-reference",
                        t.loc,
                        format!("vms[{i}]"),
                        format!("unknown VM template `{}` in lab `{}`", t.value, lab.name),
                    );
                    d.related.push(Related {
                        message: format!("lab `{}` defines templates {}", lab.name, list(&names)),
                        file: lab.file.to_path_buf(),
                        loc: template_loc(lab),
                    });
                } else if cx.unique(&mut seen, t, &format!("vms[{i}]"), "VM template") {
                    out.push(t.value.clone());
                }
            }
            out
        }
    };
    let iterations = w
        .iterations
        .as_ref()
        .map_or(1, |i| cx.count_u32(i, "iterations", "iterations", 100_000));
    let timeout = cx.positive_duration(
        w.timeout.as_ref(),
        "timeout",
        "timeout",
        Duration::from_secs(600),
    );
    let step_timeout = cx.positive_duration(
        w.step_timeout.as_ref(),
        "step_timeout",
        "step_timeout",
        Duration::from_secs(60).min(timeout),
    );
    if step_timeout > timeout
        && let Some(s) = &w.step_timeout
    {
        cx.error(
            "range",
            s.loc,
            "step_timeout",
            "step_timeout is longer than the scenario `timeout`",
        );
    }
    if w.steps.is_empty() {
        cx.error(
            "empty",
            w.steps.loc,
            "steps",
            "a scenario needs at least one step",
        );
    }
    // Without a valid payload, references cannot be checked; stop after the header checks.
    let payload = payload?;
    let mut walk = Walk {
        payload: &payload,
        step_timeout,
        checkpoints: BUILTIN_CHECKPOINTS
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
        baselines: HashMap::new(),
        in_parallel: false,
    };
    let setup = steps(
        cx,
        &mut walk,
        w.setup.as_ref().map_or(&[][..], |s| &s.value),
        "setup",
    );
    let body = steps(cx, &mut walk, &w.steps.value, "steps");
    cx.clean().then(|| Scenario {
        name: w.name.value,
        description: w.description,
        file: cx.file.clone(),
        tags,
        payload: payload.clone(),
        vms,
        iterations,
        timeout,
        step_timeout,
        setup,
        steps: body,
    })
}

fn template_loc(lab: &Lab) -> Option<Loc> {
    match &lab.backend {
        crate::model::LabBackend::Sim(s) => s.templates.first().map(|t| t.origin.loc),
        crate::model::LabBackend::HyperV(h) => h.templates.first().map(|t| t.origin.loc),
    }
}

fn steps(cx: &mut Cx<'_>, walk: &mut Walk<'_>, ws: &[StepWire], path: &str) -> Vec<Step> {
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
    let present = kinds_present(s);
    let name = s.name.as_ref().map(|n| n.value.clone());
    let name_loc = s.name.as_ref().map(|n| n.loc);
    let (kind_name, loc) = match present.as_slice() {
        [] => {
            let loc = name_loc.unwrap_or_else(|| Loc::at(1, 1));
            cx.error("step-kind", loc, p, "step has no kind").help =
                Some(format!("add exactly one of {}", list(STEP_KINDS)));
            return None;
        }
        [one] => *one,
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
            return None;
        }
    };
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
    let kind = match kind_name {
        "deploy" => Some(StepKind::Deploy),
        "driver_start" => driver_op(
            cx,
            walk,
            s.driver_start.as_ref()?,
            &kp,
            DriverState::Running,
            &[DriverState::Running],
        )
        .map(StepKind::DriverStart),
        "driver_stop" => driver_op(
            cx,
            walk,
            s.driver_stop.as_ref()?,
            &kp,
            DriverState::Stopped,
            &[DriverState::Stopped, DriverState::StopPending],
        )
        .map(StepKind::DriverStop),
        "driver_restart" => driver_op(
            cx,
            walk,
            s.driver_restart.as_ref()?,
            &kp,
            DriverState::Running,
            &[DriverState::Running],
        )
        .map(StepKind::DriverRestart),
        "driver_wait" => {
            let w = s.driver_wait.as_ref()?;
            if w.expect.is_none() {
                cx.error(
                    "missing",
                    w.loc,
                    format!("{kp}.expect"),
                    "`driver_wait` needs `expect` (running, stopped or stop_pending)",
                );
            }
            driver_op(
                cx,
                walk,
                w,
                &kp,
                DriverState::Stopped,
                &[
                    DriverState::Running,
                    DriverState::Stopped,
                    DriverState::StopPending,
                ],
            )
            .map(StepKind::DriverWait)
        }
        "run" => run(cx, walk, s.run.as_ref()?, &kp).map(StepKind::Run),
        "exec" => exec(cx, walk, s.exec.as_ref()?, &kp).map(StepKind::Exec),
        "parallel" => {
            let list = s.parallel.as_ref()?;
            if list.len() < 2 {
                cx.error(
                    "range",
                    list.loc,
                    &kp,
                    "`parallel` needs at least two steps",
                );
            }
            let outer = std::mem::replace(&mut walk.in_parallel, true);
            let inner = steps(cx, walk, list, &kp);
            walk.in_parallel = outer;
            Some(StepKind::Parallel(inner))
        }
        "sequence" => {
            let list = s.sequence.as_ref()?;
            if list.is_empty() {
                cx.error("empty", list.loc, &kp, "`sequence` needs at least one step");
            }
            Some(StepKind::Sequence(steps(cx, walk, list, &kp)))
        }
        "repeat" => {
            let r = s.repeat.as_ref()?;
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
                    cx.error(
                        "missing",
                        r.loc,
                        &kp,
                        "`repeat` needs `count` or `duration`",
                    );
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
        "sleep" => {
            let sl = s.sleep.as_ref()?;
            match &sl.value {
                SleepWire::Fixed(d) => Some(StepKind::Sleep(SleepSpec::Fixed(d.0))),
                SleepWire::Random { min, max } => {
                    if min.value > max.value {
                        cx.error(
                            "range",
                            min.loc,
                            format!("{kp}.min"),
                            "sleep `min` is longer than `max`",
                        );
                    }
                    Some(StepKind::Sleep(SleepSpec::Random {
                        min: min.value.0,
                        max: max.value.0,
                    }))
                }
            }
        }
        "checkpoint" => {
            let c = s.checkpoint.as_ref()?;
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
            Some(StepKind::Checkpoint {
                name: c.name.value.clone(),
            })
        }
        "restore" => {
            let c = s.restore.as_ref()?;
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
            Some(StepKind::Restore {
                name: c.name.value.clone(),
            })
        }
        "reboot" => {
            let r = s.reboot.as_ref()?;
            Some(StepKind::Reboot {
                timeout: cx.positive_duration(
                    r.timeout.as_ref(),
                    &format!("{kp}.timeout"),
                    "timeout",
                    Duration::from_secs(300),
                ),
            })
        }
        "record_metric" => {
            let r = s.record_metric.as_ref()?;
            let metric = metric_ref(cx, walk, &r.metric, &format!("{kp}.metric"));
            cx.name(&r.as_name, &format!("{kp}.as"), "baseline");
            let metric = metric?;
            walk.baselines.insert(r.as_name.value.clone(), metric.index);
            Some(StepKind::RecordMetric {
                metric,
                as_name: r.as_name.value.clone(),
            })
        }
        "assert_metric" => {
            assert_metric(cx, walk, s.assert_metric.as_ref()?, &kp).map(StepKind::AssertMetric)
        }
        "expect_bugcheck" => {
            let e = s.expect_bugcheck.as_ref()?;
            Some(StepKind::ExpectBugcheck {
                code: e.code.as_ref().map(|c| c.value.0),
                within: cx.positive_duration(
                    e.within.as_ref(),
                    &format!("{kp}.within"),
                    "within",
                    walk.step_timeout,
                ),
            })
        }
        "expect_no_bugcheck" => Some(StepKind::ExpectNoBugcheck),
        _ => None,
    }?;
    Some(Step {
        name,
        kind,
        origin: cx.origin(loc),
    })
}

fn driver_op(
    cx: &mut Cx<'_>,
    walk: &Walk<'_>,
    w: &DriverOpWire,
    p: &str,
    default: DriverState,
    allowed: &[DriverState],
) -> Option<DriverOp> {
    let payload = walk.payload;
    let index = payload
        .drivers
        .iter()
        .position(|d| d.service == w.driver.value);
    if index.is_none() {
        let names: Vec<&str> = payload.drivers.iter().map(|d| d.service.as_str()).collect();
        let d = cx.error(
            "unknown-reference",
            w.driver.loc,
            format!("{p}.driver"),
            format!(
                "unknown driver `{}` in payload `{}`",
                w.driver.value, payload.name
            ),
        );
        d.related.push(Related {
            message: format!(
                "payload `{}` defines drivers {}",
                payload.name,
                list(&names)
            ),
            file: payload.file.to_path_buf(),
            loc: payload.drivers.first().map(|d| d.origin.loc),
        });
    }
    let expect = w.expect.as_ref().map_or(default, |e| e.value);
    if let Some(e) = &w.expect
        && !allowed.contains(&e.value)
    {
        let names: Vec<&str> = allowed.iter().map(|s| state_name(*s)).collect();
        cx.error(
            "invalid-value",
            e.loc,
            format!("{p}.expect"),
            format!(
                "this step cannot end in `{}`; expected {}",
                state_name(e.value),
                list(&names)
            ),
        );
    }
    let timeout = cx.positive_duration(
        w.timeout.as_ref(),
        &format!("{p}.timeout"),
        "timeout",
        walk.step_timeout,
    );
    Some(DriverOp {
        driver: DriverRef {
            index: index?,
            service: w.driver.value.clone(),
        },
        expect,
        timeout,
    })
}

fn state_name(s: DriverState) -> &'static str {
    match s {
        DriverState::Running => "running",
        DriverState::Stopped => "stopped",
        DriverState::StopPending => "stop_pending",
    }
}

fn run(
    cx: &mut Cx<'_>,
    walk: &Walk<'_>,
    w: &crate::values::Sp<crate::wire::scenario::RunWire>,
    p: &str,
) -> Option<RunTool> {
    let payload = walk.payload;
    let Some(index) = payload.tools.iter().position(|t| t.name == w.tool.value) else {
        let names: Vec<&str> = payload.tools.iter().map(|t| t.name.as_str()).collect();
        let d = cx.error(
            "unknown-reference",
            w.tool.loc,
            format!("{p}.tool"),
            format!(
                "unknown tool `{}` in payload `{}`",
                w.tool.value, payload.name
            ),
        );
        d.related.push(Related {
            message: format!("payload `{}` defines tools {}", payload.name, list(&names)),
            file: payload.file.to_path_buf(),
            loc: payload.tools.first().map(|t| t.origin.loc),
        });
        return None;
    };
    let tool = &payload.tools[index];
    let before = cx.diags.len();
    let mut args = BTreeMap::new();
    let empty = BTreeMap::new();
    let given = w.args.as_ref().map_or(&empty, |a| &a.value);
    for (name, v) in given {
        let ap = format!("{p}.args.{name}");
        let Some(arg) = tool.argument(name) else {
            let names: Vec<&str> = tool.arguments.iter().map(|a| a.name.as_str()).collect();
            let d = cx.error(
                "unknown-reference",
                v.loc,
                &ap,
                format!("tool `{}` has no argument `{name}`", tool.name),
            );
            d.related.push(Related {
                message: format!("tool `{}` takes {}", tool.name, list(&names)),
                file: tool.origin.file.to_path_buf(),
                loc: Some(tool.origin.loc),
            });
            continue;
        };
        match typed_value(&arg.kind, &v.value).and_then(|tv| in_range(&arg.kind, &tv).map(|()| tv))
        {
            Ok(tv) => {
                args.insert(name.clone(), tv);
            }
            Err(e) => {
                cx.error(
                    "type",
                    v.loc,
                    &ap,
                    format!("invalid value for `{name}` of tool `{}`: {e}", tool.name),
                );
            }
        }
    }
    for a in tool.arguments.iter().filter(|a| a.required) {
        if !given.contains_key(&a.name) {
            cx.error(
                "missing",
                w.tool.loc,
                format!("{p}.args"),
                format!("tool `{}` requires argument `{}`", tool.name, a.name),
            );
        }
    }
    let expect = w.expect.as_ref();
    let exit_codes = match expect.and_then(|e| e.exit_codes.as_ref()) {
        Some(c) if c.is_empty() => {
            cx.error(
                "empty",
                c.loc,
                format!("{p}.expect.exit_codes"),
                "`exit_codes` must list at least one code",
            );
            Vec::new()
        }
        Some(c) => c.value.clone(),
        None => tool.result.exit_codes.clone(),
    };
    let mut counters = Vec::new();
    if let Some(cs) = expect.and_then(|e| e.counters.as_ref()) {
        if tool.result.counters.is_none() {
            cx.error(
                "conflict",
                cs.loc,
                format!("{p}.expect.counters"),
                format!(
                    "tool `{}` reports no counters (its `result.counters` is not set)",
                    tool.name
                ),
            )
            .related
            .push(Related {
                message: format!("tool `{}` is defined here", tool.name),
                file: tool.origin.file.to_path_buf(),
                loc: Some(tool.origin.loc),
            });
        }
        for (name, r) in &cs.value {
            let cp = format!("{p}.expect.counters.{name}");
            if !tool.result.counter_names.is_empty() && !tool.result.counter_names.contains(name) {
                let names: Vec<&str> = tool
                    .result
                    .counter_names
                    .iter()
                    .map(String::as_str)
                    .collect();
                cx.error(
                    "unknown-reference",
                    r.loc,
                    &cp,
                    format!("tool `{}` reports no counter `{name}`", tool.name),
                )
                .related
                .push(Related {
                    message: format!("tool `{}` reports {}", tool.name, list(&names)),
                    file: tool.origin.file.to_path_buf(),
                    loc: Some(tool.origin.loc),
                });
            }
            let (min, max) = match (&r.equals, &r.min, &r.max) {
                (Some(e), None, None) => (Some(e.value), Some(e.value)),
                (None, min, max) => (min.as_ref().map(|m| m.value), max.as_ref().map(|m| m.value)),
                (Some(e), _, _) => {
                    cx.error(
                        "conflict",
                        e.loc,
                        format!("{cp}.equals"),
                        "`equals` cannot be combined with `min` or `max`",
                    );
                    (None, None)
                }
            };
            if min.is_none() && max.is_none() && r.equals.is_none() {
                cx.error(
                    "missing",
                    r.loc,
                    &cp,
                    "a counter check needs `min`, `max` or `equals`",
                );
            }
            if let (Some(a), Some(b)) = (min, max)
                && a > b
            {
                cx.error(
                    "range",
                    r.loc,
                    &cp,
                    format!("counter range is empty: min {a} > max {b}"),
                );
            }
            counters.push(CounterCheck {
                name: name.clone(),
                min,
                max,
            });
        }
    }
    let timeout = cx.positive_duration(
        w.timeout.as_ref(),
        &format!("{p}.timeout"),
        "timeout",
        tool.timeout.unwrap_or(walk.step_timeout),
    );
    if cx.diags.len() != before {
        return None;
    }
    let run = RunTool {
        tool: ToolRef {
            index,
            name: tool.name.clone(),
        },
        args,
        exit_codes,
        counters,
        timeout,
    };
    let ctx = InvocationContext {
        seed: 1,
        iteration: 0,
        vm: "vm",
        scenario: "scenario",
    };
    if let Err(e) = run.argv(payload, &ctx) {
        cx.error(
            "render",
            w.tool.loc,
            p,
            format!("tool invocation cannot be rendered: {e}"),
        );
        return None;
    }
    Some(run)
}

fn exec(
    cx: &mut Cx<'_>,
    walk: &Walk<'_>,
    w: &crate::wire::scenario::ExecWire,
    p: &str,
) -> Option<Exec> {
    if w.command.is_empty() || w.command[0].trim().is_empty() {
        cx.error(
            "empty",
            w.command.loc,
            format!("{p}.command"),
            "`exec` needs a program as the first element of `command`",
        );
        return None;
    }
    let ctx = InvocationContext {
        seed: 1,
        iteration: 0,
        vm: "vm",
        scenario: "scenario",
    };
    let mut ok = true;
    for (i, e) in w.command.iter().enumerate() {
        if let Err(err) = crate::model::invocation::expand_builtins(e, &ctx) {
            cx.error(
                "render",
                e.loc,
                format!("{p}.command[{i}]"),
                format!(
                    "{err}; `exec` knows only {}",
                    list(&["seed", "iteration", "vm", "scenario"])
                ),
            );
            ok = false;
        }
    }
    let exit_codes = w
        .exit_codes
        .as_ref()
        .map_or_else(|| vec![0], |c| c.value.clone());
    if exit_codes.is_empty() {
        cx.error(
            "empty",
            w.exit_codes.as_ref().map_or(w.command.loc, |c| c.loc),
            format!("{p}.exit_codes"),
            "`exit_codes` must list at least one code",
        );
        ok = false;
    }
    let timeout = cx.positive_duration(
        w.timeout.as_ref(),
        &format!("{p}.timeout"),
        "timeout",
        walk.step_timeout,
    );
    ok.then(|| Exec {
        command: w.command.iter().map(|c| c.value.clone()).collect(),
        exit_codes,
        timeout,
    })
}

fn metric_ref(
    cx: &mut Cx<'_>,
    walk: &Walk<'_>,
    name: &crate::values::Sp<String>,
    p: &str,
) -> Option<MetricRef> {
    let payload = walk.payload;
    match payload.metrics.iter().position(|m| m.name == name.value) {
        Some(index) => Some(MetricRef {
            index,
            name: name.value.clone(),
        }),
        None => {
            let names: Vec<&str> = payload.metrics.iter().map(|m| m.name.as_str()).collect();
            let d = cx.error(
                "unknown-reference",
                name.loc,
                p,
                format!(
                    "unknown metric `{}` in payload `{}`",
                    name.value, payload.name
                ),
            );
            d.related.push(Related {
                message: format!(
                    "payload `{}` defines metrics {}",
                    payload.name,
                    list(&names)
                ),
                file: payload.file.to_path_buf(),
                loc: payload.metrics.first().map(|m| m.origin.loc),
            });
            None
        }
    }
}

fn assert_metric(
    cx: &mut Cx<'_>,
    walk: &Walk<'_>,
    w: &crate::values::Sp<crate::wire::scenario::AssertMetricWire>,
    p: &str,
) -> Option<AssertMetric> {
    let metric = metric_ref(cx, walk, &w.metric, &format!("{p}.metric"));
    let mut conditions = Vec::new();
    if let Some(v) = &w.equals {
        conditions.push(("equals", v.loc, MetricCondition::Equals(v.value)));
    }
    if let Some(v) = &w.at_most {
        conditions.push(("at_most", v.loc, MetricCondition::AtMost(v.value)));
    }
    if let Some(v) = &w.at_least {
        conditions.push(("at_least", v.loc, MetricCondition::AtLeast(v.value)));
    }
    let tolerance = match &w.tolerance {
        None => 0,
        Some(t) if t.value < 0 => {
            cx.error(
                "range",
                t.loc,
                format!("{p}.tolerance"),
                format!("tolerance must be 0 or more, got {}", t.value),
            );
            0
        }
        Some(t) => t.value.unsigned_abs(),
    };
    if let Some(b) = &w.baseline {
        match walk.baselines.get(&b.value) {
            None => {
                let mut known: Vec<&str> = walk.baselines.keys().map(String::as_str).collect();
                known.sort_unstable();
                cx.error(
                    "unknown-reference",
                    b.loc,
                    format!("{p}.baseline"),
                    format!(
                        "unknown baseline `{}`: no earlier `record_metric` step records it",
                        b.value
                    ),
                )
                .help = Some(format!(
                    "baselines recorded before this step: {}",
                    list(&known)
                ));
            }
            Some(&idx) if metric.as_ref().is_some_and(|m| m.index != idx) => {
                cx.error(
                    "conflict",
                    b.loc,
                    format!("{p}.baseline"),
                    format!(
                        "baseline `{}` records metric `{}`, not `{}`",
                        b.value, walk.payload.metrics[idx].name, w.metric.value
                    ),
                );
            }
            Some(_) => {}
        }
        conditions.push((
            "baseline",
            b.loc,
            MetricCondition::Baseline {
                name: b.value.clone(),
                tolerance,
            },
        ));
    } else if let Some(t) = &w.tolerance {
        cx.error(
            "conflict",
            t.loc,
            format!("{p}.tolerance"),
            "`tolerance` only applies with `baseline`",
        );
    }
    let condition = match conditions.len() {
        0 => {
            cx.error(
                "missing",
                w.loc,
                p,
                format!(
                    "`assert_metric` needs one of {}",
                    list(&["equals", "at_most", "at_least", "baseline"])
                ),
            );
            return None;
        }
        1 => conditions.pop()?.2,
        _ => {
            cx.error(
                "conflict",
                conditions[1].1,
                format!("{p}.{}", conditions[1].0),
                format!(
                    "`assert_metric` takes one condition, got `{}` and `{}`",
                    conditions[0].0, conditions[1].0
                ),
            );
            return None;
        }
    };
    let within = w
        .within
        .as_ref()
        .map(|d| cx.positive_duration(Some(d), &format!("{p}.within"), "within", d.value.0));
    Some(AssertMetric {
        metric: metric?,
        condition,
        within,
    })
}
