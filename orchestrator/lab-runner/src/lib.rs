//! Scheduler, scenario executor, crash pipeline and reporters (terminal, JUnit, JSON, HTML).
//!
//! The runner emits [`events::Event`]s and never prints; reporters consume them.

pub mod events;
pub mod report;
pub mod results;
