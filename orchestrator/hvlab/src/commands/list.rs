//! `hvlab list`: what a run could cover, without running it: the selected scenarios with
//! their units per template, the tags, the lab's templates and the tools of each payload
//! with their arguments (as text, or one JSON document with `--format json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use lab_config::{ArgKind, Plan, Tool};
use serde_json::{Value, json};

use crate::cli::{ListArgs, ListFormat};
use crate::commands::run::{lab_path, parse_filters, validated_plan};
use crate::error::CliError;
use crate::filter::Filter;
use crate::select::{self, Selection};

/// Runs `hvlab list`.
pub fn run(root: &Path, args: &ListArgs) -> Result<u8, CliError> {
    let lab = lab_path(root, args.lab.as_deref())?;
    let mut sel = Selection {
        scenarios: args.scenarios.clone(),
        tags: args.tag.clone(),
        templates: args.template.clone(),
        filter: parse_filters(&args.filter)?,
    };
    // Listing shows everything unless narrowed, `fault` scenarios included.
    if sel.scenarios.is_empty() && sel.tags.is_empty() && sel.filter.is_none() {
        sel.filter = Some(Filter::All);
    }
    let mut plan = validated_plan(root, &lab, &sel.scenarios, None)?;
    select::narrow(&mut plan, &sel)?;
    if plan.scenarios.is_empty() {
        return Err(select::nothing_matches(&sel));
    }
    let doc = document(&plan, root);
    let text = match args.format {
        ListFormat::Json => {
            let mut s = serde_json::to_string_pretty(&doc).map_err(|e| CliError::Io {
                action: "serialize the list as JSON".into(),
                source: e.into(),
            })?;
            s.push('\n');
            s
        }
        ListFormat::Human => human(&doc),
    };
    crate::stdout(&text)?;
    Ok(0)
}

fn rel(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The listing as one JSON value (also what the text form is rendered from).
pub fn document(plan: &Plan, root: &Path) -> Value {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_owned());
    let mut tags: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let scenarios: Vec<Value> = plan
        .scenarios
        .iter()
        .map(|s| {
            for t in &s.tags {
                tags.entry(t).or_default().push(&s.name);
            }
            let units: serde_json::Map<String, Value> = s
                .vms
                .iter()
                .map(|t| (t.clone(), json!(s.iterations)))
                .collect();
            json!({
                "name": s.name,
                "file": rel(&s.file, &root),
                "description": s.description,
                "tags": s.tags,
                "payload": s.payload.name,
                "iterations": s.iterations,
                "retries": s.retries,
                "in_default_run": !s.is_fault(),
                "units_per_template": units,
                "units": s.vms.len() as u64 * u64::from(s.iterations),
            })
        })
        .collect();
    let units: u64 = plan
        .scenarios
        .iter()
        .map(|s| s.vms.len() as u64 * u64::from(s.iterations))
        .sum();
    let payloads: Vec<Value> = plan
        .payloads
        .iter()
        .filter(|p| plan.scenarios.iter().any(|s| s.payload.name == p.name))
        .map(|p| {
            json!({
                "name": p.name,
                "file": rel(&p.file, &root),
                "tools": p.tools.iter().map(tool).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "lab": {
            "name": plan.lab.name,
            "file": rel(&plan.lab.file, &root),
            "templates": select::known_templates(plan),
        },
        "units": units,
        "scenarios": scenarios,
        "tags": tags,
        "payloads": payloads,
    })
}

fn tool(t: &Tool) -> Value {
    let args: Vec<Value> = t
        .arguments
        .iter()
        .map(|a| {
            let mut v = json!({
                "name": a.name,
                "type": a.kind.type_name(),
                "required": a.required,
                "default": a.default.as_ref().map(ToString::to_string),
            });
            match &a.kind {
                ArgKind::Int { min, max } => {
                    v["min"] = json!(min);
                    v["max"] = json!(max);
                }
                ArgKind::Duration { min, max, .. } => {
                    let f = |d: &Option<std::time::Duration>| {
                        d.map(|d| humantime::format_duration(d).to_string())
                    };
                    v["min"] = json!(f(min));
                    v["max"] = json!(f(max));
                }
                ArgKind::Enum { values } => v["values"] = json!(values),
                ArgKind::String | ArgKind::Bool => {}
            }
            v
        })
        .collect();
    json!({
        "name": t.name,
        "program": t.program,
        "arguments": args,
        "counters": t.result.counter_names,
    })
}

/// The text form: one block per section, aligned columns.
fn human(doc: &Value) -> String {
    let mut s = String::new();
    let lab = &doc["lab"];
    let str_list = |v: &Value| -> String {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let _ = writeln!(
        s,
        "lab {} ({}): templates {}",
        lab["name"].as_str().unwrap_or_default(),
        lab["file"].as_str().unwrap_or_default(),
        str_list(&lab["templates"])
    );
    let scenarios = doc["scenarios"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(
        s,
        "\n{} scenarios, {} units:",
        scenarios.len(),
        doc["units"]
    );
    let width = scenarios
        .iter()
        .filter_map(|x| x["name"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(0);
    for sc in &scenarios {
        let per: Vec<String> = sc["units_per_template"]
            .as_object()
            .map(|m| m.iter().map(|(t, n)| format!("{t} x{n}")).collect())
            .unwrap_or_default();
        let tags = str_list(&sc["tags"]);
        let note = if sc["in_default_run"] == json!(false) {
            "  (not in the default run)"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  {:<width$}  {}  [{}]{note}",
            sc["name"].as_str().unwrap_or_default(),
            per.join(", "),
            tags,
        );
    }
    if let Some(tags) = doc["tags"].as_object() {
        let _ = writeln!(s, "\ntags:");
        let width = tags.keys().map(String::len).max().unwrap_or(0);
        for (t, names) in tags {
            let _ = writeln!(s, "  {t:<width$}  {}", str_list(names));
        }
    }
    for p in doc["payloads"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "\ntools of payload {} ({}):",
            p["name"].as_str().unwrap_or_default(),
            p["file"].as_str().unwrap_or_default()
        );
        for t in p["tools"].as_array().into_iter().flatten() {
            let _ = writeln!(s, "  {}", t["name"].as_str().unwrap_or_default());
            let args = t["arguments"].as_array().into_iter().flatten();
            // One column for the tool's argument names, however long the longest is.
            let width = args
                .clone()
                .map(|a| a["name"].as_str().map_or(0, str::len))
                .max()
                .unwrap_or(0);
            for a in args {
                let mut line = format!(
                    "    {:<width$} {}",
                    a["name"].as_str().unwrap_or_default(),
                    a["type"].as_str().unwrap_or_default()
                );
                if let Some(v) = a.get("values") {
                    let _ = write!(line, " ({})", str_list(v).replace(", ", "|"));
                }
                match (
                    a.get("min").and_then(value_text),
                    a.get("max").and_then(value_text),
                ) {
                    (None, None) => {}
                    (lo, hi) => {
                        let _ = write!(
                            line,
                            " {}..{}",
                            lo.unwrap_or_default(),
                            hi.unwrap_or_default()
                        );
                    }
                }
                if a["required"] == json!(true) {
                    line.push_str(", required");
                }
                if let Some(d) = a["default"].as_str() {
                    let _ = write!(line, ", default {d}");
                }
                let _ = writeln!(s, "{line}");
            }
            let counters = str_list(&t["counters"]);
            if !counters.is_empty() {
                let _ = writeln!(s, "    counters: {counters}");
            }
        }
    }
    s
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
