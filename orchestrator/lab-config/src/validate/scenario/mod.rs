//! Scenario validation against a lab and the payloads: VM templates, payload target, and
//! every step with its references (drivers, tools, arguments, counters, metrics,
//! checkpoints, baselines) resolved.
//!
//! This file checks the scenario's header; [`step`] walks the steps, handing the kinds that
//! resolve references to [`driver`], [`program`] (`run`, `exec`) and [`metric`].

mod driver;
mod metric;
mod program;
mod step;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::{Cx, list};
use crate::diag::{Diagnostic, Related};
use crate::model::{Lab, Payload, Scenario};
use crate::values::Loc;
use crate::wire::lab::LabKind;
use crate::wire::payload::PayloadTarget;
use crate::wire::scenario::ScenarioWire;

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
    /// `hvlab run --payload`: the payload of scenarios that pin none, before the lab's.
    pub payload_flag: Option<&'a str>,
}

/// Validates a scenario file against a lab and the payloads.
/// More retries than this would hide a test that is broken rather than flaky.
pub const MAX_RETRIES: u32 = 10;

pub(crate) fn scenario(cx: &mut Cx<'_>, w: ScenarioWire, env: &Env<'_>) -> Option<Scenario> {
    cx.name(&w.name, "name", "scenario");
    let tags = tags(cx, &w);
    let payload = payload_ref(cx, &w, env);
    let vms = vms(cx, &w, env.lab);
    let iterations = w
        .iterations
        .as_ref()
        .map_or(1, |i| cx.count_u32(i, "iterations", "iterations", 100_000));
    let retries = w
        .retries
        .as_ref()
        .map_or(0, |r| cx.range_u32(r, "retries", "retries", 0, MAX_RETRIES));
    let (timeout, step_timeout) = timeouts(cx, &w);
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
    let setup = step::steps(
        cx,
        &mut walk,
        w.setup.as_ref().map_or(&[][..], |s| &s.value),
        "setup",
    );
    let body = step::steps(cx, &mut walk, &w.steps.value, "steps");
    cx.clean().then(|| Scenario {
        name: w.name.value,
        description: w.description,
        file: cx.file.clone(),
        tags,
        payload: payload.clone(),
        vms,
        iterations,
        retries,
        timeout,
        step_timeout,
        setup,
        steps: body,
    })
}

/// The scenario's tags: each a valid name, none twice.
fn tags(cx: &mut Cx<'_>, w: &ScenarioWire) -> Vec<String> {
    let mut tags = Vec::new();
    let mut seen = HashMap::new();
    for (i, t) in w.tags.iter().flatten().enumerate() {
        if cx.name(t, &format!("tags[{i}]"), "tag")
            && cx.unique(&mut seen, t, &format!("tags[{i}]"), "tag")
        {
            tags.push(t.value.clone());
        }
    }
    tags
}

/// Where a scenario's payload was chosen: its own `payload:`, `--payload`, or the lab's.
enum Choice<'a> {
    Pinned(&'a crate::values::Sp<String>),
    Flag(&'a str),
    Lab(&'a str, &'a crate::model::Origin),
    /// The lab names none and exactly one payload fits its kind: lab files written before
    /// labs named a default keep working.
    Only(&'a str),
}

/// The payload the scenario runs with, checked against the lab's kind: the one it pins,
/// else `--payload`, else the lab's default `payload`, else the only payload that fits the lab.
fn payload_ref(cx: &mut Cx<'_>, w: &ScenarioWire, env: &Env<'_>) -> Option<Arc<Payload>> {
    let fitting: Vec<&str> = env
        .payloads
        .iter()
        .filter(|p| fits(p, env.lab))
        .map(|p| p.name.as_str())
        .collect();
    let choice = match (&w.payload, env.payload_flag, &env.lab.payload) {
        (Some(p), _, _) => Choice::Pinned(p),
        (None, Some(f), _) => Choice::Flag(f),
        (None, None, Some((name, origin))) => Choice::Lab(name, origin),
        (None, None, None) if fitting.len() == 1 && env.broken_payloads.is_empty() => {
            Choice::Only(fitting[0])
        }
        (None, None, None) => {
            no_payload_named(cx, w, env);
            return None;
        }
    };
    let (name, loc, why) = match &choice {
        Choice::Pinned(p) => (p.value.as_str(), p.loc, String::new()),
        Choice::Flag(f) => (*f, w.name.loc, " (named by `--payload`)".to_owned()),
        Choice::Lab(n, _) => (
            *n,
            w.name.loc,
            format!(" (the default payload of lab `{}`)", env.lab.name),
        ),
        Choice::Only(n) => (
            *n,
            w.name.loc,
            format!(" (the only payload for lab `{}`)", env.lab.name),
        ),
    };
    let payload = env.payloads.iter().find(|p| p.name == name).cloned();
    if payload.is_none() && !env.broken_payloads.contains(name) {
        let d = cx.error(
            "unknown-reference",
            loc,
            "payload",
            format!("unknown payload `{name}`{why}"),
        );
        point_at_payloads(d, env, &choice);
    }
    if let Some(p) = &payload {
        target_matches(cx, p, env.lab, loc);
    }
    payload
}

/// Neither the scenario, `--payload` nor the lab names a payload, and more than one fits.
fn no_payload_named(cx: &mut Cx<'_>, w: &ScenarioWire, env: &Env<'_>) {
    let d = cx.error(
        "missing",
        w.name.loc,
        "payload",
        format!(
            "scenario `{}` pins no payload and lab `{}` names no default `payload`",
            w.name.value, env.lab.name
        ),
    );
    d.related.push(Related {
        message: format!("lab `{}` is defined here", env.lab.name),
        file: env.lab.file.to_path_buf(),
        loc: Some(Loc::at(1, 1)),
    });
    d.help = Some(
        "add `payload: <name>` to the lab file, pass `--payload <name>`, or pin one in the scenario"
            .to_owned(),
    );
}

/// For an unknown payload: the payloads there are, and where the lab named the missing one.
fn point_at_payloads(d: &mut Diagnostic, env: &Env<'_>, choice: &Choice<'_>) {
    let names: Vec<&str> = env.payloads.iter().map(|p| p.name.as_str()).collect();
    d.help = Some(format!("payloads: {}", list(&names)));
    if let Choice::Lab(_, origin) = choice {
        d.related.push(Related {
            message: format!("lab `{}` names it here", env.lab.name),
            file: origin.file.to_path_buf(),
            loc: Some(origin.loc),
        });
    }
    for p in env.payloads {
        d.related.push(Related {
            message: format!("payload `{}` is defined here", p.name),
            file: p.file.to_path_buf(),
            loc: Some(Loc::at(1, 1)),
        });
    }
}

/// Whether `p` can run on `lab`: a sim payload on a sim lab, a Windows payload on Hyper-V.
fn fits(p: &Payload, lab: &Lab) -> bool {
    matches!(
        (p.target, lab.kind()),
        (PayloadTarget::Sim, LabKind::Sim) | (PayloadTarget::Windows, LabKind::Hyperv)
    )
}

/// A sim payload needs a sim lab and a Windows payload a Hyper-V lab.
fn target_matches(cx: &mut Cx<'_>, p: &Payload, lab: &Lab, loc: Loc) {
    if fits(p, lab) {
        return;
    }
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
        loc,
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

/// The VM templates the scenario runs on: the listed ones, or all of the lab's.
fn vms(cx: &mut Cx<'_>, w: &ScenarioWire, lab: &Lab) -> Vec<String> {
    let templates = lab.templates();
    let names: Vec<&str> = templates.iter().map(|t| t.name).collect();
    let Some(v) = &w.vms else {
        return names.iter().map(|s| (*s).to_owned()).collect();
    };
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

/// The scenario's `timeout` and the default `step_timeout`, which may not exceed it.
fn timeouts(cx: &mut Cx<'_>, w: &ScenarioWire) -> (Duration, Duration) {
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
    (timeout, step_timeout)
}

fn template_loc(lab: &Lab) -> Option<Loc> {
    match &lab.backend {
        crate::model::LabBackend::Sim(s) => s.templates.first().map(|t| t.origin.loc),
        crate::model::LabBackend::HyperV(h) => h.templates.first().map(|t| t.origin.loc),
    }
}
