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
            "RETRY" | "FLAKY" => "33",
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
    let _ = writeln!(
        s,
        "{}",
        paint.bold(&format!("──── hvlab run {} ────", m.run.run_id))
    );
    let elapsed = m
        .end
        .map(|e| format!(" in {}", text::duration(e.elapsed)))
        .unwrap_or_default();
    let mut retried = if st.retried > 0 {
        format!("; {} retried after an infrastructure error", st.retried)
    } else {
        String::new()
    };
    if st.flaky > 0 {
        retried.push_str(&format!("; {} flaky", st.flaky));
    }
    let _ = writeln!(
        s,
        "{} units: {} passed, {} failed, {} errored, {} cancelled; {} crash{}{retried}{elapsed}",
        st.units,
        st.passed,
        st.failed,
        st.errored,
        st.cancelled,
        st.crashes,
        if st.crashes == 1 { "" } else { "es" },
    );

    let failed: Vec<_> = m.failed().collect();
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
            let _ = writeln!(
                s,
                "        {}",
                m.run.results_dir.join(RunDir::unit_rel(&u.id)).display()
            );
            if let Some(cmd) = text::replay_command(m, u) {
                let _ = writeln!(s, "        replay: {cmd}");
            }
        }
        if failed.len() > MAX_FAILURES_SHOWN {
            let _ = writeln!(
                s,
                "  ... and {} more (see index.html)",
                failed.len() - MAX_FAILURES_SHOWN
            );
        }
    }

    let flaky: Vec<_> = m.units.iter().filter(|u| u.is_flaky()).collect();
    if !flaky.is_empty() {
        let _ = writeln!(s, "\nFlaky (failed, then passed on a retry):");
        for u in flaky.iter().take(MAX_FAILURES_SHOWN) {
            let _ = writeln!(
                s,
                "  {} {}  passed on attempt {}",
                paint.status("FLAKY"),
                u.id,
                u.retries.len() + 1
            );
            for a in &u.retries {
                let _ = writeln!(
                    s,
                    "        attempt {}: {}",
                    a.attempt,
                    text::outcome_reason(&a.outcome)
                );
            }
        }
        if flaky.len() > MAX_FAILURES_SHOWN {
            let _ = writeln!(
                s,
                "  ... and {} more (see summary.json)",
                flaky.len() - MAX_FAILURES_SHOWN
            );
        }
    }

    let retried: Vec<_> = m.units.iter().filter(|u| u.retried_after_error()).collect();
    if !retried.is_empty() {
        let _ = writeln!(s, "\nRetried after an infrastructure error:");
        for u in retried.iter().take(MAX_FAILURES_SHOWN) {
            let now = text::outcome_word(u.outcome.as_ref())
                .trim()
                .to_ascii_lowercase();
            let _ = writeln!(s, "  {} {}  then {now}", paint.status("RETRY"), u.id);
            for a in &u.retries {
                let _ = writeln!(
                    s,
                    "        attempt {}: {}",
                    a.attempt,
                    text::outcome_reason(&a.outcome)
                );
            }
        }
        if retried.len() > MAX_FAILURES_SHOWN {
            let _ = writeln!(
                s,
                "  ... and {} more (see summary.json)",
                retried.len() - MAX_FAILURES_SHOWN
            );
        }
    }

    let buckets = m.buckets();
    if !buckets.is_empty() {
        let _ = writeln!(s, "\nCrash buckets:");
        for b in &buckets {
            let new = if b.bucket.new { "  NEW" } else { "" }.to_owned()
                + &b.bucket
                    .known_issue
                    .as_ref()
                    .map(|i| format!("  known issue {i}"))
                    .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {}  x{}  {}{new}",
                b.bucket.id, b.count, b.bucket.title
            );
        }
    }

    let not_done = m.unfinished().count()
        + m.units
            .iter()
            .filter(|u| u.outcome == Some(UnitOutcome::Cancelled))
            .count();
    if m.interrupted() {
        let _ = writeln!(
            s,
            "\nRun interrupted: {not_done} of {} units did not finish.",
            st.units
        );
    }
    for (vm, msg) in &m.infra_errors {
        let vm = vm.as_deref().map(|v| format!("{v}: ")).unwrap_or_default();
        let _ = writeln!(s, "Lab error: {vm}{msg}");
    }
    for (host, reason) in &m.hosts_drained {
        let _ = writeln!(s, "Host drained: {host}: {reason}");
    }
    for msg in &m.warnings {
        let _ = writeln!(s, "Warning: {msg}");
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::events::{Event, UnitOutcome};
    use crate::report::fixtures::{Stream, stats, unit};

    fn summary_of(s: &Stream) -> String {
        let mut m = RunModel::new();
        for ev in &s.events {
            m.apply(ev);
        }
        render_summary(&m, Paint { color: false })
    }

    /// Durations, the results path and run ids vary between runs; the layout must not.
    fn snapshot(name: &str, text: &str) {
        insta::with_settings!({filters => vec![
            (r"/results-root/\d{8}-\d{6}-[0-9a-f]{4}", "[RESULTS]"),
            (r"\d{8}-\d{6}-[0-9a-f]{4}", "[RUN-ID]"),
            (r"\d+m \d+\.\ds|\d+\.\d{3}s", "[DURATION]"),
        ]}, {
            insta::assert_snapshot!(name, text);
        });
    }

    #[test]
    fn summary_of_a_failing_run() {
        let root = Path::new("/results-root/20250304-050607-beef");
        let mut s = Stream::new(root);
        let us = [
            unit("stress", "win11", 1),
            unit("stress", "win11", 2),
            unit("unload", "win10", 1),
        ];
        s.start(&us)
            .pass(&us[0], "vm-1")
            .crash(&us[1], "vm-2")
            .finish(
                &us[2],
                "vm-1",
                UnitOutcome::Errored {
                    message: "transport: connection refused\nretried 3 times".into(),
                    causes: vec![],
                },
                &[],
            );
        s.end(stats(3, 1, 1, 1, 0, 1), 1, false);
        snapshot("failing_run", &summary_of(&s));
    }

    #[test]
    fn summary_of_an_interrupted_run() {
        let root = Path::new("/results-root/20250304-050607-beef");
        let mut s = Stream::new(root);
        let us = [
            unit("stress", "win11", 1),
            unit("stress", "win11", 2),
            unit("stress", "win11", 3),
        ];
        s.start(&us)
            .pass(&us[0], "vm-1")
            .push(Event::Interrupted { count: 1 })
            .finish(&us[1], "vm-1", UnitOutcome::Cancelled, &[])
            .push(Event::Leftover {
                what: "VM hvlab-20250304-050607-beef-1".into(),
                how_to_remove: "hvlab lab gc".into(),
            })
            .end(stats(3, 1, 0, 0, 1, 0), 130, true);
        snapshot("interrupted_run", &summary_of(&s));
    }

    #[test]
    fn a_long_failure_list_is_cut_to_one_screen() {
        let mut s = Stream::new(Path::new("/results-root/x"));
        let us: Vec<_> = (1..=14).map(|i| unit("s", "t", i)).collect();
        s.start(&us);
        for u in &us {
            s.finish(
                u,
                "vm",
                UnitOutcome::Failed {
                    message: "boom".into(),
                    crash: None,
                },
                &[],
            );
        }
        s.end(stats(14, 0, 14, 0, 0, 0), 1, false);
        let text = summary_of(&s);
        assert_eq!(text.matches(" FAIL ").count(), MAX_FAILURES_SHOWN, "{text}");
        assert!(text.contains("... and 4 more (see index.html)"), "{text}");
        assert!(!text.contains("interrupted"), "{text}");
    }
}
