//! What a tool run takes and gives back: its cancellation flag and its output.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// What a tool run printed and returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolOutput {
    /// 0 success, 1 failure, 2 usage error, 130 cancelled.
    pub exit_code: i32,
    /// Standard output (map_stress / ebpf_stats: one JSON line).
    pub stdout: String,
    /// Standard error (usage text, error messages).
    pub stderr: String,
}

/// Cancels a tool run (the guest cancels on a step timeout). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag {
    flag: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl CancelFlag {
    /// A flag that is only cancelled explicitly.
    pub fn new() -> Self {
        CancelFlag::default()
    }

    /// A flag that also counts as cancelled once `deadline` passes.
    pub fn with_deadline(deadline: Instant) -> Self {
        CancelFlag {
            flag: Arc::default(),
            deadline: Some(deadline),
        }
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
    }

    /// True once cancelled or past the deadline.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}
