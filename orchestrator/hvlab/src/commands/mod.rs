//! One module per verb. Each exposes `run(root, args) -> Result<exit code, CliError>`.

pub mod guest;
pub mod lab;
pub mod list;
pub mod repro;
pub mod results;
pub mod run;
pub mod schema;
pub mod triage;
pub mod validate;
