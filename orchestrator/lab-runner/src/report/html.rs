//! `index.html`: one self-contained page (inline CSS, no scripts, nothing fetched) to browse
//! a run: header, a per-VM timeline of units and their steps (overlapping steps on separate
//! lanes, so a race is visible), a status filter (CSS radio buttons), crash buckets, each
//! failure with expected vs observed, its step log and links to its artifacts, and every
//! unit. A repro run adds its rates with intervals and replay commands.
//!
//! Rendered with maud: every string from the run is escaped by the template itself, and
//! links are relative so the folder can be moved or served as is.

use std::path::{Path, PathBuf};

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::model::{RunModel, StepRecord, UnitRecord};
use super::{ReportError, Reporter, text};
use crate::events::{ArtifactKind, Envelope, StepOutcome, UnitOutcome};
use crate::results::{RunDir, atomic_write};

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:100%}\
table{border-collapse:collapse;margin:.5em 0 1.5em;table-layout:fixed;width:100%}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top;overflow-wrap:anywhere}\
th{background:#f3f3f3}code,pre{font:12px ui-monospace,monospace}\
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f7f7f7;padding:.5em;max-height:30em;overflow-y:auto}\
.PASS{color:#17692b}.FAIL,.ERROR{color:#b00020;font-weight:bold}.SKIP{color:#777}\
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5em;margin:.5em 0}\
h1,h2,h3,p,li{overflow-wrap:anywhere}\
.tl{position:relative;overflow:hidden;border-left:1px solid #999;margin:.2em 0 .8em}\
.tl .bar{position:absolute;height:14px;border-radius:2px;opacity:.85;overflow:hidden;font-size:10px;white-space:nowrap}\
.bar.PASS,.bar.passed{background:#8fd19e}.bar.FAIL,.bar.failed,.bar.crashed,.bar.timed_out{background:#f19c9c}\
.bar.ERROR,.bar.errored{background:#f5c56b}.bar.SKIP,.bar.skipped,.bar.cancelled,.bar.running{background:#ccc}\
.filter input{margin-left:1em}\
#f-fail:checked~main .u.PASS,#f-fail:checked~main .u.SKIP{display:none}\
#f-pass:checked~main .u:not(.PASS){display:none}\
#f-skip:checked~main .u:not(.SKIP){display:none}";

/// What a repro run adds to the page (filled by repro mode from its state).
#[derive(Debug, Clone, Default)]
pub struct ReproView {
    pub scenario: String,
    /// `12 of 40 (30%, 95% CI 18%-45%)`.
    pub failure_rate: String,
    /// One per crash bucket: id, title, rate text, replay command.
    pub buckets: Vec<ReproBucket>,
    pub stopped: Option<String>,
}

/// One bucket of a [`ReproView`].
#[derive(Debug, Clone, Default)]
pub struct ReproBucket {
    pub id: String,
    pub title: String,
    pub rate: String,
    pub replay: String,
    /// The issue `known-issues.yaml` names for the bucket, marked as on the run page.
    pub known_issue: Option<String>,
}

type ReproFn = Box<dyn FnMut() -> ReproView + Send>;

/// Writes `<results_dir>/index.html`.
pub struct HtmlReporter {
    path: PathBuf,
    model: RunModel,
    rewrites: super::Rewrites,
    repro: Option<ReproFn>,
}

impl std::fmt::Debug for HtmlReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HtmlReporter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl HtmlReporter {
    pub fn new(results_dir: &Path) -> Self {
        HtmlReporter {
            path: results_dir.join(RunDir::INDEX),
            model: RunModel::new(),
            rewrites: super::Rewrites::new(),
            repro: None,
        }
    }

    /// The page of a repro run: `view` is asked for the rates each time the page is written.
    pub fn with_repro(results_dir: &Path, view: ReproFn) -> Self {
        let mut r = Self::new(results_dir);
        r.repro = Some(view);
        r
    }
}

impl Reporter for HtmlReporter {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        self.model.apply(ev);
        if self.rewrites.due(&ev.event) {
            let repro = self.repro.as_mut().map(|f| f());
            atomic_write(
                &self.path,
                render_with(&self.model, repro.as_ref()).as_bytes(),
            )?;
        }
        Ok(())
    }
}

/// A relative path as an href: each byte outside the URL-safe set percent-encoded, so a
/// name like `a#b` or `x?y` still links to the file.
fn href(p: &Path) -> String {
    use std::fmt::Write as _;
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

fn link(p: &Path) -> Markup {
    html! { a href=(href(p)) { (p.display()) } }
}

/// The whole page, with a repro run's section.
pub fn render_with(m: &RunModel, repro: Option<&ReproView>) -> String {
    let run = &m.run;
    let s = m.stats();
    // A repro run does not know its units up front: count the ones seen.
    let units = s.units.max(m.units.len());
    let title = match repro {
        Some(r) => format!("hvlab repro {} ({})", r.scenario, run.run_id),
        None => format!("hvlab run {}", run.run_id),
    };
    let files = [RunDir::JUNIT, RunDir::SUMMARY, RunDir::EVENTS, RunDir::LOG];
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                input type="radio" name="f" id="f-all" checked;
                label for="f-all" { "all" }
                input type="radio" name="f" id="f-fail";
                label for="f-fail" { "failed and errored" }
                input type="radio" name="f" id="f-pass";
                label for="f-pass" { "passed" }
                input type="radio" name="f" id="f-skip";
                label for="f-skip" { "skipped" }
                main {
                    h1 { (title) }
                    p {
                        "Lab " code { (run.lab) } " (" (run.lab_kind) "), seed " code { (run.seed) } ". "
                        (units) " units: " (s.passed) " passed, " (s.failed) " failed, "
                        (s.errored) " errored, " (s.cancelled) " cancelled; "
                        (s.crashes) (if s.crashes == 1 { " crash." } else { " crashes." })
                    }
                    p { "Files: "
                        @for (i, f) in files.iter().enumerate() {
                            @if i > 0 { ", " }
                            (link(Path::new(f)))
                        }
                    }
                    @match m.end {
                        Some(end) => p { "Finished in " (text::duration(end.elapsed)) "; exit code "
                            (end.exit_code) " (" (text::exit_code_meaning(end.exit_code)) ")." },
                        None => p.banner { "The run has not finished (still running, or killed)." },
                    }
                    @if m.interrupted() && m.end.is_some() {
                        p.banner { "The run was interrupted: unfinished units are marked SKIP." }
                    }
                    @for (vm, msg) in &m.infra_errors {
                        p.banner { "Lab error: " @if let Some(vm) = vm { (vm) ": " } (msg) }
                    }
                    @for (what, how) in &m.leftovers {
                        p.banner { "Left behind: " (what) " (remove with " code { (how) } ")" }
                    }
                    @if let Some(r) = repro { (repro_section(r)) }
                    (buckets(m))
                    (timeline(m, repro.is_some()))
                    (failures(m))
                    (unit_table(m))
                }
            }
        }
    };
    page.into_string()
}

fn repro_section(r: &ReproView) -> Markup {
    html! {
        h2 { "Repro" }
        p { "Failure rate: " (r.failure_rate) @if let Some(s) = &r.stopped { ". Stopped: " (s) } }
        @if !r.buckets.is_empty() {
            table {
                tr { th { "Bucket" } th { "Title" } th { "Rate (95% interval)" } th { "Replay" } }
                @for b in &r.buckets {
                    tr { td { code { (b.id) } @if let Some(i) = &b.known_issue { " known: " a href=(i) { (i) } } }
                        td { (b.title) } td { (b.rate) } td { code { (b.replay) } } }
                }
            }
        }
    }
}

fn buckets(m: &RunModel) -> Markup {
    let seen = m.buckets();
    html! {
        @if !seen.is_empty() {
            h2 { "Crash buckets" }
            table {
                tr { th { "Bucket" } th { "Title" } th { "Count" } th { "Units" } }
                @for b in &seen {
                    tr {
                        td { a href=(href(&RunDir::crash_rel(&b.bucket.id))) { code { (b.bucket.id) } }
                            @if b.bucket.new { " NEW" }
                            @if let Some(i) = &b.bucket.known_issue { " known: " a href=(i) { (i) } } }
                        td { (b.bucket.title) }
                        td { (b.count) }
                        td { @for (i, u) in b.units.iter().enumerate() { @if i > 0 { br; } (u) } }
                    }
                }
            }
        }
    }
}

/// Milliseconds from the run's start (or the earliest unit) to `t`.
fn offset_ms(origin: chrono::DateTime<chrono::Utc>, t: chrono::DateTime<chrono::Utc>) -> f64 {
    (t - origin).num_microseconds().unwrap_or(0).max(0) as f64 / 1000.0
}

fn step_class(o: Option<&StepOutcome>) -> &'static str {
    match o {
        None => "running",
        Some(StepOutcome::Passed) => "passed",
        Some(StepOutcome::Failed { .. }) => "failed",
        Some(StepOutcome::TimedOut) => "timed_out",
        Some(StepOutcome::Crashed) => "crashed",
        Some(StepOutcome::Skipped) => "skipped",
        Some(StepOutcome::Cancelled) => "cancelled",
        Some(StepOutcome::Errored { .. }) => "errored",
    }
}

/// Lanes for overlapping bars: each interval goes on the first lane free at its start.
fn lanes(intervals: &[(f64, f64)]) -> Vec<usize> {
    let mut ends: Vec<f64> = Vec::new();
    intervals
        .iter()
        .map(
            |&(start, end)| match ends.iter().position(|&e| e <= start) {
                Some(i) => {
                    ends[i] = end;
                    i
                }
                None => {
                    ends.push(end);
                    ends.len() - 1
                }
            },
        )
        .collect()
}

/// Per VM: its units as bars, their steps below on as many lanes as overlap needs. A repro
/// run shows its failing iterations only (the ones worth reading).
fn timeline(m: &RunModel, failing_only: bool) -> Markup {
    let started: Vec<&UnitRecord> = m
        .units
        .iter()
        .filter(|u| u.started_at.is_some())
        .filter(|u| !failing_only || matches!(u.outcome, Some(UnitOutcome::Failed { .. })))
        .collect();
    let Some(origin) = started
        .iter()
        .filter_map(|u| u.started_at)
        .chain(m.run.started_at)
        .min()
    else {
        return html! {};
    };
    let end_of = |u: &UnitRecord| {
        let start = offset_ms(origin, u.started_at.unwrap_or(origin));
        let last_step = u
            .steps
            .iter()
            .map(|s| offset_ms(origin, s.started_at) + ms(s.duration))
            .fold(start, f64::max);
        (start + ms(u.duration)).max(last_step)
    };
    let total = started.iter().map(|u| end_of(u)).fold(1.0, f64::max);
    let pct = |v: f64| format!("{:.3}%", v / total * 100.0);
    let mut vms: Vec<&str> = started.iter().filter_map(|u| u.vm.as_deref()).collect();
    vms.sort_unstable();
    vms.dedup();
    html! {
        h2 { @if failing_only { "Timeline of failing iterations" } @else { "Timeline" } }
        p { "Per VM, each unit as a bar, its steps below it; steps that ran at the same time are on separate lanes. Full width: " (text::duration(std::time::Duration::from_secs_f64(total / 1000.0))) "." }
        @for vm in vms {
            @let us: Vec<&&UnitRecord> = started.iter().filter(|u| u.vm.as_deref() == Some(vm)).collect();
            @let unit_iv: Vec<(f64, f64)> = us.iter().map(|u| (offset_ms(origin, u.started_at.unwrap_or(origin)), end_of(u))).collect();
            @let unit_lanes = lanes(&unit_iv);
            @let step_iv: Vec<(f64, f64)> = us.iter().flat_map(|u| u.steps.iter()).filter(|s| ms(s.duration) > 0.0).map(|s| (offset_ms(origin, s.started_at), offset_ms(origin, s.started_at) + ms(s.duration))).collect();
            @let step_lanes = lanes(&step_iv);
            @let unit_rows = unit_lanes.iter().max().map_or(0, |l| l + 1);
            @let rows = unit_rows + step_lanes.iter().max().map_or(0, |l| l + 1);
            h3 { code { (vm) } }
            div.tl style=(format!("height:{}px", rows * 16 + 2)) {
                @for ((u, (s, e)), lane) in us.iter().zip(&unit_iv).zip(&unit_lanes) {
                    @let word = text::outcome_word(u.outcome.as_ref());
                    div class=(format!("bar u {word}")) title=(format!("{} {word} {}", u.id, text::duration(std::time::Duration::from_secs_f64((e - s) / 1000.0))))
                        style=(format!("left:{};width:{};top:{}px", pct(*s), pct((e - s).max(total / 500.0)), lane * 16)) { (u.id) }
                }
                @for ((st, (s, e)), lane) in us.iter().flat_map(|u| u.steps.iter()).filter(|s| ms(s.duration) > 0.0).zip(&step_iv).zip(&step_lanes) {
                    div class=(format!("bar {}", step_class(st.outcome.as_ref()))) title=(format!("{} {}", st.path, st.label))
                        style=(format!("left:{};width:{};top:{}px", pct(*s), pct((e - s).max(total / 500.0)), (unit_rows + lane) * 16)) { (st.label) }
                }
            }
        }
    }
}

fn ms(d: Option<std::time::Duration>) -> f64 {
    d.map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The step log of a unit: each step with its outcome and the output it kept (the same
/// text as the unit's `steps.log`).
fn step_log(steps: &[StepRecord]) -> String {
    steps
        .iter()
        .map(|s| {
            let outcome = s
                .outcome
                .as_ref()
                .map_or_else(|| "did not finish".to_owned(), text::step_outcome);
            let took = s.duration.map(text::duration).unwrap_or_default();
            let out = s
                .output
                .as_ref()
                .map(|o| (o.stdout.as_str(), o.stderr.as_str()));
            super::steplog::entry(&s.path, &s.label, &outcome, &took, out)
        })
        .collect()
}

fn failures(m: &RunModel) -> Markup {
    let failed: Vec<&UnitRecord> = m.failed().collect();
    html! {
        @if !failed.is_empty() {
            h2 { "Failures" }
            @for u in failed {
                @let word = text::outcome_word(u.outcome.as_ref());
                div class=(format!("u {word}")) {
                    h3 { span class=(word) { (word) } " " code { (u.id) } " on " (u.vm.as_deref().unwrap_or("?")) }
                    @let failed_step = u.steps.iter().find(|s| matches!(s.outcome, Some(StepOutcome::Failed { .. } | StepOutcome::TimedOut | StepOutcome::Crashed | StepOutcome::Errored { .. })));
                    @if let Some(s) = failed_step {
                        p { "Expected: step " code { (s.path) } " " (s.label) " to pass." }
                    }
                    @match &u.outcome {
                        Some(UnitOutcome::Failed { message, .. }) => { p { "Observed: " } pre { (message) } },
                        Some(UnitOutcome::Errored { message, causes }) => { p { "Observed (lab error): " } pre { (UnitOutcome::error_text(message, causes)) } },
                        _ => {},
                    }
                    // The bugcheck is in the observed message; the crash adds where it is filed.
                    @for c in &u.crashes {
                        p {
                            "Crash folder " (link(&super::crash_folder(c)))
                            @if let Some(b) = &c.bucket { ", bucket " code { (b.id) } " " (b.title) @if b.new { " NEW" }
                                @if let Some(i) = &b.known_issue { " (known issue " a href=(i) { (i) } ")" } }
                            @if let Some(e) = &c.triage_error { ". Triage error: " (e) }
                        }
                    }
                    // Console logs are linked beside the step output, not among the other files.
                    @let consoles: Vec<&PathBuf> = u.artifacts.iter().filter(|(k, _)| *k == ArtifactKind::Console).map(|(_, p)| p).collect();
                    @let files: Vec<_> = u.attachments().into_iter().filter(|f| !consoles.contains(&f)).collect();
                    @if !files.is_empty() {
                        ul { @for f in &files { li { (link(f)) } } }
                    }
                    @if !consoles.is_empty() {
                        p { "VM console: " @for (i, c) in consoles.iter().enumerate() { @if i > 0 { ", " } (link(c)) } }
                    }
                    @if !u.steps.is_empty() {
                        p { "Step output: " (link(&RunDir::unit_rel(&u.id).join(super::steplog::STEP_LOG))) }
                        details open {
                            summary { "Step log" }
                            pre.steplog { (step_log(&u.steps)) }
                        }
                    }
                }
            }
        }
    }
}

fn unit_table(m: &RunModel) -> Markup {
    html! {
        h2 { "Units" }
        p.filter { "Show: "
            label for="f-all" { "all" } " · " label for="f-fail" { "failed" } " · "
            label for="f-pass" { "passed" } " · " label for="f-skip" { "skipped" }
        }
        table {
            colgroup { col style="width:7%"; col style="width:24%"; col style="width:16%"; col style="width:11%"; col style="width:8%"; col style="width:20%"; col style="width:14%"; }
            tr { th { "Result" } th { "Unit" } th { "VM" } th { "Seed" } th { "Duration" } th { "Reason" } th { "Folder" } }
            @for u in &m.units {
                @let word = text::outcome_word(u.outcome.as_ref());
                @let reason = match &u.outcome {
                    Some(o) => text::outcome_reason(o),
                    None if m.end.is_some() => "not run (interrupted)".to_owned(),
                    None => "not finished".to_owned(),
                };
                // A unit that never started has no folder: no link that leads nowhere.
                @let ran = u.started_at.is_some() || matches!(u.outcome, Some(UnitOutcome::Passed | UnitOutcome::Failed { .. } | UnitOutcome::Errored { .. }));
                tr class=(format!("u {word}")) {
                    td class=(word) { (word) }
                    td { code { (u.id) } }
                    td { (u.vm.as_deref().unwrap_or("")) }
                    td { @if let Some(s) = u.seed { (s) } }
                    td { @if let Some(d) = u.duration { (text::duration(d)) } }
                    td { (reason) }
                    td { @if ran { (link(&RunDir::unit_rel(&u.id))) } @else { (RunDir::unit_rel(&u.id).display()) } }
                }
            }
        }
    }
}
