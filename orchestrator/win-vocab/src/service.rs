//! Kernel services as the service control manager knows them: start types and states.

use serde::{Deserialize, Serialize};

/// Service start types (`sc create start=`), in Windows' numbering order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartType {
    /// 0: loaded by the boot loader.
    Boot,
    /// 1: loaded during kernel initialisation.
    System,
    /// 2: started by the service control manager at boot.
    Auto,
    /// 3: started on request.
    Demand,
    /// 4: cannot be started.
    Disabled,
}

/// Service states as `sc query` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    Stopped,
    StartPending,
    StopPending,
    Running,
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServiceState::Stopped => "stopped",
            ServiceState::StartPending => "start_pending",
            ServiceState::Running => "running",
            ServiceState::StopPending => "stop_pending",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_wire_spelling() {
        for s in [
            ServiceState::Stopped,
            ServiceState::StartPending,
            ServiceState::StopPending,
            ServiceState::Running,
        ] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }
}
