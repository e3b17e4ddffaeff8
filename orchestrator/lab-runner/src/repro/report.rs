//! Repro's reporters. [`ReproObserver`] feeds step timelines into the shared state, trims
//! the evidence of failures beyond `--keep` per bucket and rewrites `repro.json`;
//! [`ReproSummaryReporter`] writes `summary.json` with a `repro` section; the terminal
//! reporter prints a progress line per iteration (failure rate per bucket with its
//! interval, iterations per minute, time to first failure) and the final repro summary.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use super::jitter::Role;
use super::record::{self, REPRO_FILE};
use super::state::{Evidence, State};
use super::stats::pct;
use crate::events::{Envelope, Event, StepOutcome, UnitId, UnitOutcome};
use crate::report::{Paint, ReportError, Reporter, RunModel, build_summary, text};
use crate::results::{RunDir, atomic_write};

/// Shared repro state.
pub type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    // A panic elsewhere must not hide the results: keep using the data.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// One unit's timeline while it runs: a clock per racing branch.
///
/// Offsets come from the steps' own (monotonic) durations, summed along each branch,
/// not from event timestamps: those are taken when the dispatcher handles an event, which
/// can be tens of milliseconds late while it writes another unit's results.
#[derive(Debug, Default)]
struct Capture {
    clocks: HashMap<String, f64>,
}

/// Timelines into the state, evidence trimming, `repro.json`.
#[derive(Debug)]
pub struct ReproObserver {
    state: Shared,
    run_dir: PathBuf,
    captures: HashMap<UnitId, Capture>,
}

impl ReproObserver {
    pub fn new(state: Shared, run_dir: &Path) -> Self {
        ReproObserver {
            state,
            run_dir: run_dir.to_owned(),
            captures: HashMap::new(),
        }
    }

    fn step_finished(&mut self, unit: &UnitId, path: &str, duration: Duration, passed: bool) {
        let mut st = lock(&self.state);
        let Some(plan) = &st.plan else {
            return;
        };
        let Some((branch, role)) = plan.classify(&st.cfg.scenario, path) else {
            return;
        };
        let clock = self
            .captures
            .entry(unit.clone())
            .or_default()
            .clocks
            .entry(branch)
            .or_insert(0.0);
        let start = *clock;
        *clock += duration.as_secs_f64() * 1000.0;
        let end = *clock;
        let Some(r) = st.iterations.get_mut(&unit.iteration) else {
            return;
        };
        match role {
            Role::Disruptive if r.stop_at_ms.is_none() => r.stop_at_ms = Some(start),
            // A tool cut short by a crash ran until the guest died, not for its workload:
            // only tools that passed say when invocations were in flight.
            Role::Workload if passed => r.workload_ms.push((start, end)),
            _ => {}
        }
    }

    /// Keeps the first `keep` failures of a bucket whole; later ones lose their dumps
    /// (the heavy part) but keep seed, timeline, logs and bucket.
    fn evidence(&mut self, unit: &UnitId, outcome: &UnitOutcome) {
        let mut st = lock(&self.state);
        let keep = st.cfg.keep;
        let Some(r) = st.iterations.get(&unit.iteration) else {
            return;
        };
        let Some(bucket) = r.bucket.clone() else {
            return;
        };
        let rank = st
            .buckets
            .get(&bucket)
            .and_then(|t| t.iterations.iter().position(|i| *i == unit.iteration))
            .unwrap_or(0);
        let evidence = if rank < keep {
            Evidence::Full
        } else {
            if let UnitOutcome::Failed { crash: Some(c), .. } = outcome {
                for d in &c.dumps {
                    let _ = std::fs::remove_file(self.run_dir.join(d));
                }
            }
            Evidence::Counted
        };
        if let Some(r) = st.iterations.get_mut(&unit.iteration) {
            r.evidence = evidence;
        }
    }

    fn write(&self) -> Result<(), ReportError> {
        let file = record::file(&lock(&self.state));
        let mut json = serde_json::to_vec_pretty(&file).map_err(|source| ReportError::Json {
            what: "repro.json",
            source,
        })?;
        json.push(b'\n');
        atomic_write(&self.run_dir.join(REPRO_FILE), &json)?;
        Ok(())
    }
}

impl Reporter for ReproObserver {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        match &ev.event {
            Event::StepFinished {
                unit,
                path,
                duration,
                outcome,
                ..
            } => self.step_finished(unit, path, *duration, *outcome == StepOutcome::Passed),
            Event::UnitFinished {
                unit,
                outcome,
                duration,
                ..
            } => {
                self.captures.remove(unit);
                if let Some(r) = lock(&self.state).iterations.get_mut(&unit.iteration) {
                    r.duration_secs = Some(duration.as_secs_f64());
                }
                self.evidence(unit, outcome);
                return self.write();
            }
            Event::RunStarted { run_id, .. } => {
                lock(&self.state).run_id = run_id.clone();
                return self.write();
            }
            Event::Interrupted { .. } | Event::RunFinished { .. } => return self.write(),
            _ => {}
        }
        Ok(())
    }
}

/// `summary.json` as `hvlab run` writes it, plus a `repro` section.
#[derive(Debug)]
pub struct ReproSummaryReporter {
    state: Shared,
    path: PathBuf,
    model: RunModel,
    rewrites: crate::report::Rewrites,
}

impl ReproSummaryReporter {
    pub fn new(state: Shared, run_dir: &Path) -> Self {
        ReproSummaryReporter {
            state,
            path: run_dir.join(RunDir::SUMMARY),
            model: RunModel::new(),
            rewrites: crate::report::Rewrites::new(),
        }
    }
}

impl Reporter for ReproSummaryReporter {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        self.model.apply(ev);
        if !self.rewrites.due(&ev.event) {
            return Ok(());
        }
        let err = |source| ReportError::Json {
            what: "summary.json",
            source,
        };
        let mut doc = serde_json::to_value(build_summary(&self.model)).map_err(err)?;
        let section = record::section(&lock(&self.state));
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("repro".into(), serde_json::to_value(section).map_err(err)?);
        }
        let mut json = serde_json::to_vec_pretty(&doc).map_err(err)?;
        json.push(b'\n');
        atomic_write(&self.path, &json)?;
        Ok(())
    }
}

/// The terminal: human lines on stderr, or JSON lines (every event, then the repro
/// section as `{"event":"repro_summary",...}`) on stdout.
pub struct ReproTerminal {
    state: Shared,
    out: Box<dyn Write + Send>,
    json: bool,
    paint: Paint,
    results_dir: PathBuf,
}

impl std::fmt::Debug for ReproTerminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReproTerminal")
            .field("json", &self.json)
            .finish_non_exhaustive()
    }
}

impl ReproTerminal {
    /// Human output to `out` (stderr for the CLI).
    pub fn human(state: Shared, out: Box<dyn Write + Send>, color: bool) -> Self {
        ReproTerminal {
            state,
            out,
            json: false,
            paint: Paint { color },
            results_dir: PathBuf::new(),
        }
    }

    /// JSON lines to `out` (stdout for the CLI).
    pub fn json(state: Shared, out: Box<dyn Write + Send>) -> Self {
        ReproTerminal {
            state,
            out,
            json: true,
            paint: Paint { color: false },
            results_dir: PathBuf::new(),
        }
    }

    fn json_event(&mut self, ev: &Envelope) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, ev)?;
        self.out.write_all(b"\n")?;
        if matches!(ev.event, Event::RunFinished { .. }) {
            let section = record::section(&lock(&self.state));
            let mut v = serde_json::json!({"event": "repro_summary"});
            if let (Some(o), serde_json::Value::Object(s)) =
                (v.as_object_mut(), serde_json::to_value(section)?)
            {
                o.extend(s);
            }
            serde_json::to_writer(&mut self.out, &v)?;
            self.out.write_all(b"\n")?;
        }
        self.out.flush()
    }

    fn human_event(&mut self, ev: &Envelope) -> io::Result<()> {
        let p = self.paint;
        match &ev.event {
            Event::RunStarted {
                run_id,
                lab,
                max_vms,
                seed,
                results_dir,
                ..
            } => {
                self.results_dir = results_dir.clone();
                let st = lock(&self.state);
                let what = match &st.plan {
                    Some(j) => format!(
                        "`{}` fires {} to {} after the race starts: searching that window",
                        j.disruptive_label,
                        humantime::format_duration(j.min),
                        humantime::format_duration(j.max)
                    ),
                    None => {
                        "no random sleep before a disruptive step: varying the seed only".into()
                    }
                };
                writeln!(
                    self.out,
                    "hvlab repro {run_id}: {} on {lab}, up to {max_vms} VMs, run seed {seed}\n  {what}",
                    st.cfg.scenario.name
                )?;
            }
            Event::UnitFinished { unit, outcome, .. } => {
                let line = progress_line(&lock(&self.state), unit.iteration, outcome, p);
                writeln!(self.out, "{line}")?;
            }
            Event::Interrupted { count } => writeln!(
                self.out,
                "{}",
                if *count <= 1 {
                    "interrupted: finishing the running iterations, then writing results \
                     (press Ctrl-C again to force)"
                } else {
                    "interrupted again: powering off and deleting VMs now"
                }
            )?,
            Event::InfraError {
                vm,
                message,
                causes,
            } => {
                let line = text::infra_error(vm.as_deref(), message, causes);
                writeln!(self.out, "{} {line}", p.status("ERROR"))?;
            }
            Event::Warning { message } => writeln!(self.out, "{} {message}", p.status("WARN"))?,
            Event::DumpsRemoved {
                bucket,
                keep,
                removed,
            } => writeln!(
                self.out,
                "{}",
                crate::report::dumps_removed_line(bucket, *keep, removed)
            )?,
            Event::Leftover {
                what,
                how_to_remove,
            } => writeln!(
                self.out,
                "left behind: {what} (remove with: {how_to_remove})"
            )?,
            Event::RunFinished { exit_code, .. } => {
                let text = render_final(&lock(&self.state), &self.results_dir, *exit_code, p);
                write!(self.out, "\n{text}")?;
            }
            _ => {}
        }
        self.out.flush()
    }
}

impl Reporter for ReproTerminal {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        if self.json {
            self.json_event(ev)
        } else {
            self.human_event(ev)
        }
        .map_err(ReportError::Terminal)
    }
}

/// `  PASS #12 ws2022 stop@+341.2ms explore | 3 fail/12: 588a5b51 25% (9%-53%) | 48/min | first 4.1s`
pub fn progress_line(st: &State, iteration: u32, outcome: &UnitOutcome, p: Paint) -> String {
    let word = match outcome {
        UnitOutcome::Passed => "PASS",
        UnitOutcome::Failed { .. } => "FAIL",
        UnitOutcome::Errored { .. } => "ERROR",
        UnitOutcome::Cancelled => "SKIP",
    };
    let mut s = format!("{} #{iteration}", p.status(word));
    if let Some(r) = st.iterations.get(&iteration) {
        let _ = write!(s, " {}", r.template);
        if let Some(d) = r.delay_ms {
            let _ = write!(s, " stop@+{d:.1}ms");
        }
        let _ = write!(s, " {}", phase_word(r.phase));
        if let Some(b) = &r.bucket {
            let _ = write!(s, " -> {}", short(b));
        } else if let (UnitOutcome::Errored { message, causes }, _) = (outcome, ()) {
            let first = message.lines().next().unwrap_or_default();
            let _ = write!(s, " ({})", UnitOutcome::error_text(first, causes));
        }
    }
    let done = st.completed().count();
    let failed = st.completed().filter(|r| r.outcome == "failed").count();
    let _ = write!(s, " | {failed} fail/{done}");
    for (id, tally) in &st.buckets {
        let (rate, _) = st.rates(id);
        let _ = write!(
            s,
            " {} {} ({}-{}){}",
            short(id),
            pct(rate.rate),
            pct(rate.low),
            pct(rate.high),
            if tally.known_issue.is_some() {
                " known"
            } else {
                ""
            }
        );
    }
    let _ = write!(s, " | {:.0}/min", st.per_minute());
    if let Some((_, d)) = st.first_failure {
        let _ = write!(s, " | first failure {:.1}s", d.as_secs_f64());
    }
    s
}

fn phase_word(p: super::search::Phase) -> &'static str {
    match p {
        super::search::Phase::Explore => "explore",
        super::search::Phase::Exploit => "aimed",
        super::search::Phase::Random => "random",
        super::search::Phase::Replay => "replay",
    }
}

/// Bucket ids are 16 hex digits; 8 tell them apart on a progress line.
fn short(id: &str) -> &str {
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..8]
    } else {
        id
    }
}

/// The end-of-repro summary: counts, speed, time to first failure, per bucket its rate
/// with interval, where it fails and the replay command.
pub fn render_final(st: &State, results_dir: &Path, exit_code: i32, p: Paint) -> String {
    let sec = record::section(st);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}",
        p.bold(&format!("──── hvlab repro {} ────", st.run_id))
    );
    let _ = writeln!(
        s,
        "{}: {} iterations in {:.1}s ({:.1}/min): {} passed, {} failed, {} errored, {} cancelled",
        sec.scenario,
        sec.completed,
        sec.elapsed_secs,
        sec.iterations_per_minute,
        sec.passed,
        sec.failed,
        sec.errored,
        sec.cancelled
    );
    match (sec.time_to_first_failure_secs, sec.first_failure_iteration) {
        (Some(t), Some(i)) => {
            let _ = writeln!(s, "first failure after {t:.1}s (iteration {i})");
        }
        _ => {
            let r = sec.failure_rate;
            let _ = writeln!(
                s,
                "no failure: failure rate {} (at most {} at 95% confidence)",
                r,
                pct(r.high)
            );
        }
    }
    if let Some(j) = &sec.jitter {
        let learned = &sec.learned;
        let window: f64 = learned.active_len();
        let _ = writeln!(
            s,
            "timing: `{}` after {}..{}; workload active over {:.0}ms of that range{}",
            j.disruptive_label,
            humantime::format_duration(j.min),
            humantime::format_duration(j.max),
            window,
            learned
                .latency_ms
                .map(|l| format!(", step latency {l:.1}ms"))
                .unwrap_or_default()
        );
    }
    for b in &sec.buckets {
        let _ = writeln!(s, "\n{} {}  {}", p.status("FAIL"), b.id, b.title);
        if let Some(issue) = &b.known_issue {
            let _ = writeln!(s, "      known issue {issue}");
        }
        let _ = writeln!(s, "      rate {}", b.rate);
        if b.explore_rate.trials != b.rate.trials {
            let _ = writeln!(s, "      rate at evenly spread timing {}", b.explore_rate);
        }
        if !b.moments_ms.is_empty() {
            let lo = b.moments_ms.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = b
                .moments_ms
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            let _ = writeln!(s, "      fails with the stop at +{lo:.1}ms..+{hi:.1}ms");
        }
        let _ = writeln!(
            s,
            "      first: iteration {} (seed {}); evidence kept for {:?}{}",
            b.first_iteration,
            b.first_seed,
            b.kept,
            if b.counted > 0 {
                format!(", {} more counted", b.counted)
            } else {
                String::new()
            }
        );
        let _ = writeln!(s, "      replay: {}", b.replay);
    }
    if let Some(stop) = &sec.stopped {
        let _ = writeln!(s, "\nstopped at {stop}");
    }
    let _ = writeln!(
        s,
        "Results: {}  (junit.xml, summary.json, repro.json, index.html)",
        results_dir.display()
    );
    let _ = writeln!(
        s,
        "Exit code {exit_code}: {}",
        match exit_code {
            0 => "no failure found",
            1 => "failures found",
            2 => "usage or configuration error",
            3 => "infrastructure error",
            130 => "interrupted",
            _ => "unknown",
        }
    );
    s
}

/// What index.html shows of a repro run: rates with intervals and replay commands.
pub fn html_view(state: &Shared) -> crate::report::ReproView {
    let sec = record::section(&lock(state));
    crate::report::ReproView {
        scenario: sec.scenario.clone(),
        failure_rate: sec.failure_rate.to_string(),
        buckets: sec
            .buckets
            .iter()
            .map(|b| crate::report::ReproBucket {
                id: b.id.clone(),
                title: b.title.clone(),
                rate: b.rate.to_string(),
                replay: b.replay.clone(),
                known_issue: b.known_issue.clone(),
            })
            .collect(),
        stopped: sec.stopped.clone(),
    }
}
