//! Scheduler, scenario executor, crash pipeline and reporters (terminal, JUnit, JSON, HTML).
//!
//! ```text
//! run::run ── preflight payload files ── expand plan into units
//!    │
//!    ├─ worker × max_vms: provision VM → configure → reboot → deploy → checkpoint "deployed"
//!    │     └─ per unit: restore "deployed" → unit::run_unit (exec::UnitCtx steps,
//!    │                   crash::rebooted after each, crash::hang on timeouts)
//!    └─ dispatcher loop: events → report::Fanout (terminal, junit.xml, summary.json,
//!                        events.jsonl, index.html); Ctrl-C → cancel, twice → force teardown
//! ```
//! The runner emits [`events::Event`]s and never prints; reporters consume them.

pub mod bounds;
pub mod console;
pub mod crash;
pub mod deploy;
pub mod error;
pub mod events;
pub mod exec;
pub mod host_debugger;
pub mod hosts;
pub mod in_progress;
pub mod known;
pub mod merge;
/// The exit-code table shared with the CLI.
pub use lab_error::exit;
pub mod prune;
pub mod report;
pub mod repro;
pub mod results;
pub mod run;
pub mod secs;
pub mod seed;
pub mod signals;
pub mod unit;
pub mod verdict;
pub mod worker;

pub use crash_triage::KeepDumps;
