//! Scheduler, scenario executor, crash pipeline and reporters (terminal, JUnit, JSON, HTML).
