//! `index.html`: one self-contained page (inline CSS, no scripts) to browse a run: header,
//! crash buckets, failures with bugcheck and links to their artifacts, and every unit.
//! Every string from the run is HTML-escaped; links are relative so the folder can be
//! moved or served as is.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::model::{RunModel, UnitRecord};
use super::{ReportError, Reporter, text};
use crate::events::{Envelope, UnitOutcome};
use crate::results::{RunDir, atomic_write};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:.25em .6em;\
text-align:left;vertical-align:top}th{background:#f3f3f3}code,pre{font:12px ui-monospace,monospace}\
.PASS{color:#17692b}.FAIL,.ERROR{color:#b00020;font-weight:bold}.SKIP{color:#777}\
td{white-space:nowrap}td.r{white-space:normal}.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5em;margin:.5em 0}";

/// Writes `<results_dir>/index.html`.
#[derive(Debug)]
pub struct HtmlReporter {
    path: PathBuf,
    model: RunModel,
}

impl HtmlReporter {
    pub fn new(results_dir: &Path) -> Self {
        HtmlReporter {
            path: results_dir.join(RunDir::INDEX),
            model: RunModel::new(),
        }
    }
}

impl Reporter for HtmlReporter {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        self.model.apply(ev);
        if super::rewrite_due(&ev.event) {
            atomic_write(&self.path, render(&self.model).as_bytes())?;
        }
        Ok(())
    }
}

/// Escapes text for element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A relative path as an href: each byte outside the URL-safe set percent-encoded, so a
/// name like `a#b` or `x?y` still links to the file.
fn href(p: &Path) -> String {
    let s = p.to_string_lossy().replace('\\', "/");
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn link(p: &Path) -> String {
    format!(
        "<a href=\"{}\">{}</a>",
        escape(&href(p)),
        escape(&p.display().to_string())
    )
}

/// The whole page.
pub fn render(m: &RunModel) -> String {
    let mut h = String::new();
    let run = &m.run;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>hvlab run {}</title><style>{STYLE}</style></head><body>\n",
        escape(&run.run_id)
    );
    let _ = writeln!(h, "<h1>hvlab run <code>{}</code></h1>", escape(&run.run_id));
    let s = m.stats();
    let _ = writeln!(
        h,
        "<p>Lab <code>{}</code> ({}), seed <code>{}</code>. {} units: {} passed, {} failed, \
         {} errored, {} cancelled; {} crash{}.</p>",
        escape(&run.lab),
        escape(&run.lab_kind),
        run.seed,
        s.units,
        s.passed,
        s.failed,
        s.errored,
        s.cancelled,
        s.crashes,
        if s.crashes == 1 { "" } else { "es" }
    );
    let files: Vec<String> = [RunDir::JUNIT, RunDir::SUMMARY, RunDir::EVENTS, RunDir::LOG]
        .iter()
        .map(|f| link(Path::new(f)))
        .collect();
    let _ = writeln!(h, "<p>Files: {}</p>", files.join(", "));
    match m.end {
        Some(end) => {
            let _ = writeln!(
                h,
                "<p>Finished in {}; exit code {} ({}).</p>",
                text::duration(end.elapsed),
                end.exit_code,
                text::exit_code_meaning(end.exit_code)
            );
        }
        None => h.push_str(
            "<p class=\"banner\">The run has not finished (still running, or killed).</p>\n",
        ),
    }
    if m.interrupted() && m.end.is_some() {
        h.push_str(
            "<p class=\"banner\">The run was interrupted: unfinished units are marked SKIP.</p>\n",
        );
    }
    for (vm, msg) in &m.infra_errors {
        let vm = vm
            .as_deref()
            .map(|v| format!("{}: ", escape(v)))
            .unwrap_or_default();
        let _ = writeln!(h, "<p class=\"banner\">Lab error: {vm}{}</p>", escape(msg));
    }
    for (what, how) in &m.leftovers {
        let _ = writeln!(
            h,
            "<p class=\"banner\">Left behind: {} (remove with <code>{}</code>)</p>",
            escape(what),
            escape(how)
        );
    }
    buckets(&mut h, m);
    failures(&mut h, m);
    units(&mut h, m);
    h.push_str("</body></html>\n");
    h
}

fn buckets(h: &mut String, m: &RunModel) {
    let seen = m.buckets();
    if seen.is_empty() {
        return;
    }
    h.push_str("<h2>Crash buckets</h2>\n<table><tr><th>Bucket</th><th>Title</th><th>Count</th><th>Units</th></tr>\n");
    for b in seen {
        let units: Vec<String> = b.units.iter().map(|u| escape(&u.to_string())).collect();
        let _ = writeln!(
            h,
            "<tr><td><a href=\"{}\"><code>{}</code></a>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&href(&RunDir::crash_rel(&b.bucket.id))),
            escape(&b.bucket.id),
            if b.bucket.new { " NEW" } else { "" }.to_owned()
                + &b.bucket
                    .known_issue
                    .as_ref()
                    .map(|i| format!(" known: <a href=\"{0}\">{0}</a>", escape(i)))
                    .unwrap_or_default(),
            escape(&b.bucket.title),
            b.count,
            units.join("<br>")
        );
    }
    h.push_str("</table>\n");
}

fn failures(h: &mut String, m: &RunModel) {
    let failed: Vec<&UnitRecord> = m
        .units
        .iter()
        .filter(|u| {
            matches!(
                u.outcome,
                Some(UnitOutcome::Failed { .. } | UnitOutcome::Errored { .. })
            )
        })
        .collect();
    if failed.is_empty() {
        return;
    }
    h.push_str("<h2>Failures</h2>\n");
    for u in failed {
        let word = text::outcome_word(u.outcome.as_ref());
        let _ = writeln!(
            h,
            "<h3><span class=\"{word}\">{word}</span> <code>{}</code> on {}</h3>",
            escape(&u.id.to_string()),
            escape(u.vm.as_deref().unwrap_or("?"))
        );
        let message = match &u.outcome {
            Some(UnitOutcome::Failed { message, .. }) => Some(message.clone()),
            Some(UnitOutcome::Errored { message, causes }) => {
                Some(UnitOutcome::error_text(message, causes))
            }
            _ => None,
        };
        if let Some(message) = message {
            let _ = writeln!(h, "<pre>{}</pre>", escape(&message));
        }
        for c in &u.crashes {
            let _ = writeln!(
                h,
                "<p>{} (folder {})</p>",
                escape(&text::crash(c)),
                link(&super::crash_folder(c))
            );
            if let Some(b) = &c.bucket {
                let _ = writeln!(h, "<p>Crash {}</p>", escape(&text::bucket(b)));
            }
            if let Some(e) = &c.triage_error {
                let _ = writeln!(h, "<p>Triage error: {}</p>", escape(e));
            }
        }
        let files = u.attachments();
        if !files.is_empty() {
            h.push_str("<ul>");
            for f in &files {
                let _ = write!(h, "<li>{}</li>", link(f));
            }
            h.push_str("</ul>\n");
        }
    }
}

fn units(h: &mut String, m: &RunModel) {
    h.push_str(
        "<h2>Units</h2>\n<table><tr><th>Result</th><th>Unit</th><th>VM</th><th>Seed</th>\
         <th>Duration</th><th>Reason</th><th>Folder</th></tr>\n",
    );
    for u in &m.units {
        let word = text::outcome_word(u.outcome.as_ref());
        let reason = match &u.outcome {
            Some(o) => text::outcome_reason(o),
            None if m.interrupted() => "run interrupted".to_owned(),
            None => "not run".to_owned(),
        };
        // A unit that never started has no folder: no link that leads nowhere.
        let ran = u.started_at.is_some()
            || matches!(
                u.outcome,
                Some(
                    UnitOutcome::Passed | UnitOutcome::Failed { .. } | UnitOutcome::Errored { .. }
                )
            );
        let folder = if ran {
            link(&RunDir::unit_rel(&u.id))
        } else {
            escape(&RunDir::unit_rel(&u.id).display().to_string())
        };
        let _ = writeln!(
            h,
            "<tr><td class=\"{word}\">{word}</td><td><code>{}</code></td><td>{}</td><td>{}</td>\
             <td>{}</td><td class=\"r\">{}</td><td>{}</td></tr>",
            escape(&u.id.to_string()),
            escape(u.vm.as_deref().unwrap_or("")),
            u.seed.map(|s| s.to_string()).unwrap_or_default(),
            u.duration.map(text::duration).unwrap_or_default(),
            escape(&reason),
            folder
        );
    }
    h.push_str("</table>\n");
}
