//! Tool and raw exec steps: render the argv, run it in the guest with the step's timeout,
//! check the exit code and counters, and collect the JUnit file a tool wrote.

use lab_backends::Guest;
use lab_config::{CountersFormat, Exec, InvocationContext, RunTool};
use serde_json::{Map, Value};

use super::{LeafResult, StepError, UnitCtx, from_backend};
use crate::events::StepOutput;

/// Tool output kept in events and reports, per stream.
const OUTPUT_CAP: usize = crate::bounds::OUTPUT_MAX;

fn ctx_for<'a>(ctx: &'a UnitCtx<'_>) -> InvocationContext<'a> {
    InvocationContext {
        seed: ctx.seed,
        iteration: ctx.unit.iteration.saturating_sub(1),
        vm: &ctx.unit.template,
        scenario: &ctx.unit.scenario,
    }
}

pub(super) async fn run(ctx: &UnitCtx<'_>, step: &RunTool) -> LeafResult {
    let tool = &ctx.payload.tools[step.tool.index];
    let argv = step
        .argv(ctx.payload, &ctx_for(ctx))
        .map_err(|e| (StepError::Failed(format!("run {}: {e}", tool.name)), None))?;
    let out = ctx
        .guest
        .exec(&argv, step.timeout)
        .await
        .map_err(|e| (from_backend(&format!("run {}", tool.name), e), None))?;
    let mut report = StepOutput {
        exit_code: Some(out.exit_code),
        stdout: cap(&out.stdout),
        stderr: cap(&out.stderr),
        counters: None,
    };
    if let Some(junit) = &tool.result.junit {
        collect_junit(ctx, &tool.name, junit).await;
    }
    if out.timed_out {
        let msg = format!("run {}: still running after its timeout", tool.name);
        return Err((StepError::Hang(msg), Some(report)));
    }
    if !step.exit_codes.contains(&i64::from(out.exit_code)) {
        let msg = format!(
            "run {}: exit code {} (expected {}){}",
            tool.name,
            out.exit_code,
            list(&step.exit_codes),
            last_line(&out.stderr)
                .map(|l| format!(": {l}"))
                .unwrap_or_default()
        );
        return Err((StepError::Failed(msg), Some(report)));
    }
    if tool.result.counters == Some(CountersFormat::JsonLine) {
        let counters = match parse_counters(&out.stdout) {
            Some(c) => c,
            None => {
                let msg = format!("run {}: no JSON line of counters on stdout", tool.name);
                return Err((StepError::Failed(msg), Some(report)));
            }
        };
        let mut problems = Vec::new();
        for check in &step.counters {
            match counters.get(&check.name).and_then(Value::as_i64) {
                Some(v) if check.accepts(v) => {}
                Some(v) => problems.push(format!(
                    "{} = {v} not in {}",
                    check.name,
                    range(check.min, check.max)
                )),
                None => problems.push(format!("{} missing", check.name)),
            }
        }
        report.counters = Some(counters);
        if !problems.is_empty() {
            let msg = format!(
                "run {}: counters out of range: {}",
                tool.name,
                problems.join(", ")
            );
            return Err((StepError::Failed(msg), Some(report)));
        }
    }
    Ok(Some(report))
}

pub(super) async fn exec(ctx: &UnitCtx<'_>, step: &Exec) -> LeafResult {
    let argv = step
        .argv(&ctx_for(ctx))
        .map_err(|e| (StepError::Failed(format!("exec: {e}")), None))?;
    let out = ctx
        .guest
        .exec(&argv, step.timeout)
        .await
        .map_err(|e| (from_backend("exec", e), None))?;
    let report = StepOutput {
        exit_code: Some(out.exit_code),
        stdout: cap(&out.stdout),
        stderr: cap(&out.stderr),
        counters: None,
    };
    if out.timed_out {
        return Err((
            StepError::Hang(format!(
                "exec {}: still running after its timeout",
                argv.join(" ")
            )),
            Some(report),
        ));
    }
    if !step.exit_codes.contains(&i64::from(out.exit_code)) {
        let msg = format!(
            "exec {}: exit code {} (expected {})",
            argv.join(" "),
            out.exit_code,
            list(&step.exit_codes)
        );
        return Err((StepError::Failed(msg), Some(report)));
    }
    Ok(Some(report))
}

/// Downloads a JUnit file a tool wrote in the guest; a missing one is noted, not fatal (the
/// tool's exit code already says whether it ran).
async fn collect_junit(ctx: &UnitCtx<'_>, tool: &str, remote: &str) {
    let n = ctx.guest_junit.lock().expect("junit lock").len();
    let name = format!("{}-junit-{n}.xml", crate::results::safe_name(tool));
    let local = ctx.unit_dir.join(&name);
    match ctx.guest.download(remote, &local).await {
        Ok(_) => ctx
            .guest_junit
            .lock()
            .expect("junit lock")
            .push(ctx.unit_rel.join(&name)),
        Err(e) => tracing::warn!(tool, remote, error = %e, "tool JUnit file not collected"),
    }
}

/// The last line of stdout that is a JSON object: tools print logs before their counters.
pub(crate) fn parse_counters(stdout: &str) -> Option<Map<String, Value>> {
    stdout
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| l.starts_with('{'))
        .find_map(|l| serde_json::from_str::<Value>(l).ok()?.as_object().cloned())
}

fn cap(s: &str) -> String {
    lab_config::cap_text(s, OUTPUT_CAP).into_owned()
}

fn last_line(s: &str) -> Option<&str> {
    s.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

fn list(codes: &[i64]) -> String {
    codes
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

fn range(min: Option<i64>, max: Option<i64>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("[{a}, {b}]"),
        (Some(a), None) => format!("[{a}, ..]"),
        (None, Some(b)) => format!("[.., {b}]"),
        (None, None) => "any".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_come_from_the_last_json_line() {
        let out = "starting\n{\"ops\": 1}\nlog\n{\"ops\": 5, \"errors\": 0}\ndone\n";
        let c = parse_counters(out).unwrap();
        assert_eq!(c["ops"], 5);
        assert!(parse_counters("no json\n").is_none());
    }

    #[test]
    fn cap_keeps_char_boundaries() {
        let s = "é".repeat(OUTPUT_CAP);
        let c = cap(&s);
        assert!(
            c.len() <= OUTPUT_CAP && c.ends_with("KiB cut]"),
            "{}",
            c.len()
        );
    }
}
