//! Synchronisation primitives for the loom-checked cores (epoch propose/commit, rundown).
//!
//! Under `RUSTFLAGS="--cfg loom"` these are loom's model-checked types; otherwise the std
//! ones. Only the small cores that loom explores use this module; the rest of the kernel uses
//! `parking_lot` directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicI64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicI64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: a panic in the model is a test failure already, and the
/// guarded state stays consistent because every critical section is panic-free.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Waits on a condition variable, ignoring poisoning (see [`lock`]).
pub(crate) fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    match cv.wait(g) {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Keeps a per-CPU value on its own cache lines (no false sharing between CPUs).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CacheLine<T>(pub(crate) T);

impl<T> std::ops::Deref for CacheLine<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// `i % n` for a per-CPU index, without the division when `i` is already below `n` (the
/// common case: a thread bound to one of the kernel's CPUs). Hot paths take it several
/// times per map call, and a 64-bit division costs more than the rest of some of them.
#[inline]
pub(crate) fn wrap(i: usize, n: usize) -> usize {
    if i < n { i } else { i % n }
}

#[cfg(all(test, not(loom)))]
mod tests {
    /// Rule: `wrap` is `i % n` whether or not `i` is below `n`.
    #[test]
    fn wrap_is_the_remainder() {
        for n in 1..5 {
            for i in 0..12 {
                assert_eq!(super::wrap(i, n), i % n, "{i} % {n}");
            }
        }
    }
}
