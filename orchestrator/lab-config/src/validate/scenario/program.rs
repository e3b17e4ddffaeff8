//! The program steps: `run` (a payload tool with typed arguments and expected exit codes
//! and counters) and `exec` (a raw command line).

use std::collections::BTreeMap;

use super::Walk;
use crate::diag::Related;
use crate::model::{CounterCheck, Exec, Payload, RunTool, Tool, ToolRef};
use crate::validate::payload::{in_range, typed_value};
use crate::validate::{CHECK_CONTEXT, Cx, list};
use crate::values::Sp;
use crate::wire::scenario::{ExecWire, RangeWire, RunExpectWire, RunWire};

pub(super) fn run(cx: &mut Cx<'_>, walk: &Walk<'_>, w: &RunWire, p: &str) -> Option<RunTool> {
    let payload = walk.payload;
    let index = tool_index(cx, payload, w, p)?;
    let tool = &payload.tools[index];
    let before = cx.diags.len();
    let args = args(cx, tool, w, p);
    let expect = w.expect.as_ref();
    let exit_codes = exit_codes(cx, tool, expect, p);
    let counters = match expect.and_then(|e| e.counters.as_ref()) {
        Some(cs) => counters(cx, tool, cs, p),
        None => Vec::new(),
    };
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
    if let Err(e) = run.argv(payload, &CHECK_CONTEXT) {
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

/// The index of the tool `run` names in the payload.
fn tool_index(cx: &mut Cx<'_>, payload: &Payload, w: &RunWire, p: &str) -> Option<usize> {
    let index = payload.tools.iter().position(|t| t.name == w.tool.value);
    if index.is_none() {
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
    }
    index
}

/// The given arguments, each known to the tool and of its type; the required ones present.
fn args(
    cx: &mut Cx<'_>,
    tool: &Tool,
    w: &RunWire,
    p: &str,
) -> BTreeMap<String, crate::model::ArgValue> {
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
    args
}

/// The exit codes the step expects: its own list, or the tool's.
fn exit_codes(
    cx: &mut Cx<'_>,
    tool: &Tool,
    expect: Option<&Sp<RunExpectWire>>,
    p: &str,
) -> Vec<i64> {
    match expect.and_then(|e| e.exit_codes.as_ref()) {
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
    }
}

/// The counter checks of `expect.counters`, for a tool that reports counters.
fn counters(
    cx: &mut Cx<'_>,
    tool: &Tool,
    cs: &Sp<BTreeMap<String, Sp<RangeWire>>>,
    p: &str,
) -> Vec<CounterCheck> {
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
    cs.value
        .iter()
        .map(|(name, r)| counter(cx, tool, name, r, &format!("{p}.expect.counters.{name}")))
        .collect()
}

/// One counter check: a counter the tool reports, with `equals` or a non-empty range.
fn counter(cx: &mut Cx<'_>, tool: &Tool, name: &str, r: &Sp<RangeWire>, cp: &str) -> CounterCheck {
    if !tool.result.counter_names.is_empty() && !tool.result.counter_names.iter().any(|n| n == name)
    {
        let names: Vec<&str> = tool
            .result
            .counter_names
            .iter()
            .map(String::as_str)
            .collect();
        cx.error(
            "unknown-reference",
            r.loc,
            cp,
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
            cp,
            "a counter check needs `min`, `max` or `equals`",
        );
    }
    if let (Some(a), Some(b)) = (min, max)
        && a > b
    {
        cx.error(
            "range",
            r.loc,
            cp,
            format!("counter range is empty: min {a} > max {b}"),
        );
    }
    CounterCheck {
        name: name.to_owned(),
        min,
        max,
    }
}

pub(super) fn exec(cx: &mut Cx<'_>, walk: &Walk<'_>, w: &ExecWire, p: &str) -> Option<Exec> {
    if w.command.is_empty() || w.command[0].trim().is_empty() {
        cx.error(
            "empty",
            w.command.loc,
            format!("{p}.command"),
            "`exec` needs a program as the first element of `command`",
        );
        return None;
    }
    let mut ok = true;
    for (i, e) in w.command.iter().enumerate() {
        if let Err(err) = crate::model::invocation::expand_builtins(e, &CHECK_CONTEXT) {
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
