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
