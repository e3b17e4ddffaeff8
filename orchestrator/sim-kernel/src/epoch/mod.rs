//! Epoch-based reclamation for the kernel: the [`core`] propose/commit state plus the 1 ms
//! flush timer's arming, the counters, and CPU binding of threads (`synchronize` lives on
//! the kernel, which frees what a cycle releases).

pub(crate) mod core;

use crate::pool::PoolHandle;
use parking_lot::{Condvar, Mutex};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// An item on a free list: a pool allocation retired by `epoch_free`.
#[derive(Debug)]
pub(crate) struct Retired {
    pub(crate) handle: PoolHandle,
    pub(crate) size: u32,
    /// The CPU whose free list held it: its slot goes back to that CPU's pool shard.
    pub(crate) cpu: usize,
}

/// A counter split per CPU (each on its own cache line); readers sum it.
#[derive(Debug)]
pub(crate) struct PerCpu(Box<[Padded]>);

#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded(AtomicI64);

impl PerCpu {
    fn new(cpus: usize) -> Self {
        PerCpu((0..cpus.max(1)).map(|_| Padded::default()).collect())
    }

    #[inline]
    pub(crate) fn add(&self, cpu: usize, v: i64) {
        self.0[crate::sync::wrap(cpu, self.0.len())]
            .0
            .fetch_add(v, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> i64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

/// Delay between arming the flush timer and the computation (`EBPF_EPOCH_FLUSH_DELAY`).
pub(crate) const FLUSH_DELAY: Duration = Duration::from_millis(1);

thread_local! {
    /// The simulated CPU this thread is bound to (u32::MAX: not bound yet).
    static CPU: Cell<u32> = const { Cell::new(u32::MAX) };
}
static NEXT_CPU: AtomicUsize = AtomicUsize::new(0);

/// Binds the current thread to simulated CPU `cpu` (modulo the kernel's CPU count).
pub(crate) fn bind_cpu(cpu: u32) {
    CPU.with(|c| c.set(cpu));
}

/// The simulated CPU of the current thread among `cpus`; unbound threads are bound round
/// robin on first use.
#[inline]
pub(crate) fn current_cpu(cpus: usize) -> usize {
    let c = CPU.with(|c| {
        let v = c.get();
        if v == u32::MAX {
            let n = NEXT_CPU.fetch_add(1, Ordering::Relaxed) as u32;
            c.set(n);
            n
        } else {
            v
        }
    });
    crate::sync::wrap(c as usize, cpus.max(1))
}

/// Epoch state, timer arming and counters.
#[derive(Debug)]
pub(crate) struct EpochManager {
    pub(crate) core: core::EpochCore<Retired>,
    armed: AtomicBool,
    urgent: AtomicBool,
    wake: Mutex<()>,
    wake_cv: Condvar,
    pub(crate) retired: PerCpu,
    pub(crate) released_count: PerCpu,
    pub(crate) pending_bytes: PerCpu,
    pub(crate) pending_items: PerCpu,
    pub(crate) cycles: AtomicU64,
}

impl EpochManager {
    pub(crate) fn new(cpus: usize) -> Self {
        EpochManager {
            core: core::EpochCore::new(cpus),
            armed: AtomicBool::new(false),
            urgent: AtomicBool::new(false),
            wake: Mutex::new(()),
            wake_cv: Condvar::new(),
            retired: PerCpu::new(cpus),
            released_count: PerCpu::new(cpus),
            pending_bytes: PerCpu::new(cpus),
            pending_items: PerCpu::new(cpus),
            cycles: AtomicU64::new(0),
        }
    }

    /// Arms the flush timer if it is not armed (cheap when it is).
    #[inline]
    pub(crate) fn arm(&self) {
        if !self.armed.load(Ordering::Relaxed) && !self.armed.swap(true, Ordering::AcqRel) {
            let _g = self.wake.lock();
            self.wake_cv.notify_one();
        }
    }

    /// Asks for an immediate computation (synchronize).
    pub(crate) fn kick(&self) {
        self.urgent.store(true, Ordering::Release);
        self.armed.store(true, Ordering::Release);
        let _g = self.wake.lock();
        self.wake_cv.notify_one();
    }

    /// Timer side: waits up to `max` for the timer to be armed; returns (armed, urgent).
    pub(crate) fn wait_armed(&self, max: Duration) -> (bool, bool) {
        let mut g = self.wake.lock();
        if !self.armed.load(Ordering::Acquire) {
            self.wake_cv.wait_for(&mut g, max);
        }
        drop(g);
        let armed = self.armed.swap(false, Ordering::AcqRel);
        (armed, self.urgent.swap(false, Ordering::AcqRel))
    }

    /// Wakes the timer (shutdown).
    pub(crate) fn wake_timer(&self) {
        let _g = self.wake.lock();
        self.wake_cv.notify_all();
    }

    /// Timer side: a cycle finished.
    pub(crate) fn cycle_done(&self) {
        self.cycles.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> EpochStats {
        EpochStats {
            current: self.core.published(),
            released: self.core.released(),
            retired: self.retired.sum() as u64,
            released_count: self.released_count.sum() as u64,
            pending_bytes: self.pending_bytes.sum(),
            pending_items: self.pending_items.sum(),
            cycles: self.cycles.load(Ordering::Relaxed),
        }
    }
}

/// Counters of epoch-based reclamation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EpochStats {
    /// The published (current) epoch.
    pub current: i64,
    /// The newest epoch whose frees have been released.
    pub released: i64,
    /// Items ever handed to `epoch_free`.
    pub retired: u64,
    /// Items ever released back to the pool.
    pub released_count: u64,
    /// Bytes waiting on free lists.
    pub pending_bytes: i64,
    /// Items waiting on free lists.
    pub pending_items: i64,
    /// Propose/commit cycles run.
    pub cycles: u64,
}
