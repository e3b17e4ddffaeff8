//! IRQL: each thread's current interrupt request level, raised to DISPATCH_LEVEL where
//! upstream runs there (a spin lock such as a hash bucket's, a program invoked by its hook,
//! the epoch timer's DPC) and restored after. A passive-only routine checks it
//! (`KernelBase::passive_only`): called above PASSIVE_LEVEL it is an IRQL bugcheck.
//!
//! Thread-local, because IRQL belongs to the processor a thread runs on and a thread at
//! DISPATCH_LEVEL cannot be switched away: in the model, the thread is the processor.

use parking_lot::{Mutex, MutexGuard};
use std::cell::Cell;
use std::ops::{Deref, DerefMut};

/// `PASSIVE_LEVEL`: threads, pageable code, waits.
pub(crate) const PASSIVE_LEVEL: u8 = 0;
/// `DISPATCH_LEVEL`: spin locks, DPCs, no waits and no paged memory.
pub(crate) const DISPATCH_LEVEL: u8 = 2;

thread_local! {
    static CURRENT: Cell<u8> = const { Cell::new(PASSIVE_LEVEL) };
}

/// The calling thread's IRQL (`KeGetCurrentIrql`).
pub(crate) fn current() -> u8 {
    CURRENT.with(Cell::get)
}

/// Back at the previous IRQL when dropped (`KeLowerIrql(old)`).
#[derive(Debug)]
#[must_use = "the IRQL drops back when the guard is dropped"]
pub(crate) struct IrqlGuard {
    old: u8,
}

impl Drop for IrqlGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.old));
    }
}

/// `KeRaiseIrql(level)`. Raising never lowers: a raise to a level below the current one
/// (a bugcheck 0x9 on Windows, and no code of the model does it) keeps the current level.
pub(crate) fn raise(level: u8) -> IrqlGuard {
    let old = current();
    CURRENT.with(|c| c.set(old.max(level)));
    IrqlGuard { old }
}

/// A spin lock (`KeAcquireSpinLock`): its holder runs at DISPATCH_LEVEL until it releases.
#[derive(Debug, Default)]
pub(crate) struct SpinLock<T>(Mutex<T>);

/// A held [`SpinLock`]: releases the lock, then lowers the IRQL.
#[derive(Debug)]
pub(crate) struct SpinGuard<'a, T> {
    // Field order is drop order: the lock is released before the IRQL drops back.
    guard: MutexGuard<'a, T>,
    _irql: IrqlGuard,
}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        SpinLock(Mutex::new(value))
    }

    /// Raises to DISPATCH_LEVEL, then takes the lock.
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        let irql = raise(DISPATCH_LEVEL);
        SpinGuard {
            guard: self.0.lock(),
            _irql: irql,
        }
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rule: raises nest and each guard restores the level it found.
    #[test]
    fn raises_nest_and_restore() {
        assert_eq!(current(), PASSIVE_LEVEL);
        {
            let _a = raise(DISPATCH_LEVEL);
            assert_eq!(current(), DISPATCH_LEVEL);
            {
                let _b = raise(DISPATCH_LEVEL);
                assert_eq!(current(), DISPATCH_LEVEL);
            }
            // The inner guard found DISPATCH_LEVEL: it does not lower to PASSIVE.
            assert_eq!(current(), DISPATCH_LEVEL);
            let _c = raise(PASSIVE_LEVEL);
            assert_eq!(current(), DISPATCH_LEVEL, "a raise never lowers");
        }
        assert_eq!(current(), PASSIVE_LEVEL);
    }

    /// Rule: a spin lock's holder is at DISPATCH_LEVEL; the release restores the level.
    #[test]
    fn a_spin_lock_holder_runs_at_dispatch() {
        let l = SpinLock::new(1u32);
        {
            let mut g = l.lock();
            *g += 1;
            assert_eq!(current(), DISPATCH_LEVEL);
        }
        assert_eq!(current(), PASSIVE_LEVEL);
        assert_eq!(*l.lock(), 2);
    }

    /// Rule: the level is per thread (per processor): another thread is not raised.
    #[test]
    fn irql_is_per_thread() {
        let _g = raise(DISPATCH_LEVEL);
        let other = std::thread::spawn(current).join().unwrap();
        assert_eq!(other, PASSIVE_LEVEL);
        assert_eq!(current(), DISPATCH_LEVEL);
    }
}
