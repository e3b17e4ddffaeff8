//! Payload manifest validation: files, drivers (references, dependency cycles, install
//! order), tools (typed arguments, command templates rendered once) and metrics.
//!
//! This file checks the manifest section by section; a tool's own checks are in [`tool`],
//! a metric's source in [`metric`].

mod metric;
mod tool;

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{Cx, is_windows_abs, list, sha256_hex};
use crate::model::payload::expand_vars;
use crate::model::{Driver, Metric, Payload, PayloadFile, Tool};
use crate::values::Loc;
use crate::wire::payload::{
    DriverWire, FileWire, MetricWire, PayloadTarget, PayloadWire, SignatureKind, SourceBase,
    StartType, ToolWire,
};

pub(crate) use tool::{in_range, typed_value};

/// Where each file is copied: lowercased destination -> (file index, where it is written).
type Destinations = HashMap<String, (usize, Loc)>;

/// Validates a payload manifest.
pub(crate) fn payload(cx: &mut Cx<'_>, w: PayloadWire) -> Option<Payload> {
    cx.name(&w.name, "name", "payload");
    let target = w.target.value;
    build_dir(cx, &w);
    let (files, by_dest) = files(cx, &w);
    let dest_names: Vec<&str> = w.files.iter().map(|f| f.destination.as_str()).collect();
    let no_drivers = Vec::new();
    let driver_wires = w.drivers.as_ref().map_or(&no_drivers, |d| &d.value);
    let drivers = drivers(cx, driver_wires, &by_dest, &dest_names);
    dependencies(cx, driver_wires);
    let install_order = install_order(cx, driver_wires);
    let tool_wires: Vec<&ToolWire> = w.tools.iter().flat_map(|t| t.value.iter()).collect();
    let tools = tools(cx, &tool_wires, &by_dest, &dest_names);
    let metric_wires: Vec<&MetricWire> = w.metrics.iter().flat_map(|m| m.value.iter()).collect();
    let metrics = metrics(cx, &metric_wires, target);
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

fn file_index(by_dest: &Destinations, name: &str) -> Option<usize> {
    by_dest.get(&name.to_ascii_lowercase()).map(|(i, _)| *i)
}

/// The files to copy: a relative source, an absolute Windows destination used once, and an
/// optional checksum.
fn files(cx: &mut Cx<'_>, w: &PayloadWire) -> (Vec<PayloadFile>, Destinations) {
    let mut files = Vec::new();
    let mut by_dest = Destinations::new();
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
        let source = if f.relative_to == Some(SourceBase::Manifest) {
            // Shipped with the manifest: checked now, and deployed from an absolute path
            // (joining an absolute path onto build_dir yields that path).
            let dir = manifest_dir(cx);
            check_source(cx, &dir, f, i, "the manifest's folder");
            dir.join(src).to_string_lossy().into_owned()
        } else {
            src.to_owned()
        };
        files.push(PayloadFile {
            source,
            destination: f.destination.value.clone(),
            sha256,
        });
    }
    (files, by_dest)
}

/// The drivers: a valid, unique service name and a `.sys` binary among the files.
fn drivers(
    cx: &mut Cx<'_>,
    driver_wires: &[DriverWire],
    by_dest: &Destinations,
    dest_names: &[&str],
) -> Vec<Driver> {
    let mut drivers = Vec::new();
    let mut seen = HashMap::new();
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
        let file = file_index(by_dest, &d.binary).unwrap_or_else(|| {
            cx.error(
                "unknown-reference",
                d.binary.loc,
                format!("{p}.binary"),
                format!(
                    "driver binary `{}` is not the destination of any file in this payload",
                    d.binary.value
                ),
            )
            .help = Some(format!("file destinations: {}", list(dest_names)));
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
            start: d
                .start
                .as_ref()
                .map_or(StartType::Demand, |s| s.value)
                .into(),
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
    drivers
}

/// Each `depends_on` names another driver of this payload.
fn dependencies(cx: &mut Cx<'_>, driver_wires: &[DriverWire]) {
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
}

/// The tools: a valid, unique name and a program among the files.
fn tools(
    cx: &mut Cx<'_>,
    tool_wires: &[&ToolWire],
    by_dest: &Destinations,
    dest_names: &[&str],
) -> Vec<Tool> {
    let mut tools = Vec::new();
    let mut seen = HashMap::new();
    for (i, t) in tool_wires.iter().enumerate() {
        let p = format!("tools[{i}]");
        if cx.name(&t.name, &format!("{p}.name"), "tool") {
            cx.unique(&mut seen, &t.name, &format!("{p}.name"), "tool");
        }
        if file_index(by_dest, &t.program).is_none() {
            cx.error(
                "unknown-reference",
                t.program.loc,
                format!("{p}.program"),
                format!(
                    "tool program `{}` is not the destination of any file in this payload",
                    t.program.value
                ),
            )
            .help = Some(format!("file destinations: {}", list(dest_names)));
        }
        if let Some(tool) = tool::tool(cx, t, &p) {
            tools.push(tool);
        }
    }
    tools
}

/// The metrics: a valid, unique name and one source that fits the payload's target.
fn metrics(cx: &mut Cx<'_>, metric_wires: &[&MetricWire], target: PayloadTarget) -> Vec<Metric> {
    let mut metrics = Vec::new();
    let mut seen = HashMap::new();
    for (i, m) in metric_wires.iter().enumerate() {
        let p = format!("metrics[{i}]");
        if cx.name(&m.name, &format!("{p}.name"), "metric") {
            cx.unique(&mut seen, &m.name, &format!("{p}.name"), "metric");
        }
        if let Some(source) = metric::source(cx, m, target, &p) {
            metrics.push(Metric {
                name: m.name.value.clone(),
                source,
                origin: cx.origin(m.name.loc),
            });
        }
    }
    metrics
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
        if f.relative_to != Some(SourceBase::Manifest) {
            check_source(cx, &dir, f, i, "build directory");
        }
    }
}

/// The folder a file's `source` is resolved in when it is `relative_to: manifest`.
fn manifest_dir(cx: &Cx<'_>) -> std::path::PathBuf {
    let dir = match cx.file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Absolute, so that deploying from another working directory finds the same files.
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Checks that a file source exists in `dir` and matches its pinned `sha256`.
fn check_source(cx: &mut Cx<'_>, dir: &Path, f: &FileWire, i: usize, what: &str) {
    let src = f.source.as_str();
    if src.is_empty() || Path::new(src).is_absolute() || src.split(['/', '\\']).any(|c| c == "..") {
        return; // reported as an invalid source
    }
    let path = dir.join(f.source.as_str());
    if !path.is_file() {
        cx.error(
            "not-found",
            f.source.loc,
            format!("files[{i}].source"),
            format!(
                "file `{}` not found in {what} `{}`",
                f.source.value,
                dir.display()
            ),
        );
        return;
    }
    // A pinned hash is checked now too (sim payload files and shipped tools are small).
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
