//! A payload tool: typed arguments, the result contract, a command template whose
//! placeholders all resolve, and a render with sample values to catch what cannot render.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::model::invocation::{BUILTIN_PLACEHOLDERS, placeholders};
use crate::model::{ArgKind, ArgValue, ResultContract, Tool, ToolArg};
use crate::validate::{CHECK_CONTEXT, Cx, is_windows_abs, list};
use crate::values::{ArgValueWire, Loc, Sp, ValueError, parse_duration};
use crate::wire::payload::{ArgType, ArgWire, DurationUnit, ToolWire};

pub(super) fn tool(cx: &mut Cx<'_>, t: &ToolWire, p: &str) -> Option<Tool> {
    let before = cx.diags.len();
    let (arguments, seen) = arguments(cx, t, p);
    let result = result_contract(cx, t, p);
    let command: Vec<String> = t
        .command
        .iter()
        .flat_map(|c| c.value.iter())
        .map(|e| e.value.clone())
        .collect();
    let used = placeholders_used(cx, t, &arguments, &seen, result.junit.is_some(), p);
    for (j, (a, w)) in arguments
        .iter()
        .zip(t.arguments.iter().flat_map(|a| a.value.iter()))
        .enumerate()
    {
        if a.flag.is_none() && !used.contains(&a.name) {
            cx.error("unused", w.name.loc, format!("{p}.arguments[{j}]"), format!("argument `{}` has no `flag` and is not used in `command`, so it can never reach the tool", a.name));
        }
    }
    let timeout = t
        .timeout
        .as_ref()
        .map(|d| cx.positive_duration(Some(d), &format!("{p}.timeout"), "timeout", d.value.0));
    if cx.diags.len() != before {
        return None;
    }
    let tool = Tool {
        name: t.name.value.clone(),
        program: t.program.value.clone(),
        command,
        arguments,
        result,
        timeout,
        origin: cx.origin(t.name.loc),
    };
    renders(cx, &tool, t, p).then_some(tool)
}

/// The tool's arguments, each with a valid, unique name that is not a builtin placeholder;
/// also the names seen, with where each stands.
fn arguments(cx: &mut Cx<'_>, t: &ToolWire, p: &str) -> (Vec<ToolArg>, HashMap<String, Loc>) {
    let mut arguments = Vec::new();
    let mut seen = HashMap::new();
    for (j, a) in t.arguments.iter().flat_map(|a| a.value.iter()).enumerate() {
        let ap = format!("{p}.arguments[{j}]");
        if cx.name(&a.name, &format!("{ap}.name"), "argument")
            && cx.unique(&mut seen, &a.name, &format!("{ap}.name"), "argument")
            && BUILTIN_PLACEHOLDERS.contains(&a.name.as_str())
        {
            cx.error(
                "conflict",
                a.name.loc,
                format!("{ap}.name"),
                format!(
                    "argument name `{}` is reserved for a builtin placeholder ({})",
                    a.name.value,
                    list(BUILTIN_PLACEHOLDERS)
                ),
            );
        }
        arguments.push(argument(cx, a, &ap));
    }
    (arguments, seen)
}

/// What the tool's `result` promises: exit codes, counters and a JUnit file.
fn result_contract(cx: &mut Cx<'_>, t: &ToolWire, p: &str) -> ResultContract {
    let r = t.result.as_ref();
    let exit_codes = r
        .and_then(|r| r.exit_codes.as_ref())
        .map_or_else(|| vec![0], |c| c.value.clone());
    if let Some(c) = r.and_then(|r| r.exit_codes.as_ref())
        && c.is_empty()
    {
        cx.error(
            "empty",
            c.loc,
            format!("{p}.result.exit_codes"),
            "`exit_codes` must list at least one code",
        );
    }
    let counters = r.and_then(|r| r.counters.as_ref()).map(|c| c.value);
    if let Some(n) = r.and_then(|r| r.counter_names.as_ref())
        && counters.is_none()
    {
        cx.error(
            "conflict",
            n.loc,
            format!("{p}.result.counter_names"),
            "`counter_names` needs `counters: json_line`",
        );
    }
    let junit = r.and_then(|r| r.junit.as_ref());
    if let Some(j) = junit
        && !is_windows_abs(j)
    {
        cx.error(
            "invalid-value",
            j.loc,
            format!("{p}.result.junit"),
            format!("junit path `{}` is not an absolute Windows path", j.value),
        );
    }
    ResultContract {
        exit_codes,
        counters,
        counter_names: r
            .and_then(|r| r.counter_names.as_ref())
            .map(|n| n.iter().map(|s| s.value.clone()).collect())
            .unwrap_or_default(),
        junit: junit.map(|j| j.value.clone()),
    }
}

/// The placeholders `command` uses, each an argument or a builtin (`{junit}` only with
/// `result.junit`).
fn placeholders_used(
    cx: &mut Cx<'_>,
    t: &ToolWire,
    arguments: &[ToolArg],
    seen: &HashMap<String, Loc>,
    has_junit: bool,
    p: &str,
) -> Vec<String> {
    let mut used = Vec::new();
    for (k, e) in t.command.iter().flat_map(|c| c.value.iter()).enumerate() {
        match placeholders(&t.name, e) {
            Ok(names) => {
                for n in names {
                    if !seen.contains_key(&n) && !BUILTIN_PLACEHOLDERS.contains(&n.as_str()) {
                        let args: Vec<&str> = arguments.iter().map(|a| a.name.as_str()).collect();
                        cx.error(
                            "unknown-reference",
                            e.loc,
                            format!("{p}.command[{k}]"),
                            format!("unknown placeholder `{{{n}}}` in tool `{}`", t.name.value),
                        )
                        .help = Some(format!(
                            "arguments: {}; builtins: {}",
                            list(&args),
                            list(BUILTIN_PLACEHOLDERS)
                        ));
                    } else if n == "junit" && !has_junit {
                        cx.error(
                            "unknown-reference",
                            e.loc,
                            format!("{p}.command[{k}]"),
                            "`{junit}` is used but `result.junit` is not set",
                        );
                    }
                    used.push(n);
                }
            }
            Err(err) => {
                cx.error(
                    "invalid-value",
                    e.loc,
                    format!("{p}.command[{k}]"),
                    err.to_string(),
                );
            }
        }
    }
    used
}

/// Renders the command once with the defaults, so a template that cannot render is caught
/// here. Required arguments are filled with a sample so only the template itself is checked.
fn renders(cx: &mut Cx<'_>, tool: &Tool, t: &ToolWire, p: &str) -> bool {
    let mut sample = BTreeMap::new();
    for a in tool.arguments.iter().filter(|a| a.required) {
        let v = match &a.kind {
            ArgKind::Int { min, .. } => ArgValue::Int(min.unwrap_or(1)),
            ArgKind::Duration { min, .. } => {
                ArgValue::Duration(min.unwrap_or(Duration::from_secs(1)))
            }
            ArgKind::String => ArgValue::String("x".into()),
            ArgKind::Bool => ArgValue::Bool(true),
            ArgKind::Enum { values } => {
                ArgValue::String(values.first().cloned().unwrap_or_default())
            }
        };
        sample.insert(a.name.clone(), v);
    }
    if let Err(e) = tool.render(&sample, &CHECK_CONTEXT) {
        cx.error(
            "render",
            t.name.loc,
            format!("{p}.command"),
            format!("command cannot be rendered: {e}"),
        );
        return false;
    }
    true
}

/// A tool argument's value (a default, a bound, a scenario's argument) that does not fit
/// the argument; the caller says which value it was and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ArgValueError {
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error("duration `{0}` has no unit: write e.g. `{0}s`")]
    DurationWithoutUnit(i64),
    /// `allowed` is the listed values, already worded.
    #[error("`{value}` is not one of {allowed}")]
    NotOneOf { value: String, allowed: String },
    /// `expected` is the kind's name with its article.
    #[error("expected {expected} value, got {got}")]
    WrongType { expected: String, got: String },
    #[error("{value} is out of range {min}..={max}")]
    OutOfRange {
        value: String,
        min: String,
        max: String,
    },
}

/// Parses a wire value as `kind` (used for defaults, bounds and scenario arguments).
pub(crate) fn typed_value(kind: &ArgKind, v: &ArgValueWire) -> Result<ArgValue, ArgValueError> {
    match (kind, v) {
        (ArgKind::Int { .. }, ArgValueWire::Int(i)) => Ok(ArgValue::Int(*i)),
        (ArgKind::Duration { .. }, ArgValueWire::Str(s)) => {
            Ok(parse_duration(s).map(ArgValue::Duration)?)
        }
        (ArgKind::Duration { .. }, ArgValueWire::Int(i)) => {
            Err(ArgValueError::DurationWithoutUnit(*i))
        }
        (ArgKind::String, ArgValueWire::Str(s)) => Ok(ArgValue::String(s.clone())),
        (ArgKind::String, ArgValueWire::Int(i)) => Ok(ArgValue::String(i.to_string())),
        (ArgKind::Bool, ArgValueWire::Bool(b)) => Ok(ArgValue::Bool(*b)),
        (ArgKind::Enum { values }, ArgValueWire::Str(s)) => {
            if values.contains(s) {
                Ok(ArgValue::String(s.clone()))
            } else {
                let v: Vec<&str> = values.iter().map(String::as_str).collect();
                Err(ArgValueError::NotOneOf {
                    value: s.clone(),
                    allowed: list(&v),
                })
            }
        }
        (k, v) => Err(ArgValueError::WrongType {
            expected: article(k.type_name()),
            got: v.to_string(),
        }),
    }
}

fn article(t: &str) -> String {
    if t.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {t}")
    } else {
        format!("a {t}")
    }
}

/// Checks a typed value against the argument's range.
pub(crate) fn in_range(kind: &ArgKind, v: &ArgValue) -> Result<(), ArgValueError> {
    match (kind, v) {
        (ArgKind::Int { min, max }, ArgValue::Int(i))
            if min.is_some_and(|m| *i < m) || max.is_some_and(|m| *i > m) =>
        {
            return Err(ArgValueError::OutOfRange {
                value: i.to_string(),
                min: min.map_or("".into(), |m| m.to_string()),
                max: max.map_or("".into(), |m| m.to_string()),
            });
        }
        (ArgKind::Duration { min, max, .. }, ArgValue::Duration(d)) => {
            let f = |d: &Option<Duration>| d.map_or(String::new(), crate::values::format_duration);
            if min.is_some_and(|m| *d < m) || max.is_some_and(|m| *d > m) {
                return Err(ArgValueError::OutOfRange {
                    value: crate::values::format_duration(*d),
                    min: f(min),
                    max: f(max),
                });
            }
        }
        _ => {}
    }
    Ok(())
}

/// One argument of a tool, checked field by field in the order the file reads.
fn argument(cx: &mut Cx<'_>, a: &ArgWire, p: &str) -> ToolArg {
    fields_of_other_types(cx, a, p);
    let kind = arg_kind(cx, a, p);
    min_not_above_max(cx, a, &kind, p);
    let default = default_value(cx, a, &kind, p);
    let required = a.required.unwrap_or(false);
    if required && let Some(d) = &a.default {
        cx.error(
            "conflict",
            d.loc,
            format!("{p}.default"),
            format!(
                "argument `{}` is `required` and has a `default`; keep one",
                a.name.value
            ),
        );
    }
    flag(cx, a, p);
    ToolArg {
        name: a.name.value.clone(),
        kind,
        default,
        required,
        flag: a.flag.as_ref().map(|f| f.value.clone()),
    }
}

/// `min`/`max`, `values` and `unit` written on an argument whose type has none.
fn fields_of_other_types(cx: &mut Cx<'_>, a: &ArgWire, p: &str) {
    let ty = a.ty.value;
    let not_for = |cx: &mut Cx<'_>, loc: Option<crate::values::Loc>, field: &str, types: &str| {
        if let Some(loc) = loc {
            cx.error(
                "conflict",
                loc,
                format!("{p}.{field}"),
                format!("`{field}` only applies to {types} arguments"),
            );
        }
    };
    if !matches!(ty, ArgType::Int | ArgType::Duration) {
        not_for(cx, a.min.as_ref().map(|m| m.loc), "min", "int and duration");
        not_for(cx, a.max.as_ref().map(|m| m.loc), "max", "int and duration");
    }
    if ty != ArgType::Enum {
        not_for(cx, a.values.as_ref().map(|m| m.loc), "values", "enum");
    }
    if ty != ArgType::Duration {
        not_for(cx, a.unit.as_ref().map(|m| m.loc), "unit", "duration");
    }
}

/// The argument's type with its bounds (int, duration) or values (enum).
fn arg_kind(cx: &mut Cx<'_>, a: &ArgWire, p: &str) -> ArgKind {
    match a.ty.value {
        ArgType::Int => {
            let k = ArgKind::Int {
                min: None,
                max: None,
            };
            let as_int = |v: Option<ArgValue>| match v {
                Some(ArgValue::Int(i)) => Some(i),
                _ => None,
            };
            ArgKind::Int {
                min: as_int(bound(cx, &a.min, p, "min", &k)),
                max: as_int(bound(cx, &a.max, p, "max", &k)),
            }
        }
        ArgType::Duration => {
            let k = ArgKind::Duration {
                min: None,
                max: None,
                unit: DurationUnit::Human,
            };
            let as_d = |v: Option<ArgValue>| match v {
                Some(ArgValue::Duration(d)) => Some(d),
                _ => None,
            };
            ArgKind::Duration {
                min: as_d(bound(cx, &a.min, p, "min", &k)),
                max: as_d(bound(cx, &a.max, p, "max", &k)),
                unit: a.unit.as_ref().map_or(DurationUnit::Human, |u| u.value),
            }
        }
        ArgType::String => ArgKind::String,
        ArgType::Bool => ArgKind::Bool,
        ArgType::Enum => {
            let values: Vec<String> = a
                .values
                .as_ref()
                .map(|v| v.value.clone())
                .unwrap_or_default();
            if values.is_empty() {
                cx.error(
                    "missing",
                    a.ty.loc,
                    format!("{p}.values"),
                    "an enum argument needs a non-empty `values` list",
                );
            }
            ArgKind::Enum { values }
        }
    }
}

/// A `min` or `max` bound parsed as `k`; a bad one is reported and left out.
fn bound(
    cx: &mut Cx<'_>,
    b: &Option<Sp<ArgValueWire>>,
    p: &str,
    field: &str,
    k: &ArgKind,
) -> Option<ArgValue> {
    let b = b.as_ref()?;
    typed_value(k, &b.value)
        .map_err(|e| {
            cx.error(
                "type",
                b.loc,
                format!("{p}.{field}"),
                format!("invalid `{field}`: {e}"),
            )
        })
        .ok()
}

fn min_not_above_max(cx: &mut Cx<'_>, a: &ArgWire, kind: &ArgKind, p: &str) {
    let min_max_bad = match kind {
        ArgKind::Int {
            min: Some(a),
            max: Some(b),
        } => a > b,
        ArgKind::Duration {
            min: Some(a),
            max: Some(b),
            ..
        } => a > b,
        _ => false,
    };
    if min_max_bad && let Some(m) = &a.min {
        cx.error(
            "range",
            m.loc,
            format!("{p}.min"),
            "`min` is greater than `max`",
        );
    }
}

/// The `default`, typed and inside the bounds; a bad one is reported and left out.
fn default_value(cx: &mut Cx<'_>, a: &ArgWire, kind: &ArgKind, p: &str) -> Option<ArgValue> {
    let d = a.default.as_ref()?;
    match typed_value(kind, &d.value).and_then(|v| in_range(kind, &v).map(|()| v)) {
        Ok(v) => Some(v),
        Err(e) => {
            cx.error(
                "type",
                d.loc,
                format!("{p}.default"),
                format!("invalid default for argument `{}`: {e}", a.name.value),
            );
            None
        }
    }
}

/// A `flag` is one word that starts like a command-line switch.
fn flag(cx: &mut Cx<'_>, a: &ArgWire, p: &str) {
    if let Some(f) = &a.flag
        && (f.is_empty() || !(f.starts_with('-') || f.starts_with('/')) || f.contains(' '))
    {
        cx.error(
            "invalid-value",
            f.loc,
            format!("{p}.flag"),
            format!(
                "flag `{}` must start with `-` or `/` and contain no spaces",
                f.value
            ),
        );
    }
}
