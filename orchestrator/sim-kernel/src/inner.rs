//! The kernel's shared state and the primitives every part uses: raising bugchecks,
//! checked pool access, epoch enter/allocate/free/synchronize, calls into driver code,
//! blocking waits that end on halt, and the epoch timer thread.

use crate::bugcheck::{self, Bugcheck, HaltState};
use crate::config::KernelConfig;
use crate::epoch::core::{SyncPoint, WorkItem};
use crate::epoch::{self, EpochManager, Retired};
use crate::error::EbpfError;
use crate::maps::MapRegistry;
use crate::modules::{self, Frame, KERNEL_MODULE, ModuleId, ModuleTable};
use crate::nmr::Nmr;
use crate::pool::{OwnerId, Pool, PoolFault, PoolHandle, TagId};
use crate::services::Services;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often blocked kernel waits re-check for a halt.
pub(crate) const HALT_POLL: Duration = Duration::from_millis(10);

/// Shared state of one booted kernel.
#[derive(Debug)]
pub(crate) struct KernelInner {
    pub(crate) config: KernelConfig,
    pub(crate) cpus: usize,
    pub(crate) halt: HaltState,
    pub(crate) modules: ModuleTable,
    pub(crate) pool: Pool,
    pub(crate) epoch: EpochManager,
    pub(crate) nmr: Nmr,
    pub(crate) hooks: crate::hook::Hooks,
    pub(crate) services: Services,
    pub(crate) maps: MapRegistry,
    pub(crate) timer: Mutex<Option<JoinHandle<()>>>,
    /// Driver code currently blocked (for the NMI's attribution), oldest first.
    stuck: Mutex<Vec<(u64, Frame)>>,
    stuck_ids: AtomicU64,
    /// Tests: microseconds the timer thread pauses between a commit and its frees, as a
    /// preempted DPC would on a busy machine.
    #[cfg(test)]
    pub(crate) release_delay_us: AtomicU64,
}

/// Being inside an epoch (as a program invocation is); leaves it when dropped.
#[derive(Debug)]
pub struct EpochGuard<'a> {
    k: &'a KernelInner,
    cpu: usize,
    epoch: i64,
}

impl Drop for EpochGuard<'_> {
    fn drop(&mut self) {
        if self.k.epoch.core.exit(self.cpu, self.epoch) {
            self.k.epoch.arm();
        }
    }
}

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
    k: &'a KernelInner,
    id: u64,
}

impl Drop for StuckGuard<'_> {
    fn drop(&mut self) {
        self.k.stuck.lock().retain(|(i, _)| *i != self.id);
    }
}

impl KernelInner {
    pub(crate) fn new(config: KernelConfig) -> KernelInner {
        let cpus = config.cpus.clamp(1, 64) as usize;
        let pool = Pool::new(config.pool_capacity, cpus as u32);
        KernelInner {
            cpus,
            halt: HaltState::default(),
            modules: ModuleTable::default(),
            epoch: EpochManager::new(cpus),
            nmr: Nmr::default(),
            hooks: crate::hook::Hooks::default(),
            services: Services::default(),
            maps: MapRegistry::new(&pool),
            pool,
            timer: Mutex::new(None),
            stuck: Mutex::new(Vec::new()),
            stuck_ids: AtomicU64::new(0),
            #[cfg(test)]
            release_delay_us: AtomicU64::new(0),
            config,
        }
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
        self.nmr.cancel_all();
        self.hooks.cancel_all();
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

    /// Enters an epoch on the thread's CPU.
    #[inline]
    pub(crate) fn epoch_enter(&self) -> EpochGuard<'_> {
        let cpu = self.cpu();
        let epoch = self.epoch.core.enter(cpu);
        EpochGuard {
            k: self,
            cpu,
            epoch,
        }
    }

    /// Pool allocation (`ExAllocatePool2`), charged to `owner`.
    pub(crate) fn allocate(
        &self,
        tag: TagId,
        owner: OwnerId,
        size: u32,
        data: u64,
    ) -> Result<PoolHandle, EbpfError> {
        self.check()?;
        self.pool
            .alloc(tag, owner, size, data, self.cpu())
            .ok_or(EbpfError::NoMemory)
    }

    /// `ebpf_epoch_allocate_with_tag`: same pool, freed through [`KernelInner::epoch_free`].
    pub(crate) fn epoch_allocate(
        &self,
        tag: TagId,
        owner: OwnerId,
        size: u32,
        data: u64,
    ) -> Result<PoolHandle, EbpfError> {
        self.allocate(tag, owner, size, data)
    }

    /// Immediate pool free (`ExFreePool`).
    pub(crate) fn free(&self, h: PoolHandle) -> Result<(), EbpfError> {
        self.check()?;
        self.pool
            .free(h, self.cpu())
            .map(|_| ())
            .map_err(|f| self.pool_fault(f))
    }

    /// `ebpf_epoch_free`: stamps the item and queues it on this CPU's free list.
    pub(crate) fn epoch_free(&self, h: PoolHandle) -> Result<(), EbpfError> {
        self.check()?;
        let cpu = self.cpu();
        let mut fault = None;
        let mut size = 0;
        self.epoch
            .core
            .retire_with(cpu, |e| match self.pool.stamp_freed(h, e) {
                Ok(s) => {
                    size = s;
                    Some(Retired {
                        handle: h,
                        size,
                        cpu,
                    })
                }
                Err(f) => {
                    fault = Some(f);
                    None
                }
            });
        if let Some(f) = fault {
            return Err(self.pool_fault(f));
        }
        self.epoch.retired.add(cpu, 1);
        self.epoch.pending_bytes.add(cpu, i64::from(size));
        self.epoch.pending_items.add(cpu, 1);
        self.epoch.arm();
        Ok(())
    }

    #[inline]
    pub(crate) fn read(&self, h: PoolHandle) -> Result<u64, EbpfError> {
        self.pool.read(h).map_err(|f| self.pool_fault(f))
    }

    /// `ebpf_epoch_schedule_work_item`: runs `f` on the epoch timer's thread once every
    /// thread inside an epoch now has left. Queued on this CPU's free list; the timer is
    /// armed by the caller's epoch exit (call it inside an epoch, as upstream does).
    pub(crate) fn epoch_schedule_work(&self, f: impl FnOnce() + Send + 'static) {
        self.epoch.core.queue_work(self.cpu(), WorkItem::new(f));
    }

    /// `ebpf_epoch_synchronize`: queues a sync point behind everything retired so far and
    /// returns once the timer's release pass has reached it, i.e. after those items are
    /// freed (not merely after the released epoch moved past them). Must not be called from
    /// inside an epoch.
    ///
    /// Two rounds: the first runs the work items queued before it (a map's teardown), which
    /// retire the map's entries; the second frees those. Callers (Verifier's unload check,
    /// pool metrics) mean "everything closed before is gone".
    pub(crate) fn synchronize(&self) -> Result<(), EbpfError> {
        for _ in 0..2 {
            self.check()?;
            let point = Arc::new(SyncPoint::default());
            self.epoch.core.queue_sync(self.cpu(), point.clone());
            self.epoch.kick();
            while !point.wait_for(HALT_POLL) {
                self.check()?;
            }
        }
        Ok(())
    }

    /// Marks core code `function` of ebpfcore as running (a caller frame for the stack of a
    /// bugcheck in the driver code it calls); nothing when ebpfcore is not loaded.
    pub(crate) fn core_frame(&self, function: &'static str) -> Option<modules::FrameGuard> {
        self.services
            .core_module()
            .map(|m| modules::push_frame(m, function))
    }

    /// Runs driver code `module!function`; calling into an unloaded image is bugcheck 0xCE.
    #[inline]
    pub(crate) fn call_driver<R>(
        &self,
        module: ModuleId,
        loaded: &AtomicBool,
        function: &'static str,
        f: impl FnOnce() -> Result<R, EbpfError>,
    ) -> Result<R, EbpfError> {
        self.check()?;
        if !loaded.load(Ordering::Acquire) {
            let frame = Frame { module, function };
            let addr = self.modules.rip(module, function);
            return Err(self.raise(
                bugcheck::DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS,
                [addr, 0x10, 0, 0],
                Some(frame),
                function,
                format!(
                    "call into {}!{function} after the driver unloaded",
                    self.modules.get(module).name
                ),
            ));
        }
        let _frame = modules::push_frame(module, function);
        f()
    }

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

    /// The epoch flush timer's DPC loop (runs as CPU 0 until the kernel stops).
    pub(crate) fn timer_loop(self: Arc<Self>) {
        epoch::bind_cpu(0);
        while !self.halt.stopped() {
            let (armed, urgent) = self.epoch.wait_armed(Duration::from_millis(50));
            if self.halt.stopped() {
                break;
            }
            if !armed && !urgent {
                continue;
            }
            if !urgent {
                let start = Instant::now();
                // The 1 ms timer; an urgent request (synchronize) cuts the delay short.
                while start.elapsed() < epoch::FLUSH_DELAY {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            let mut release = self.epoch.core.compute();
            #[cfg(test)]
            std::thread::sleep(Duration::from_micros(
                self.release_delay_us.load(Ordering::Relaxed),
            ));
            let _frame = self
                .services
                .core_module()
                .map(|f| modules::push_frame(f, "_ebpf_epoch_release_free_list"));
            let mut slots: Vec<Vec<u32>> = vec![Vec::new(); self.cpus];
            for it in std::mem::take(&mut release.items) {
                if self.release_item(&it) {
                    slots[it.cpu % self.cpus].push(it.handle.index());
                }
            }
            for (cpu, s) in slots.iter_mut().enumerate() {
                if !s.is_empty() {
                    self.pool.recycle(cpu, s);
                }
            }
            // Work items (map teardown) run after the frees, before a waiting synchronize
            // may return.
            for w in std::mem::take(&mut release.work) {
                w.run();
            }
            // Only now may a waiting synchronize return: its items are freed.
            release.complete();
            if self.epoch.core.has_pending() {
                self.epoch.arm();
            }
            self.epoch.cycle_done();
        }
        self.epoch.cycle_done();
    }

    /// Releases one retired item; true if its slot can be recycled.
    fn release_item(&self, it: &Retired) -> bool {
        let ok = match self.pool.invalidate(it.handle, it.cpu) {
            Ok(_) => true,
            Err(f) => {
                if !self.halt.stopped() {
                    self.pool_fault(f);
                }
                false
            }
        };
        self.epoch.pending_bytes.add(it.cpu, -i64::from(it.size));
        self.epoch.pending_items.add(it.cpu, -1);
        self.epoch.released_count.add(it.cpu, 1);
        ok
    }

    /// Shutdown: stop the timer; release what is left on free lists.
    pub(crate) fn stop_timer(&self) {
        self.epoch.wake_timer();
        if let Some(t) = self.timer.lock().take() {
            let _ = t.join();
        }
    }
}
