//! Wording shared by every reporter: how a bugcheck, a crash, an outcome and a duration
//! read, so the terminal, junit.xml and index.html say the same thing the same way.

use std::time::Duration;

use crate::events::{Bucket, BugcheckInfo, Crash, CrashKind, StepOutcome, UnitOutcome};

/// An infrastructure error as one line: `vm: message: cause: …`, the VM left out when none
/// is named.
pub fn infra_error(vm: Option<&str>, message: &str, causes: &[String]) -> String {
    let vm = vm.map(|v| format!("{v}: ")).unwrap_or_default();
    format!("{vm}{}", UnitOutcome::error_text(message, causes))
}

/// `0x00000050`: the form WinDbg and the event log's hex fields use.
pub fn bugcheck_code(code: u32) -> String {
    format!("0x{code:08X}")
}

/// `bugcheck 0x00000050 PAGE_FAULT_IN_NONPAGED_AREA in sample_ebpf_ext.sys!map_lookup`.
pub fn bugcheck(b: &BugcheckInfo) -> String {
    let mut s = format!("bugcheck {}", bugcheck_code(b.code));
    if let Some(name) = &b.name {
        s.push(' ');
        s.push_str(name);
    }
    match (&b.module, &b.symbol) {
        (Some(m), Some(sym)) => s.push_str(&format!(" in {m}!{sym}")),
        (Some(m), None) => s.push_str(&format!(" in {m}")),
        (None, Some(sym)) => s.push_str(&format!(" in {sym}")),
        (None, None) => {}
    }
    s
}

/// One line naming a crash: kind, step, bugcheck (the bucket is [`bucket`]).
pub fn crash(c: &Crash) -> String {
    let mut s = match c.kind {
        CrashKind::Bugcheck => "guest crashed".to_owned(),
        CrashKind::Hang => "guest hung (NMI injected)".to_owned(),
        CrashKind::ConnectionLost => "agent connection lost".to_owned(),
        CrashKind::HeartbeatLost => "heartbeat lost".to_owned(),
    };
    if let Some(step) = &c.step {
        s.push_str(&format!(" in step {step}"));
    }
    if let Some(b) = &c.bugcheck {
        s.push_str(": ");
        s.push_str(&bugcheck(b));
    }
    s
}

/// `removed 2 dumps of bucket 1a2b from earlier runs (--keep-dumps 5): a, b`.
pub fn dumps_removed(bucket: &str, keep: usize, removed: &[std::path::PathBuf]) -> String {
    let paths: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
    format!(
        "removed {} dump{} of bucket {bucket} from earlier runs (--keep-dumps {keep}): {}",
        removed.len(),
        if removed.len() == 1 { "" } else { "s" },
        paths.join(", ")
    )
}

/// `bucket 1a2b3c4d "PAGE_FAULT_IN_NONPAGED_AREA in sample_ebpf_ext.sys" NEW`, or with
/// `(known issue <link>)` for a crash `known-issues.yaml` names.
pub fn bucket(b: &Bucket) -> String {
    let new = if b.new { " NEW" } else { "" };
    let known = b
        .known_issue
        .as_ref()
        .map(|i| format!(" (known issue {i})"))
        .unwrap_or_default();
    format!("bucket {} \"{}\"{new}{known}", b.id, b.title)
}

/// Short, one-line reason for a unit's outcome (empty for a pass).
pub fn outcome_reason(o: &UnitOutcome) -> String {
    match o {
        UnitOutcome::Passed => String::new(),
        UnitOutcome::Failed {
            crash: Some(c),
            message,
        } => match &c.bugcheck {
            Some(b) => bugcheck(b),
            None => first_line(message).to_owned(),
        },
        UnitOutcome::Failed {
            message,
            crash: None,
        } => first_line(message).to_owned(),
        UnitOutcome::Errored { message, causes } => {
            UnitOutcome::error_text(first_line(message), causes)
        }
        UnitOutcome::Cancelled => "run interrupted".to_owned(),
    }
}

/// The status word every report uses for a unit.
pub fn outcome_word(o: Option<&UnitOutcome>) -> &'static str {
    match o {
        Some(UnitOutcome::Passed) => "PASS",
        Some(UnitOutcome::Failed { .. }) => "FAIL",
        Some(UnitOutcome::Errored { .. }) => "ERROR",
        Some(UnitOutcome::Cancelled) | None => "SKIP",
    }
}

/// `passed`, `failed: <message>`, ... for a step timeline.
pub fn step_outcome(o: &StepOutcome) -> String {
    match o {
        StepOutcome::Passed => "passed".into(),
        StepOutcome::Failed { message } => format!("failed: {}", first_line(message)),
        StepOutcome::TimedOut => "timed out".into(),
        StepOutcome::Crashed => "crashed".into(),
        StepOutcome::Skipped => "skipped".into(),
        StepOutcome::Cancelled => "cancelled".into(),
        StepOutcome::Errored { message } => format!("lab error: {}", first_line(message)),
    }
}

/// `1.234s`, `2m 03.0s`: short and fixed-precision, for tables and lines.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.3}s")
    } else {
        let m = d.as_secs() / 60;
        format!("{m}m {:04.1}s", secs - (m * 60) as f64)
    }
}

/// `90s`, `5m`, `1m 30s`, `1.5s`: a configured limit, as a user would have written it.
pub fn timeout(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 || secs == 0 {
        return format!("{}s", d.as_secs_f64());
    }
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, s) => format!("{h}h {m}m {s}s"),
    }
}

/// What an exit code means (the shared table).
pub use lab_error::exit::meaning as exit_code_meaning;

pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The command that re-runs one failed or errored unit with its seed:
/// `hvlab run <scenario> --template <t> --replay-seed <seed>` (plus `--lab` unless the run
/// used the default sim lab). `None` for a unit that passed or never got a seed.
pub fn replay_command(m: &super::RunModel, u: &super::UnitRecord) -> Option<String> {
    if !matches!(
        u.outcome,
        Some(UnitOutcome::Failed { .. } | UnitOutcome::Errored { .. })
    ) {
        return None;
    }
    let seed = u.seed?;
    let mut cmd = format!(
        "hvlab run {} --template {} --replay-seed {seed}",
        shell_word(&u.id.scenario),
        shell_word(&u.id.template)
    );
    let lab = std::path::Path::new(&m.run.lab);
    let default_lab = lab.ends_with("vm-configs/local-sim.yaml");
    if !m.run.lab.is_empty() && !default_lab {
        cmd.push_str(" --lab ");
        cmd.push_str(&shell_word(&m.run.lab));
    }
    Some(cmd)
}

/// Quotes a word for POSIX shells when it holds anything but safe characters.
pub fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./@:+=,".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bugcheck_names_code_name_and_module() {
        let b = BugcheckInfo {
            code: 0x50,
            name: Some("PAGE_FAULT_IN_NONPAGED_AREA".into()),
            params: [0; 4],
            module: Some("sample_ebpf_ext.sys".into()),
            symbol: None,
        };
        assert_eq!(
            bugcheck(&b),
            "bugcheck 0x00000050 PAGE_FAULT_IN_NONPAGED_AREA in sample_ebpf_ext.sys"
        );
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(duration(Duration::from_millis(1234)), "1.234s");
        assert_eq!(duration(Duration::from_secs(123)), "2m 03.0s");
        assert_eq!(timeout(Duration::from_secs(90)), "1m 30s");
        assert_eq!(timeout(Duration::from_secs(300)), "5m");
        assert_eq!(timeout(Duration::from_secs(45)), "45s");
        assert_eq!(timeout(Duration::from_millis(1500)), "1.5s");
        assert_eq!(timeout(Duration::from_secs(3720)), "1h 2m 0s");
    }
}
