//! Blocking in driver code: events whose waits end when the kernel stops, and the record of
//! which driver frames are blocked (what an NMI attributes a hang to).

use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::KernelBase;
use crate::error::EbpfError;
use crate::modules::{self, Frame, KERNEL_MODULE};

/// How often blocked kernel waits re-check for a halt.
pub(crate) const HALT_POLL: Duration = Duration::from_millis(10);

/// A one-shot event that driver code can block on; waits also end when the kernel stops.
#[derive(Debug, Default)]
pub(crate) struct Event {
    set: Mutex<bool>,
    cv: Condvar,
}

impl Event {
    pub(crate) fn set(&self) {
        *self.set.lock() = true;
        self.cv.notify_all();
    }
}

/// Unregisters a stuck frame when dropped.
pub(crate) struct StuckGuard<'a> {
    k: &'a KernelBase,
    id: u64,
}

impl Drop for StuckGuard<'_> {
    fn drop(&mut self) {
        self.k.stuck.lock().retain(|(i, _)| *i != self.id);
    }
}

impl KernelBase {
    /// Marks the current driver frame as blocked until the guard drops (NMI attribution).
    pub(crate) fn mark_stuck(&self) -> StuckGuard<'_> {
        let id = self.stuck_ids.fetch_add(1, Ordering::Relaxed);
        let frame = modules::current_frame().unwrap_or(Frame {
            module: KERNEL_MODULE,
            function: "KeWaitForSingleObject",
        });
        self.stuck.lock().push((id, frame));
        StuckGuard { k: self, id }
    }

    /// The oldest blocked driver frame, if any.
    pub(crate) fn stuck_frame(&self) -> Option<Frame> {
        self.stuck.lock().first().map(|(_, f)| *f)
    }

    /// Blocks driver code on `ev` until it is set or the kernel stops (`KeWaitForSingleObject`
    /// with no timeout). Err if the kernel stopped.
    pub(crate) fn wait_event(&self, ev: &Event) -> Result<(), EbpfError> {
        let _stuck = self.mark_stuck();
        let mut g = ev.set.lock();
        while !*g {
            if self.halt.stopped() {
                return Err(self.halted());
            }
            ev.cv.wait_for(&mut g, HALT_POLL);
        }
        Ok(())
    }
}
