//! Process exit codes, the one table for the CLI and the runner. They keep "your test
//! failed" apart from "your config is wrong" and "the lab broke", so CI can react to each
//! differently.

/// Everything passed (or the command did what was asked).
pub const SUCCESS: u8 = 0;
/// The run completed and at least one test failed: an expectation, a crash or a hang in
/// the code under test (or `--check` found a difference).
pub const TEST_FAILURES: u8 = 1;
/// Usage or configuration error: bad arguments, invalid YAML, broken references.
pub const CONFIG_ERROR: u8 = 2;
/// Infrastructure error: the lab, a VM, a transport or the file system failed.
pub const INFRA_ERROR: u8 = 3;
/// Interrupted by Ctrl-C or SIGTERM (128 + SIGINT).
pub const INTERRUPTED: u8 = 130;

/// The table printed in `--help`.
pub const HELP: &str = "\
Exit codes:
  0    all passed
  1    test failures (or `schema --check` found stale files)
  2    usage or configuration error
  3    infrastructure error (lab, VM, transport, file system)
  130  interrupted (Ctrl-C)";

/// What an exit code means, in the words reports print beside it.
pub fn meaning(code: i32) -> &'static str {
    match u8::try_from(code) {
        Ok(SUCCESS) => "all passed",
        Ok(TEST_FAILURES) => "test failures",
        Ok(CONFIG_ERROR) => "usage or config error",
        Ok(INFRA_ERROR) => "infrastructure error",
        Ok(INTERRUPTED) => "interrupted",
        _ => "unknown exit code",
    }
}

/// The exit code of a run. A failure of the code under test outranks a lab error: CI must
/// see "your driver is broken" even when the lab also broke elsewhere in the run.
pub fn for_run(failed: bool, errored: bool, interrupted: bool) -> i32 {
    let code = if interrupted {
        INTERRUPTED
    } else if failed {
        TEST_FAILURES
    } else if errored {
        INFRA_ERROR
    } else {
        SUCCESS
    };
    i32::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_outranks_an_error_and_an_interrupt_outranks_both() {
        assert_eq!(for_run(false, false, false), 0);
        assert_eq!(for_run(false, true, false), 3);
        assert_eq!(for_run(true, false, false), 1);
        assert_eq!(for_run(true, true, false), 1);
        assert_eq!(for_run(true, true, true), 130);
        assert_eq!(for_run(false, false, true), 130);
    }
}
