//! The one-screen summary the terminal prints at the end of a run: counts, failures with
//! their bugcheck and bucket, crash buckets, what was left behind, where the results are
//! and what the exit code means. Pure text so it can be snapshot-tested.

use std::fmt::Write as _;

use super::model::RunModel;
use super::text;
use crate::events::UnitOutcome;
use crate::results::RunDir;

/// Failures listed before "... and N more": the summary must fit on one screen.
const MAX_FAILURES_SHOWN: usize = 10;

/// ANSI styling, or none (`NO_COLOR`, not a terminal, tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paint {
    pub color: bool,
}

impl Paint {
    fn wrap(self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Colours a status word (PASS green, FAIL/ERROR red, SKIP dim).
    pub fn status(self, word: &str) -> String {
        let code = match word {
            "PASS" => "32",
            "FAIL" | "ERROR" | "CRASH" => "1;31",
            _ => "2",
        };
        self.wrap(code, &format!("{word:>5}"))
    }

    pub fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }
}

/// Renders the end-of-run summary.
pub fn render_summary(m: &RunModel, paint: Paint) -> String {
    let mut s = String::new();
    let st = m.stats();
    let _ = writeln!(s, "{}", paint.bold(&format!("──── hvlab run {} ────", m.run.run_id)));
    let elapsed = m.end.map(|e| format!(" in {}", text::duration(e.elapsed))).unwrap_or_default();
    let _ = writeln!(
        s,
        "{} units: {} passed, {} failed, {} errored, {} cancelled; {} crash{}{elapsed}",
        st.units,
        st.passed,
        st.failed,
        st.errored,
        st.cancelled,
        st.crashes,
        if st.crashes == 1 { "" } else { "es" },
    );

    let failed: Vec<_> = m
        .units
        .iter()
        .filter(|u| matches!(u.outcome, Some(UnitOutcome::Failed { .. } | UnitOutcome::Errored { .. })))
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "\nFailures:");
        for u in failed.iter().take(MAX_FAILURES_SHOWN) {
            let o = u.outcome.as_ref().expect("filtered on outcome");
            let _ = writeln!(
                s,
                "  {} {}  {}",
                paint.status(text::outcome_word(Some(o))),
                u.id,
                text::outcome_reason(o)
            );
            if let Some(b) = u.crash().and_then(|c| c.bucket.as_ref()) {
                let _ = writeln!(s, "        crash {}", text::bucket(b));
            }
            let _ = writeln!(s, "        {}", m.run.results_dir.join(RunDir::unit_rel(&u.id)).display());
        }
        if failed.len() > MAX_FAILURES_SHOWN {
            let _ = writeln!(
                s,
                "  ... and {} more (see index.html)",
                failed.len() - MAX_FAILURES_SHOWN
            );
        }
    }

    let buckets = m.buckets();
    if !buckets.is_empty() {
        let _ = writeln!(s, "\nCrash buckets:");
        for b in &buckets {
            let new = if b.bucket.new { "  (new)" } else { "" };
            let _ = writeln!(s, "  {}  x{}  {}{new}", b.bucket.id, b.count, b.bucket.title);
        }
    }

    let not_done = m.unfinished().count()
        + m.units.iter().filter(|u| u.outcome == Some(UnitOutcome::Cancelled)).count();
    if m.interrupted() {
        let _ = writeln!(s, "\nRun interrupted: {not_done} of {} units did not finish.", st.units);
    }
    for (vm, msg) in &m.infra_errors {
        let vm = vm.as_deref().map(|v| format!("{v}: ")).unwrap_or_default();
        let _ = writeln!(s, "Lab error: {vm}{msg}");
    }
    if !m.leftovers.is_empty() {
        let _ = writeln!(s, "\nLeft behind (remove by hand):");
        for (what, how) in &m.leftovers {
            let _ = writeln!(s, "  {what}: {how}");
        }
    }

    let _ = writeln!(
        s,
        "\nResults: {}  (junit.xml, summary.json, index.html)",
        m.run.results_dir.display()
    );
    if let Some(end) = m.end {
        let _ = writeln!(
            s,
            "Exit code {}: {}",
            end.exit_code,
            text::exit_code_meaning(end.exit_code)
        );
    }
    s
}
