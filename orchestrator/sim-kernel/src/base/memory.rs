//! Pool and epoch memory as driver code sees it: allocate and free (checked, a fault is its
//! bugcheck), epoch enter/free/work items and `synchronize`.

use std::sync::Arc;

use super::KernelBase;
use super::wait::HALT_POLL;
use crate::epoch::Retired;
use crate::epoch::core::{SyncPoint, WorkItem};
use crate::error::EbpfError;
use crate::pool::{OwnerId, PoolHandle, TagId};

/// Being inside an epoch (as a program invocation is); leaves it when dropped.
#[derive(Debug)]
pub struct EpochGuard<'a> {
    k: &'a KernelBase,
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

impl KernelBase {
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

    /// `ebpf_epoch_allocate_with_tag`: same pool, freed through [`KernelBase::epoch_free`].
    /// ebpfcore's code makes the pool call (an extension reaches it through the client
    /// dispatch table), so the allocation is charged to ebpfcore, as Driver Verifier's pool
    /// tracking charges it upstream: what an extension leaks this way is found at
    /// ebpfcore's unload, not the extension's. The tag stays the caller's.
    pub(crate) fn epoch_allocate(
        &self,
        tag: TagId,
        size: u32,
        data: u64,
    ) -> Result<PoolHandle, EbpfError> {
        let core = self.core_running().ok_or(EbpfError::CoreNotRunning)?;
        self.allocate(tag, core, size, data)
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
}
