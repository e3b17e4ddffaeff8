//! The sim tools (`map_stress`, `map_tool`, `ebpf_stats`, `prog_invoke`): argument parsing per the sim
//! contract and dispatch. Exit codes: 0 ok, 1 failure, 2 usage error, 130 cancelled.

mod args;
mod ebpf_stats;
mod map_stress;
mod map_tool;
mod prog_invoke;

use crate::error::KernelError;
use crate::kernel::Kernel;
use crate::tool_io::{CancelFlag, ToolOutput};

/// Tool names the kernel implements.
pub const TOOLS: [&str; 4] = ["map_stress", "map_tool", "ebpf_stats", "prog_invoke"];

pub(crate) fn run(
    k: &Kernel,
    name: &str,
    args: &[String],
    cancel: &CancelFlag,
) -> Result<ToolOutput, KernelError> {
    let name = name.strip_suffix(".exe").unwrap_or(name);
    Ok(match name {
        "map_stress" => map_stress::run(k, args, cancel),
        "map_tool" => map_tool::run(k, args, cancel),
        "ebpf_stats" => ebpf_stats::run(k, args),
        "prog_invoke" => prog_invoke::run(k, args, cancel),
        _ => return Err(KernelError::UnknownTool(name.to_string())),
    })
}

fn usage_error(tool: &str, msg: &str, usage: &str) -> ToolOutput {
    ToolOutput {
        exit_code: 2,
        stdout: String::new(),
        stderr: format!("{tool}: {msg}\n{usage}\n"),
    }
}
