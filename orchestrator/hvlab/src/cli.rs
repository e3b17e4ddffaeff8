//! Command-line types (clap derive). Adding a verb: one variant in [`Command`] and one arm in
//! `crate::dispatch`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::exit;

/// hvlab: run scenario files against Windows kernel drivers (eBPF-for-Windows custom maps)
/// on Hyper-V VMs or on the embedded simulated lab.
#[derive(Debug, Parser)]
#[command(name = "hvlab", version, after_help = exit::HELP)]
pub struct Cli {
    /// Repository root holding vm-configs/, driver-payloads/ and scenarios/ (default: the
    /// nearest folder upwards from the current one that has them).
    #[arg(long, global = true, env = "HVLAB_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check lab, payload and scenario files (default: everything shipped) without running.
    #[command(after_help = exit::HELP)]
    Validate(ValidateArgs),
    /// Write (or check) the JSON Schemas of the three file kinds.
    #[command(after_help = exit::HELP)]
    Schema(SchemaArgs),
}

/// `hvlab validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Files or folders to check (default: vm-configs/, driver-payloads/, scenarios/).
    /// A file's kind comes from its folder, else from its content.
    #[arg(value_name = "PATHS")]
    pub paths: Vec<PathBuf>,

    /// Check scenarios against this lab (default: vm-configs/local-sim.yaml for sim
    /// payloads, the first Hyper-V lab for windows payloads).
    #[arg(long, value_name = "LAB_FILE")]
    pub lab: Option<PathBuf>,
}

/// `hvlab schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Folder to write lab/payload/scenario.schema.json into (default: <root>/schemas).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Do not write: exit 1 if the files in the folder are missing or out of date.
    #[arg(long)]
    pub check: bool,
}
