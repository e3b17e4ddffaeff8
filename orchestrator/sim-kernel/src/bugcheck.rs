//! Bugchecks: the record of a detected violation, and the halt state that stops the kernel.
//!
//! The first bugcheck wins (as `KeBugCheckEx` does); after it every kernel thread and tool
//! thread observes the halt and stops, and API calls return `Halted` instead of working.

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

// The codes this model raises, named once in win-vocab's table.
pub use win_vocab::bugcheck::{
    BAD_POOL_CALLER, DRIVER_IRQL_NOT_LESS_OR_EQUAL,
    DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS, DRIVER_VERIFIER_DETECTED_VIOLATION,
    IRQL_NOT_LESS_OR_EQUAL, KERNEL_SECURITY_CHECK_FAILURE, NMI_HARDWARE_FAILURE,
    PAGE_FAULT_IN_NONPAGED_AREA,
};

/// `BAD_POOL_CALLER` parameter 1: the pool block was already freed.
pub const BAD_POOL_CALLER_ALREADY_FREED: u64 = 0x7;
/// `DRIVER_VERIFIER_DETECTED_VIOLATION` parameter 1: pool allocations leaked at unload.
pub const VERIFIER_POOL_LEAK_AT_UNLOAD: u64 = 0x62;
/// `__fastfail` code `FAST_FAIL_HEAP_METADATA_CORRUPTION`, what `ebpf_epoch_free` uses.
pub const FAST_FAIL_HEAP_METADATA_CORRUPTION: u64 = 50;

/// A stop of the simulated kernel, as a crash dump header and `!analyze` would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bugcheck {
    /// Bugcheck code, e.g. `0x50`.
    pub code: u32,
    /// The four bugcheck parameters.
    pub params: [u64; 4],
    /// Image name of the faulting module, e.g. `sample_ebpf_ext.sys` or `ntoskrnl.exe`.
    pub module: String,
    /// Function that was running, e.g. `_sample_map_find_entry`.
    pub function: String,
    /// Instruction pointer: inside `module`'s image range (see `Kernel::modules`).
    pub rip: u64,
    /// Return addresses of the functions that called the one RIP is in, innermost first,
    /// as they sit on the faulting thread's stack (callers the model ran: ebpfcore's map
    /// path, a driver's unload routine, the epoch timer...).
    pub stack: Vec<u64>,
    /// Simulated CPU that raised it.
    pub cpu: u32,
    /// One line saying what the model detected (for logs; not part of a real dump).
    pub detail: String,
}

impl Bugcheck {
    /// The symbolic name of the code, e.g. `PAGE_FAULT_IN_NONPAGED_AREA`.
    pub fn name(&self) -> &'static str {
        bugcheck_name(self.code)
    }

    /// The code and parameters, as the event log and a dump header carry them.
    pub fn record(&self) -> win_vocab::Bugcheck {
        win_vocab::Bugcheck {
            code: self.code,
            params: self.params,
        }
    }
}

/// The symbolic name of a bugcheck code (or `UNKNOWN_BUGCHECK`), from win-vocab's table.
pub fn bugcheck_name(code: u32) -> &'static str {
    win_vocab::bugcheck::name(code).unwrap_or("UNKNOWN_BUGCHECK")
}

/// Whether the kernel still runs, and the bugcheck that stopped it.
#[derive(Debug, Default)]
pub(crate) struct HaltState {
    stopped: AtomicBool,
    inner: Mutex<HaltInner>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct HaltInner {
    bugcheck: Option<Bugcheck>,
    shutdown: bool,
}

impl HaltState {
    /// True once a bugcheck or shutdown happened: every loop checks this.
    #[inline]
    pub(crate) fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The code of the stop, for `Halted` errors (None = shutdown).
    pub(crate) fn code(&self) -> Option<u32> {
        self.inner.lock().bugcheck.as_ref().map(|b| b.code)
    }

    /// Records a bugcheck unless the kernel already stopped; returns the one in effect.
    pub(crate) fn raise(&self, bc: Bugcheck) -> Option<Bugcheck> {
        let mut g = self.inner.lock();
        if g.bugcheck.is_none() && !g.shutdown {
            g.bugcheck = Some(bc);
        }
        self.stopped.store(true, Ordering::Release);
        self.cv.notify_all();
        g.bugcheck.clone()
    }

    pub(crate) fn shutdown(&self) {
        let mut g = self.inner.lock();
        g.shutdown = true;
        self.stopped.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    pub(crate) fn bugcheck(&self) -> Option<Bugcheck> {
        self.inner.lock().bugcheck.clone()
    }

    /// Blocks until a bugcheck happens or the timeout passes (a shutdown also ends the wait).
    pub(crate) fn wait_bugcheck(&self, timeout: Duration) -> Option<Bugcheck> {
        let deadline = Instant::now() + timeout;
        let mut g = self.inner.lock();
        loop {
            if g.bugcheck.is_some() || g.shutdown {
                return g.bugcheck.clone();
            }
            if self.cv.wait_until(&mut g, deadline).timed_out() {
                return g.bugcheck.clone();
            }
        }
    }
}
