//! Payload manifest validation: files, drivers (references, dependency cycles, install
//! order), tools (typed arguments, command templates rendered once) and metrics.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{Cx, is_windows_abs, list, sha256_hex};
use crate::model::invocation::{BUILTIN_PLACEHOLDERS, InvocationContext, placeholders};
use crate::model::payload::expand_vars;
use crate::model::{
    ArgKind, ArgValue, Driver, Metric, MetricSource, Payload, PayloadFile, ResultContract, Tool,
    ToolArg,
};
use crate::values::{ArgValueWire, Sp, parse_duration};
use crate::wire::payload::{
    ArgType, ArgWire, DurationUnit, PayloadTarget, PayloadWire, SignatureKind, StartType, ToolWire,
};

/// Validates a payload manifest.
pub(crate) fn payload(cx: &mut Cx<'_>, w: PayloadWire) -> Option<Payload> {
    cx.name(&w.name, "name", "payload");
    let target = w.target.value;
    build_dir(cx, &w);

    let mut files = Vec::new();
    let mut by_dest: HashMap<String, (usize, crate::values::Loc)> = HashMap::new();
    if w.files.is_empty() {
        cx.error(
            "empty",
            w.files.loc,
            "files",
            "a payload needs at least one file",
        );
    }
    for (i, f) in w.files.value.iter().enumerate() {
        let p = format!("files[{i}]");
        let src = f.source.value.as_str();
        if src.is_empty()
            || Path::new(src).is_absolute()
            || src.split(['/', '\\']).any(|c| c == "..")
        {
            cx.error(
                "invalid-value",
                f.source.loc,
                format!("{p}.source"),
                format!("file source `{src}` must be a relative path inside build_dir (no `..`)"),
            );
        }
        if !is_windows_abs(&f.destination) {
            cx.error("invalid-value", f.destination.loc, format!("{p}.destination"), format!("destination `{}` is not an absolute Windows path (e.g. `C:\\hvlab\\bin\\tool.exe`)", f.destination.value));
        }
        let key = f.destination.to_ascii_lowercase();
        if let Some((_, first)) = by_dest.get(&key).copied() {
            let file = cx.file.to_path_buf();
            cx.error(
                "duplicate-name",
                f.destination.loc,
                format!("{p}.destination"),
                format!("two files are copied to `{}`", f.destination.value),
            )
            .related
            .push(crate::diag::Related {
                message: "first copied here".to_owned(),
                file,
                loc: Some(first),
            });
        } else {
            by_dest.insert(key, (i, f.destination.loc));
        }
        let sha256 = f.sha256.as_ref().and_then(|s| {
            let hex = sha256_hex(s);
            if hex.is_none() {
                cx.error(
                    "invalid-value",
                    s.loc,
                    format!("{p}.sha256"),
                    "sha256 must be 64 hex digits",
                );
            }
            hex
        });
        files.push(PayloadFile {
            source: src.to_owned(),
            destination: f.destination.value.clone(),
            sha256,
        });
    }
    let dest_names: Vec<&str> = w.files.iter().map(|f| f.destination.as_str()).collect();
    let file_index = |name: &str| by_dest.get(&name.to_ascii_lowercase()).map(|(i, _)| *i);

    // Drivers.
    let mut drivers = Vec::new();
    let mut seen = HashMap::new();
    let no_drivers = Vec::new();
    let driver_wires = w.drivers.as_ref().map_or(&no_drivers, |d| &d.value);
    for (i, d) in driver_wires.iter().enumerate() {
        let p = format!("drivers[{i}]");
        if cx.name(&d.service, &format!("{p}.service"), "driver service") {
            cx.unique(
                &mut seen,
                &d.service,
                &format!("{p}.service"),
                "driver service",
            );
        }
        let file = file_index(&d.binary).unwrap_or_else(|| {
            cx.error(
                "unknown-reference",
                d.binary.loc,
                format!("{p}.binary"),
                format!(
                    "driver binary `{}` is not the destination of any file in this payload",
                    d.binary.value
                ),
            )
            .help = Some(format!("file destinations: {}", list(&dest_names)));
            0
        });
        if !d.binary.to_ascii_lowercase().ends_with(".sys") {
            cx.error(
                "invalid-value",
                d.binary.loc,
                format!("{p}.binary"),
                format!("driver binary `{}` is not a `.sys` image", d.binary.value),
            );
        }
        drivers.push(Driver {
            service: d.service.value.clone(),
            binary: d.binary.value.clone(),
            file,
            start: d.start.as_ref().map_or(StartType::Demand, |s| s.value),
            depends_on: d
                .depends_on
                .iter()
                .flatten()
                .map(|s| s.value.clone())
                .collect(),
            signature: d.signature.unwrap_or(SignatureKind::Test),
            origin: cx.origin(d.service.loc),
        });
    }
    let service_names: Vec<&str> = driver_wires.iter().map(|d| d.service.as_str()).collect();
    for (i, d) in driver_wires.iter().enumerate() {
        for (j, dep) in d.depends_on.iter().flatten().enumerate() {
            let p = format!("drivers[{i}].depends_on[{j}]");
            if dep.value == d.service.value {
                cx.error(
                    "dependency-cycle",
                    dep.loc,
                    p,
                    format!("driver `{}` depends on itself", dep.value),
                );
            } else if !service_names.contains(&dep.as_str()) {
                cx.error(
                    "unknown-reference",
                    dep.loc,
                    p,
                    format!(
                        "driver `{}` depends on `{}`, which this payload does not define",
                        d.service.value, dep.value
                    ),
                )
                .help = Some(format!("drivers: {}", list(&service_names)));
            }
        }
    }
    let install_order = install_order(cx, driver_wires);

    // Tools.
    let mut tools = Vec::new();
    let mut seen = HashMap::new();
    for (i, t) in w.tools.iter().flat_map(|t| t.value.iter()).enumerate() {
        let p = format!("tools[{i}]");
        if cx.name(&t.name, &format!("{p}.name"), "tool") {
            cx.unique(&mut seen, &t.name, &format!("{p}.name"), "tool");
        }
        if file_index(&t.program).is_none() {
            cx.error(
                "unknown-reference",
                t.program.loc,
                format!("{p}.program"),
                format!(
                    "tool program `{}` is not the destination of any file in this payload",
                    t.program.value
                ),
            )
            .help = Some(format!("file destinations: {}", list(&dest_names)));
        }
        if let Some(tool) = tool(cx, t, &p) {
            tools.push(tool);
        }
    }

    // Metrics.
    let mut metrics = Vec::new();
    let mut seen = HashMap::new();
    for (i, m) in w.metrics.iter().flat_map(|m| m.value.iter()).enumerate() {
        let p = format!("metrics[{i}]");
        if cx.name(&m.name, &format!("{p}.name"), "metric") {
            cx.unique(&mut seen, &m.name, &format!("{p}.name"), "metric");
        }
        if let Some(source) = metric_source(cx, m, target, &p) {
            metrics.push(Metric {
                name: m.name.value.clone(),
                source,
                origin: cx.origin(m.name.loc),
            });
        }
    }

    cx.clean().then(|| Payload {
        name: w.name.value,
        target,
        description: w.description,
        file: cx.file.clone(),
        build_dir_template: w.build_dir.value,
        files,
        drivers,
        install_order,
        tools,
        metrics,
    })
}

/// Checks `${VAR}` syntax; when no variable is used, also that the directory and every file
/// source exist (a missing build output is a config error, not a deploy-time surprise).
fn build_dir(cx: &mut Cx<'_>, w: &PayloadWire) {
    let text = w.build_dir.value.as_str();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end)
                if end > 0
                    && after[..end]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                rest = &after[end + 1..]
            }
            _ => {
                cx.error("invalid-value", w.build_dir.loc, "build_dir", format!("invalid variable reference in `{text}`: write `${{NAME}}` with letters, digits and `_`"));
                return;
            }
        }
    }
    if text.contains("${") {
        return;
    }
    let Ok(expanded) = expand_vars(text, &|_| None) else {
        return;
    };
    let dir = cx.file.parent().unwrap_or(Path::new(".")).join(expanded);
    if !dir.is_dir() {
        cx.error(
            "not-found",
            w.build_dir.loc,
            "build_dir",
            format!("build directory `{}` does not exist", dir.display()),
        );
        return;
    }
    for (i, f) in w.files.iter().enumerate() {
        let src = f.source.as_str();
        if src.is_empty()
            || Path::new(src).is_absolute()
            || src.split(['/', '\\']).any(|c| c == "..")
        {
            continue; // reported as an invalid source
        }
        let path = dir.join(f.source.as_str());
        if !path.is_file() {
            cx.error(
                "not-found",
                f.source.loc,
                format!("files[{i}].source"),
                format!(
                    "file `{}` not found in build directory `{}`",
                    f.source.value,
                    dir.display()
                ),
            );
            continue;
        }
        // A pinned hash is checked now too (sim payload files are small).
        if let Some(want) = f
            .sha256
            .as_ref()
            .and_then(|s| sha256_hex(s).map(|h| (h, s.loc)))
            && let Ok(bytes) = std::fs::read(&path)
        {
            let got = hex::encode(Sha256::digest(&bytes));
            if got != want.0 {
                cx.error(
                    "hash-mismatch",
                    want.1,
                    format!("files[{i}].sha256"),
                    format!(
                        "sha256 of `{}` is {got}, not the pinned value",
                        path.display()
                    ),
                )
                .help = Some("update `sha256` if the file changed on purpose".to_owned());
            }
        }
    }
}

/// Topological order of drivers (dependencies first); reports each cycle once.
fn install_order(cx: &mut Cx<'_>, drivers: &[crate::wire::payload::DriverWire]) -> Vec<usize> {
    let index: HashMap<&str, usize> = drivers
        .iter()
        .enumerate()
        .map(|(i, d)| (d.service.as_str(), i))
        .collect();
    // 0 = unvisited, 1 = on the stack, 2 = done
    let mut state = vec![0u8; drivers.len()];
    let mut order = Vec::new();
    let mut reported = false;
    fn visit(
        i: usize,
        drivers: &[crate::wire::payload::DriverWire],
        index: &HashMap<&str, usize>,
        state: &mut [u8],
        stack: &mut Vec<usize>,
        order: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        state[i] = 1;
        stack.push(i);
        for dep in drivers[i].depends_on.iter().flatten() {
            let Some(&j) = index.get(dep.as_str()) else {
                continue;
            };
            if j == i {
                continue; // reported as a self-dependency
            }
            match state[j] {
                0 => {
                    if let Some(c) = visit(j, drivers, index, state, stack, order) {
                        return Some(c);
                    }
                }
                1 => {
                    let from = stack.iter().position(|&k| k == j).unwrap_or(0);
                    return Some(stack[from..].to_vec());
                }
                _ => {}
            }
        }
        stack.pop();
        state[i] = 2;
        order.push(i);
        None
    }
    for i in 0..drivers.len() {
        if state[i] == 0 {
            let mut stack = Vec::new();
            if let Some(cycle) = visit(i, drivers, &index, &mut state, &mut stack, &mut order)
                && !reported
            {
                reported = true;
                let mut names: Vec<&str> =
                    cycle.iter().map(|&k| drivers[k].service.as_str()).collect();
                names.push(names[0]);
                let first = &drivers[cycle[0]];
                cx.error(
                    "dependency-cycle",
                    first.service.loc,
                    format!("drivers[{}].depends_on", cycle[0]),
                    format!("driver dependency cycle: {}", names.join(" -> ")),
                )
                .help = Some("remove one of the `depends_on` entries".to_owned());
                // Finish the order without the cycle so later checks still run.
                for s in state.iter_mut() {
                    if *s == 1 {
                        *s = 2;
                    }
                }
            }
        }
    }
    order
}

/// Parses a wire value as `kind` (used for defaults, bounds and scenario arguments).
pub(crate) fn typed_value(kind: &ArgKind, v: &ArgValueWire) -> Result<ArgValue, String> {
    match (kind, v) {
        (ArgKind::Int { .. }, ArgValueWire::Int(i)) => Ok(ArgValue::Int(*i)),
        (ArgKind::Duration { .. }, ArgValueWire::Str(s)) => {
            parse_duration(s).map(ArgValue::Duration)
        }
        (ArgKind::Duration { .. }, ArgValueWire::Int(i)) => {
            Err(format!("duration `{i}` has no unit: write e.g. `{i}s`"))
        }
        (ArgKind::String, ArgValueWire::Str(s)) => Ok(ArgValue::String(s.clone())),
        (ArgKind::String, ArgValueWire::Int(i)) => Ok(ArgValue::String(i.to_string())),
        (ArgKind::Bool, ArgValueWire::Bool(b)) => Ok(ArgValue::Bool(*b)),
        (ArgKind::Enum { values }, ArgValueWire::Str(s)) => {
            if values.contains(s) {
                Ok(ArgValue::String(s.clone()))
            } else {
                let v: Vec<&str> = values.iter().map(String::as_str).collect();
                Err(format!("`{s}` is not one of {}", list(&v)))
            }
        }
        (k, v) => Err(format!(
            "expected {} value, got {v}",
            article(k.type_name())
        )),
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
pub(crate) fn in_range(kind: &ArgKind, v: &ArgValue) -> Result<(), String> {
    match (kind, v) {
        (ArgKind::Int { min, max }, ArgValue::Int(i))
            if min.is_some_and(|m| *i < m) || max.is_some_and(|m| *i > m) =>
        {
            return Err(format!(
                "{i} is out of range {}..={}",
                min.map_or("".into(), |m| m.to_string()),
                max.map_or("".into(), |m| m.to_string())
            ));
        }
        (ArgKind::Duration { min, max, .. }, ArgValue::Duration(d)) => {
            let f = |d: &Option<Duration>| d.map_or(String::new(), crate::values::format_duration);
            if min.is_some_and(|m| *d < m) || max.is_some_and(|m| *d > m) {
                return Err(format!(
                    "{} is out of range {}..={}",
                    crate::values::format_duration(*d),
                    f(min),
                    f(max)
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

fn argument(cx: &mut Cx<'_>, a: &ArgWire, p: &str) -> ToolArg {
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
    let bound = |cx: &mut Cx<'_>,
                 b: &Option<Sp<ArgValueWire>>,
                 field: &str,
                 k: &ArgKind|
     -> Option<ArgValue> {
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
    };
    let kind = match ty {
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
                min: as_int(bound(cx, &a.min, "min", &k)),
                max: as_int(bound(cx, &a.max, "max", &k)),
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
                min: as_d(bound(cx, &a.min, "min", &k)),
                max: as_d(bound(cx, &a.max, "max", &k)),
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
    };
    let min_max_bad = match &kind {
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
    let default = a.default.as_ref().and_then(|d| {
        match typed_value(&kind, &d.value).and_then(|v| in_range(&kind, &v).map(|()| v)) {
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
    });
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
    ToolArg {
        name: a.name.value.clone(),
        kind,
        default,
        required,
        flag: a.flag.as_ref().map(|f| f.value.clone()),
    }
}

fn tool(cx: &mut Cx<'_>, t: &ToolWire, p: &str) -> Option<Tool> {
    let before = cx.diags.len();
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
    let command: Vec<String> = t
        .command
        .iter()
        .flat_map(|c| c.value.iter())
        .map(|e| e.value.clone())
        .collect();
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
                    } else if n == "junit" && junit.is_none() {
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
        result: ResultContract {
            exit_codes,
            counters,
            counter_names: r
                .and_then(|r| r.counter_names.as_ref())
                .map(|n| n.iter().map(|s| s.value.clone()).collect())
                .unwrap_or_default(),
            junit: junit.map(|j| j.value.clone()),
        },
        timeout,
        origin: cx.origin(t.name.loc),
    };
    // Render once with the defaults: a template that cannot render is caught here. Required
    // arguments are filled with a sample so only the template itself is checked.
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
    let ctx = InvocationContext {
        seed: 1,
        iteration: 0,
        vm: "vm",
        scenario: "scenario",
    };
    if let Err(e) = tool.render(&sample, &ctx) {
        cx.error(
            "render",
            t.name.loc,
            format!("{p}.command"),
            format!("command cannot be rendered: {e}"),
        );
        return None;
    }
    Some(tool)
}

fn metric_source(
    cx: &mut Cx<'_>,
    m: &crate::wire::payload::MetricWire,
    target: PayloadTarget,
    p: &str,
) -> Option<MetricSource> {
    let mut sources = Vec::new();
    if m.pool_bytes.is_some() {
        sources.push("pool_bytes");
    }
    if m.pool_allocs.is_some() {
        sources.push("pool_allocs");
    }
    if m.epoch.is_some() {
        sources.push("epoch");
    }
    if m.powershell.is_some() {
        sources.push("powershell");
    }
    if sources.len() != 1 {
        let msg = if sources.is_empty() {
            format!(
                "metric `{}` has no source: give one of {}",
                m.name.value,
                list(&["pool_bytes", "pool_allocs", "epoch", "powershell"])
            )
        } else {
            format!(
                "metric `{}` has more than one source: {}",
                m.name.value,
                list(&sources)
            )
        };
        cx.error("invalid-value", m.name.loc, p, msg);
        return None;
    }
    if m.field.is_some() != m.powershell.is_some()
        && let Some(loc) = m
            .field
            .as_ref()
            .map(|f| f.loc)
            .or(m.powershell.as_ref().map(|s| s.loc))
    {
        cx.error("missing", loc, format!("{p}.field"), "`powershell` and `field` go together: the script prints JSON and `field` names the number");
        return None;
    }
    let tag = |cx: &mut Cx<'_>, t: &Sp<String>, field: &str| {
        if t.is_empty() || t.len() > 4 || !t.chars().all(|c| c.is_ascii_graphic()) {
            cx.error(
                "invalid-value",
                t.loc,
                format!("{p}.{field}"),
                format!(
                    "pool tag `{}` must be 1 to 4 printable ASCII characters",
                    t.value
                ),
            );
        }
        t.value.clone()
    };
    let wrong_target = |cx: &mut Cx<'_>, loc, field: &str, only: &str| {
        cx.error(
            "conflict",
            loc,
            format!("{p}.{field}"),
            format!("`{field}` metrics are only available on {only} payloads"),
        );
    };
    if let Some(t) = &m.pool_bytes {
        return Some(MetricSource::PoolBytes {
            tag: tag(cx, t, "pool_bytes"),
        });
    }
    if let Some(t) = &m.pool_allocs {
        return Some(MetricSource::PoolAllocs {
            tag: tag(cx, t, "pool_allocs"),
        });
    }
    if let Some(e) = &m.epoch {
        if target != PayloadTarget::Sim {
            wrong_target(cx, e.loc, "epoch", "sim");
        }
        return Some(MetricSource::Epoch(e.value));
    }
    let (script, field) = (m.powershell.as_ref()?, m.field.as_ref()?);
    if target != PayloadTarget::Windows {
        wrong_target(cx, script.loc, "powershell", "windows");
    }
    Some(MetricSource::PowerShell {
        script: script.value.clone(),
        field: field.value.clone(),
    })
}
