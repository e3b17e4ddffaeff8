//! The lower context: what every layer up to the epoch owns (halt state, module table,
//! pool, epoch, the timer, the running core image) and the primitives driver code calls,
//! taking only this (`KernelBase`). The layers above (NMR, maps, drivers) live in
//! `inner::KernelInner`, which holds a `KernelBase`; the upper layers that must hear of a
//! halt register a [`HaltWake`] here rather than this layer naming them.
//!
//! The primitives are `impl KernelBase` blocks beside it, one file each: `memory` (pool and
//! epoch), `driver` (calls into driver code), `wait` (blocking waits that end on halt) and
//! `timer` (the epoch flush timer).

mod driver;
mod memory;
mod timer;
mod wait;

pub use memory::EpochGuard;
pub(crate) use wait::{Event, HALT_POLL};

use crate::bugcheck::{self, Bugcheck, HaltState};
use crate::config::KernelConfig;
use crate::epoch::{self, EpochManager};
use crate::error::EbpfError;
use crate::modules::{self, Frame, KERNEL_MODULE, ModuleId, ModuleTable};
use crate::pool::{OwnerId, Pool, PoolFault};
use parking_lot::{Mutex, RwLock};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::thread::JoinHandle;

/// Something above the lower context whose blocked waits must end when the kernel halts
/// (NMR's deregistrations, the hook side's client detaches).
pub(crate) trait HaltWake: Send + Sync + fmt::Debug {
    /// Ends every wait (the kernel stopped); called after the halt state is set.
    fn wake_on_halt(&self);
}

/// The lower context of one booted kernel.
#[derive(Debug)]
pub(crate) struct KernelBase {
    pub(crate) config: KernelConfig,
    pub(crate) cpus: usize,
    pub(crate) halt: HaltState,
    pub(crate) modules: ModuleTable,
    pub(crate) pool: Pool,
    pub(crate) epoch: EpochManager,
    pub(crate) timer: Mutex<Option<JoinHandle<()>>>,
    /// ebpfcore's module and pool owner while it is running (the map API is open). The
    /// timer and the core's caller frames read it; `services` sets it from DriverEntry
    /// and clears it at unload.
    pub(crate) core_image: RwLock<Option<(ModuleId, OwnerId)>>,
    /// `core_image` as one word for the readers on every map call (`core_running`,
    /// `core_frame`): an atomic load, where the RwLock's read would bump a counter shared by
    /// every CPU. Written with [`KernelBase::mirror_core_image`] under `core_image`'s write
    /// lock. 0: not running; else (module + 1) << 32 | owner.
    core_word: AtomicU64,
    /// ebpfcore flavour `work_items_at_dispatch` (issue #2191): the timer runs epoch work
    /// items inside its DPC.
    pub(crate) work_items_at_dispatch: AtomicBool,
    /// What to wake on halt, registered by the layers above.
    halt_wakes: Mutex<Vec<Arc<dyn HaltWake>>>,
    /// Driver code currently blocked (for the NMI's attribution), oldest first.
    stuck: Mutex<Vec<(u64, Frame)>>,
    stuck_ids: AtomicU64,
    /// Tests: microseconds the timer thread pauses between a commit and its frees, as a
    /// preempted DPC would on a busy machine.
    #[cfg(test)]
    pub(crate) release_delay_us: AtomicU64,
}

impl KernelBase {
    pub(crate) fn new(config: KernelConfig) -> KernelBase {
        let cpus = config.cpus.clamp(1, 64) as usize;
        KernelBase {
            cpus,
            halt: HaltState::default(),
            modules: ModuleTable::default(),
            pool: Pool::new(config.pool_capacity, cpus as u32),
            epoch: EpochManager::new(cpus),
            timer: Mutex::new(None),
            core_image: RwLock::new(None),
            core_word: AtomicU64::new(0),
            work_items_at_dispatch: AtomicBool::new(false),
            halt_wakes: Mutex::new(Vec::new()),
            stuck: Mutex::new(Vec::new()),
            stuck_ids: AtomicU64::new(0),
            #[cfg(test)]
            release_delay_us: AtomicU64::new(0),
            config,
        }
    }

    /// Registers `w` to be woken when the kernel halts.
    pub(crate) fn register_halt_wake(&self, w: Arc<dyn HaltWake>) {
        self.halt_wakes.lock().push(w);
    }

    /// Publishes `core` (just stored in `core_image`, whose write lock the caller holds) to
    /// the readers.
    pub(crate) fn mirror_core_image(&self, core: Option<(ModuleId, OwnerId)>) {
        let word = core.map_or(0, |(m, o)| (u64::from(m.0) + 1) << 32 | u64::from(o.0));
        self.core_word
            .store(word, std::sync::atomic::Ordering::Release);
    }

    #[inline]
    fn core_image_now(&self) -> Option<(ModuleId, OwnerId)> {
        let word = self.core_word.load(std::sync::atomic::Ordering::Acquire);
        (word != 0).then(|| (ModuleId((word >> 32) as u32 - 1), OwnerId(word as u16)))
    }

    /// ebpfcore's pool owner, if ebpfcore is running.
    #[inline]
    pub(crate) fn core_running(&self) -> Option<OwnerId> {
        self.core_image_now().map(|(_, o)| o)
    }

    /// ebpfcore's module, if it is running.
    #[inline]
    pub(crate) fn core_module(&self) -> Option<ModuleId> {
        self.core_image_now().map(|(m, _)| m)
    }

    /// The error every call returns once the kernel stopped.
    pub(crate) fn halted(&self) -> EbpfError {
        EbpfError::Halted(self.halt.code())
    }

    #[inline]
    pub(crate) fn check(&self) -> Result<(), EbpfError> {
        if self.halt.stopped() {
            Err(self.halted())
        } else {
            Ok(())
        }
    }

    #[inline]
    pub(crate) fn cpu(&self) -> usize {
        epoch::current_cpu(self.cpus)
    }

    /// Stops the kernel with a bugcheck attributed to `frame` (or the thread's innermost
    /// driver frame, or the kernel's `default_fn`). Returns the `Halted` error to propagate.
    pub(crate) fn raise(
        &self,
        code: u32,
        params: [u64; 4],
        frame: Option<Frame>,
        default_fn: &'static str,
        detail: String,
    ) -> EbpfError {
        let explicit = frame.is_some();
        let mut chain = modules::current_frames();
        let frame = frame.or_else(|| chain.last().copied());
        if !explicit {
            // The innermost frame is RIP's own; the rest are its callers.
            chain.pop();
        }
        let stack = self.modules.return_addresses(&chain);
        let (module, function) = match frame {
            Some(f) => (f.module, f.function),
            None => (KERNEL_MODULE, default_fn),
        };
        let m = self.modules.get(module);
        let rip = self.modules.rip(module, function);
        let mut params = params;
        // Parameters that carry "the instruction address" get the attributed one.
        if code == bugcheck::PAGE_FAULT_IN_NONPAGED_AREA
            || code == bugcheck::DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS
        {
            params[2] = rip;
        }
        // ... and for the IRQL codes, parameter 4 is.
        if code == bugcheck::IRQL_NOT_LESS_OR_EQUAL
            || code == bugcheck::DRIVER_IRQL_NOT_LESS_OR_EQUAL
        {
            params[3] = rip;
        }
        let bc = Bugcheck {
            code,
            params,
            module: m.name,
            function: function.to_string(),
            rip,
            stack,
            cpu: self.cpu() as u32,
            detail,
        };
        self.halt.raise(bc);
        self.on_halt();
        self.halted()
    }

    /// Wakes everything that might block so it observes the halt.
    pub(crate) fn on_halt(&self) {
        // Cloned out: a waker must be free to take locks a registering thread holds.
        let wakes = self.halt_wakes.lock().clone();
        for w in wakes {
            w.wake_on_halt();
        }
        self.epoch.wake_timer();
    }

    /// Turns a pool fault into its bugcheck.
    pub(crate) fn pool_fault(&self, f: PoolFault) -> EbpfError {
        match f {
            PoolFault::StaleAccess { va, write } => self.raise(
                bugcheck::PAGE_FAULT_IN_NONPAGED_AREA,
                [va, u64::from(write), 0, 2],
                None,
                "MmAccessFault",
                format!(
                    "{} of freed pool memory at {va:#x}",
                    if write { "write" } else { "read" }
                ),
            ),
            PoolFault::BadFree { va, tag } => self.raise(
                bugcheck::BAD_POOL_CALLER,
                [
                    bugcheck::BAD_POOL_CALLER_ALREADY_FREED,
                    0,
                    u64::from(u32::from_le_bytes(tag)),
                    va,
                ],
                None,
                "ExFreePoolWithTag",
                format!(
                    "free of pool block {va:#x} (tag {}) that is already free",
                    crate::pool::tag_text(tag)
                ),
            ),
            PoolFault::DoubleRetire { va } => self.raise(
                bugcheck::KERNEL_SECURITY_CHECK_FAILURE,
                [
                    bugcheck::FAST_FAIL_HEAP_METADATA_CORRUPTION,
                    0xFFFF_D000_0000_7000,
                    0xFFFF_D000_0000_7100,
                    va,
                ],
                None,
                "ebpf_epoch_free",
                format!("ebpf_epoch_free of {va:#x}, which is already on an epoch free list"),
            ),
        }
    }
}
