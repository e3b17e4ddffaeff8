//! Exit codes shared by every command: "your test failed" is kept apart from "the lab broke".

/// Every unit passed.
pub const OK: i32 = 0;
/// At least one test failed (an expectation, a crash or a hang in the code under test).
pub const FAILED: i32 = 1;
/// Usage or configuration error (bad YAML, unknown reference, wrong payload hash).
pub const CONFIG: i32 = 2;
/// Infrastructure error: the lab, a VM or a transport failed.
pub const INFRA: i32 = 3;
/// Interrupted by Ctrl-C / SIGTERM.
pub const INTERRUPTED: i32 = 130;

/// The exit code of a run. A failure of the code under test outranks a lab error: CI must
/// see "your driver is broken" even when the lab also broke elsewhere in the run.
pub fn for_run(failed: bool, errored: bool, interrupted: bool) -> i32 {
    if interrupted {
        INTERRUPTED
    } else if failed {
        FAILED
    } else if errored {
        INFRA
    } else {
        OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_outranks_an_error_and_an_interrupt_outranks_both() {
        assert_eq!(for_run(false, false, false), OK);
        assert_eq!(for_run(false, true, false), INFRA);
        assert_eq!(for_run(true, false, false), FAILED);
        assert_eq!(for_run(true, true, false), FAILED);
        assert_eq!(for_run(true, true, true), INTERRUPTED);
        assert_eq!(for_run(false, false, true), INTERRUPTED);
    }
}
