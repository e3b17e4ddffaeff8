//! The hvlab command-line program as a library: `main.rs` calls [`run`]. One module per
//! verb under `commands/`; errors map to the documented exit codes of [`exit`].

pub mod backend;
pub mod cli;
pub mod commands;
pub mod error;
pub mod filter;
pub mod known;
/// The exit-code table shared with the CLI.
pub use lab_error::exit;
pub mod logging;
pub mod root;
pub mod select;
pub mod settings;
pub mod shard;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{CliError, print_error};
use crate::settings::EnvSettings;

/// Parses the process arguments, runs the command and returns its exit code.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(match dispatch(cli, &EnvSettings::from_env()) {
        Ok(code) => code,
        Err(e) => {
            print_error(&e);
            e.exit_code()
        }
    })
}

/// Runs one parsed command with the environment resolved into `env`; `Ok` carries the exit
/// code of a command that ran to the end.
pub fn dispatch(cli: Cli, env: &EnvSettings) -> Result<u8, CliError> {
    if let Command::SimGuest(args) = &cli.command {
        return Ok(commands::guest::run(args));
    }
    let root = root::find(cli.root.as_deref())?;
    match cli.command {
        Command::Validate(args) => commands::validate::run(&root, &args),
        Command::Schema(args) => commands::schema::run(&root, &args),
        Command::Run(args) => commands::run::run_cmd(&root, &args, env),
        Command::Repro(args) => commands::repro::run_cmd(&root, &args, env),
        Command::List(args) => commands::list::run(&root, &args),
        Command::Results(args) => commands::results::run(&root, &args),
        Command::Lab(args) => commands::lab::run(&root, &args, env),
        Command::Triage(args) => commands::triage::run(&root, &args),
        Command::SimGuest(_) => unreachable!("handled above"),
    }
}

/// The async runtime a command runs its lab work on: multi-threaded for runs (guests,
/// transports and reporters overlap), a single thread for short lab queries.
pub fn runtime(multi_thread: bool) -> Result<tokio::runtime::Runtime, CliError> {
    let mut b = if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    b.enable_all().build().map_err(|source| CliError::Io {
        action: "start the async runtime".into(),
        source,
    })
}

/// Writes data output to stdout. A reader that stops early (`hvlab triage ... | head`)
/// closes the pipe; that ends the output quietly instead of panicking like `print!`.
pub fn stdout(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Io {
            action: "write to stdout".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}
