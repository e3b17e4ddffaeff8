//! The sim tools (`map_stress`, `map_tool`, `ebpf_stats`): argument parsing per the sim
//! contract and dispatch.

use crate::error::KernelError;
use crate::kernel::Kernel;
use crate::types::{CancelFlag, ToolOutput};

pub(crate) fn run(
    _k: &Kernel,
    name: &str,
    _args: &[String],
    _cancel: &CancelFlag,
) -> Result<ToolOutput, KernelError> {
    Err(KernelError::UnknownTool(name.to_string()))
}
