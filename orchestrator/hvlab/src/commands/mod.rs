//! One module per verb. Each exposes `run(root, args) -> Result<exit code, CliError>`.

pub mod schema;
pub mod validate;
