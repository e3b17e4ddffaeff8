//! `docs/tools.md`: the reference of every tool's arguments per payload, generated from the
//! payload manifests (types, ranges, defaults, flags, and the `#` comment written above each
//! tool and argument), so the documentation cannot drift from what validation accepts.

use std::fmt::Write as _;

use crate::model::payload::{ArgKind, Payload};
use crate::values::format_duration;

/// The `#` comment lines directly above the first line of `text` that contains `needle`.
fn comment_above(text: &str, needle: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(at) = lines.iter().position(|l| l.contains(needle)) else {
        return String::new();
    };
    let mut out: Vec<&str> = lines[..at]
        .iter()
        .rev()
        .map(|l| l.trim())
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches('#').trim())
        .collect();
    out.reverse();
    out.join(" ")
}

fn range(kind: &ArgKind) -> String {
    let bounds = |min: Option<String>, max: Option<String>| match (min, max) {
        (Some(a), Some(b)) => format!("{a} to {b}"),
        (Some(a), None) => format!("at least {a}"),
        (None, Some(b)) => format!("at most {b}"),
        (None, None) => String::new(),
    };
    match kind {
        ArgKind::Int { min, max } => bounds(min.map(|v| v.to_string()), max.map(|v| v.to_string())),
        ArgKind::Duration { min, max, .. } => {
            bounds(min.map(format_duration), max.map(format_duration))
        }
        ArgKind::Enum { values } => values
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(", "),
        ArgKind::String | ArgKind::Bool => String::new(),
    }
}

/// Markdown for the given payloads, each with the text of its manifest (for comments).
pub fn tools_markdown(payloads: &[(Payload, String)]) -> String {
    let mut md = String::from(
        "# Tool reference\n\n\
         Generated from `driver-payloads/*.yaml`; do not edit by hand. The lab-config test\n\
         `tools_reference_is_current` fails when this file differs from what the payload files\n\
         say; `HVLAB_UPDATE_DOCS=1 cargo test -p lab-config --test it tools_reference`\n\
         rewrites it. A scenario\n\
         runs a tool with `run: {tool: NAME, args: {ARG: VALUE, ...}}`; see\n\
         [scenarios.md](scenarios.md) for the step itself and\n\
         [writing-scenarios.md](writing-scenarios.md) for worked examples.\n",
    );
    for (p, text) in payloads {
        let _ = write!(md, "\n## Payload `{}`\n\n", p.name);
        if let Some(d) = &p.description {
            let _ = writeln!(md, "{}\n", d.trim());
        }
        if p.tools.is_empty() {
            md.push_str("No tools.\n");
        }
        for t in &p.tools {
            let _ = write!(md, "### `{}`\n\n", t.name);
            let about = comment_above(text, &format!("- name: {}", t.name));
            if !about.is_empty() {
                let _ = writeln!(md, "{about}\n");
            }
            let _ = writeln!(md, "Program `{}`.", t.program);
            if let Some(limit) = t.timeout {
                let _ = writeln!(md, "Default step timeout {}.", format_duration(limit));
            }
            if !t.result.counter_names.is_empty() {
                let _ = writeln!(
                    md,
                    "Counters (for `expect: counters:`): {}.",
                    t.result
                        .counter_names
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            md.push('\n');
            if t.arguments.is_empty() {
                md.push_str("No arguments.\n\n");
                continue;
            }
            md.push_str("| argument | type | values | default | flag | description |\n");
            md.push_str("|---|---|---|---|---|---|\n");
            for a in &t.arguments {
                let default = match (&a.default, a.required) {
                    (_, true) => "required".to_owned(),
                    (Some(v), false) => format!("`{v}`"),
                    (None, false) => "not passed".to_owned(),
                };
                // Each argument's comment is searched in its own tool's entry only.
                let about = section_of(text, &t.name)
                    .map(|s| comment_above(s, &format!("{{name: {},", a.name)))
                    .unwrap_or_default();
                let _ = writeln!(
                    md,
                    "| `{}` | {} | {} | {default} | {} | {} |",
                    a.name,
                    a.kind.type_name(),
                    range(&a.kind),
                    a.flag
                        .as_deref()
                        .map(|f| format!("`{f}`"))
                        .unwrap_or_default(),
                    about.replace('|', "\\|")
                );
            }
            md.push('\n');
        }
    }
    md
}

/// The manifest text from tool `name`'s entry to the next tool's.
fn section_of<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find(&format!("- name: {name}\n"))?;
    let rest = &text[start + 1..];
    let end = rest.find("\n  - name: ").map_or(rest.len(), |e| e + 1);
    Some(&text[start..start + 1 + end])
}
